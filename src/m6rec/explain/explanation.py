"""The explanation object for (user, recommended item), for any model that scores histories.

What made the model recommend the item is measured on the model itself, by leave-one-out
rescoring (`history_contributions`): the contribution of history item j is how much the item's
score falls when j is removed. For models linear in the history (ItemKNN, EASE, PureSVD) this is
exactly j's term of the score; for ``m6`` (a Transformer over the history) it is the exact effect
of deleting j. Around the cited items the explanation adds what they share with the recommended
item: categories (with the share of the score carried by the cited items of that category) and
knowledge-graph relations (same director, actor, sequel ...), searched only among the history
items that raised the score. A template writes the sentence (no generative LM is used: see
``docs/notes/explain.md``).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

from m6rec.data.dataset import Dataset
from m6rec.explain.contributions import history_contributions
from m6rec.explain.kg_relations import KGRelations


@dataclass
class Explanation:
    """Why ``item_id`` was recommended.

    Attributes
    ----------
    item_id, title : the recommended item
    score : the model's score of the item for the full history
    method : ``"leave-one-out"`` (contributions measured by rescoring) or ``"none"`` (no history)
    history : the cited history items, most contributing first: ``item_id``, ``title``,
        ``delta`` (score drop when the item alone is removed) and ``share`` (of the positive drops)
    categories : the item's categories carried by the history items that raised its score, with
        their ``share`` of the positive drops
    relations : knowledge-graph relations to history items that raised the score: ``role``,
        ``item_id``, ``title``, ``phrase``
    sentence : a short sentence built from the above
    """

    item_id: str
    title: str
    score: float
    method: str
    history: list[dict[str, Any]] = field(default_factory=list)
    categories: list[dict[str, Any]] = field(default_factory=list)
    relations: list[dict[str, Any]] = field(default_factory=list)
    sentence: str = ""

    @property
    def cited(self) -> list[str]:
        return [h["item_id"] for h in self.history]

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict; ``because`` (the sentence) and ``shared_categories`` are kept
        under the names the service and the CLI used before."""
        d = {f.name: getattr(self, f.name) for f in fields(self)}  # shallow: fast, and
        d["because"] = self.sentence  # the lists are built fresh per explanation anyway
        d["shared_categories"] = [c["name"] for c in self.categories]
        return d


