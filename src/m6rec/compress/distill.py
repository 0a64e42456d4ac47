"""Training of compressed encoders: the short fine-tuning after pruning, and knowledge
distillation of a small student from the teacher's scores (Hinton et al., "Distilling the
Knowledge in a Neural Network", 2015): at every position of every training window the student
matches the teacher's softmax over the whole catalogue (temperature ``T``), mixed with the usual
next-item cross-entropy (weight ``alpha``). The student starts from a copy of the teacher's item
vectors and profile vectors, reads and scores them, and by default fine-tunes that copy along
with its own user encoder (``tune_tables``; frozen otherwise)."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from m6rec.compress.frozen import FrozenM6
from m6rec.compress.prune import hold_zeros


def student_arch(teacher_arch: dict[str, Any], spec: str) -> dict[str, Any]:
    """The teacher's architecture with ``spec`` overrides, e.g. ``"width=32,n_layers=1"``
    (keys: width, n_layers, n_heads, inner)."""
    arch = dict(teacher_arch)
    for item in filter(None, (s.strip() for s in spec.split(","))):
        key, eq, value = item.partition("=")
        key = key.strip()
        if not eq or key not in ("width", "n_layers", "n_heads", "inner"):
            raise ValueError(f"student {spec!r}: expected key=value items with keys width, "
                             f"n_layers, n_heads, inner; got {item!r}")
        try:
            arch[key] = int(value)
        except ValueError:
            raise ValueError(f"student {spec!r}: {key} must be an integer, got {value!r}") from None
        if arch[key] < 1:
            raise ValueError(f"student {spec!r}: {key} must be >= 1")
    if arch["width"] % arch["n_heads"]:
        raise ValueError(f"student {spec!r}: n_heads ({arch['n_heads']}) must divide width "
                         f"({arch['width']})")
    return arch


def new_student(teacher: FrozenM6, arch: dict[str, Any], dropout: float,
                tune_tables: bool = True) -> FrozenM6:
    """A randomly initialised student encoder holding a copy of the teacher's item and profile
    tables (trainable when ``tune_tables``, fixed otherwise)."""
    student = FrozenM6(arch, dropout=dropout, attn_dropout=dropout)
    with torch.no_grad():
        student.table.copy_(teacher.table)
        student.profile_vecs.copy_(teacher.profile_vecs)
    student.table.requires_grad_(bool(tune_tables))
    student.profile_vecs.requires_grad_(bool(tune_tables))
    return student


def train_frozen(owner: Any, module: FrozenM6, dataset, valid=None, *, epochs: int, lr: float,
                 batch_size: int, patience: int, random_state: int,
                 teacher: FrozenM6 | None = None, temperature: float = 1.0, alpha: float = 0.5,
                 masks: dict[str, torch.Tensor] | None = None,
                 verbose: bool = False) -> list[dict]:
    """Train ``module`` on ``dataset``'s training windows (``owner`` is the model that scores
    with it: its ``training_windows`` cut the windows, its ``module_`` is ``module`` during
    validation). Without ``teacher``: next-item cross-entropy (full softmax, sampled beyond
    20,000 items); with it: distillation. ``masks`` hold pruned entries at zero. Returns the
    per-epoch history (best weights restored when ``valid`` is given)."""
    from m6rec.eval.evaluate import evaluate
    from m6rec.train.loop import seeded, train_epochs
    from m6rec.train.losses import sampled_softmax_ce

    items, targets, mask, extras = owner.training_windows(dataset.histories())
    if not mask.any():
        raise ValueError("no user has two or more training interactions: nothing to learn")
    x, y, m = torch.as_tensor(items), torch.as_tensor(targets), torch.as_tensor(mask)
    ex = {k: torch.as_tensor(v) for k, v in extras.items()}
    full = module.table.shape[0] <= 20000
    owner.module_ = module
    validate = None
    if valid is not None and len(valid):
        def validate() -> float:
            return evaluate(owner, valid, ks=(10,), metrics=("ndcg",),
                            beyond_accuracy=False)["ndcg@10"]

    hooks = hold_zeros(module, masks or {})
    if teacher is not None:
        teacher.eval()
    try:
        with seeded(random_state) as gen:
            params = [p for p in module.parameters() if p.requires_grad]
            opt = torch.optim.Adam(params, lr=lr)

            def step(idx: torch.Tensor) -> torch.Tensor:
                sel = m[idx]
                args = (x[idx], sel, ex["time_gaps"][idx], ex["events"][idx], ex["users"][idx],
                        ex["older"][idx] if "older" in ex else None)
                h = module.encode(*args)[sel]
                target = y[idx][sel]
                if not full:
                    return sampled_softmax_ce(h, target, module.table, 256, 1.0, generator=gen)
                logits = h @ module.table.T
                ce = F.cross_entropy(logits, target)
                if teacher is None:
                    return ce
                with torch.no_grad():
                    t = teacher.encode(*args)[sel] @ teacher.table.T
                kd = F.kl_div(F.log_softmax(logits / temperature, dim=1),
                              F.log_softmax(t / temperature, dim=1), log_target=True,
                              reduction="batchmean") * temperature ** 2
                return alpha * ce + (1.0 - alpha) * kd

            res = train_epochs(module, opt, step, len(x), epochs=epochs, batch_size=batch_size,
                               generator=gen, validate=validate, patience=patience,
                               verbose=verbose, desc="compress")
    finally:
        for hnd in hooks:
            hnd.remove()
    module.eval()
    return res.history
