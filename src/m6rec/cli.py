"""``m6rec``: the command-line tool (Typer). Thin calls into the library.

Bad arguments or bad data give a one-line ``error: ...`` on stderr and exit code 2.
"""

from __future__ import annotations

import functools
import json
import os
import shlex
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="m6rec: open-domain recommendation with language models and classic baselines.")

USER_ERRORS = (ValueError, KeyError, TypeError, FileNotFoundError, NotADirectoryError)


def cli_errors(fn):
    """Turn library errors about the user's input into one line and exit code 2."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except USER_ERRORS as e:
            msg = e.args[0] if isinstance(e, KeyError) and e.args else str(e)
            typer.echo(f"error: {msg}", err=True)
            raise typer.Exit(2) from None

    return wrapper


def parse_value(text: str) -> Any:
    """``3`` -> 3, ``0.5`` -> 0.5, ``true`` -> True, ``[1,2]`` -> [1, 2], else the string."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def parse_params(items: list[str] | None, scoped: bool = False) -> dict:
    """``key=value`` pairs (``model.key=value`` when ``scoped``) -> dict (nested when scoped)."""
    out: dict = {}
    for item in items or []:
        if "=" not in item:
            raise ValueError(f"--param {item!r}: expected key=value")
        key, value = item.split("=", 1)
        key = key.strip()
        if scoped:
            if "." not in key:
                raise ValueError(f"--param {item!r}: expected model.key=value")
            model, key = key.split(".", 1)
            out.setdefault(model.strip(), {})[key] = parse_value(value)
        else:
            out[key] = parse_value(value)
    return out


def _console():
    from rich.console import Console

    return Console(stderr=True)


def _load_one(spec: str, tie_break: str | None = None):
    from m6rec.config import Settings
    from m6rec.data import load_datasets

    datasets = load_datasets(spec, tie_break=tie_break or Settings().tie_break)
    if len(datasets) != 1:
        raise ValueError(f"--data {spec!r}: this command takes one dataset, got {len(datasets)}")
    return datasets[0]


def _load_training_data(spec: str, model: str, tie_break: str | None = None):
    """One dataset, or several combined into one training set (ids namespaced per domain,
    every item read as text: `m6rec.data.combine`) for a model that reads item text."""
    from m6rec.config import Settings
    from m6rec.data import load_datasets
    from m6rec.registry import get_model_class

    datasets = load_datasets(spec, tie_break=tie_break or Settings().tie_break)
    if len(datasets) == 1:
        return datasets[0]
    if not getattr(get_model_class(model), "reads_text", False):
        raise ValueError(f"--data {spec!r}: several datasets are trained on together only by "
                         f"models that read item text (m6, textsim); {model!r} does not")
    from m6rec.data.combine import combine

    return combine(datasets)


# -- commands -------------------------------------------------------------------------------------
@app.command()
@cli_errors
def datasets(
    data: Annotated[str | None, typer.Option(help="Describe this dataset spec instead.")] = None,
):
    """List the built-in datasets (or describe --data SPEC)."""
    from rich.table import Table

    from m6rec.data import BUILTIN, load_datasets

    table = Table("name", "users", "items", "interactions", "ratings", "item columns", "source")
    for ds in load_datasets(data or ",".join(BUILTIN)):
        s = ds.summary()
        table.add_row(ds.name, str(s["users"]), str(s["items"]), str(s["interactions"]),
                      "yes" if s["ratings"] else "no", ", ".join(s["item_columns"]),
                      "built-in" if data is None else str(s["source"]))
    from rich.console import Console

    Console().print(table)


