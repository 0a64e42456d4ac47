"""``m6-compact``: a trained ``m6`` model compressed for serving (int8, fp16, pruned, distilled).

The model is the teacher's `FrozenM6` (user encoder + precomputed item and profile tables),
optionally replaced by a distilled student, then optionally pruned and fine-tuned, then stored
with int8 / fp16 tables and an int8 (``torch.ao`` dynamic) encoder. ``fit`` trains the teacher
from a model spec, or loads a saved ``m6`` directory, and compresses it; `compress` starts from a
fitted teacher. Loading rebuilds exactly the compressed network (scores equal before and after
``save``/``load``). It scores the catalogue it was compressed on (its tables are precomputed).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from m6rec.compress.inputs import M6Inputs, feed_names
from m6rec.data.dataset import Dataset
from m6rec.data.histories import Histories
from m6rec.models.base import Recommender
from m6rec.train.params import set_train_params, shared

TABLES = ("table", "profile_vecs")
#: the GRU tower's weight matrices: int8 storage (one scale per row), float32 compute (the
#: dynamic int8 kernels cover linear layers)
RECURRENT = "gru.weight_"


class CompactM6(M6Inputs, Recommender):
    """A compressed ``m6`` (see the module docstring).

    Parameters
    ----------
    teacher : str
        A saved ``m6`` model directory, or an ``m6`` model spec (``"m6(hidden=32)"``) to train.
    table_dtype : {"fp32", "fp16", "int8"}
        Storage of the item-vector and profile tables (int8: symmetric, one scale per row).
    encoder_dtype : {"fp32", "int8"}
        ``int8``: dynamic quantisation of every linear layer of the user encoder (torch.ao);
        a GRU tower's weight matrices are stored int8 and run in float32.
    sparsity : float
        Global magnitude pruning of all weight matrices to this share of zeros (0: none),
        followed by ``epochs`` of fine-tuning; pruned matrices are stored sparse.
    student : str
        Distil into a smaller encoder, e.g. ``"width=32,n_layers=1,inner=64"`` ("" = none).
    tune_tables : bool
        The student fine-tunes its copy of the teacher's item and profile tables (False: they
        stay fixed and only the student's encoder learns).
    epochs, lr, batch_size, patience :
        Fine-tuning / distillation training (early stopping on the validation set when given).
    temperature, alpha :
        Distillation temperature and weight of the next-item cross-entropy against the
        teacher-matching term.
    random_state : int
        Seeds the student's initialisation and the training order.
    """

    name = "m6-compact"
    uses_validation = True

    train_params = shared(dropout=0.1, epochs=5, batch_size=64, lr=1e-3, patience=3,
                          random_state=0, verbose=False)

    def __init__(self, teacher: str = "m6", table_dtype: str = "fp32",
                 encoder_dtype: str = "fp32", sparsity: float = 0.0, student: str = "",
                 tune_tables: bool = True, temperature: float = 2.0, alpha: float = 0.5,
                 **train: Any):
        self.teacher = teacher
        self.table_dtype = table_dtype
        self.encoder_dtype = encoder_dtype
        self.sparsity = sparsity
        self.student = student
        self.tune_tables = tune_tables
        self.temperature = temperature
        self.alpha = alpha
        set_train_params(self, train)

    # -- fitting ---------------------------------------------------------------------------------
    def _check_params(self) -> None:
        from m6rec.compress.quantize import ENCODER_DTYPES, TABLE_DTYPES

        if self.table_dtype not in TABLE_DTYPES:
            raise ValueError(f"table_dtype must be one of {', '.join(TABLE_DTYPES)}, "
                             f"got {self.table_dtype!r}")
        if self.encoder_dtype not in ENCODER_DTYPES:
            raise ValueError(f"encoder_dtype must be one of {', '.join(ENCODER_DTYPES)}, "
                             f"got {self.encoder_dtype!r}")
        if not 0.0 <= float(self.sparsity) < 1.0:
            raise ValueError(f"sparsity must be in [0, 1), got {self.sparsity!r}")
        if self.sparsity and self.table_dtype == "int8":
            raise ValueError("sparsity > 0 stores tables sparse: use table_dtype fp32 or fp16")
        for key in ("epochs", "batch_size", "patience"):
            v = getattr(self, key)
            if isinstance(v, bool) or int(v) != v or v < (0 if key == "epochs" else 1):
                raise ValueError(f"{key} must be a positive integer, got {v!r}")
        if not (self.lr > 0 and self.temperature > 0 and 0.0 <= self.alpha <= 1.0
                and 0.0 <= self.dropout < 1.0):
            raise ValueError("lr and temperature must be > 0, alpha in [0, 1], dropout in [0, 1)")

    def fit(self, dataset: Dataset, valid=None) -> CompactM6:
        self._check_params()
        return self.compress(self._fit_teacher(dataset, valid), dataset, valid)

    def _fit_teacher(self, dataset: Dataset, valid=None):
        from m6rec.registry import build_model, parse_model_spec

        if (Path(self.teacher) / "config.json").is_file():
            teacher = Recommender.load(self.teacher)
            if teacher.n_items_ != dataset.n_items:
                raise ValueError(f"teacher {self.teacher!r} knows {teacher.n_items_} items, the "
                                 f"data {dataset.name!r} has {dataset.n_items}")
            return teacher
        name, params = parse_model_spec(self.teacher)
        if name != "m6":
            raise ValueError(f"teacher must be a saved m6 directory or an m6 spec, got "
                             f"{self.teacher!r}")
        return build_model(name, **params).fit(dataset, valid)

    def compress(self, teacher: Any, dataset: Dataset, valid=None) -> CompactM6:
        """Compress a fitted ``m6`` ``teacher``; ``dataset`` (its training data) and ``valid``
        serve the fine-tuning / distillation (unused for int8 and fp16 alone)."""
        import torch

        from m6rec.compress.distill import new_student, student_arch, train_frozen
        from m6rec.compress.frozen import freeze
        from m6rec.compress.prune import global_magnitude_masks
        from m6rec.train.loop import seeded

        self._check_params()
        if getattr(teacher, "name", "") != "m6":
            raise ValueError(f"only m6 models can be compressed here, got {teacher!r}")
        torch_threads = torch.get_num_threads()
        module = freeze(teacher)
        self.n_items_, self.n_users_ = int(teacher.n_items_), int(teacher.n_users_)
        self.arch_ = dict(module.arch)
        self.history_: list[dict] = []
        train = dict(epochs=int(self.epochs), lr=float(self.lr), batch_size=int(self.batch_size),
                     patience=int(self.patience), random_state=int(self.random_state),
                     verbose=self.verbose)
        if self.student:
            arch = student_arch(module.arch, self.student)
            with seeded(int(self.random_state)):
                student = new_student(module, arch, float(self.dropout),
                                      bool(self.tune_tables))
            self.arch_ = arch
            self.history_ += train_frozen(self, student, dataset, valid, teacher=module,
                                          temperature=float(self.temperature),
                                          alpha=float(self.alpha), **train)
            module = student
        if self.sparsity:
            if self.student:  # prune the student's tables too, even when they were fixed
                module.table.requires_grad_(True)
                module.profile_vecs.requires_grad_(True)
            masks = global_magnitude_masks(module, float(self.sparsity))
            if self.epochs:
                module.drop.p = float(self.dropout)
                self.history_ += train_frozen(self, module, dataset, valid, masks=masks, **train)
        torch.set_num_threads(torch_threads)
        self._float_module = module.eval()
        self._set_state(self._pack(module))
        del self._float_module
        return self

    # -- storage ---------------------------------------------------------------------------------
    def _pack(self, module) -> dict[str, np.ndarray]:
        from m6rec.compress.prune import pack_csr
        from m6rec.compress.quantize import linear_names, pack_table, quantize_rows

        state: dict[str, np.ndarray] = {"arch": np.array(json.dumps(self.arch_))}
        weights = {k: v.detach().cpu().numpy() for k, v in module.state_dict().items()}
        sparse = set(prunable_all(module)) if self.sparsity else set()
        int8 = self.encoder_dtype == "int8"
        quantized = {f"{n}.weight" for n in linear_names(module)} if int8 else set()
        for key, w in weights.items():
            if key in sparse:
                half = key in TABLES and self.table_dtype == "fp16"
                state.update(pack_csr(key, w, np.float16 if half else np.float32))
            elif key in TABLES:
                state.update(pack_table(key, w, self.table_dtype))
            elif int8 and key.startswith(RECURRENT):  # stored int8, run in float32
                state.update(pack_table(key, w, "int8"))
            elif key in quantized:
                q, s = quantize_rows(w)
                state.update({f"q.{key}": q, f"s.{key}": s})
            else:
                state[f"w.{key}"] = w.astype(np.float32)
        return state

    def _state(self) -> dict[str, np.ndarray]:
        return dict(self.state_)

    def _set_state(self, state: dict[str, np.ndarray]) -> None:
        import torch

        from m6rec.compress.frozen import FrozenM6
        from m6rec.compress.prune import unpack_csr
        from m6rec.compress.quantize import dequantize_rows, quantize_linears

        self.state_ = dict(state)
        self.arch_ = json.loads(str(np.asarray(state["arch"]).reshape(-1)[0]))
        module = FrozenM6(self.arch_)
        weights: dict[str, Any] = {}
        int8: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for key in state:
            kind, _, name = key.partition(".")
            if kind == "w":
                weights[name] = state[key]
            elif kind == "h":
                weights[name] = state[key].astype(np.float32)
            elif kind == "q":
                weights[name] = dequantize_rows(state[key], state[f"s.{name}"])
                if name not in TABLES and not name.startswith(RECURRENT):
                    int8[name[: -len(".weight")]] = (state[key], state[f"s.{name}"])
            elif kind == "c" and name.endswith(".shape"):
                weights[name[: -len(".shape")]] = unpack_csr(state, name[: -len(".shape")])
        module.load_state_dict({k: torch.from_numpy(np.ascontiguousarray(v, dtype=np.float32))
                                for k, v in weights.items()})
        module.eval()
        self.module_ = quantize_linears(module, int8) if int8 else module

    # -- scoring ---------------------------------------------------------------------------------
    def _score_rows(self, histories: Histories) -> np.ndarray:
        import torch

        f = self.feeds(histories)
        module = self.module_
        was = module.training
        module.eval()
        try:
            with torch.inference_mode():
                args = [torch.from_numpy(f[k]) for k in feed_names(self.arch_)]
                if self.encoder_dtype == "int8":
                    # dynamic quantisation scales activations per tensor, i.e. over the whole
                    # batch: one user at a time keeps a row's scores independent of the others
                    s = torch.cat([module(*(a[i:i + 1] for a in args))
                                   for i in range(len(args[0]))])
                else:
                    s = module(*args)
        finally:
            module.train(was)
        return s.float().numpy()

    def n_parameters(self) -> dict[str, int]:
        """``{"total": stored weights, "nonzero": after pruning}`` (tables included)."""
        total = nonzero = 0
        for key, v in self.state_.items():
            kind, _, name = key.partition(".")
            if kind in ("w", "h", "q"):
                total += v.size
                nonzero += int(np.count_nonzero(v))
            elif kind == "c" and name.endswith(".shape"):
                total += int(np.prod(v))
                nonzero += int(self.state_[f"c.{name[:-len('.shape')]}.data"].size)
        return {"total": total, "nonzero": nonzero}


def prunable_all(module) -> list[str]:
    """Every 2-D weight (also the student's fixed tables)."""
    return [n for n, p in module.named_parameters() if p.dim() == 2]
