"""Model directories as written by ``m6rec train``: the model's own files plus ``meta.json``
(dataset name, spec, protocol, fit time) and ``ids.npz`` (raw item / user ids, so a model is
never used against a different catalogue by mistake)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from m6rec.data.dataset import Dataset
from m6rec.models.base import Recommender


def save_model_dir(model: Recommender, out: str | Path, dataset: Dataset, data_spec: str = "",
                   protocol: str = "", fit_seconds: float = 0.0) -> Path:
    d = Path(out)
    model.save(d)
    np.savez(d / "ids.npz", item_ids=dataset.item_ids.astype(str),
             user_ids=dataset.user_ids.astype(str))
    meta = {"model": model.name, "dataset": dataset.name, "data_spec": data_spec,
            "protocol": protocol, "fit_seconds": fit_seconds,
            "n_items": dataset.n_items, "n_users": dataset.n_users}
    (d / "meta.json").write_text(json.dumps(meta, indent=2))
    return d


def load_model_dir(directory: str | Path, dataset: Dataset | None = None
                   ) -> tuple[Recommender, dict[str, Any]]:
    """Load a model directory; with ``dataset``, check it has the catalogue the model knows
    (a text model is bound to a new catalogue instead: it scores items from their text)."""
    d = Path(directory)
    if not (d / "config.json").is_file():
        raise FileNotFoundError(f"{d}: not a model directory (no config.json); "
                                "write one with `m6rec train --out DIR`")
    model = Recommender.load(d)
    meta = json.loads((d / "meta.json").read_text()) if (d / "meta.json").is_file() else {}
    if dataset is not None and (d / "ids.npz").is_file():
        with np.load(d / "ids.npz", allow_pickle=False) as z:
            items = z["item_ids"]
        same = len(items) == dataset.n_items and np.array_equal(items, dataset.item_ids.astype(str))
        if not same and model.reads_text:
            model.bind(dataset)  # zero-shot: read the new catalogue's text
        elif not same:
            raise ValueError(f"{d}: the model was trained on a different catalogue "
                             f"({len(items)} items, dataset {meta.get('dataset')!r}) than "
                             f"{dataset.name!r} ({dataset.n_items} items)")
    return model, meta
