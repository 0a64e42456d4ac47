"""M6: the text model. Items and users are read as text by a pretrained language model.

M6-Rec (Cui et al., arXiv 2205.08084) writes user behaviour and items as plain text for one
pretrained LM, so a model recommends items it never saw and works in domains it was never trained
on. It keeps serving cheap by encoding every text segment once and caching it, running only a
light interaction module per request ("late interaction"). This model follows that design:

- item vector = a trainable adapter over the *frozen* LM encoding of the item text (cached on
  disk), plus an optional ID embedding fused through a learned gate: ``v = t + g * e`` with
  ``g = sigmoid(W [t; e])``. Items without training interactions have no ID part, so a new or
  foreign item is scored from its text alone (``text_only=True`` drops IDs entirely); optionally
  (``item_features``) plus a projection of an extra item feature vector (a knowledge-graph entity
  embedding), fused by a second learned gate;
- user vector = a small causal Transformer over the user's last ``max_len`` item vectors, with
  position, time-gap (log buckets) and event-type embeddings, plus the adapted LM encoding of the
  user's profile text ("A 24 year old male technician.");
- score = dot product, so item vectors are precomputed and served from an index; optionally
  (``text_match``) plus a late-interaction term read by the LM itself: the frozen LM vector of
  the item against a learned recency-weighted mean of the LM vectors of the user's newest items
  (kept a dot product: the item vector carries its LM vector, the user vector the query);
- loss = full-softmax cross-entropy over the catalogue (sampled softmax beyond ``ce_max_items``).
"""

from __future__ import annotations

import logging
import math

import numpy as np
import torch
from torch import nn

from m6rec.data.dataset import Dataset
from m6rec.data.histories import Histories
from m6rec.models.sasrec import Block, causal_blocks
from m6rec.models.sequential import SequentialRecommender, _require

N_GAP_BUCKETS = 32
log = logging.getLogger("m6rec.models")


