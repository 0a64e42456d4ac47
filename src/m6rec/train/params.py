"""The training parameters the torch models share, defined once.

A model lists the shared parameters it takes, with its own defaults, in the class attribute
``train_params`` (name -> default) and receives them through ``**train`` in ``__init__``
(`set_train_params` stores them); its own hyper-parameters stay keyword arguments of
``__init__``. ``Recommender.param_names`` joins both, so ``get_params``, ``save`` / ``load``,
``build_model`` and the CLI's ``--param`` see one flat list.
"""

from __future__ import annotations

from typing import Any

#: name -> one-line description of every shared training parameter
TRAIN_DOCS: dict[str, str] = {
    "max_len": "most recent interactions read per user (RecBole's MAX_ITEM_LIST_LENGTH)",
    "hidden": "width of the item vectors and of the user state",
    "dropout": "dropout rate of embeddings and hidden layers",
    "epochs": "most passes over the training data",
    "batch_size": "training examples per step; also the users scored at once",
    "lr": "Adam's learning rate",
    "patience": "validations without a better NDCG@10 before stopping (best weights kept)",
    "loss": "auto | ce | sampled: full-softmax CE, sampled softmax, or CE up to 20,000 items",
    "device": "auto | cpu | cuda (auto: CUDA when present)",
    "random_state": "seeds initialisation, dropout and shuffling (global RNGs untouched)",
    "verbose": "progress bar and per-epoch log lines",
}

#: decay per step of the moving average of the weights that the sequence models validate, stop
#: early on and keep (warmed up as ``min(decay, (1 + n) / (10 + n))`` after ``n`` steps, so a
#: short run averages about its newest tenth of steps). ml-100k ``loo``, seeds 0-2, NDCG@10:
#: ``m6`` 0.1324 +- 0.0048 against 0.1293 +- 0.0031 with the raw weights, ``sasrec`` 0.1141
#: against 0.1119 (docs/notes/m6_tune.md)
WEIGHT_AVERAGE = 0.99

#: the sequence models' shared parameters and their usual defaults
SEQUENTIAL: dict[str, Any] = {
    "max_len": 50, "hidden": 64, "dropout": 0.2, "epochs": 200, "batch_size": 128,
    "lr": 1e-3, "patience": 10, "loss": "auto", "device": "auto", "random_state": 0,
    "verbose": False,
}


def set_train_params(model: Any, given: dict[str, Any]) -> None:
    """Store the shared training parameters of ``model`` (its class's ``train_params``), each
    from ``given`` or the class default; a name the class does not take is a TypeError."""
    declared = type(model).train_params
    unknown = sorted(set(given) - set(declared))
    if unknown:
        raise TypeError(f"{type(model).__name__} got unexpected parameter(s) "
                        f"{', '.join(unknown)}")
    for name, default in declared.items():
        setattr(model, name, given.get(name, default))


def shared(**defaults: Any) -> dict[str, Any]:
    """A model's ``train_params``: shared parameters (names from `TRAIN_DOCS`) with its own
    defaults."""
    unknown = sorted(set(defaults) - set(TRAIN_DOCS))
    if unknown:
        raise TypeError(f"not shared training parameters: {', '.join(unknown)}")
    return dict(defaults)