class Explainer:
    """Explanations of one model's recommendations over one dataset.

    Parameters
    ----------
    model : a fitted Recommender (anything with ``score(histories, items)``)
    dataset : the dataset whose ids, titles, categories and KG the explanations name
    top : most history items cited per recommended item
    max_history : only the newest ``max_history`` history items are tested (and kept as
        input); default: the model's ``max_len`` (what a sequence model reads anyway), else the
        whole history (up to 1000 items)
    min_category_share : categories carrying less of the positive drops are not mentioned
    kg_relations : most KG relations per item (0: none)

    ``item_ids``, ``titles`` and ``categories`` (lists indexed by item) start as the dataset's;
    a caller whose catalogue grows (the service, with posted items) may point them at its own
    lists, as long as the model's item indices follow the same order.
    """

    def __init__(self, model: Any, dataset: Dataset, top: int = 3, max_history: int | None = None,
                 min_category_share: float = 0.25, kg_relations: int = 1):
        if max_history is None:
            max_history = int(getattr(model, "max_len", 0) or 1000)
        if top < 1 or max_history < 1:
            raise ValueError("top and max_history must be >= 1")
        self.model, self.dataset = model, dataset
        self.top, self.max_history = int(top), int(max_history)
        self.min_category_share = float(min_category_share)
        self.kg_relations = int(kg_relations)
        self.item_ids: list[str] = [str(i) for i in dataset.item_ids]
        self.titles = [str(t) for t in dataset.titles()]
        self.categories = dataset.item_categories()
        self._kg: KGRelations | None = None
        from m6rec.text.templates import Templates

        self.verb = Templates().verb_for(dataset.name).lower()

    @property
    def kg(self) -> KGRelations:
        if self._kg is None:
            self._kg = KGRelations(self.dataset)
        return self._kg

    def explain(self, history: np.ndarray, items: np.ndarray,
                scores: np.ndarray | None = None) -> list[Explanation]:
        """One `Explanation` per item of ``items`` (int [k]) for the user whose history (item
        indices, oldest first) is ``history``."""
        history = np.asarray(history, dtype=np.int64)
        items = np.asarray(items, dtype=np.int64)
        ids = self.item_ids
        if len(history) == 0:
            sc = np.zeros(len(items)) if scores is None else np.asarray(scores, np.float64)
            return [Explanation(str(ids[i]), self.titles[i], float(s), "none",
                                sentence="Popular with other users.")
                    for i, s in zip(items, sc, strict=True)]
        hist, contrib, full = self.contributions(history, items)
        return self.from_contributions(items, hist, contrib, full)

    def from_contributions(self, items: np.ndarray, hist: np.ndarray, contrib: np.ndarray,
                           full: np.ndarray) -> list[Explanation]:
        """One `Explanation` per item from leave-one-out drops measured elsewhere: tested
        history items ``hist`` [m], score drops ``contrib`` [m, k] and full-history scores
        ``full`` [k] (what `contributions` returns; the service measures them in batches)."""
        hist_cats = [set(self.categories[int(h)]) for h in hist]
        return [self._one(int(i), hist, contrib[:, col], float(full[col]), hist_cats)
                for col, i in enumerate(np.asarray(items, dtype=np.int64))]

    def contributions(self, history: np.ndarray, items: np.ndarray
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(tested history items [m], score drops [m, k], full-history scores [k])."""
        from m6rec.data.histories import Histories

        hist, contrib = history_contributions(self.model, history, items, self.max_history)
        h = Histories(np.array([0, len(hist)], np.int64), hist, np.array([-1], np.int64))
        full = self.model.score(h, items)[0]
        return hist, contrib, full

    def _one(self, item: int, hist: np.ndarray, c: np.ndarray, score: float,
             hist_cats: list[set[str]]) -> Explanation:
        ids, titles = self.item_ids, self.titles
        pos = np.clip(c, 0, None)
        total = float(pos.sum())
        ranked = np.argsort(-c, kind="stable")
        order = [j for j in ranked[: self.top] if c[j] > 0]
        cited = [int(hist[j]) for j in order]
        history = [{"item_id": str(ids[h]), "title": titles[h], "delta": round(float(c[j]), 6),
                    "share": round(float(c[j] / total), 4)} for j, h in zip(order, cited,
                                                                            strict=True)]
        categories = []
        if total > 0:
            raised = [(float(pos[j]), hist_cats[j]) for j in np.flatnonzero(pos > 0)]
            cited_cats = [hist_cats[j] for j in order]
            for g in self.categories[item]:
                share = sum(p for p, cats in raised if g in cats) / total
                if share >= self.min_category_share and any(g in cats for cats in cited_cats):
                    categories.append({"name": g, "share": round(share, 4)})
            categories.sort(key=lambda x: -x["share"])
        relations = []
        if self.kg_relations and total > 0:
            raising = [int(hist[j]) for j in ranked if c[j] > 0]
            for rel in self.kg.related(item, raising, top=self.kg_relations):
                relations.append({"role": rel.role, "item_id": str(ids[rel.other]),
                                  "title": titles[rel.other], "count": rel.count,
                                  "phrase": rel.phrase(titles[rel.other])})
        ex = Explanation(str(ids[item]), titles[item], score, "leave-one-out", history,
                         categories, relations)
        ex.sentence = sentence(ex, self.verb)
        return ex


def sentence(ex: Explanation, verb: str = "watched") -> str:
    """"Because you watched Alien and Aliens and like Sci-Fi and Horror; same director as
    Titanic." (template-based)."""
    if ex.method == "none":
        return "Popular with other users."
    if not ex.history:
        return "Fits your history as a whole (no single item raised its score)."
    text = f"Because you {verb} {_join([h['title'] for h in ex.history])}"
    if ex.categories:
        text += f" and like {_join([c['name'] for c in ex.categories[:2]])}"
    if ex.relations:
        text += "; " + "; ".join(r["phrase"] for r in ex.relations)
    return text + "."


def _join(words: list[str]) -> str:
    if len(words) <= 1:
        return "".join(words)
    return ", ".join(words[:-1]) + " and " + words[-1]


def explain(model: Any, dataset: Dataset, history: np.ndarray, items: np.ndarray,
            **kwargs: Any) -> list[Explanation]:
    """`Explainer(model, dataset, **kwargs).explain(history, items)`."""
    return Explainer(model, dataset, **kwargs).explain(history, items)
