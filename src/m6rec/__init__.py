"""m6rec: an open-domain recommender system (behaviour and items as text, read by a pretrained
language model), with classic baselines and full-ranking evaluation comparable with RecBole.

Importing ``m6rec`` is cheap: torch, implicit and friends load only when a model needs them.
"""

from __future__ import annotations

__version__ = "0.1.0"

from m6rec.data import DataError, Dataset, Histories, load_dataset, load_datasets  # noqa: E402

__all__ = ["DataError", "Dataset", "Histories", "__version__", "load_dataset", "load_datasets"]
