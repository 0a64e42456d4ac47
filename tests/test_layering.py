"""No package imports one above it: the models, their training code and the modules below them
never import evaluation, explanation, serving or the command line, not even lazily inside a
function (read from the source with `ast`, so an import that only runs in one branch counts)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "m6rec"

# The lower layers, and the packages none of them may import.
LOWER = ["models", "train", "data", "text", "kg", "metrics.py", "ranking.py", "memory.py",
         "features.py"]
UPPER = ["eval", "explain", "serve", "storage", "online", "compress", "distributed", "index",
         "cli", "demo", "recommend", "conversation"]


def imported_modules(source: str, module: str) -> list[tuple[int, str]]:
    """Every module an import statement in ``source`` names, relative imports resolved against
    ``module`` (the dotted name of the file the source comes from), with its line."""
    package = module.rsplit(".", 1)[0]
    out = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                name = f"{base}.{node.module}" if node.module else base
            else:
                name = node.module or ""
            out.append((node.lineno, name))
            out += [(node.lineno, f"{name}.{a.name}") for a in node.names]
    return sorted(out)


def upward_imports(source: str, module: str) -> list[str]:
    """``"line N: NAME"`` for each import of an upper package of m6rec in ``source``."""
    bad = []
    for line, name in imported_modules(source, module):
        parts = name.split(".")
        if parts[0] == "m6rec" and len(parts) > 1 and parts[1] in UPPER:
            bad.append(f"line {line}: {name}")
    return bad


def lower_files() -> list[Path]:
    files = []
    for entry in LOWER:
        path = SRC / entry
        files += sorted(path.rglob("*.py")) if path.is_dir() else [path]
    return files


def test_the_lower_layers_are_all_there() -> None:
    missing = [e for e in LOWER if not (SRC / e).exists()]
    assert not missing, f"layers named here but absent from the source tree: {missing}"
    assert len(lower_files()) > 40


@pytest.mark.parametrize("path", lower_files(), ids=lambda p: str(p.relative_to(SRC)))
def test_no_lower_module_imports_an_upper_package(path: Path) -> None:
    module = "m6rec." + ".".join(path.relative_to(SRC).with_suffix("").parts)
    bad = upward_imports(path.read_text(), module)
    assert not bad, f"{path.relative_to(SRC)} imports a package above it: {bad}"


def test_the_check_sees_lazy_relative_and_aliased_imports() -> None:
    source = '''
import numpy as np
from m6rec.metrics import ranking_metrics
def fit(self):
    from m6rec.eval.evaluate import evaluate
    if self.x:
        import m6rec.serve.app as app
    from ..eval import metrics
    from .. import explain
'''
    bad = upward_imports(source, "m6rec.models.fusion")
    assert bad == ["line 5: m6rec.eval.evaluate", "line 5: m6rec.eval.evaluate.evaluate",
                   "line 7: m6rec.serve.app", "line 8: m6rec.eval", "line 8: m6rec.eval.metrics",
                   "line 9: m6rec.explain"]
    assert upward_imports("from m6rec.train.validation import validation_ndcg\n",
                          "m6rec.models.sasrec") == []


def test_eval_reexports_the_metrics_and_the_validation_pass_it_builds_on() -> None:
    import m6rec.eval.evaluate as evaluate
    import m6rec.eval.metrics as eval_metrics
    import m6rec.metrics as metrics
    from m6rec.train import validation

    for name in eval_metrics.__all__:
        assert getattr(eval_metrics, name) is getattr(metrics, name)
    assert evaluate.ranking_pass is validation.ranking_pass


def test_validation_ndcg_is_the_figure_evaluate_reports(ml100k) -> None:
    from m6rec.eval.evaluate import evaluate
    from m6rec.eval.protocols import make_split
    from m6rec.models.ease import EASE
    from m6rec.train.validation import validation_ndcg

    split = make_split(ml100k, "loo")
    model = EASE().fit(split.train)
    valid = validation_ndcg(model, split.valid)
    assert valid == evaluate(model, split.valid, ks=(10,), metrics=("ndcg",))["ndcg@10"]
    assert 0.05 < valid < 0.2  # a real EASE figure on ml-100k, not a default
    test = evaluate(model, split.test, dataset=ml100k)
    assert test["ndcg@10"] == validation_ndcg(model, split.test)
    assert round(test["ndcg@10"], 4) == 0.0768  # the README's figure for ease, seed 0
