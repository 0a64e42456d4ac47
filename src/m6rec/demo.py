"""``m6rec demo``: the text model ``m6`` at its defaults beside cheap baselines, in one run.

The steps: fit the baselines on the ``loo`` split (seconds), encode the catalogue into the
encoding cache (once; later runs read it), fit ``m6`` exactly as ``build_model("m6")`` builds it,
evaluate everything with the same full-ranking pass, save ``m6`` as a model directory, then show
one user's top-10 with explanations and one free-text request ranked by ``m6``.

Progress: a Rich bar when stdout is a terminal, plain log lines otherwise (CI logs, pipes).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from m6rec.data.dataset import Dataset

#: The baselines fitted beside m6: each fits in seconds on ml-100k.
BASELINES = ("pop", "itemknn", "ease", "puresvd", "als", "bpr")
FLAGSHIP = "m6"
REQUEST = "a funny animated film for kids"

log = logging.getLogger("m6rec.demo")


def interactive() -> bool:
    """Whether progress can be drawn as a bar (stdout is a terminal)."""
    return sys.stdout.isatty()


@contextmanager
def plain_progress_logs(enabled: bool) -> Iterator[None]:
    """While active (and ``enabled``), INFO lines of ``m6rec.demo`` and ``m6rec.train`` (one per
    training epoch) go to stdout as plain timestamped text."""
    if not enabled:
        yield
        return
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
    loggers = [logging.getLogger(n) for n in ("m6rec.demo", "m6rec.train")]
    saved = [(lg.level, lg.propagate) for lg in loggers]
    for lg in loggers:
        lg.addHandler(handler)
        lg.setLevel(logging.INFO)
        lg.propagate = False
    try:
        yield
    finally:
        for lg, (level, propagate) in zip(loggers, saved, strict=True):
            lg.removeHandler(handler)
            lg.setLevel(level)
            lg.propagate = propagate


def run_demo(dataset: Dataset, data_spec: str, user: str, out: Path,
             say: Callable[[str], None], baselines: Sequence[str] | None = None,
             bar: bool | None = None) -> dict[str, Any]:
    """Fit and evaluate the baselines and ``m6`` on ``loo``; save ``m6``; return what to show.

    Parameters
    ----------
    dataset : Dataset
    data_spec : str
        The spec ``dataset`` was loaded from (stored in the model directory for ``serve``).
    user : str
        Raw user id whose top-10 and request are shown.
    out : Path
        Written: ``report.md``, ``results.json``, plots, and ``model/`` (the fitted ``m6``).
    say : callable
        Prints one line of narration.
    baselines : sequence of str, optional
        Models fitted beside ``m6`` (default `BASELINES`).
    bar : bool, optional
        Progress bars (default: when stdout is a terminal); plain log lines otherwise.

    Returns
    -------
    dict with ``result`` (the benchmark result: one entry per model), ``model_dir``,
    ``top10`` and ``request`` (each as `m6rec.recommend.recommend_for_user` returns it) and
    ``encoding`` (what `encode_catalogue` did).
    """
    from m6rec.distributed.encode import encode_catalogue
    from m6rec.eval.benchmark import item_map, run_benchmark
    from m6rec.eval.evaluate import evaluate_split, fit
    from m6rec.eval.protocols import make_split
    from m6rec.models.io import save_model_dir
    from m6rec.models.m6.items import TEXT_BUDGET
    from m6rec.recommend import recommend_for_user
    from m6rec.registry import build_model

    bar = interactive() if bar is None else bar
    baselines = BASELINES if baselines is None else baselines
    if dataset.user_index(user) is None:
        raise ValueError(f"--user {user!r}: no such user in {dataset.name}")
    with plain_progress_logs(not bar):
        say(f"1/4 baselines ({', '.join(baselines)}), protocol loo, full ranking")
        result = run_benchmark(dataset, list(baselines), "loo",
                               progress=lambda s: log.info("fitting %s", s))
        # m6 exactly at its defaults; verbose only turns on the per-epoch progress
        model = build_model(FLAGSHIP, verbose=True)
        params = model.get_params()
        say("2/4 encoding the catalogue's texts (cached: later runs skip this)")
        encoding = encode_catalogue(dataset, params["encoder"], budget=TEXT_BUDGET,
                                     show_progress=True)
        say(f"    {encoding['texts']:,} texts, {encoding['encoded']:,} encoded now, "
            f"{encoding['seconds']:.1f} s")
        say(f"3/4 training {FLAGSHIP} at its defaults (early stopping on validation NDCG@10)")
        split = make_split(dataset, "loo")
        model, seconds = fit(model, split)
        res = evaluate_split(model, split)
        entry: dict[str, Any] = {"seeds": 1, **res, "fit_seconds": seconds,
                                 "curves": getattr(model, "history_", None),
                                 "params": model.get_params()}
        if hasattr(model, "item_vectors"):
            entry["item_map"] = item_map(model.item_vectors(), dataset)
        result["models"][FLAGSHIP] = entry
        say(f"    {FLAGSHIP} fitted in {seconds:.1f} s")
    model_dir = save_model_dir(model, out / "model", dataset, data_spec=data_spec,
                               protocol="loo", fit_seconds=seconds)
    say(f"4/4 recommendations from {FLAGSHIP} (the user's whole history as input)")
    top10 = recommend_for_user(model, dataset, user, k=10, explain=True)
    request = recommend_for_user(model, dataset, None, k=10, query=REQUEST)
    return {"result": result, "model_dir": model_dir, "top10": top10, "request": request,
            "encoding": encoding}