@app.command()
@cli_errors
def train(
    data: Annotated[str, typer.Option(help="Dataset spec: built-in name or path; a comma list "
                                      "trains a text model on several domains at once.")],
    model: Annotated[str, typer.Option(help="Registered model name (see `m6rec models`).")],
    out: Annotated[Path, typer.Option(help="Model directory to write.")],
    param: Annotated[list[str] | None, typer.Option(help="Hyper-parameter key=value (repeat).")] = None,
    protocol: Annotated[str, typer.Option(
        help="Fit on this protocol's training part (loo|time|cold), or 'all' for every interaction.")] = "loo",
    tie_break: Annotated[str | None, typer.Option(help="hash | hash:SALT | file")] = None,
    init: Annotated[Path | None, typer.Option(
        help="Start from this saved model directory (m6: weights carried to the new catalogue).")] = None,
    adapt_only: Annotated[bool, typer.Option(
        "--adapt-only", help="With --init: train only adapters, gates and heads.")] = False,
    retriever: Annotated[str | None, typer.Option(
        help="ranker: the retriever whose top-100 it re-ranks (model spec or saved dir).")] = None,
    device: Annotated[str | None, typer.Option(
        help="auto | cpu | cuda (torch models; default: the model's own, auto).")] = None,
    ray: Annotated[bool, typer.Option(
        "--ray", help="Data-parallel training (DDP) on Ray Train workers (sasrec, m6, ...).")] = False,
    workers: Annotated[int, typer.Option(min=1, help="With --ray: training workers.")] = 2,
    address: Annotated[str | None, typer.Option(
        help="With --ray: Ray cluster address (default: a local Ray).")] = None,
):
    """Train a model and save it as a directory."""
    from m6rec.eval.evaluate import fit
    from m6rec.eval.protocols import PROTOCOLS, make_split
    from m6rec.models.io import save_model_dir
    from m6rec.registry import build_model

    if protocol not in PROTOCOLS + ("all",):
        raise ValueError(f"--protocol {protocol!r}: choose from {', '.join(PROTOCOLS)}, all")
    params = parse_params(param)
    if init is not None:
        params["init"] = str(init)
    if adapt_only:
        if init is None:
            raise ValueError("--adapt-only needs --init DIR (a trained model to adapt)")
        params["adapt_only"] = True
    if retriever is not None:
        if model != "ranker":
            raise ValueError(f"--retriever applies to the ranker model only, not {model!r}")
        params["retriever"] = retriever
    if device is not None:
        from m6rec.train.loop import resolve_device

        resolve_device(device)  # a clear error for a bad or unavailable device
        params["device"] = device
    ds = _load_training_data(data, model, tie_break)
    mdl = build_model(model, **params)
    con = _console()
    if ray:
        from m6rec.distributed.cli import train_on_ray

        mdl, seconds = train_on_ray(mdl, ds, protocol, workers=workers, address=address)
        save_model_dir(mdl, out, ds, data_spec=data, protocol=protocol, fit_seconds=seconds)
        con.print(f"[green]saved[/green] {model} to {out} (Ray, {workers} workers, fit "
                  f"{seconds:.1f} s)")
        return
    with con.status(f"training {model} on {ds.name} ({protocol})"):
        if protocol == "all":
            import time

            t0 = time.perf_counter()
            mdl.fit(ds)
            seconds = time.perf_counter() - t0
        else:
            mdl, seconds = fit(mdl, make_split(ds, protocol))
    save_model_dir(mdl, out, ds, data_spec=data, protocol=protocol, fit_seconds=seconds)
    con.print(f"[green]saved[/green] {model} to {out} (fit {seconds:.1f} s)")
    if hasattr(mdl, "trainable_fraction"):
        con.print(f"trainable parameters: {100 * mdl.trainable_fraction():.2f}% "
                  "(frozen language model included)")


