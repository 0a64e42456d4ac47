"""Transfer of a trained ``m6`` to a new domain or catalogue: starting from a saved model
(``init``), training only its adapters (``adapt_only``, about 1% of the parameters), giving the
new items ID embeddings (``add_ids``), and scoring a catalogue read as text only (`bind`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from m6rec.data.dataset import Dataset

#: parameters copied from an ``init`` model (they define the network's shape)
ARCHITECTURE = ("encoder", "text_only", "n_layers", "inner", "hidden", "max_len", "tower",
                "text_match", "long_term")
#: top-level modules trained under ``adapt_only``
ADAPTABLE = ("adapter", "skip", "gate", "profile", "out_scale", "id_emb", "match_w",
             "feat_proj", "feat_gate", "lt_proj")


def apply_init(model: Any) -> None:
    """Give ``model`` the architecture parameters of its ``init`` model (before anything is
    built); ``add_ids`` turns the IDs on for the new domain."""
    cfg = Path(model.init) / "config.json"
    if not cfg.is_file():
        raise ValueError(f"init {model.init!r}: not a saved m6 model directory")
    config = json.loads(cfg.read_text())
    if config.get("model") != model.name:
        raise ValueError(f"init {model.init!r} holds a {config.get('model')!r} model, not m6")
    defaults = type(model)().get_params()  # for a key older models did not save
    for key in ARCHITECTURE:
        setattr(model, key, config["params"].get(key, defaults[key]))
    if model.add_ids:
        model.text_only = False


def load_init(model: Any, module: nn.Module) -> nn.Module:
    """``module`` with the weights of ``model.init`` that fit its shapes (the others keep
    their fresh values: a new catalogue's ID embeddings, a new gate); under ``adapt_only``
    only `ADAPTABLE` modules stay trainable."""
    with np.load(Path(model.init) / "state.npz", allow_pickle=False) as z:
        weights = {k[len("module."):]: torch.from_numpy(np.array(z[k]))
                   for k in z.files if k.startswith("module.")}
    own = module.state_dict()
    usable = {k: v for k, v in weights.items() if k in own and own[k].shape == v.shape}
    module.load_state_dict(usable, strict=False)
    model.init_loaded_ = sorted(usable)
    if model.adapt_only:
        for name, p in module.named_parameters():
            p.requires_grad_(name.split(".")[0] in ADAPTABLE)
    return module


def bind(model: Any, dataset: Dataset) -> Any:
    """Make a fitted ``model`` score ``dataset``'s catalogue and users from their text alone
    (zero-shot use in a domain or catalogue it was not trained on): ID parts are dropped for
    every item."""
    from m6rec.models.m6.items import encode_catalogue

    model._check_fitted()
    items, profiles = encode_catalogue(model, dataset)
    module = model.module_
    device = next(module.parameters()).device
    module.set_catalogue(torch.as_tensor(items, device=device),
                         torch.as_tensor(profiles, device=device),
                         torch.zeros(len(items), dtype=torch.bool, device=device))
    model.item_text_, model.profile_text_ = items, profiles
    model.item_feats_ = np.zeros((len(items), module.item_feats.shape[1]), np.float32)
    model.feat_mask_ = np.zeros(len(items), bool)
    model.item_seen_ = np.zeros(len(items), dtype=bool)
    model.n_items_, model.n_users_ = dataset.n_items, dataset.n_users
    return model
