"""`M6`, the estimator: parameters, training (with the EASE teacher), persistence, scoring."""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np
import torch

from m6rec.data.dataset import Dataset
from m6rec.data.histories import Histories
from m6rec.models.m6 import adapt
from m6rec.models.m6.items import TEXT_BUDGET
from m6rec.models.m6.network import M6Module
from m6rec.models.m6.towers import N_HEADS, TOWERS
from m6rec.models.sequential import SequentialRecommender, _require
from m6rec.train import teacher as ease

log = logging.getLogger("m6rec.models")

#: parameters of the frozen encoders (the LM is part of the model, never trained here)
LM_PARAMS = {"default": 22_713_216, "minilm": 22_713_216, "all-MiniLM-L6-v2": 22_713_216}
#: with ``lm_lora_rank``: item texts of each training step re-encoded through the LM
LM_REFRESH = 64
#: share of items whose ID part is hidden in each training step, so the model also learns to
#: rank from text alone (0 and 0.2 both lost on ml-100k)
ID_DROPOUT = 0.1
#: ``text_match`` of a text-only model left at its default: cold amazon_office items reach
#: 0.60 of warm with it and 0.27 without (docs/experiments/m6.md)
TEXT_ONLY_MATCH = 5


class M6(SequentialRecommender):
    """The M6-style text recommender (see `m6rec.models.m6`).

    Defaults are the most accurate setting measured on ml-100k ``loo`` (3 seeds): a one-layer
    GRU tower of width 128, the EASE teacher at 0.3 and 200 items of long-term taste (the fitted
    weights are a moving average, `m6rec.train.params.WEIGHT_AVERAGE`).

    Parameters
    ----------
    encoder : str
        Text encoder spec for `m6rec.text.get_encoder` (``default`` = all-MiniLM-L6-v2, offline).
    text_only : bool
        No ID embeddings: every item is its text (zero-shot / open-domain training).
    tower : {"gru", "transformer"}
        The user encoder over the item sequence: a GRU (GRU4Rec) or a causal Transformer.
    n_layers : int
        Layers of the user tower.
    inner : int
        Width of the GRU state, or of the Transformer's feed-forward layers.
    long_term : int
        Above 0: the user vector also reads the mean item vector of the user's whole history
        so far (the window and up to this many older items), order-free like EASE or FISM.
    teacher_weight : float
        Above 0: distil an EASE teacher fitted inside ``fit`` (`m6rec.train.teacher`) at this
        weight; training only, off (one log line) when the catalogue needs the sampled softmax.
        Dense item x item weights when they fit in memory, else each item's largest weights
        (`m6rec.train.teacher.TopK`) from EASE on the most popular items.
    seen_negatives : bool or None
        The training softmax runs over items with training interactions only (None: on with
        ``text_only``), so an item absent from the training data is never pushed down as a
        negative (cold items).
    text_match : int or None
        Above 0 (None: 5 with ``text_only``, else 0): add the LM's own similarity of the item to
        the user's newest this many items (late interaction; item vectors grow by the LM width,
        still one dot product); what cold items and new domains need.
    item_features : str
        Extra item vectors fused by a learned gate: ``""`` none, ``"kg"`` TransE on the
        dataset's knowledge graph, or a saved `m6rec.kg.KGEmbeddings` ``.npz``.
    lm_lora_rank : int
        Above 0: fine-tune the language model through LoRA adapters of this rank (GPU).
    init : str
        A saved ``m6`` directory to start from (its architecture is used, weights carried over).
    adapt_only : bool
        With ``init``: train only the adapters, gates and heads (about 1% of the parameters).
    add_ids : bool
        With ``init`` of a ``text_only`` model: the new domain's items get ID embeddings too.

    The shared training parameters are `SequentialRecommender`'s (`m6rec.train.params`).
    """

    name = "m6"
    reads_text = True
    padding_side = "left"
    extras = ("time_gaps", "events", "users")
    text_budget = TEXT_BUDGET  # characters of an item's text (not a parameter)
    train_params = SequentialRecommender.train_params | {
        "dropout": 0.3, "batch_size": 128, "lr": 3e-3}
    #: options measured as no gain (docs/notes/m6_tune.md), at the values m6 now behaves as
    retired_params = SequentialRecommender.retired_params | {
        "cl_weight": 0.0, "cl_temperature": 0.2, "stride": 0, "teacher_decay": 1.0,
        "rating_weight": 0.0, "impute_ids": False, "teacher_reg": ease.REG,
        "teacher_temperature": ease.TEMPERATURE, "text_match_scale": 20.0,
        "id_dropout": ID_DROPOUT, "n_heads": N_HEADS, "attn_dropout": 0.3, "use_profile": True,
        "use_time": True, "use_events": True, "text_budget": TEXT_BUDGET,
        "lm_refresh": LM_REFRESH}

    def __init__(self, encoder: str = "default", text_only: bool = False, tower: str = "gru",
                 n_layers: int = 1, inner: int = 128, long_term: int = 200,
                 teacher_weight: float = 0.3, seen_negatives: bool | None = None,
                 text_match: int | None = None,
                 item_features: str = "", lm_lora_rank: int = 0, init: str = "",
                 adapt_only: bool = False, add_ids: bool = False, **train: Any):
        self.encoder = encoder
        self.text_only = text_only
        self.tower = tower
        self.n_layers = n_layers
        self.inner = inner
        self.long_term = long_term
        self.teacher_weight = teacher_weight
        self.seen_negatives = seen_negatives
        self.text_match = text_match
        self.item_features = item_features
        self.lm_lora_rank = lm_lora_rank
        self.init = init
        self.adapt_only = adapt_only
        self.add_ids = add_ids
        super().__init__(**train)

    # -- training --------------------------------------------------------------------------------
    def _resolve_defaults(self) -> None:
        """``seen_negatives`` and ``text_match`` left at None follow ``text_only``: on for a
        text-only model (cold items and new domains), off otherwise (docs/experiments/m6.md)."""
        if self.seen_negatives is None:
            self.seen_negatives = bool(self.text_only)
        if self.text_match is None:
            self.text_match = TEXT_ONLY_MATCH if self.text_only else 0

    def _check_params(self) -> None:
        self._resolve_defaults()
        super()._check_params()
        _require(self, ints={"n_layers": 1, "inner": 1, "lm_lora_rank": 0, "text_match": 0,
                             "long_term": 0}, non_negative=("teacher_weight",))
        if self.tower not in TOWERS:
            raise ValueError(f"tower must be one of {', '.join(TOWERS)}, got {self.tower!r}")
        if self.tower == "transformer" and self.hidden % N_HEADS:
            raise ValueError(f"the Transformer tower's {N_HEADS} heads must divide hidden "
                             f"({self.hidden})")

    def fit(self, dataset: Dataset, valid=None) -> M6:
        if self.adapt_only and not self.init:
            raise ValueError("adapt_only needs init=DIR (a trained m6 model to adapt)")
        if self.add_ids and not self.init:
            raise ValueError("add_ids needs init=DIR (a trained text-only m6 model)")
        if self.init:
            adapt.apply_init(self)
        self._from_init = bool(self.init)
        self.lora_state_ = {}
        self._scoring_only = False
        try:
            super().fit(dataset, valid)
        finally:
            self._teacher = None  # training only: neither kept nor saved
        module = self.module_
        if module.lm is not None:  # the tuned LM encodes the catalogue once more, then leaves
            with torch.no_grad():
                module.item_text.copy_(module.lm.encode_all())
            self.item_text_ = module.item_text.cpu().numpy()
            self.lora_state_ = module.lm.lora_state()
            self.lm_trainable_ = module.lm.trainable_parameters()
            module.lm, module._fresh = None, None
        return self

    def _prepare(self, dataset: Dataset) -> None:
        from m6rec.models.m6.items import encode_catalogue, item_features
        from m6rec.train.losses import choose_loss

        t0 = time.perf_counter()
        self.item_text_, self.profile_text_ = encode_catalogue(self, dataset)
        self.encode_stats_["seconds"] = time.perf_counter() - t0
        self.item_seen_ = (dataset.item_counts() > 0)
        self.item_feats_, self.feat_mask_ = item_features(self.item_features, dataset,
                                                          self.random_state, self.device)
        self.n_events_ = max(1, len(dataset.event_types))
        self._teacher = None
        if self.teacher_weight > 0 and choose_loss(self.loss, dataset.n_items) != "ce":
            log.warning("m6: EASE teacher off: %d items train with the sampled softmax "
                        "(loss=%r), the teacher needs the full one", dataset.n_items, self.loss)
        elif self.teacher_weight > 0:  # dense, or top-k beyond what the dense one can hold
            from m6rec.train.loop import resolve_device

            self._teacher = ease.fit_teacher(dataset, device=resolve_device(self.device))

    def _soft_targets(self, items, mask, extras, rows):
        teacher = getattr(self, "_teacher", None)
        if teacher is None:
            return None
        return ease.ease_teacher(teacher, items, mask, extras.get("older"), rows,
                                 self.teacher_weight)

    def _older_len(self) -> int:
        if getattr(self, "_teacher", None) is not None:  # while fitting with a teacher
            return max(int(self.long_term), ease.CONTEXT)  # the teacher reads them
        return int(self.long_term)

    def _softmax_items(self) -> np.ndarray | None:
        if self.seen_negatives and not self.item_seen_.all():
            return np.flatnonzero(self.item_seen_)
        return None

    def encode_catalogue(self, dataset: Dataset) -> tuple[np.ndarray, np.ndarray]:
        """LM encodings of ``dataset``'s item texts [n_items, D] and user profiles [n_users, D]
        as this model reads them (through the cache, or its tuned LM adapters)."""
        from m6rec.models.m6.items import encode_catalogue

        return encode_catalogue(self, dataset)

    def bind(self, dataset: Dataset) -> M6:
        """Score ``dataset``'s catalogue and users from their text: for zero-shot use in a domain
        (or a catalogue) the model was not trained on. ID parts are dropped for every item."""
        return adapt.bind(self, dataset)

    def build_module(self) -> M6Module:
        self._resolve_defaults()
        module = M6Module(self.item_text_, self.profile_text_, self.item_seen_, self.max_len,
                          self.hidden, self.n_layers, self.inner, self.dropout, ID_DROPOUT,
                          text_only=self.text_only, n_events=self.n_events_, tower=self.tower,
                          text_match=self.text_match, long_term=self.long_term,
                          item_feats=getattr(self, "item_feats_", None),
                          feat_mask=getattr(self, "feat_mask_", None))
        if getattr(self, "_from_init", False):
            module = adapt.load_init(self, module)
        if self.lm_lora_rank and not getattr(self, "_scoring_only", False):
            from m6rec.text.lora import LoRATextTower

            module.lm = LoRATextTower(self.encoder, self.item_strings_, rank=self.lm_lora_rank)
            module.lm_refresh = LM_REFRESH
        return module

    # -- persistence -----------------------------------------------------------------------------
    def _state(self) -> dict[str, np.ndarray]:
        state = super()._state()
        state = {k: v for k, v in state.items()
                 if k not in ("module.item_text", "module.profile_text", "module.item_seen",
                              "module.item_feats", "module.feat_mask")}
        state.update({"item_text": self.item_text_, "profile_text": self.profile_text_,
                      "item_seen": self.item_seen_, "n_events": np.array([self.n_events_]),
                      "item_feats": self.item_feats_, "feat_mask": self.feat_mask_})
        state.update({f"lora.{k}": v for k, v in getattr(self, "lora_state_", {}).items()})
        return state

    def _set_state(self, state: dict[str, np.ndarray]) -> None:
        self.item_text_ = state["item_text"]
        self.profile_text_ = state["profile_text"]
        self.item_seen_ = state["item_seen"].astype(bool)
        self.item_feats_ = np.asarray(state["item_feats"], np.float32)
        self.feat_mask_ = np.asarray(state["feat_mask"], bool)
        self.n_events_ = int(state["n_events"].reshape(-1)[0])
        self._scoring_only = True  # a loaded model builds the scoring network only (no LM)
        self.lora_state_ = {k[len("lora."):]: v for k, v in state.items()
                            if k.startswith("lora.")}
        self._from_init = False  # a loaded model has its own weights
        super()._set_state({**state,
                            "module.item_text": self.item_text_,
                            "module.profile_text": self.profile_text_,
                            "module.item_seen": self.item_seen_,
                            "module.item_feats": self.item_feats_,
                            "module.feat_mask": self.feat_mask_})

    # -- scoring and text ------------------------------------------------------------------------
    def item_vectors(self) -> np.ndarray:
        """The item vectors scored against, float32 [n_items, d]."""
        self._check_fitted()
        with self._inference() as module:
            return module.item_table().float().cpu().numpy()

    def encode_texts(self, texts: list[str], space: str = "item") -> np.ndarray:
        """Free texts (e.g. requests) read by the model's language model: ``space="lm"`` gives
        the LM's own L2-normalised encodings [n, D] (the space of ``item_text_``); ``"item"``
        maps them through the item text adapter into the item space (no ID part) [n, hidden],
        or [n, hidden + D] with ``text_match`` (the LM vector appended)."""
        from m6rec.text import get_encoder

        self._check_fitted()
        if space not in ("item", "lm"):
            raise ValueError(f"space must be 'item' or 'lm', got {space!r}")
        enc = getattr(self, "_text_encoder", None)
        if enc is None:  # loaded once per model object (not a parameter, not saved)
            enc = self._text_encoder = get_encoder(self.encoder)
        t = np.asarray(enc.encode(list(texts)), dtype=np.float32)
        if space == "lm":
            return t
        with self._inference() as module:
            device = next(module.parameters()).device
            return module.text_vectors(torch.as_tensor(t, device=device)).float().cpu().numpy()

    def trainable_fraction(self) -> float:
        """Parameters trained by the last ``fit`` / all parameters, the frozen LM included
        (22.7M for all-MiniLM-L6-v2)."""
        params = list(self.module_.parameters())
        trained = (sum(p.numel() for p in params if p.requires_grad)
                   + getattr(self, "lm_trainable_", 0))
        return trained / (sum(p.numel() for p in params) + LM_PARAMS.get(self.encoder, 0))

    def score_with(self, histories: Histories, item_table: np.ndarray) -> np.ndarray:
        """Scores [n, m] of every item of an extended catalogue ``item_table`` (float [m, d],
        its first ``n_items`` rows this model's `item_vectors`, the rest e.g. items posted
        since training, from `text_vectors` of their LM encodings); ``histories`` may hold
        indices of the new items."""
        return self.user_vectors(histories, item_table) @ np.asarray(item_table, np.float32).T

    def text_vectors(self, lm_vectors: np.ndarray) -> np.ndarray:
        """Item vectors [n, d] of items known only by the LM encodings of their texts
        ``lm_vectors`` [n, D] (no ID part): how a new item enters the item space."""
        self._check_fitted()
        with self._inference() as module:
            device = next(module.parameters()).device
            t = torch.as_tensor(np.asarray(lm_vectors, np.float32), device=device)
            return module.text_vectors(t).float().cpu().numpy()