@app.command()
@cli_errors
def pretrain(
    data: Annotated[str, typer.Option(help="Source datasets, comma-separated (the target left out).")],
    out: Annotated[Path, typer.Option(help="Model directory to write.")],
    exclude: Annotated[str | None, typer.Option(
        help="Dataset names in --data to leave out (comma list), e.g. the target.")] = None,
    param: Annotated[list[str] | None, typer.Option(
        help="Other opendomain parameter key=value (repeat).")] = None,
    max_users: Annotated[int, typer.Option(
        min=10, help="Validation users per source for the weight choice (seeded sample).")] = 3000,
    tie_break: Annotated[str | None, typer.Option(help="hash | hash:SALT | file")] = None,
):
    """Build the open-domain model from source datasets: encode their catalogues (cached),
    choose the co-occurrence weight and recency on their validation users (`loo`), save a
    model that `m6rec evaluate/recommend --data NEW` reads on a new catalogue directly."""
    import time

    from m6rec.config import Settings
    from m6rec.data import load_datasets
    from m6rec.data.combine import combine
    from m6rec.eval.protocols import make_split
    from m6rec.models.io import save_model_dir
    from m6rec.models.opendomain import COOC_DECAYS, COOC_WEIGHTS, OpenDomain, choose_weights
    from m6rec.text.encoders import progress

    t0 = time.perf_counter()
    params = parse_params(param)
    bad = sorted(set(params) & {"cooc_weight", "cooc_decay"})
    if bad:
        raise ValueError(f"--param {', '.join(bad)}: chosen on the sources by pretrain")
    OpenDomain(**params)._check_params()
    left_out = {s.strip() for s in (exclude or "").split(",") if s.strip()}
    datasets = load_datasets(data, tie_break=tie_break or Settings().tie_break)
    unknown = sorted(left_out - {d.name for d in datasets})
    if unknown:
        raise ValueError(f"--exclude {', '.join(unknown)}: not among --data "
                         f"({', '.join(d.name for d in datasets)})")
    sources = [d for d in datasets if d.name not in left_out]
    if not sources:
        raise ValueError("pretrain needs at least one source dataset")
    con = _console()
    con.print(f"sources: {', '.join(d.name for d in sources)}"
              + (f"; left out: {', '.join(sorted(left_out))}" if left_out else ""))
    splits = []
    for d in sources:  # encodes each catalogue once (progress on stderr), then reads the cache
        con.print(f"reading {d.name}: {d.n_items:,} items, {d.n_interactions:,} interactions")
        split = make_split(d, "loo")
        vectors = OpenDomain(**{**params, "verbose": True}).fit(split.train).item_text_
        splits.append((split, vectors))
    encoded = time.perf_counter() - t0
    total = len(splits) * len(COOC_WEIGHTS) * len(COOC_DECAYS)
    with progress(total, "choosing weights on the sources' validation users") as advance:
        chosen = choose_weights(splits, params=params, max_users=max_users, advance=advance)
    mixed = sources[0] if len(sources) == 1 else combine(sources)
    import numpy as np

    model = OpenDomain(**params, cooc_weight=chosen["cooc_weight"],
                       cooc_decay=chosen["cooc_decay"])
    model.fit(mixed, vectors=np.concatenate([v for _, v in splits]))
    seconds = time.perf_counter() - t0
    save_model_dir(model, out, mixed, data_spec=data, protocol="all", fit_seconds=seconds)
    (Path(out) / "pretrain.json").write_text(json.dumps(
        {**chosen, "left_out": sorted(left_out), "max_users": max_users,
         "encode_seconds": round(encoded, 1), "seconds": round(seconds, 1)}, indent=2))
    con.print(f"[green]saved[/green] opendomain to {out} (cooc_weight={chosen['cooc_weight']}, "
              f"cooc_decay={chosen['cooc_decay']}; {seconds:.1f} s, encoding and reading "
              f"{encoded:.1f} s)")


@app.command()
@cli_errors
def evaluate(
    model_dir: Annotated[Path, typer.Option(help="A directory written by `m6rec train`.")],
    data: Annotated[str, typer.Option(help="Dataset spec.")],
    protocol: Annotated[str, typer.Option(help="loo | time | cold")] = "loo",
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    tie_break: Annotated[str | None, typer.Option(help="hash | hash:SALT | file")] = None,
):
    """Evaluate a saved model with full ranking on a protocol's test set."""
    from m6rec.eval.evaluate import evaluate_split
    from m6rec.eval.protocols import make_split
    from m6rec.models.io import load_model_dir

    ds = _load_one(data, tie_break)
    split = make_split(ds, protocol)
    # a text model reading a new catalogue reads it with the training part's interactions
    # only (textsim's popularity prior counts them): the test items stay unseen
    mdl, meta = load_model_dir(model_dir, split.train)
    if meta.get("protocol") not in (protocol, None) and meta.get("dataset") == ds.name:
        _console().print(f"[yellow]warning:[/yellow] the model was fitted on protocol "
                         f"{meta.get('protocol')!r}; its training data may hold {protocol!r} test items")
    res = evaluate_split(mdl, split)
    if as_json:
        typer.echo(json.dumps({"dataset": ds.name, "protocol": protocol, **{
            k: v for k, v in res.items()}}))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table("metric", "value", title=f"{meta.get('model')} on {ds.name} ({protocol})")
    for k, v in res["metrics"].items():
        table.add_row(k, f"{v:.4f}")
    Console().print(table)


