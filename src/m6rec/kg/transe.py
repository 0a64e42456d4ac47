"""Knowledge-graph embeddings: TransE and RotatE trained in PyTorch on a dataset's triples.

- TransE (A. Bordes et al., "Translating Embeddings for Modeling Multi-relational Data",
  NeurIPS 2013): ``h + r ~ t``; distance ``||h + r - t||`` (L1 or L2), margin ranking loss
  against a corrupted triple, entity vectors renormalised to unit length before each step.
- RotatE (Z. Sun et al., "RotatE: Knowledge Graph Embedding by Relational Rotation in Complex
  Space", ICLR 2019): ``h o r ~ t`` in complex space with ``|r_i| = 1``; loss
  ``-log sigmoid(gamma - d(h, r, t)) - log sigmoid(d(h', r, t') - gamma)``.

Negatives replace the head or the tail (each with probability 1/2) by a uniformly drawn entity.
Training uses the shared loop (`m6rec.train.loop.train_epochs`). The result, `KGEmbeddings`,
keeps raw entity / relation ids so a saved ``.npz`` can be applied to any dataset whose item
links name the same entities (`item_features`).
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from m6rec.data.dataset import Dataset, KnowledgeGraph

METHODS = ("transe", "rotate")


@dataclass(eq=False)
class KGEmbeddings:
    """Learned vectors of a knowledge graph.

    Attributes
    ----------
    entity_ids, relation_ids : str arrays, index -> raw id
    entity : float32 [n_entities, dim]  (RotatE: real parts then imaginary parts)
    relation : float32 [n_relations, dim]  (RotatE: phases [n_relations, dim / 2])
    method : "transe" or "rotate"
    params : training parameters (stored in the npz as JSON)
    """

    entity_ids: np.ndarray
    relation_ids: np.ndarray
    entity: np.ndarray
    relation: np.ndarray
    method: str
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def dim(self) -> int:
        return int(self.entity.shape[1])

    def save(self, path: str | Path) -> Path:
        """Write one ``.npz`` (no pickled objects: ids are stored as unicode arrays)."""
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        meta = json.dumps({"method": self.method, "params": self.params})
        with open(p, "wb") as f:
            np.savez(f, entity_ids=np.asarray(self.entity_ids, dtype=str),
                     relation_ids=np.asarray(self.relation_ids, dtype=str),
                     entity=self.entity.astype(np.float32), relation=self.relation.astype(np.float32),
                     meta=np.frombuffer(meta.encode(), np.uint8))
        return p

    @classmethod
    def load(cls, path: str | Path) -> KGEmbeddings:
        p = Path(path)
        if not p.is_file():
            raise FileNotFoundError(f"{p}: no such KG embeddings file (write one with "
                                    "m6rec.kg.train_kg_embeddings(...).save(path))")
        with np.load(p, allow_pickle=False) as z:
            missing = {"entity_ids", "relation_ids", "entity", "relation", "meta"} - set(z.files)
            if missing:
                raise ValueError(f"{p}: not a KG embeddings file (missing {sorted(missing)})")
            meta = json.loads(z["meta"].tobytes().decode())
            return cls(entity_ids=z["entity_ids"].astype(object),
                       relation_ids=z["relation_ids"].astype(object), entity=z["entity"],
                       relation=z["relation"], method=meta["method"], params=meta["params"])

    def item_features(self, dataset: Dataset, normalize: bool = True
                      ) -> tuple[np.ndarray, np.ndarray]:
        """Item-feature matrix of ``dataset`` from its item -> entity links (matched by raw
        entity id). Returns ``(features float32 [n_items, dim], mask bool [n_items])``: rows of
        items without a link (or whose entity is unknown here) are zero and ``mask`` False.
        ``normalize`` scales each linked row to unit L2 norm."""
        feats = np.zeros((dataset.n_items, self.dim), np.float32)
        mask = np.zeros(dataset.n_items, bool)
        if dataset.kg is None:
            return feats, mask
        index = {e: i for i, e in enumerate(self.entity_ids)}
        kg = dataset.kg
        linked = np.flatnonzero(kg.item_entity >= 0)
        rows = np.array([index.get(str(kg.entity_ids[kg.item_entity[i]]), -1) for i in linked],
                        dtype=np.int64)
        ok = rows >= 0
        feats[linked[ok]] = self.entity[rows[ok]]
        mask[linked[ok]] = True
        if normalize:
            norms = np.linalg.norm(feats, axis=1, keepdims=True)
            feats = np.where(norms > 0, feats / np.where(norms > 0, norms, 1), 0).astype(np.float32)
        return feats, mask

    def score_triples(self, triples: np.ndarray) -> np.ndarray:
        """Distance of each (head, relation, tail) index triple [m, 3]; lower is more plausible."""
        t = np.asarray(triples, dtype=np.int64)
        return self.distance(self.entity[t[:, 0]], t[:, 1], self.entity[t[:, 2]])

    def distance(self, heads: np.ndarray, relations: np.ndarray, tails: np.ndarray) -> np.ndarray:
        """``d(h, r, t)`` for broadcastable entity vectors [..., dim] and relation indices."""
        r = self.relation[np.asarray(relations)]
        if self.method == "transe":
            order = int(self.params.get("p_norm", 1))
            return np.linalg.norm(heads + r - tails, ord=order, axis=-1)
        half = self.dim // 2
        re_h, im_h = heads[..., :half], heads[..., half:]
        re_t, im_t = tails[..., :half], tails[..., half:]
        c, s = np.cos(r), np.sin(r)
        re, im = re_h * c - im_h * s - re_t, re_h * s + im_h * c - im_t
        return np.sqrt(re ** 2 + im ** 2).sum(axis=-1)


def train_kg_embeddings(kg: KnowledgeGraph, dim: int = 64, method: str = "transe",
                        epochs: int = 30, batch_size: int = 4096, lr: float = 1e-2,
                        margin: float = 1.0, p_norm: int = 1, n_negatives: int = 1,
                        random_state: int = 0, device: str = "auto",
                        verbose: bool = False) -> KGEmbeddings:
    """Learn entity and relation vectors from ``kg.triples``.

    Parameters
    ----------
    kg : KnowledgeGraph
    dim : int
        Width of the entity vectors (RotatE: must be even; ``dim / 2`` complex numbers).
    method : {"transe", "rotate"}
    epochs, batch_size, lr : training length, triples per step, Adam's learning rate.
    margin : float
        TransE's margin, RotatE's ``gamma``.
    p_norm : {1, 2}
        TransE's distance norm.
    n_negatives : int
        Corrupted triples per true triple.
    random_state : int
        Seeds initialisation and negative sampling (the caller's RNG state is untouched).

    Returns
    -------
    KGEmbeddings
    """
    import torch

    from m6rec.train.loop import resolve_device, seeded, train_epochs

    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    for key, value in {"dim": dim, "epochs": epochs, "batch_size": batch_size,
                       "n_negatives": n_negatives}.items():
        if isinstance(value, bool) or int(value) != value or value < 1:
            raise ValueError(f"{key} must be an integer >= 1, got {value!r}")
    if method == "rotate" and dim % 2:
        raise ValueError(f"RotatE needs an even dim (complex pairs), got {dim}")
    if p_norm not in (1, 2):
        raise ValueError(f"p_norm must be 1 or 2, got {p_norm!r}")
    if not lr > 0 or not margin > 0:
        raise ValueError(f"lr and margin must be > 0, got lr={lr!r}, margin={margin!r}")
    triples = np.asarray(kg.triples, dtype=np.int64)
    if triples.ndim != 2 or triples.shape[1] != 3 or not len(triples):
        raise ValueError("the knowledge graph has no triples to learn from")
    dev = resolve_device(device)
    n_ent, n_rel = kg.n_entities, kg.n_relations
    tr = torch.as_tensor(triples, device=dev)
    params = {"dim": int(dim), "epochs": int(epochs), "batch_size": int(batch_size),
              "lr": float(lr), "margin": float(margin), "p_norm": int(p_norm),
              "n_negatives": int(n_negatives), "random_state": int(random_state)}
    with seeded(random_state, dev) as gen:
        module = _KGModule(n_ent, n_rel, int(dim), method, float(margin), int(p_norm)).to(dev)
        opt = torch.optim.Adam(module.parameters(), lr=lr)

        def step(idx: torch.Tensor) -> torch.Tensor:
            pos = tr[idx.to(dev)]
            neg = pos.repeat(int(n_negatives), 1)
            m = len(neg)
            corrupt = torch.randint(0, n_ent, (m,), generator=gen).to(dev)
            head = (torch.rand(m, generator=gen) < 0.5).to(dev)
            neg[:, 0] = torch.where(head, corrupt, neg[:, 0])
            neg[:, 2] = torch.where(head, neg[:, 2], corrupt)
            if method == "transe":
                module.renorm(torch.cat([pos[:, 0], pos[:, 2], neg[:, 0], neg[:, 2]]))
            return module.loss(pos, neg)

        train_epochs(module, opt, step, len(tr), epochs=int(epochs), batch_size=int(batch_size),
                     generator=gen, verbose=verbose, desc=method)
        if method == "transe":
            module.renorm(torch.arange(n_ent, device=dev))
    entity = module.entity.weight.detach().cpu().numpy().astype(np.float32)
    relation = module.relation.weight.detach().cpu().numpy().astype(np.float32)
    return KGEmbeddings(entity_ids=np.asarray(kg.entity_ids, dtype=object),
                        relation_ids=np.asarray(kg.relation_ids, dtype=object),
                        entity=entity, relation=relation, method=method, params=params)


def kg_item_features(dataset: Dataset, dim: int = 64, seed: int = 0, method: str = "transe",
                     epochs: int = 30, cache: str | Path | None = None, **kwargs: Any
                     ) -> tuple[np.ndarray, np.ndarray]:
    """KG item features of ``dataset``, ready for any model's item side (``hybrid``, ``m6``).

    Trains `train_kg_embeddings` on ``dataset.kg`` (or loads ``cache`` when that ``.npz``
    exists and was trained with the same parameters; it is written otherwise), then maps each
    item to its linked entity's vector.

    Returns
    -------
    features : float32 [n_items, dim]; unit-norm rows for linked items, zero rows otherwise
    mask : bool [n_items]; True for items with a KG link
    """
    if dataset.kg is None:
        return np.zeros((dataset.n_items, dim), np.float32), np.zeros(dataset.n_items, bool)
    emb = None
    want = {"dim": int(dim), "epochs": int(epochs), "random_state": int(seed)}
    if cache is not None and Path(cache).is_file():
        cached = KGEmbeddings.load(cache)
        if cached.method == method and all(cached.params.get(k) == v for k, v in want.items()) \
                and all(cached.params.get(k) == v for k, v in kwargs.items()
                        if k not in ("device", "verbose")):
            emb = cached
    if emb is None:
        emb = train_kg_embeddings(dataset.kg, dim=dim, method=method, epochs=epochs,
                                  random_state=seed, **kwargs)
        if cache is not None:
            emb.save(cache)
    return emb.item_features(dataset)


def item_kg_features(dataset: Dataset, path: str | Path = "", **train: Any
                     ) -> tuple[np.ndarray, np.ndarray]:
    """A model's KG item features of ``dataset``: read from the saved `KGEmbeddings` at
    ``path`` when given, else trained here by `kg_item_features` (``train`` = its keyword
    arguments). Returns ``(features [n_items, dim], mask [n_items])``."""
    if path:
        return KGEmbeddings.load(path).item_features(dataset)
    return kg_item_features(dataset, **train)


@functools.cache
def _kg_module_class() -> type:
    """The torch module, defined on first use (torch is imported lazily)."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    class KGModule(nn.Module):
        def __init__(self, n_ent: int, n_rel: int, dim: int, method: str, margin: float,
                     p_norm: int):
            super().__init__()
            self.method, self.margin, self.p_norm = method, margin, p_norm
            bound = 6.0 / dim ** 0.5
            self.entity = nn.Embedding(n_ent, dim)
            rel_dim = dim if method == "transe" else dim // 2
            self.relation = nn.Embedding(n_rel, rel_dim)
            if method == "transe":
                nn.init.uniform_(self.entity.weight, -bound, bound)
                nn.init.uniform_(self.relation.weight, -bound, bound)
                with torch.no_grad():
                    self.relation.weight.div_(self.relation.weight.norm(dim=1, keepdim=True))
            else:
                nn.init.uniform_(self.entity.weight, -margin / dim, margin / dim)
                nn.init.uniform_(self.relation.weight, -np.pi, np.pi)

        def renorm(self, idx: torch.Tensor) -> None:
            with torch.no_grad():
                w = self.entity.weight
                idx = torch.unique(idx)
                w[idx] = F.normalize(w[idx], dim=1)

        def distance(self, t: torch.Tensor) -> torch.Tensor:
            h, r, tl = self.entity(t[:, 0]), self.relation(t[:, 1]), self.entity(t[:, 2])
            if self.method == "transe":
                return (h + r - tl).norm(p=self.p_norm, dim=1)
            half = h.shape[1] // 2
            c, s = torch.cos(r), torch.sin(r)
            re = h[:, :half] * c - h[:, half:] * s - tl[:, :half]
            im = h[:, :half] * s + h[:, half:] * c - tl[:, half:]
            return torch.sqrt(re ** 2 + im ** 2 + 1e-12).sum(dim=1)

        def loss(self, pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
            dp, dn = self.distance(pos), self.distance(neg).view(-1, len(pos))
            if self.method == "transe":
                return F.relu(self.margin + dp[None] - dn).mean()
            return (-F.logsigmoid(self.margin - dp).mean()
                    - F.logsigmoid(dn - self.margin).mean())

    return KGModule


def _KGModule(*args: Any) -> Any:  # noqa: N802 - a factory standing in for the lazy class
    return _kg_module_class()(*args)