class M6(SequentialRecommender):
    """The M6-style text recommender (see the module docstring).

    Parameters
    ----------
    encoder : str
        Text encoder spec for `m6rec.text.get_encoder` (``default`` = all-MiniLM-L6-v2, offline).
    text_only : bool
        No ID embeddings: every item is its text (zero-shot / open-domain training).
    use_profile, use_time, use_events : bool
        Switch the profile segment, time-gap and event-type embeddings.
    n_layers, n_heads, inner, attn_dropout :
        The user Transformer.
    tower : {"transformer", "gru"}
        The user encoder over the item sequence: the causal Transformer above, or a GRU
        (GRU4Rec: Hidasi et al., ICLR 2016) of ``n_layers`` layers and width ``inner``
        (``n_heads`` and ``attn_dropout`` unused) over the same inputs (item vectors with
        time-gap, event and profile embeddings), then a linear map back to ``hidden``.
    id_dropout : float
        Share of items whose ID part is hidden in each training step, so the model also learns
        to rank from text alone (what cold items need).
    impute_ids : bool
        An item without a trained ID embedding (hidden by ``id_dropout``, never seen in
        training, or from a new catalogue) gets one predicted from its text by a learned map,
        instead of none: cold items then live in the same space as warm ones (DropoutNet /
        Heater-style imputation).
    text_budget : int
        Most characters of an item's text.
    lm_lora_rank : int
        Above 0: fine-tune the language model itself through LoRA adapters of this rank inside
        its attention layers (`m6rec.text.lora`); item texts are re-encoded with gradients
        during training and the whole catalogue once more at the end. Meant for a GPU (it runs
        on CPU for small catalogues); needs a sentence-transformers ``encoder``.
    lm_refresh : int
        With ``lm_lora_rank``: item texts of each training step re-encoded through the LM (a
        random subset of the step's items; the others use their latest encoding).
    init : str
        A saved ``m6`` model directory to start from (its architecture parameters are used);
        for a new domain its weights are carried over and the new catalogue is read as text.
    adapt_only : bool
        With ``init``: train only the item adapter, the ID gate, the profile projection and the
        output scale (parameter-efficient adaptation); the user Transformer stays frozen.
    add_ids : bool
        With ``init`` of a ``text_only`` model: the new domain's items also get ID embeddings
        (new, fused through a new gate; under ``adapt_only`` they are trained too), so an
        adapted model can learn what text alone does not say about an item.
    seen_negatives : bool
        The training softmax runs over the items that have training interactions only: an
        item absent from the training data (a cold item of the ``cold`` protocol, in a
        catalogue given in advance) is then never pushed down as a negative, so at test time
        its text-based score is not biased against it.
    cl_weight : float
        Above 0: add a contrastive self-supervised term with this weight (CL4SRec: Xie et al.,
        "Contrastive Learning for Sequential Recommendation", ICDE 2022, arXiv 2010.14395).
        Each training window is augmented twice by a random one of crop (keep a random 60%
        stretch), mask (30% of the items read as the blank pad vector) and reorder (shuffle a
        random 20% stretch); the two user vectors of a window are pulled together and pushed
        away from those of the other windows of the mini-batch (InfoNCE on cosine similarity).
    cl_temperature : float
        Temperature of that InfoNCE.
    item_features : str
        Extra item feature vectors fused into the item vector: ``""`` none; ``"kg"`` the
        item's knowledge-graph entity vector, TransE trained on the dataset's own triples
        inside ``fit`` (`m6rec.kg.kg_item_features`, 64-d); else the path of a saved
        `m6rec.kg.KGEmbeddings` ``.npz``. The vector ``f_i`` enters as ``m_i * h * P f_i``
        with a learned projection ``P`` and gate ``h = sigmoid(G [v; P f_i])`` (``m_i = 0``
        for items without a link, and for every item of a catalogue read by `bind`).
    text_match : int
        Above 0: add the late-interaction text term. The score becomes
        ``u . v_i + s * q_u . t_i`` with ``t_i`` the item's frozen (L2-normalised) LM vector and
        ``q_u`` a softmax-weighted mean of the LM vectors of the user's newest ``text_match``
        items (weights per recency position learned). The LM's own similarity is not fitted to
        the training items, so items never seen in training (cold or foreign) are scored on
        the same footing as warm ones. Item vectors grow to ``hidden + D`` (D = the LM's
        width), still served by dot product.
    text_match_scale : float
        ``s``, fixed (a learned one drifts towards the learned part, which fits the training
        items better than it carries over to unseen ones: on amazon_office's cold items a
        learned scale gave 0.0118 NDCG@10, a fixed 20 0.0222).
    long_term : int
        Above 0: the user vector also reads the user's long-term taste, ``W m``, with ``m``
        the mean of the item vectors of everything the user interacted with up to then: the
        window's items and up to ``long_term`` older ones (before the ``max_len`` window the
        tower reads). Order-free and over more of the history, like the item-item models (EASE,
        FISM) the sequence towers miss. ``W`` starts at zero.
    stride : int
        Items between the ends of a user's consecutive training windows; 0 = ``max_len`` (no
        overlap). Below ``max_len`` the windows overlap and each target is trained in the one
        where it has the longest context, ``max_len - stride`` items or more (as at scoring,
        where the user vector reads the newest ``max_len`` items), at ``max_len / stride``
        times the cost of an epoch.
    teacher_weight : float
        Above 0: knowledge distillation from an EASE teacher (Steck, WWW 2019; ridge
        ``teacher_reg``) fitted on the same training data inside ``fit``. At every training
        position the next-item cross-entropy gains soft targets: the teacher's distribution
        ``softmax(EASE scores / teacher_temperature)`` over the whole catalogue (a top-64
        cut lost the gain) times this weight, i.e. ``weight * KL(teacher || model)`` up to a
        constant. EASE reads the user's history up to there (the window's items and up to
        ``max(long_term, 200)`` older ones) and gives the items in it no mass. EASE's
        item-item view of the whole history is what the sequence tower misses (a score fusion
        of the two beats either); here the model learns it in training and scores alone: no
        teacher at serving time. Needs the full softmax (``loss`` ``ce``).
    teacher_temperature : float
        Temperature of the teacher's softmax (EASE scores are ~0.01-1).
    teacher_reg : float
        EASE's L2 weight (RecBole's default 250).
    teacher_decay : float
        In (0, 1]: the teacher weighs each history item's EASE row by ``decay ** age`` (age 0
        the newest item, 1 the one before ...), a recency-aware EASE for the next-item task;
        1 = plain EASE. On ml-100k ``loo`` such an EASE alone (decay 0.8, reg 500) scores
        NDCG@10 0.112 where plain EASE scores 0.077.
    rating_weight : float
        Above 0 (data with ratings): a second head on the user vector predicts the rating of
        the next item, ``mu + mlp([u; v; u * v])``, trained with MSE at this weight beside the
        next-item loss (multi-task); `predict_ratings` reads it.

    The remaining parameters are `SequentialRecommender`'s.
    """

    name = "m6"
    reads_text = True
    padding_side = "left"
    @property
    def extras(self) -> tuple[str, ...]:  # ratings only for the rating head (not at serving)
        base = ("time_gaps", "events", "users")
        return base + ("ratings",) if self.rating_weight > 0 else base

    def __init__(self, encoder: str = "default", text_only: bool = False,
                 use_profile: bool = True, use_time: bool = True, use_events: bool = True,
                 n_layers: int = 1, n_heads: int = 2, inner: int = 128,
                 attn_dropout: float = 0.3, id_dropout: float = 0.1, impute_ids: bool = False,
                 text_budget: int = 200, lm_lora_rank: int = 0, lm_refresh: int = 64,
                 init: str = "", adapt_only: bool = False, add_ids: bool = False,
                 seen_negatives: bool = False,
                 tower: str = "gru",
                 cl_weight: float = 0.0, cl_temperature: float = 0.2,
                 text_match: int = 0, text_match_scale: float = 20.0,
                 item_features: str = "", long_term: int = 200, stride: int = 0,
                 teacher_weight: float = 0.3, teacher_temperature: float = 0.05,
                 teacher_reg: float = 250.0, teacher_decay: float = 1.0,
                 rating_weight: float = 0.0, max_len: int = 50,
                 hidden: int = 64, dropout: float = 0.3, epochs: int = 200,
                 batch_size: int = 128, lr: float = 3e-3, weight_decay: float = 0.0,
                 patience: int = 10, eval_every: int = 1, loss: str = "auto",
                 n_negatives: int = 256, temperature: float = 1.0, ce_max_items: int = 20000,
                 mask_history: bool = False, device: str = "auto", random_state: int = 0, verbose: bool = False):
        self.encoder = encoder
        self.text_only = text_only
        self.use_profile = use_profile
        self.use_time = use_time
        self.use_events = use_events
        self.n_layers = n_layers
        self.n_heads = n_heads
        self.inner = inner
        self.attn_dropout = attn_dropout
        self.id_dropout = id_dropout
        self.impute_ids = impute_ids
        self.text_budget = text_budget
        self.lm_lora_rank = lm_lora_rank
        self.lm_refresh = lm_refresh
        self.init = init
        self.adapt_only = adapt_only
        self.add_ids = add_ids
        self.seen_negatives = seen_negatives
        self.tower = tower
        self.cl_weight = cl_weight
        self.cl_temperature = cl_temperature
        self.text_match = text_match
        self.text_match_scale = text_match_scale
        self.item_features = item_features
        self.long_term = long_term
        self.stride = stride
        self.teacher_weight = teacher_weight
        self.teacher_temperature = teacher_temperature
        self.teacher_reg = teacher_reg
        self.teacher_decay = teacher_decay
        self.rating_weight = rating_weight
        super().__init__(max_len=max_len, hidden=hidden, dropout=dropout, epochs=epochs,
                         batch_size=batch_size, lr=lr, weight_decay=weight_decay,
                         patience=patience, eval_every=eval_every, loss=loss,
                         n_negatives=n_negatives, temperature=temperature,
                         ce_max_items=ce_max_items, mask_history=mask_history,
                         device=device, random_state=random_state,
                         verbose=verbose)

    # -- text features ---------------------------------------------------------------------------
    def _check_params(self) -> None:
        super()._check_params()
        _require(self, ints={"n_layers": 1, "n_heads": 1, "inner": 1, "text_budget": 20,
                             "lm_lora_rank": 0, "lm_refresh": 1, "text_match": 0,
                             "long_term": 0, "stride": 0})
        if self.stride > self.max_len:
            raise ValueError(f"stride ({self.stride}) must be at most max_len ({self.max_len})")
        if self.hidden % self.n_heads:
            raise ValueError(f"n_heads ({self.n_heads}) must divide hidden ({self.hidden})")
        if self.tower not in TOWERS:
            raise ValueError(f"tower must be one of {', '.join(TOWERS)}, got {self.tower!r}")
        for key in ("attn_dropout", "id_dropout"):
            if not 0.0 <= getattr(self, key) < 1.0:
                raise ValueError(f"{key} must be in [0, 1), got {getattr(self, key)!r}")
        if not 0.0 < self.teacher_decay <= 1.0:
            raise ValueError(f"teacher_decay must be in (0, 1], got {self.teacher_decay!r}")
        _require(self, ints={}, positive=("cl_temperature", "teacher_temperature", "teacher_reg"),
                 non_negative=("cl_weight", "rating_weight", "text_match_scale",
                               "teacher_weight"))

    def _encode_catalogue(self, dataset: Dataset) -> tuple[np.ndarray, np.ndarray]:
        """(item text vectors [n_items, D], profile vectors [n_users, D]) via the cache (item
        texts through the model's tuned LM adapters, when it has them)."""
        from m6rec.text import encode_cached, get_encoder, item_texts, user_profile_text

        enc = get_encoder(self.encoder)
        texts = item_texts(dataset, budget=self.text_budget)
        self.item_strings_ = texts
        if getattr(self, "lora_state_", None):
            from m6rec.text.lora import LoRATextTower

            tower = LoRATextTower(self.encoder, texts, rank=self.lm_lora_rank)
            tower.load_lora_state(self.lora_state_)
            items, hits, misses = tower.encode_all().numpy(), 0, len(texts)
        else:
            items, hits, misses = encode_cached(enc, texts, show_progress=self.verbose)
        self.encode_stats_ = {"item_hits": hits, "item_misses": misses}
        if self.use_profile and dataset.users is not None and dataset.n_users:
            texts = [user_profile_text(dataset, u) for u in range(dataset.n_users)]
            profiles, _, _ = encode_cached(enc, texts)
            profiles[np.array([not t for t in texts])] = 0.0
        else:
            profiles = np.zeros((dataset.n_users, items.shape[1]), np.float32)
        return items.astype(np.float32), profiles.astype(np.float32)

    def _prepare(self, dataset: Dataset) -> None:
        import time

        t0 = time.perf_counter()
        self.item_text_, self.profile_text_ = self._encode_catalogue(dataset)
        self.encode_stats_["seconds"] = time.perf_counter() - t0
        self.item_seen_ = (dataset.item_counts() > 0)
        self.item_feats_, self.feat_mask_ = self._item_features(dataset)
        self._teacher = None
        from m6rec.train.losses import choose_loss

        if self.teacher_weight > 0 and choose_loss(self.loss, dataset.n_items,
                                                   self.ce_max_items) != "ce":
            log.warning("m6: EASE teacher off: %d items train with the sampled softmax "
                        "(loss=%r, ce_max_items=%d), the teacher needs the full one",
                        dataset.n_items, self.loss, self.ce_max_items)
        elif self.teacher_weight > 0:
            from m6rec.models.ease import EASE
            from m6rec.train.loop import resolve_device

            w = torch.as_tensor(EASE(reg=self.teacher_reg).fit(dataset).weights_,
                                device=resolve_device(self.device))
            self._teacher = torch.cat([w, w.new_zeros(1, w.shape[1])])  # pad row: no score
        self.n_events_ = max(1, len(dataset.event_types))
        self.rating_range_ = np.zeros(3, np.float32)  # mean, min, max (rating head only)
        if self.rating_weight > 0:
            if not dataset.has_ratings:
                raise ValueError(f"rating_weight={self.rating_weight!r} needs ratings, and "
                                 f"dataset {dataset.name!r} has no 'rating' column")
            r = dataset.inter["rating"].to_numpy(np.float32)
            self.rating_range_ = np.array([r.mean(), r.min(), r.max()], np.float32)

    def _item_features(self, dataset: Dataset) -> tuple[np.ndarray, np.ndarray]:
        """(features [n_items, F], mask [n_items]) of ``item_features`` (F = 0 when off)."""
        from pathlib import Path

        spec = str(self.item_features or "")
        if not spec:
            return np.zeros((dataset.n_items, 0), np.float32), np.zeros(dataset.n_items, bool)
        from m6rec.kg import item_kg_features

        if spec == "kg" and dataset.kg is None:
            raise ValueError(f"item_features='kg' needs a knowledge graph, and dataset "
                             f"{dataset.name!r} has none")
        if spec != "kg" and not Path(spec).is_file():
            raise ValueError(f"item_features must be '', 'kg' or a saved KG embeddings .npz "
                             f"file; {spec!r} is none of these")
        feats, mask = item_kg_features(dataset, path="" if spec == "kg" else spec,
                                       seed=self.random_state, device=self.device)
        return np.asarray(feats, np.float32), np.asarray(mask, bool)

    def _soft_targets(self, items, mask, extras, rows):
        teacher = getattr(self, "_teacher", None)
        if teacher is None:
            return None
        return ease_teacher(teacher, items, mask, extras.get("older"), rows,
                            self.teacher_temperature, self.teacher_weight, self.teacher_decay)

    def _window_stride(self) -> int:
        return int(self.stride or self.max_len)

    def _older_len(self) -> int:
        if getattr(self, "_teacher", None) is not None:  # while fitting with a teacher
            return max(int(self.long_term), TEACHER_CONTEXT)  # the teacher reads them
        return int(self.long_term)

    def _softmax_items(self) -> np.ndarray | None:
        if self.seen_negatives and not self.item_seen_.all():
            return np.flatnonzero(self.item_seen_)
        return None

    def bind(self, dataset: Dataset) -> M6:
        """Score ``dataset``'s catalogue and users from their text: for zero-shot use in a domain
        (or a catalogue) the model was not trained on. ID parts are dropped for every item."""
        self._check_fitted()
        items, profiles = self._encode_catalogue(dataset)
        module = self.module_
        device = next(module.parameters()).device
        module.set_catalogue(torch.as_tensor(items, device=device),
                             torch.as_tensor(profiles, device=device),
                             torch.zeros(len(items), dtype=torch.bool, device=device))
        self.item_text_, self.profile_text_ = items, profiles
        self.item_feats_ = np.zeros((len(items), module.item_feats.shape[1]), np.float32)
        self.feat_mask_ = np.zeros(len(items), bool)
        self.item_seen_ = np.zeros(len(items), dtype=bool)
        self.n_items_, self.n_users_ = dataset.n_items, dataset.n_users
        return self

    def _apply_init(self) -> None:
        """Take the architecture parameters of the ``init`` model (before anything is built)."""
        import json
        from pathlib import Path

        cfg = Path(self.init) / "config.json"
        if not cfg.is_file():
            raise ValueError(f"init {self.init!r}: not a saved m6 model directory")
        config = json.loads(cfg.read_text())
        if config.get("model") != self.name:
            raise ValueError(f"init {self.init!r} holds a {config.get('model')!r} model, not m6")
        defaults = type(self)().get_params()  # for a key older models did not save
        for key in ARCHITECTURE:
            setattr(self, key, config["params"].get(key, defaults[key]))
        if self.add_ids:
            self.text_only = False

    def fit(self, dataset: Dataset, valid=None) -> M6:
        if self.adapt_only and not self.init:
            raise ValueError("adapt_only needs init=DIR (a trained m6 model to adapt)")
        if self.add_ids and not self.init:
            raise ValueError("add_ids needs init=DIR (a trained text-only m6 model)")
        if self.init:
            self._apply_init()
        self._from_init = bool(self.init)
        self.lora_state_ = {}
        self._scoring_only = False
        try:
            super().fit(dataset, valid)
        finally:
            self._teacher = None  # training only: neither kept nor saved
        module = self.module_
        if module.lm is not None:  # the tuned LM encodes the catalogue once more, then leaves
            import torch

            with torch.no_grad():
                module.item_text.copy_(module.lm.encode_all())
            self.item_text_ = module.item_text.cpu().numpy()
            self.lora_state_ = module.lm.lora_state()
            self.lm_trainable_ = module.lm.trainable_parameters()
            module.lm, module._fresh = None, None
        return self

    def build_module(self) -> M6Module:
        module = self._new_module()
        if getattr(self, "_from_init", False):
            module = self._load_init(module)
        if self.lm_lora_rank and not getattr(self, "_scoring_only", False):
            from m6rec.text.lora import LoRATextTower

            module.lm = LoRATextTower(self.encoder, self.item_strings_, rank=self.lm_lora_rank)
            module.lm_refresh = int(self.lm_refresh)
        return module

    def _load_init(self, module: M6Module) -> M6Module:
        from pathlib import Path

        with np.load(Path(self.init) / "state.npz", allow_pickle=False) as z:
            weights = {k[len("module."):]: torch.from_numpy(np.array(z[k]))
                       for k in z.files if k.startswith("module.")}
        own = module.state_dict()
        usable = {k: v for k, v in weights.items() if k in own and own[k].shape == v.shape}
        module.load_state_dict(usable, strict=False)
        self.init_loaded_ = sorted(usable)
        if self.adapt_only:
            for name, p in module.named_parameters():
                p.requires_grad_(name.split(".")[0] in ADAPTABLE)
        return module

    def _new_module(self) -> M6Module:
        return M6Module(self.item_text_, self.profile_text_, self.item_seen_, self.max_len,
                        self.hidden, self.n_layers, self.n_heads, self.inner, self.dropout,
                        self.attn_dropout, self.id_dropout, text_only=self.text_only,
                        impute_ids=self.impute_ids,
                        use_profile=self.use_profile, use_time=self.use_time,
                        use_events=self.use_events, n_events=self.n_events_,
                        cl_weight=self.cl_weight, cl_temperature=self.cl_temperature,
                        tower=self.tower, rating_weight=self.rating_weight,
                        text_match=self.text_match, text_match_scale=self.text_match_scale,
                        long_term=self.long_term, item_feats=getattr(self, "item_feats_", None),
                        feat_mask=getattr(self, "feat_mask_", None),
                        rating_range=getattr(self, "rating_range_", None))

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
        n = len(self.item_text_)  # models saved before item_features have none
        self.item_feats_ = np.asarray(state.get("item_feats", np.zeros((n, 0))), np.float32)
        self.feat_mask_ = np.asarray(state.get("feat_mask", np.zeros(n)), bool)
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

    def item_vectors(self) -> np.ndarray:
        """The item vectors scored against, float32 [n_items, hidden]."""
        self._check_fitted()
        module = self.module_
        was = module.training
        module.eval()
        with torch.inference_mode():
            out = module.item_table().float().cpu().numpy()
        module.train(was)
        return out

    def predict_ratings(self, histories: Histories, item_idx: np.ndarray) -> np.ndarray:
        """Predicted ratings [n, m] of per-row items ``item_idx`` (int [n, m]) by the rating
        head (``rating_weight`` > 0), clipped to the training range."""
        self._check_fitted()
        module = self.module_
        if getattr(module, "rate_head", None) is None:
            raise ValueError("predict_ratings needs an m6 fitted with rating_weight > 0")
        item_idx = np.asarray(item_idx, dtype=np.int64).reshape(len(histories), -1)
        inputs, mask, extras = self._inputs(histories)
        with self._inference() as mod:
            user = self._encode_last(mod, inputs, mask, extras)
            idx = torch.as_tensor(item_idx, device=user.device)
            H = self.hidden
            pred = mod.rate(user[:, None, :H].expand(-1, idx.shape[1], -1),
                            mod.item_table()[idx][..., :H])
            lo, hi = mod.rating_range[1], mod.rating_range[2]
            return pred.clamp(lo, hi).float().cpu().numpy()

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
        module = self.module_
        device = next(module.parameters()).device
        was = module.training
        module.eval()
        try:
            with torch.inference_mode():
                return module.text_vectors(torch.as_tensor(t, device=device)).float().cpu().numpy()
        finally:
            module.train(was)

    def trainable_fraction(self) -> float:
        """Parameters trained by the last ``fit`` / all parameters, the frozen LM included
        (22.7M for all-MiniLM-L6-v2)."""
        params = list(self.module_.parameters())
        trained = (sum(p.numel() for p in params if p.requires_grad)
                   + getattr(self, "lm_trainable_", 0))
        return trained / (sum(p.numel() for p in params) + LM_PARAMS.get(self.encoder, 0))