@app.command()
@cli_errors
def recommend(
    model_dir: Annotated[Path, typer.Option(help="A directory written by `m6rec train`.")],
    data: Annotated[str | None, typer.Option(help="Dataset spec (for histories and titles); "
                                             "default: the one the model was trained on.")] = None,
    user: Annotated[str | None, typer.Option(help="Raw user id (leave out with --query: "
                                             "the request alone ranks).")] = None,
    k: Annotated[int, typer.Option("-k", "--k", min=1, max=1000, help="How many items.")] = 10,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    explain: Annotated[bool, typer.Option(help="Say which history items, categories and KG "
                                          "relations led to each item.")] = False,
    query: Annotated[list[str] | None, typer.Option(help="Free-text request (text models); "
                                                    "repeat for a conversation, latest last.")] = None,
    query_weight: Annotated[float, typer.Option(min=0.0, help="Weight of the request against "
                                                "the user's history.")] = 1.0,
    query_decay: Annotated[float, typer.Option(min=0.01, max=1.0, help="Weight of each earlier "
                                               "turn relative to the next one.")] = 0.5,
    tie_break: Annotated[str | None, typer.Option(help="hash | hash:SALT | file")] = None,
    phrasing: Annotated[str, typer.Option(help="With --explain: template | lm (a generative "
                                          "LM rewrites the evidence, checked).")] = "template",
    generator: Annotated[str, typer.Option(help="With --phrasing lm: smollm2, a GGUF file or "
                                           "a model directory.")] = "smollm2",
):
    """Top-k for one user (their whole history in SPEC is the input; seen items excluded),
    optionally steered by free-text requests."""
    from m6rec.models.io import load_model_dir
    from m6rec.recommend import recommend_for_user

    if data is None:
        meta_file = Path(model_dir) / "meta.json"
        data = json.loads(meta_file.read_text()).get("data_spec") if meta_file.is_file() else None
        if not data:
            raise ValueError(f"{model_dir}: meta.json names no dataset; pass --data SPEC")
    if user is None and not query:
        raise ValueError("give --user, --query, or both")
    ds = _load_one(data, tie_break)
    mdl, _ = load_model_dir(model_dir, ds)
    gen = None
    if phrasing == "lm":
        from m6rec.text.generate import load_generator

        gen = load_generator(generator)
    result = recommend_for_user(mdl, ds, user, k=k, explain=explain, query=query,
                                query_weight=query_weight, query_decay=query_decay,
                                phrasing=phrasing, generator=gen)
    if as_json:
        typer.echo(json.dumps(result))
        return
    print_recommendations(result)


def _model_and_data(model_dir: Path, data: str | None):
    from m6rec.models.io import load_model_dir

    if data is None:
        meta_file = Path(model_dir) / "meta.json"
        data = json.loads(meta_file.read_text()).get("data_spec") if meta_file.is_file() else None
        if not data:
            raise ValueError(f"{model_dir}: meta.json names no dataset; pass --data SPEC")
    ds = _load_one(data)
    return load_model_dir(model_dir, ds)[0], ds


@app.command()
@cli_errors
def describe(
    model_dir: Annotated[Path, typer.Option(help="A directory written by `m6rec train`.")],
    user: Annotated[str, typer.Option(help="Raw user id.")],
    item: Annotated[str, typer.Option(help="Raw item id to pitch.")],
    data: Annotated[str | None, typer.Option(help="Dataset spec (default: the model's).")] = None,
    generator: Annotated[str, typer.Option(help="smollm2, a GGUF file or a model directory.")] = "smollm2",
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
):
    """A short personalised pitch of an item for a user, written by a generative LM from the
    item's text and the history items that raise its score (checked against them)."""
    from m6rec.explain.grounded import describe_item
    from m6rec.text.generate import load_generator

    mdl, ds = _model_and_data(model_dir, data)
    res = describe_item(mdl, ds, user, item, load_generator(generator))
    typer.echo(json.dumps(res) if as_json else res["pitch"])


@app.command()
@cli_errors
def chat(
    model_dir: Annotated[Path, typer.Option(help="A text model directory (m6).")],
    user: Annotated[str | None, typer.Option(help="Raw user id (leave out: requests only).")] = None,
    data: Annotated[str | None, typer.Option(help="Dataset spec (default: the model's).")] = None,
    k: Annotated[int, typer.Option("-k", "--k", min=1, max=100, help="Items per reply.")] = 5,
    generator: Annotated[str, typer.Option(help="smollm2, a GGUF file or a model directory.")] = "smollm2",
    steer: Annotated[str, typer.Option(
        help="categories | both | lm | turns: what steers the ranking.")] = "categories",
    query_weight: Annotated[float, typer.Option(min=0.0, help="Request vs history.")] = 2.0,
    query_decay: Annotated[float, typer.Option(min=0.01, max=1.0, help="Weight of each earlier "
                                               "turn relative to the next one.")] = 1.0,
    query_attributes: Annotated[float, typer.Option(
        min=0.0, max=1.0, help="Share of the category match in the request match.")] = 0.8,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per turn.")] = False,
):
    """Talk about what you want to watch: one message per line on stdin (empty line or EOF
    ends). A generative LM turns the messages into the request that steers the model's ranking
    and replies naming only the returned items."""
    from m6rec.conversation import Conversation
    from m6rec.text.generate import load_generator

    mdl, ds = _model_and_data(model_dir, data)
    conv = Conversation(mdl, ds, user, load_generator(generator), k=k, steer=steer,
                        query_weight=query_weight, query_decay=query_decay,
                        query_attributes=query_attributes)
    interactive = sys.stdin.isatty()
    while True:
        if interactive:
            typer.echo("you> ", nl=False)
        line = sys.stdin.readline()
        if not line or not line.strip():
            break
        turn = conv.ask(line.strip())
        if as_json:
            typer.echo(json.dumps(turn))
            continue
        typer.echo(f"m6rec> {turn['reply']}")
        for n, it in enumerate(turn["items"], 1):
            typer.echo(f"  {n}. {it['title']} ({it['item_id']})")
        typer.echo(f"  [request: {turn['request']}]")


