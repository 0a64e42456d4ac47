"""Data layer: `Dataset`, loaders for every supported format, validation, histories."""

from m6rec.data.dataset import Dataset, KnowledgeGraph
from m6rec.data.errors import DataError
from m6rec.data.histories import Histories
from m6rec.data.loaders import (
    BUILTIN,
    from_dataframe,
    load_dataset,
    load_datasets,
    load_files,
    load_folder,
    load_recbole,
)

__all__ = ["BUILTIN", "DataError", "Dataset", "Histories", "KnowledgeGraph", "from_dataframe",
           "load_dataset", "load_datasets", "load_files", "load_folder", "load_recbole"]
