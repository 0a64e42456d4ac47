"""The one model contract (implicit's RecommenderBase, scikit-learn's estimator rules).

Every model implements ``fit(dataset, valid=None) -> self`` and ``_score_rows(histories)``
(dense scores for every item); top-k, filtering of seen / excluded items, candidate
restriction, batching and persistence live here, once.

Hyper-parameters are keyword arguments of ``__init__``, stored verbatim; learned state ends in
``_`` and is set only by ``fit`` (or ``load``). A saved model is a directory:
``config.json`` (name, params, sizes) + ``state.npz`` (NumPy arrays, loaded with pickle disabled)
or ``state.safetensors`` for torch models.
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp

from m6rec.data.dataset import Dataset
from m6rec.data.histories import Histories
from m6rec.ranking import topk

FORMAT_VERSION = 1


class Recommender:
    """Base class of every m6rec model.

    Subclasses set ``name`` (the registry key) and implement ``fit``, ``_score_rows``,
    ``_state`` and ``_set_state``. ``batch_size`` bounds the users scored at once, and
    ``score_block`` the scores held at once: a batch has at most ``score_block // n_items``
    users, so scoring and evaluation memory stay bounded as the catalogue grows.
    """

    name: ClassVar[str] = ""
    batch_size: ClassVar[int] = 1024
    #: Most float32 scores held per user batch (2^24: 64 MB; 16 users at 10^6 items).
    score_block: ClassVar[int] = 2**24
    #: True for models whose ``fit`` takes a validation set for early stopping.
    uses_validation: ClassVar[bool] = False
    #: True for models that read item text, and so can score a catalogue they never saw.
    reads_text: ClassVar[bool] = False

    n_items_: int
    n_users_: int

    # -- parameters ------------------------------------------------------------------------------
    #: shared training parameters this model takes, name -> default (`m6rec.train.params`);
    #: they come through ``**train`` in ``__init__`` and are listed after its own
    train_params: ClassVar[dict[str, Any]] = {}
    #: parameters a model no longer has, name -> the value it behaved as: a saved model that
    #: stored that value loads (the key is dropped), any other value is refused
    retired_params: ClassVar[dict[str, Any]] = {}

    @classmethod
    def param_names(cls) -> list[str]:
        sig = inspect.signature(cls.__init__)
        own = [n for n, p in sig.parameters.items()
               if n != "self" and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)]
        return own + [n for n in cls.train_params if n not in own]

    @classmethod
    def param_docs(cls) -> dict[str, str]:
        """Parameter name -> its one-line description: the first line of its entry in the
        class docstring's numpydoc ``Parameters`` section (``a, b : type`` entries describe
        each name), or of `m6rec.train.params.TRAIN_DOCS` for the shared training ones."""
        from m6rec.train.params import TRAIN_DOCS

        found: dict[str, str] = {}
        for klass in cls.__mro__:
            found = {**_numpydoc_params(klass.__doc__ or ""), **found}
        return {n: found.get(n) or TRAIN_DOCS.get(n, "") for n in cls.param_names()}

    def get_params(self) -> dict[str, Any]:
        return {p: getattr(self, p) for p in self.param_names()}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"

    # -- the contract ----------------------------------------------------------------------------
    def fit(self, dataset: Dataset, valid: Histories | None = None) -> Recommender:
        raise NotImplementedError

    def _score_rows(self, histories: Histories) -> np.ndarray:
        """Scores of every item for each row: float32 [n, n_items]."""
        raise NotImplementedError

    def bind(self, dataset: Dataset) -> Recommender:
        """Make the model score ``dataset``'s catalogue. ID models can only score the catalogue
        they were fitted on; text models (``reads_text``) override this to read a new one."""
        self._check_fitted()
        if dataset.n_items != self.n_items_:
            raise ValueError(f"{self.name} was fitted on a catalogue of {self.n_items_} items and "
                             f"cannot score {dataset.name!r} ({dataset.n_items} items): only "
                             "text models score items they never saw")
        return self

    def _batch_rows(self) -> int:
        """Users per scoring batch: ``batch_size``, fewer for a large catalogue."""
        return max(1, min(int(self.batch_size), int(self.score_block) // max(1, self.n_items_)))

    def _check_fitted(self) -> None:
        if not hasattr(self, "n_items_"):
            raise RuntimeError(f"{type(self).__name__} is not fitted: call fit() or load() first")

    def _check_histories(self, histories: Histories) -> None:
        if len(histories.items) and (histories.items.min() < 0
                                     or histories.items.max() >= self.n_items_):
            bad = int(histories.items[(histories.items < 0) | (histories.items >= self.n_items_)][0])
            raise ValueError(f"history holds item index {bad}, outside this model's catalogue "
                             f"of {self.n_items_} items (was it trained on another dataset?)")

    def score(self, histories: Histories, item_idx: np.ndarray | None = None) -> np.ndarray:
        """Scores [n, n_items], or [n, m] for the given items (same list for every row, or an
        int array [n, m] of per-row items)."""
        self._check_fitted()
        self._check_histories(histories)
        out, step = [], self._batch_rows()
        for start in range(0, len(histories), step):
            part = histories.take(slice(start, start + step))
            s = self._score_rows(part)
            if item_idx is not None:
                idx = np.asarray(item_idx)
                s = (s[:, idx] if idx.ndim == 1
                     else np.take_along_axis(s, idx[start:start + len(part)], axis=1))
            out.append(s.astype(np.float32, copy=False))
        if not out:
            m = self.n_items_ if item_idx is None else np.asarray(item_idx).shape[-1]
            return np.zeros((0, m), np.float32)
        return np.concatenate(out)

    def recommend(self, histories: Histories, k: int = 10, *, exclude_seen: bool = True,
                  exclude: sp.csr_matrix | None = None,
                  candidates: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-k items for each row of ``histories``.

        Parameters
        ----------
        histories : Histories
            n users' behaviour (a single user is a batch of one).
        k : int
        exclude_seen : bool
            Drop items in each row's history.
        exclude : csr [n, n_items], optional
            More items to drop per row.
        candidates : int array [m], optional
            Rank only these items.

        Returns
        -------
        ids : int64 [n, k] item indices, best first (-1 pads rows with fewer than k eligible items)
        scores : float32 [n, k] (-inf for padding)
        """
        self._check_fitted()
        if k < 1:
            raise ValueError("k must be >= 1")
        self._check_histories(histories)
        n = len(histories)
        ids = np.full((n, k), -1, dtype=np.int64)
        scores = np.full((n, k), -np.inf, dtype=np.float32)
        allowed = None
        if candidates is not None:
            allowed = np.zeros(self.n_items_, dtype=bool)
            allowed[np.asarray(candidates, dtype=np.int64)] = True
        step = self._batch_rows()
        for start in range(0, n, step):
            stop = min(n, start + step)
            part = histories.take(slice(start, stop))
            s = np.array(self._score_rows(part), dtype=np.float32, copy=True)
            s[np.isnan(s)] = np.finfo(np.float32).min  # NaN-safe; still eligible
            if allowed is not None:
                s[:, ~allowed] = -np.inf
            if exclude_seen:
                rows = np.repeat(np.arange(len(part)), part.lengths)
                s[rows, part.items] = -np.inf
            if exclude is not None:
                ex = exclude[start:stop].tocoo()
                s[ex.row, ex.col] = -np.inf
            i, v = topk(s, k)
            ids[start:stop], scores[start:stop] = i, v
        return ids, scores

    # -- persistence -----------------------------------------------------------------------------
    def get_state(self) -> dict[str, np.ndarray]:
        """The learned arrays (what ``save`` writes beside ``get_params()``): with them
        `set_state` rebuilds the fitted model in another process or after an update."""
        return self._state()

    def set_state(self, state: dict[str, np.ndarray]) -> None:
        """Restore learned arrays from `get_state` (``n_items_`` / ``n_users_`` set first)."""
        self._set_state(state)

    def _state(self) -> dict[str, np.ndarray]:
        """Learned arrays to save (the subclass hook behind `get_state`)."""
        raise NotImplementedError

    def _set_state(self, state: dict[str, np.ndarray]) -> None:
        """The subclass hook behind `set_state`."""
        raise NotImplementedError

    def save(self, directory: str | Path, extra: dict[str, Any] | None = None) -> Path:
        """Write ``config.json`` + ``state.npz`` into ``directory`` (created if needed)."""
        self._check_fitted()
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        state = {k: np.ascontiguousarray(v) for k, v in self._state().items()}
        tmp = d / "state.tmp.npz"
        np.savez(tmp, **state)
        tmp.replace(d / "state.npz")
        config = {"format": FORMAT_VERSION, "model": self.name, "params": self.get_params(),
                  "n_items": int(self.n_items_), "n_users": int(self.n_users_)}
        if extra:
            config.update(extra)
        (d / "config.json").write_text(json.dumps(config, indent=2, default=_jsonable))
        return d

    @classmethod
    def load(cls, directory: str | Path) -> Recommender:
        """Load any saved model (the class comes from ``config.json``)."""
        from m6rec.registry import get_model_class

        d = Path(directory)
        cfg_path = d / "config.json"
        if not cfg_path.is_file():
            raise FileNotFoundError(f"{d}: not a model directory (no config.json)")
        config = json.loads(cfg_path.read_text())
        klass = get_model_class(config["model"])
        if cls is not Recommender and not issubclass(klass, cls):
            raise TypeError(f"{d} holds a {config['model']!r} model, not {cls.name!r}")
        model = klass(**_current_params(klass, config["params"], d))
        with np.load(d / "state.npz", allow_pickle=False) as z:
            state = {k: z[k] for k in z.files}
        model.n_items_ = int(config["n_items"])
        model.n_users_ = int(config["n_users"])
        model.set_state(state)
        return model