def print_recommendations(result: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    who = ("your request" if result.get("user_id") is None else f"user {result['user_id']}")
    table = Table("#", "item_id", "title", "score", title=f"top-{len(result['items'])} for {who}",
                  show_lines=False)
    explain = any("because" in it for it in result["items"])
    if explain:
        table.add_column("why")
    for n, it in enumerate(result["items"], 1):
        row = [str(n), str(it["item_id"]), it.get("title", ""), f"{it['score']:.4f}"]
        if explain:
            row.append(it.get("because", ""))
        table.add_row(*row)
    Console().print(table)


@app.command()
@cli_errors
def benchmark(
    data: Annotated[str, typer.Option(help="Dataset spec (comma list: one benchmark per domain).")],
    models: Annotated[str, typer.Option(help="Comma-separated model names.")] = "pop,itemknn,ease,bpr",
    protocol: Annotated[str, typer.Option(help="loo | time | cold")] = "loo",
    out: Annotated[Path, typer.Option(help="Report directory.")] = Path("runs/benchmark"),
    param: Annotated[list[str] | None, typer.Option(help="model.key=value (repeat).")] = None,
    seeds: Annotated[int, typer.Option(min=1, help="Seeds for stochastic models.")] = 1,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object to stdout.")] = False,
    tie_break: Annotated[str | None, typer.Option(help="hash | hash:SALT | file")] = None,
    retriever: Annotated[str | None, typer.Option(
        help="ranker: the retriever whose top-100 it re-ranks (model spec or saved dir).")] = None,
):
    """Train and evaluate several models on one protocol; write report.md, results.json, PNGs."""
    from m6rec.config import Settings
    from m6rec.data import load_datasets
    from m6rec.eval.benchmark import run_benchmark, summary_json
    from m6rec.eval.protocols import PROTOCOLS
    from m6rec.eval.report import metrics_table, write_report
    from m6rec.registry import all_models, parse_model_spec, split_models

    specs = [parse_model_spec(s) for s in split_models(models)]  # top-level commas only
    names = [n for n, _ in specs]
    if len(set(names)) != len(names):
        raise ValueError("each model may appear once in --models")
    unknown = [m for m in names if m not in all_models()]
    if unknown:
        raise ValueError(f"unknown model(s) {', '.join(unknown)} (known: {', '.join(all_models())})")
    if protocol not in PROTOCOLS:
        raise ValueError(f"--protocol {protocol!r}: choose from {', '.join(PROTOCOLS)}")
    params = parse_params(param, scoped=True)
    bad = [m for m in params if m not in names]
    if bad:
        raise ValueError(f"--param for model(s) not in --models: {', '.join(bad)}")
    for n, p in specs:  # inline spec params, e.g. fusion(ease,itemknn); --param wins
        if p:
            params[n] = {**p, **params.get(n, {})}
    if retriever is not None:
        if "ranker" not in names:
            raise ValueError("--retriever applies to the ranker model: add ranker to --models")
        params.setdefault("ranker", {})["retriever"] = retriever
    con = _console()
    command = "m6rec " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    summaries = []
    for ds in load_datasets(data, tie_break=tie_break or Settings().tie_break):
        with con.status(f"benchmark on {ds.name}") as status:
            result = run_benchmark(ds, names, protocol, params=params, seeds=seeds,
                                   progress=lambda s, n=ds.name: status.update(f"{n}: fitting {s}"))
        target = out if data.count(",") == 0 else out / ds.name
        report = write_report(result, target, command=command)
        summaries.append(summary_json(result))
        if not as_json:
            from rich.console import Console
            from rich.markdown import Markdown

            Console().print(Markdown(metrics_table(result)))
            con.print(f"report: {report}")
    if as_json:
        typer.echo(json.dumps(summaries[0] if len(summaries) == 1 else {"runs": summaries}))


@app.command()
@cli_errors
def encode(
    data: Annotated[str, typer.Option(help="Dataset spec.")],
    encoder: Annotated[str, typer.Option(help="Encoder spec (default, hashing:DIM, a path).")] = "default",
    budget: Annotated[int, typer.Option(min=20, help="Item text length (m6 reads 200).")] = 200,
    ray: Annotated[bool, typer.Option("--ray", help="Encode with Ray Data actors.")] = False,
    address: Annotated[str | None, typer.Option(help="With --ray: Ray cluster address.")] = None,
    workers: Annotated[int, typer.Option(min=1, help="With --ray: encoder actors.")] = 2,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda")] = "cpu",
    batch_size: Annotated[int, typer.Option(min=1, help="Texts per encoder forward.")] = 64,
    tie_break: Annotated[str | None, typer.Option(help="hash | hash:SALT | file")] = None,
):
    """Encode a catalogue's item (and user profile) texts into the encoding cache."""
    from m6rec.distributed.cli import encode_command

    typer.echo(json.dumps(encode_command(_load_one(data, tie_break), encoder, budget, ray,
                                         address, workers, device, batch_size)))


@app.command(name="batch-recommend")
@cli_errors
def batch_recommend(
    model_dir: Annotated[Path, typer.Option(help="A directory written by `m6rec train`.")],
    data: Annotated[str, typer.Option(help="Dataset spec (every user's history is the input).")],
    out: Annotated[Path, typer.Option(help="Parquet file to write (user_id, rank, item_id, score).")],
    k: Annotated[int, typer.Option("-k", "--k", min=1, max=1000, help="Items per user.")] = 10,
    ray: Annotated[bool, typer.Option("--ray", help="Score with Ray Data actors.")] = False,
    address: Annotated[str | None, typer.Option(help="With --ray: Ray cluster address.")] = None,
    workers: Annotated[int, typer.Option(min=1, help="With --ray: scoring actors.")] = 2,
    tie_break: Annotated[str | None, typer.Option(help="hash | hash:SALT | file")] = None,
):
    """Top-k for every user of a dataset, written to a Parquet file."""
    from m6rec.distributed.cli import batch_recommend_command

    typer.echo(json.dumps(batch_recommend_command(model_dir, _load_one(data, tie_break), out, k,
                                                  ray, address, workers)))


@app.command()
@cli_errors
def compress(
    model_dir: Annotated[Path, typer.Option(help="A saved m6 model directory.")],
    method: Annotated[str, typer.Option(
        help="int8 | fp16-index | prune:SPARSITY | distill[:width=32,n_layers=2,...] | onnx")],
    out: Annotated[Path, typer.Option(help="Compressed model directory to write.")],
    param: Annotated[list[str] | None, typer.Option(
        help="Parameter of the compressed model key=value (repeat), e.g. epochs=10.")] = None,
    data: Annotated[str | None, typer.Option(
        help="Dataset spec for prune / distill (default: the model's own).")] = None,
):
    """Compress a trained m6 model into a directory that loads, evaluates and serves alike."""
    from m6rec.compress.run import compress_dir

    ds = _load_one(data) if data else None
    mdl, meta = compress_dir(model_dir, method, out, parse_params(param), data=ds)
    counts = mdl.n_parameters()
    size = sum(f.stat().st_size for f in Path(out).iterdir() if f.name != "ids.npz")
    _console().print(f"[green]saved[/green] {mdl.name} ({method}) to {out}: "
                     f"{counts['nonzero']:,} non-zero of {counts['total']:,} weights, "
                     f"{size:,} bytes, {meta['compress_seconds']:.1f} s")


@app.command(name="models")
@cli_errors
def list_models(
    name: Annotated[str | None, typer.Argument(help="Only this model (e.g. m6).")] = None,
):
    """List the registered models and their hyper-parameters, one line each with its default."""
    import inspect

    from m6rec.registry import all_models, get_model_class

    for model in [name] if name else all_models():
        k = get_model_class(model)
        doc = (k.__doc__ or "").strip().splitlines()[0] if k.__doc__ else ""
        typer.echo(f"{model} ({len(k.param_names())} parameters): {doc}")
        sig = inspect.signature(k.__init__).parameters
        for param, text in k.param_docs().items():
            default = sig[param].default if param in sig else k.train_params[param]
            typer.echo(f"  {f'{param}={default!r}':28s} {text}")


@app.command()
@cli_errors
def demo(
    data: Annotated[str, typer.Option(help="Dataset spec.")] = "ml-100k",
    user: Annotated[str, typer.Option(help="Raw user id to recommend for.")] = "1",
    out: Annotated[Path, typer.Option(help="Where to write the report and the model.")] = Path("runs/demo"),
):
    """Train m6 at its defaults beside the baselines; print metrics, a top-10 with reasons, a
    free-text request and how to serve the model."""
    from rich.console import Console
    from rich.markdown import Markdown

    from m6rec.demo import FLAGSHIP, REQUEST, run_demo
    from m6rec.eval.report import metrics_table, write_report

    con = Console()
    ds = _load_one(data)
    con.print(f"[bold]{ds!r}[/bold]")
    shown = run_demo(ds, data, user, out, say=con.print)
    result = shown["result"]
    con.print(Markdown(metrics_table(result)))
    write_report(result, out, command=f"m6rec demo --data {data}")
    best = max(result["models"], key=lambda n: result["models"][n]["metrics"]["ndcg@10"])
    ndcg = result["models"][FLAGSHIP]["metrics"]["ndcg@10"]
    con.print(f"test NDCG@10 of {FLAGSHIP}: [bold]{ndcg:.4f}[/bold]; best of this run: {best}")
    print_recommendations(shown["top10"])
    con.print(f'free-text request, ranked by {FLAGSHIP} alone: "{REQUEST}"')
    print_recommendations(shown["request"])
    model_dir = shown["model_dir"]
    con.print(f"report and plots: {out}/report.md", soft_wrap=True)
    con.print("serve this model over HTTP (OpenAPI docs at http://127.0.0.1:8000/docs):")
    con.print(f"  m6rec serve --model-dir {model_dir}", markup=False, highlight=False, soft_wrap=True)
    con.print(f"  curl 'http://127.0.0.1:8000/users/{user}/recommendations?k=10&explain=true'",
              markup=False, highlight=False, soft_wrap=True)


@app.command()
@cli_errors
def serve(
    model_dir: Annotated[Path, typer.Option(help="A directory written by `m6rec train`.")],
    db: Annotated[str | None, typer.Option(
        help="Store URL: sqlite:///PATH (default sqlite:///m6rec-events.db) or postgresql://...")] = None,
    data: Annotated[str | None, typer.Option(help="Dataset spec (default: the model's).")] = None,
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    api_key: Annotated[str | None, typer.Option(
        help="Key required in X-API-Key by write endpoints (default: M6REC_API_KEY, else a "
             "random key printed at start).")] = None,
    read_key: Annotated[str | None, typer.Option(
        help="A second key that may read but not write (default: M6REC_READ_KEY). With a "
             "key configured, every data read needs one of the two keys.")] = None,
    keyed_metrics: Annotated[bool, typer.Option(
        help="/metrics needs a key too (default: public; M6REC_KEYED_METRICS=1).")] = False,
    pseudonymise_key: Annotated[str | None, typer.Option(
        help="HMAC key: store keyed hashes of user ids, never the raw ids.")] = None,
    index: Annotated[str, typer.Option(help="auto | exact | faiss")] = "auto",
    update: Annotated[str | None, typer.Option(
        help='Online updates from the event log: "foldin every=N" (events) and/or '
             'interval=S (seconds), or "finetune ..." for sequence models; default off.')] = None,
    generator: Annotated[str | None, typer.Option(
        help="Generative LM of explain=true&phrasing=lm and of conversations: smollm2 "
             "(default; M6REC_GENERATOR), a GGUF file or a model directory. Loaded on the "
             "first request that needs it.")] = None,
    replication: Annotated[str | None, typer.Option(
        help="Follow the items and events other processes commit to the same database: auto "
             "(default: notify for PostgreSQL, poll for a SQLite file), notify (LISTEN/NOTIFY), "
             "poll, off.")] = None,
    workers: Annotated[int, typer.Option(
        min=1, help="Processes serving this port (each loads the model; they follow each other "
                    "through the database).")] = 1,
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "warning",
):
    """Serve real-time recommendations over HTTP (FastAPI; OpenAPI docs at /docs)."""
    import dataclasses
    import secrets

    import uvicorn

    from m6rec.serve.app import create_app
    from m6rec.serve.replication import preflight, worker_environment
    from m6rec.serve.settings import ServeSettings
    from m6rec.serve.updates import UpdateSpec

    if not (model_dir / "config.json").is_file():
        raise FileNotFoundError(f"--model-dir {model_dir}: not a model directory (no config.json)")
    base = ServeSettings()
    UpdateSpec.parse(update or base.update)  # a bad --update fails here, in one line
    key = api_key or base.api_key
    generated = not key
    if generated:
        key = secrets.token_urlsafe(24)
    settings = dataclasses.replace(
        base, model_dir=model_dir, db=db or base.db, data=data or base.data, api_key=key,
        read_key=read_key or base.read_key, keyed_metrics=keyed_metrics or base.keyed_metrics,
        pseudonymise_key=pseudonymise_key or base.pseudonymise_key, index=index,
        update=update or base.update, generator=generator or base.generator,
        replication=replication or base.replication, workers=workers)
    spec = preflight(settings)  # e.g. notify on SQLite, or a database that cannot notify
    if generated:
        typer.echo(f"API key (X-API-Key, reads and writes): {key}", err=True)
    url = f"http://{host if ':' not in host else f'[{host}]'}:{port}"
    typer.echo(f"m6rec serve: loading {model_dir} ...", err=True)

    def ready(info: dict) -> None:
        typer.echo(f"m6rec serve: {url} (dashboard {url}/dashboard, API docs {url}/docs); "
                   f"model {info['model']} from {info['model_dir']} on {info['dataset']}: "
                   f"{info['items']:,} items, {info['users']:,} users, index {info['index']}",
                   err=True)

    if workers > 1:  # each worker builds its app from the settings resolved here
        typer.echo(f"m6rec serve: {url}, {workers} workers (replication {spec.mode})", err=True)
        os.environ.update(worker_environment(settings))
        # a worker answers the supervisor's health pings from a thread while it loads the
        # model, which can hold the interpreter for seconds on a busy machine: allow a minute
        uvicorn.run("m6rec.serve.replication:worker_app", factory=True, workers=workers,
                    host=host, port=port, log_level=log_level, access_log=False,
                    timeout_worker_healthcheck=60)
        return
    uvicorn.run(create_app(settings, on_ready=ready), host=host, port=port, log_level=log_level,
                access_log=False)


@app.command()
@cli_errors
def replay(
    data: Annotated[str, typer.Option(help="Dataset spec (needs timestamps).")],
    model: Annotated[str, typer.Option(help="Model name or spec, e.g. ease or ease(reg=500).")],
    policy: Annotated[str, typer.Option(
        help="static | foldin[:N] | finetune[:N] (N = new events between updates).")] = "static",
    out: Annotated[Path, typer.Option(help="Directory for results.json and curve.png.")] = Path("runs/replay"),
    param: Annotated[list[str] | None, typer.Option(help="Hyper-parameter key=value (repeat).")] = None,
    sample: Annotated[int, typer.Option(
        min=0, help="Query a seeded random sample of this many later events (0 = all).")] = 0,
    seed: Annotated[int, typer.Option(help="Seeds the sample and fine-tuning.")] = 0,
    steps: Annotated[int, typer.Option(min=1, help="finetune: optimiser steps per update.")] = 10,
    replay_share: Annotated[float, typer.Option(
        help="finetune: share of each batch replayed from older data.")] = 0.5,
    lr_scale: Annotated[float, typer.Option(help="finetune: learning rate x this.")] = 1.0,
    fraction: Annotated[float, typer.Option(help="Fit on this first share of time.")] = 0.5,
    tie_break: Annotated[str | None, typer.Option(help="hash | hash:SALT | file")] = None,
):
    """Prequential evaluation: fit on the first half of time, then replay the rest in time
    order, asking for each user's top-10 before revealing each interaction (history at query
    time = every earlier event, for every policy) and updating the model per --policy."""
    from m6rec.online.replay import fit_first_part, make_stream, run_replay, write_results
    from m6rec.registry import build_model, parse_model_spec

    name, spec_params = parse_model_spec(model)
    mdl = build_model(name, **{**spec_params, **parse_params(param)})
    ds = _load_one(data, tie_break)
    stream = make_stream(ds, fraction)
    con = _console()
    with con.status(f"fitting {name} on the first {fraction:.0%} of {ds.name}"):
        mdl, seconds = fit_first_part(mdl, stream)
    with con.status(f"replaying {stream.info['later_events']} events ({policy})") as status:
        res = run_replay(mdl, stream, policy, sample=sample, seed=seed, steps=steps,
                         replay_share=replay_share, lr_scale=lr_scale, progress=status.update)
    res["fit_seconds"] = seconds
    path = write_results(res, out, command="m6rec " + " ".join(shlex.quote(a) for a in sys.argv[1:]))
    typer.echo(json.dumps({"policy": res["policy"], "queries": res["queries"], **res["metrics"]}))
    con.print(f"results: {path}; curve: {path.parent / 'curve.png'}")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