#: parameters copied from an ``init`` model (they define the network's shape)
ARCHITECTURE = ("encoder", "text_only", "use_profile", "use_time", "use_events", "n_layers",
                "n_heads", "inner", "hidden", "max_len", "text_budget", "impute_ids", "tower",
                "text_match", "long_term")
#: older items (before the window) the EASE teacher reads, at least
TEACHER_CONTEXT = 200
#: user encoders (``tower``)
TOWERS = ("transformer", "gru")
#: top-level modules trained under ``adapt_only``
ADAPTABLE = ("adapter", "skip", "gate", "profile", "out_scale", "id_emb", "impute",
             "match_w", "feat_proj", "feat_gate", "lt_proj")

#: parameters of the frozen encoders (the LM is part of the model, never trained here)
LM_PARAMS = {"default": 22_713_216, "minilm": 22_713_216, "all-MiniLM-L6-v2": 22_713_216}


class M6Module(nn.Module):
    """Adapter + gated ID fusion for items; causal Transformer with profile, time and event
    embeddings for users."""

    def __init__(self, item_text: np.ndarray, profile_text: np.ndarray, item_seen: np.ndarray,
                 max_len: int, hidden: int, n_layers: int, n_heads: int, inner: int,
                 dropout: float, attn_dropout: float, id_dropout: float, text_only: bool,
                 use_profile: bool, use_time: bool, use_events: bool, n_events: int,
                 impute_ids: bool = False, cl_weight: float = 0.0,
                 cl_temperature: float = 0.2, rating_weight: float = 0.0,
                 rating_range: np.ndarray | None = None, tower: str = "transformer",
                 text_match: int = 0, text_match_scale: float = 20.0, long_term: int = 0,
                 item_feats: np.ndarray | None = None, feat_mask: np.ndarray | None = None):
        super().__init__()
        self.tower = tower
        self.rating_weight = rating_weight
        self.cl_weight, self.cl_temperature = cl_weight, cl_temperature
        dim = item_text.shape[1]
        self.hidden, self.max_len = hidden, max_len
        self.text_only, self.id_dropout = text_only, id_dropout
        self.use_profile, self.use_time, self.use_events = use_profile, use_time, use_events
        self.register_buffer("item_text", torch.as_tensor(item_text, dtype=torch.float32))
        self.register_buffer("profile_text", torch.as_tensor(profile_text, dtype=torch.float32))
        self.register_buffer("item_seen", torch.as_tensor(item_seen, dtype=torch.bool))
        self.adapter = nn.Sequential(nn.Linear(dim, 2 * hidden), nn.GELU(), nn.Dropout(dropout),
                                     nn.Linear(2 * hidden, hidden))
        self.skip = nn.Linear(dim, hidden, bias=False)
        if not text_only:
            self.id_emb = nn.Embedding(len(item_text), hidden)
            nn.init.normal_(self.id_emb.weight, std=hidden ** -0.5)
            self.gate = nn.Linear(2 * hidden, hidden)
            self.impute = nn.Linear(hidden, hidden) if impute_ids else None
        if use_profile:
            self.profile = nn.Linear(dim, hidden, bias=False)
        self.pos_emb = nn.Embedding(max_len, hidden)
        nn.init.normal_(self.pos_emb.weight, std=hidden ** -0.5)
        if use_time:
            self.gap_emb = nn.Embedding(N_GAP_BUCKETS, hidden)
            nn.init.zeros_(self.gap_emb.weight)
        if use_events:
            self.event_emb = nn.Embedding(n_events, hidden)
            nn.init.zeros_(self.event_emb.weight)
        self.drop = nn.Dropout(dropout)
        if tower == "gru":
            self.gru = nn.GRU(hidden, inner, num_layers=n_layers, batch_first=True,
                              dropout=dropout if n_layers > 1 else 0.0)
            self.gru_out = nn.Linear(inner, hidden)
            self.blocks = nn.ModuleList()
        else:
            self.blocks = nn.ModuleList(Block(hidden, n_heads, inner, dropout, attn_dropout)
                                        for _ in range(n_layers))
        self.norm = nn.LayerNorm(hidden)
        self.out_scale = nn.Parameter(torch.tensor(1.0))
        self.lm, self.lm_refresh, self._fresh = None, 64, None  # set by M6 for LM tuning
        if rating_weight > 0:  # built last: models without it initialise exactly as before
            self.rate_head = nn.Sequential(nn.Linear(3 * hidden, hidden), nn.GELU(),
                                           nn.Linear(hidden, 1))
            rr = np.zeros(3, np.float32) if rating_range is None else rating_range
            self.register_buffer("rating_range", torch.as_tensor(rr, dtype=torch.float32))
        if item_feats is None:
            item_feats = np.zeros((len(item_text), 0), np.float32)
        if feat_mask is None:
            feat_mask = np.zeros(len(item_text), bool)
        self.register_buffer("item_feats", torch.as_tensor(item_feats, dtype=torch.float32))
        self.register_buffer("feat_mask", torch.as_tensor(feat_mask, dtype=torch.bool))
        if self.item_feats.shape[1]:  # built after the others: same initialisation without it
            self.feat_proj = nn.Linear(self.item_feats.shape[1], hidden, bias=False)
            self.feat_gate = nn.Linear(2 * hidden, hidden)
        self.text_match = int(text_match)
        if self.text_match:  # built last too (same initialisation as before without it)
            # per recency position (newest first); the newest starts with the most weight
            self.match_w = nn.Parameter(-torch.arange(self.text_match, dtype=torch.float32) / 2)
            # fixed, not learned: fitted in-sample the scale drifts towards the learned part,
            # which fits the training items better than it generalises to unseen ones
            self.register_buffer("match_scale", torch.tensor(float(text_match_scale)))
        self.long_term = int(long_term)
        if self.long_term:  # built last as well
            self.lt_proj = nn.Linear(hidden, hidden, bias=False)
            nn.init.zeros_(self.lt_proj.weight)

    def rate(self, user: torch.Tensor, item: torch.Tensor) -> torch.Tensor:
        """Predicted rating of items ``item`` [..., d] for user vectors ``user`` [..., d]."""
        z = torch.cat([user, item, user * item], dim=-1)
        return self.rating_range[0] + self.rate_head(z).squeeze(-1)

    def begin_step(self, items: torch.Tensor, generator: torch.Generator | None = None) -> None:
        """Before a training step with LM adapters: write the last step's fresh encodings into
        the table, then re-encode (with gradients) up to ``lm_refresh`` of this step's items."""
        if self.lm is None:
            return
        if self._fresh is not None:
            rows, vecs = self._fresh
            self.item_text[rows] = vecs.detach()
        uniq = torch.unique(items[items < len(self.item_text)])
        if len(uniq) > self.lm_refresh:
            pick = torch.randperm(len(uniq), generator=generator)[: self.lm_refresh]
            uniq = uniq[pick.to(uniq.device)]
        self._fresh = (uniq, self.lm(uniq.cpu()).to(self.item_text.device))

    def _text(self) -> torch.Tensor:
        if self.lm is not None and self.training and self._fresh is not None:
            rows, vecs = self._fresh
            return self.item_text.index_put((rows,), vecs)
        return self.item_text

    def aux_loss(self, items: torch.Tensor, mask: torch.Tensor, extras: dict[str, torch.Tensor],
                 hidden: torch.Tensor, generator: torch.Generator | None = None
                 ) -> torch.Tensor | None:
        """The extra terms of a training mini-batch (``hidden`` = its ``encode`` output), or
        None when all are off: the rating head's (``rating_weight``) and the contrastive one
        (``cl_weight``)."""
        terms = []
        if self.rating_weight > 0:
            terms.append(self.rating_weight * self._rating_loss(items, mask, extras, hidden))
        if self.cl_weight > 0:
            terms.append(self._contrastive_loss(items, mask, extras, generator))
        return sum(terms) if terms else None

    def _rating_loss(self, items: torch.Tensor, mask: torch.Tensor,
                     extras: dict[str, torch.Tensor], h: torch.Tensor) -> torch.Tensor:
        """MSE of the rating of each window item (that has one) predicted from the user
        vector ``h`` just before it and the item's vector."""
        table = self.item_table()
        table = torch.cat([table, table.new_zeros(1, table.shape[1])])
        r = extras["ratings"][:, 1:]
        ok = mask[:, :-1] & mask[:, 1:] & (r > 0)
        if not bool(ok.any()):
            return h.sum() * 0.0
        H = self.hidden
        pred = self.rate(h[:, :-1, :H][ok], table[items[:, 1:][ok]][:, :H])
        return nn.functional.mse_loss(pred, r[ok])

    def _contrastive_loss(self, items: torch.Tensor, mask: torch.Tensor,
                          extras: dict[str, torch.Tensor],
                          generator: torch.Generator | None = None) -> torch.Tensor:
        """CL4SRec: two augmented views of every window, InfoNCE over the 2B user vectors."""
        seed = int(torch.randint(2 ** 31 - 1, (1,), generator=generator))
        rng = np.random.default_rng(seed)
        pad = len(self.item_text)
        extras = {k: v for k, v in extras.items() if k != "older"}  # per window position only
        views = [self.encode(*augment_windows(items, mask, extras, rng, pad))[:, -1, :self.hidden]
                 for _ in range(2)]
        z = nn.functional.normalize(torch.cat(views), dim=1)
        n = len(views[0])
        sim = (z @ z.T / self.cl_temperature).masked_fill(
            torch.eye(2 * n, dtype=torch.bool, device=z.device), float("-inf"))
        pair = torch.cat([torch.arange(n, 2 * n), torch.arange(n)]).to(z.device)
        return self.cl_weight * nn.functional.cross_entropy(sim, pair)

    def set_catalogue(self, item_text: torch.Tensor, profile_text: torch.Tensor,
                      item_seen: torch.Tensor) -> None:
        """A catalogue read as text only (no ID or feature parts)."""
        self.item_text, self.profile_text, self.item_seen = item_text, profile_text, item_seen
        self.item_feats = item_text.new_zeros(len(item_text), self.item_feats.shape[1])
        self.feat_mask = torch.zeros(len(item_text), dtype=torch.bool, device=item_text.device)

    def text_vectors(self, text: torch.Tensor) -> torch.Tensor:
        """Item vectors of LM encodings ``text`` [n, D] read as text only (no ID part): the
        adapter's output, with the LM vector itself appended under ``text_match``."""
        return self._with_lm(self._adapted(text), text)

    def item_table(self) -> torch.Tensor:
        """The vectors scored against [n_items, hidden] ([n_items, hidden + D] with
        ``text_match``: the frozen LM vector appended)."""
        text = self._text()
        return self._with_lm(self._learned_table(text), text)

    def _adapted(self, text: torch.Tensor) -> torch.Tensor:
        """The text part of item vectors: the adapter over LM encodings [n, D]."""
        return self.adapter(text) + self.skip(text)

    def _with_lm(self, v: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        """Item vectors ``v`` with their LM vectors ``text`` appended under ``text_match``."""
        return torch.cat([v, text], dim=1) if self.text_match else v

    def _learned_table(self, text: torch.Tensor) -> torch.Tensor:
        v = self._text_id_table(text)
        if not self.item_feats.shape[1]:
            return v
        f = self.feat_proj(self.item_feats)
        h = torch.sigmoid(self.feat_gate(torch.cat([v, f], dim=1)))
        return v + h * f * self.feat_mask[:, None]

    def _text_id_table(self, text: torch.Tensor) -> torch.Tensor:
        t = self._adapted(text)
        if self.text_only:
            return t
        if len(self.item_seen) != self.id_emb.num_embeddings:  # a catalogue read as text only
            if self.impute is None:
                return t
            e = self.impute(t)
        else:
            keep = self.item_seen
            if self.training and self.id_dropout > 0:
                keep = keep & (torch.rand(len(keep), device=keep.device) >= self.id_dropout)
            if self.impute is None:
                e = self.id_emb.weight * keep[:, None]
            else:
                e = torch.where(keep[:, None], self.id_emb.weight, self.impute(t))
        g = torch.sigmoid(self.gate(torch.cat([t, e], dim=1)))
        return t + g * e

    def encode(self, items: torch.Tensor, mask: torch.Tensor,
               extras: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        extras = extras or {}
        B, L = items.shape
        full = self.item_table()
        full = torch.cat([full, full.new_zeros(1, full.shape[1])])  # pad row
        table = full[:, :self.hidden]
        pos = torch.arange(self.max_len - L, self.max_len, device=items.device)
        scale = 1.0 if self.tower == "gru" else math.sqrt(self.hidden)
        x = table[items] * scale + self.pos_emb(pos)[None]
        if self.use_time and "time_gaps" in extras:
            gaps = extras["time_gaps"].clamp(min=0)
            bucket = torch.log2(gaps + 1).floor().long().clamp(max=N_GAP_BUCKETS - 1)
            x = x + self.gap_emb(bucket)
        if self.use_events and "events" in extras:
            x = x + self.event_emb(extras["events"].clamp(0, self.event_emb.num_embeddings - 1))
        if self.use_profile and "users" in extras:
            users = extras["users"][:, -1]  # the row's user (newest position is always real)
            known = (users >= 0) & (users < len(self.profile_text))
            prof = self.profile_text[users.clamp(min=0, max=max(len(self.profile_text) - 1, 0))]
            x = x + (self.profile(prof) * known[:, None])[:, None, :]
        x = self.drop(x) * mask[..., None]
        if self.tower == "gru":
            h = self._gru(x, mask) * self.out_scale
        else:
            h = self.norm(causal_blocks(self.blocks, x, mask)) * self.out_scale
        if self.long_term:
            h = h + self._long_term(table, items, mask, extras.get("older"))
        if self.text_match:
            h = torch.cat([h, self._match_query(items, mask, full[:, self.hidden:])], dim=-1)
        return h

    def _long_term(self, table: torch.Tensor, items: torch.Tensor, mask: torch.Tensor,
                   older: torch.Tensor | None) -> torch.Tensor:
        """``W m`` at every position of right-aligned windows [B, L]: ``m`` the mean of the
        item vectors ``table`` [n_items + 1, d] (pad row zero) of the window's items up to
        there and of the ``older`` items before the window [B, C] (pads -1)."""
        total = (table[items] * mask[..., None]).cumsum(1)
        count = mask.cumsum(1).to(total.dtype)
        if older is not None:
            older = older[:, -self.long_term:]  # the teacher may have read more of them
            real = older >= 0
            total = total + table[torch.where(real, older, len(table) - 1)].sum(1)[:, None]
            count = count + real.sum(1, keepdim=True).to(total.dtype)
        mean = total / count.clamp(min=1.0)[..., None]
        return self.lt_proj(self.drop(mean)) * mask[..., None]

    def _match_query(self, items: torch.Tensor, mask: torch.Tensor,
                     text: torch.Tensor) -> torch.Tensor:
        """``s * q`` at every position of right-aligned windows [B, L]: the softmax-weighted
        mean (weights per recency position, over the positions that hold an item) of the LM
        vectors ``text`` [n_items + 1, D] of the ``text_match`` newest items up to there."""
        B, L = items.shape
        N = self.text_match
        pad = len(text) - 1
        ip = torch.cat([items.new_full((B, N - 1), pad), items], dim=1)
        mp = torch.cat([mask.new_zeros((B, N - 1)), mask], dim=1)
        idx = torch.stack([ip[:, N - 1 - k: N - 1 - k + L] for k in range(N)], dim=2)
        ok = torch.stack([mp[:, N - 1 - k: N - 1 - k + L] for k in range(N)], dim=2)
        w = self.match_w.masked_fill(~ok, float("-inf")).softmax(dim=2)
        w = torch.nan_to_num(w, nan=0.0) * mask[..., None]  # positions without items: 0
        return self.match_scale * torch.einsum("blk,blkd->bld", w, text[idx])

    def _gru(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The GRU tower over right-aligned ``x`` [B, L, d]: rows are rolled so their items come
        first (the recurrent state never reads a pad before an item), then rolled back."""
        B, L, d = x.shape
        lead = (L - mask.sum(1))[:, None]  # pads before each row's first item
        j = torch.arange(L, device=x.device)[None]
        first = ((j + lead) % L)[..., None]
        out, _ = self.gru(x.gather(1, first.expand(B, L, d)))
        h = self.gru_out(self.drop(out))
        back = ((j - lead) % L)[..., None]
        return h.gather(1, back.expand(B, L, h.shape[2])) * mask[..., None]


def ease_teacher(weights: torch.Tensor, items: torch.Tensor, mask: torch.Tensor,
                 older: torch.Tensor | None, rows: torch.Tensor, temperature: float,
                 scale: float, decay: float = 1.0) -> torch.Tensor:
    """An EASE teacher's next-item distribution times ``scale`` [N, n] at the positions
    ``rows`` [B, L] (a subset of ``mask``) of right-aligned windows ``items`` [B, L].

    EASE (item-item ``weights`` [n + 1, n], the last row zero for pads) reads the user's
    history up to each position: the window's items so far and the ``older`` ones before the
    window [B, C] (pads -1); the distribution is ``softmax(score / temperature)`` over the
    items not in that history (a history of the whole catalogue gets none). EASE's score is
    the sum of the history items' rows, each times ``decay ** age`` (age 0 = the item at the
    position itself, 1 the one before it ...; ``decay`` 1 = plain EASE)."""
    n = weights.shape[1]
    with torch.no_grad():
        r = torch.where(mask, items, n)
        base = None  # the older items' rows, weighted and summed by a matmul
        if older is not None:
            o = torch.where(older >= 0, older, n)
            age = torch.arange(o.shape[1] - 1, -1, -1, device=o.device, dtype=weights.dtype)
            counts = torch.zeros(len(o), n + 1, device=o.device, dtype=weights.dtype)
            counts.scatter_add_(1, o, (decay ** age).expand(o.shape).contiguous())
            base = counts @ weights
        # s_t = decay * s_{t-1} + B[r_t] from s = base; pads (left) leave s as it is
        s = base if base is not None else weights.new_zeros(len(r), n)
        steps = []
        for j in range(r.shape[1]):
            s = torch.where(mask[:, j, None], s * decay + weights[r[:, j]], s)
            steps.append(s)
        score = torch.stack(steps, 1)
        b, t = rows.nonzero(as_tuple=True)
        # each kept row's history, as indices to blank; pads and later items point at the
        # row's own item, which is real and in the history anyway
        own = r[b, t][:, None]
        later = torch.arange(r.shape[1], device=r.device)[None] > t[:, None]
        hist = torch.where(later | (r[b] == n), own, r[b])
        if older is not None:
            hist = torch.cat([hist, torch.where(o[b] == n, own, o[b])], dim=1)
        z = score[b, t].div_(temperature).scatter_(1, hist, float("-inf"))
        # softmax in place; a row whose history is the whole catalogue gets no mass
        z.sub_(z.amax(1, keepdim=True).nan_to_num_(0.0, 0.0, 0.0)).exp_()
        return z.mul_(scale / z.sum(1, keepdim=True).clamp_min_(1e-30))


#: CL4SRec's augmentation rates: crop keeps 60% of a window, mask blanks 30% of its items,
#: reorder shuffles a 20% stretch
CL_CROP, CL_MASK, CL_REORDER = 0.6, 0.3, 0.2


def augment_windows(items: torch.Tensor, mask: torch.Tensor, extras: dict[str, torch.Tensor],
                    rng: np.random.Generator, pad: int
                    ) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
    """One CL4SRec view of right-aligned windows ``items`` / ``mask`` [B, L] (pads = ``pad``):
    each row gets a random one of crop, mask and reorder; extras follow their items. A masked
    item keeps its position (``mask`` stays True) but reads as ``pad`` (the blank vector)."""
    B, L = items.shape
    lengths = mask.sum(1).cpu().numpy()
    src = np.full((B, L), -1, dtype=np.int64)  # the input position each output slot reads
    blank = np.zeros((B, L), dtype=bool)
    kinds = rng.integers(3, size=B)
    for b in range(B):
        n = int(lengths[b])
        idx = np.arange(L - n, L)
        if kinds[b] == 0 and n > 1:  # crop
            keep = max(1, int(CL_CROP * n))
            start = int(rng.integers(n - keep + 1))
            idx = idx[start:start + keep]
        elif kinds[b] == 1:  # mask
            k = int(CL_MASK * n)
            if k:
                blank[b, L - n + rng.choice(n, k, replace=False)] = True
        elif kinds[b] == 2:  # reorder
            r = max(1, int(CL_REORDER * n))
            start = int(rng.integers(n - r + 1))
            idx[start:start + r] = rng.permutation(idx[start:start + r])
        src[b, L - len(idx):] = idx
    s = torch.as_tensor(src, device=items.device)
    real = s >= 0
    at = s.clamp(min=0)
    hidden = torch.as_tensor(blank, device=items.device)
    out = torch.where(real & ~hidden, items.gather(1, at), torch.full_like(items, pad))
    ex = {k: torch.where(real, v.gather(1, at), torch.zeros_like(v)) for k, v in extras.items()}
    return out, real, ex