def _current_params(klass: type, params: dict[str, Any], where: Path) -> dict[str, Any]:
    """Saved ``params`` without the retired ones at the values the model now behaves as."""
    retired = klass.retired_params
    for key in sorted(set(params) & set(retired)):
        if params[key] != retired[key]:
            raise ValueError(f"{where}: saved with {key}={params[key]!r}, an option "
                             f"{klass.name} no longer has (it now behaves as "
                             f"{key}={retired[key]!r}); retrain the model")
    return {k: v for k, v in params.items() if k not in retired}


def _numpydoc_params(doc: str) -> dict[str, str]:
    """name -> the first sentence of each entry of a numpydoc ``Parameters`` section."""
    import re
    import textwrap

    lines = textwrap.dedent("\n".join(doc.splitlines()[1:])).splitlines()
    if "Parameters" not in lines:
        return {}
    entries: list[tuple[list[str], list[str], str]] = []
    for line in lines[lines.index("Parameters") + 2:]:  # past the title and its underline
        if line and not line.startswith(" "):
            if set(line.strip()) <= {"-"} or (" : " not in line and not line.endswith(":")):
                break  # the next section, or prose after the list
            names, _, kind = line.partition(":")
            entries.append(([n.strip() for n in names.split(",")], [], kind.strip()))
        elif line.strip() and entries:
            entries[-1][1].append(line.strip())
    out: dict[str, str] = {}
    for names, text, kind in entries:
        first = re.split(r"(?<=\.)\s", " ".join(text), maxsplit=1)[0] if text else kind
        out.update({n: first for n in names if n})
    return out


def _jsonable(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, (set, tuple)):
        return list(o)
    raise TypeError(f"cannot store {type(o).__name__} in config.json")
