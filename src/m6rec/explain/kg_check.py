"""Check an explanation's knowledge-graph claims against the graph's own triples.

Independent of `KGRelations` (which builds the claims): every claim is read back from its phrase
("same director as Alien", "a sequel to Alien") and looked up in the raw triples of the dataset's
`KnowledgeGraph`. A claim is

- ``"supported"``: the triples say it (both films' director sets intersect; for "X is a sequel to
  Y" there is (Y, film.film.sequel, X) or (X, film.film.prequel, Y));
- ``"contradicted"``: the triples say otherwise (both films have directors and none is shared;
  the sequel triple points the other way, or both films are linked and neither triple exists);
- ``"unsupported"``: the graph has nothing on it (a film without that relation, or no link).

`sample_kg_sentences` checks a seeded sample of a model's explanations (used by the tests and
``benchmarks/explain_kg_truth.py``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from m6rec.data.dataset import Dataset

#: phrase pattern -> (relation read for both films, or the direct relation for sequels)
CLAIMS: list[tuple[str, str]] = [
    (r"a sequel to (?P<t>.+)", "sequel"),
    (r"a prequel to (?P<t>.+)", "prequel"),
    (r"same director as (?P<t>.+)", "film.film.directed_by"),
    (r"shares a writer with (?P<t>.+)", "film.film.written_by"),
    (r"shares an actor with (?P<t>.+)", "film.film.actor"),
    (r"same cinematographer as (?P<t>.+)", "film.film.cinematography"),
    (r"shares a producer with (?P<t>.+)", "film.film.produced_by"),
    (r"shares a subject with (?P<t>.+)", "film.film.subjects"),
    (r"shares a studio with (?P<t>.+)", "film.film.production_companies"),
]


@dataclass
class Verdict:
    item: int
    other: int
    phrase: str
    relation: str
    verdict: str  # supported | contradicted | unsupported | unreadable


class KGChecker:
    """Looks claims up in ``dataset.kg``'s triples (raw relation names)."""

    def __init__(self, dataset: Dataset):
        kg = dataset.kg
        if kg is None:
            raise ValueError(f"dataset {dataset.name!r} has no knowledge graph")
        self.dataset, self.kg = dataset, kg
        self._rel = {str(r): k for k, r in enumerate(kg.relation_ids)}
        order = np.lexsort((kg.triples[:, 1], kg.triples[:, 0]))
        self._t = kg.triples[order]

    def tails(self, entity: int, relation: str) -> set[int]:
        r = self._rel.get(relation)
        if r is None or entity < 0:
            return set()
        t = self._t
        lo, hi = np.searchsorted(t[:, 0], [entity, entity + 1])
        block = t[lo:hi]
        return set(block[block[:, 1] == r, 2].tolist())

    def check(self, item: int, other: int, phrase: str) -> Verdict:
        """Verdict on "``item``: ``phrase``" where ``phrase`` names history item ``other``."""
        title = str(self.dataset.titles()[other])
        for pattern, relation in CLAIMS:
            m = re.fullmatch(pattern, phrase)
            if m is None:
                continue
            if m.group("t") != title:
                return Verdict(item, other, phrase, relation, "unreadable")
            return Verdict(item, other, phrase, relation, self._verdict(item, other, relation))
        return Verdict(item, other, phrase, "", "unreadable")

    def _verdict(self, item: int, other: int, relation: str) -> str:
        a, b = int(self.kg.item_entity[item]), int(self.kg.item_entity[other])
        if a < 0 or b < 0:
            return "unsupported"
        if relation in ("sequel", "prequel"):
            # "a is a sequel to b" <=> (b, sequel, a) or (a, prequel, b)
            first, second = (b, a) if relation == "sequel" else (a, b)
            right = (second in self.tails(first, "film.film.sequel")
                     or first in self.tails(second, "film.film.prequel"))
            wrong = (first in self.tails(second, "film.film.sequel")
                     or second in self.tails(first, "film.film.prequel"))
            return "supported" if right and not wrong else "contradicted"
        ta, tb = self.tails(a, relation), self.tails(b, relation)
        if ta & tb:
            return "supported"
        return "contradicted" if ta and tb else "unsupported"


def sample_kg_sentences(model: Any, ds: Dataset, n: int = 100, k: int = 10, seed: int = 0,
                        per_user: int = 2) -> tuple[list[dict], int]:
    """Up to ``n`` explainer sentences that carry a KG relation, each with its claims' verdicts.

    Users are taken in the order of ``numpy.random.default_rng(seed).permutation``; for each,
    ``model`` recommends the top-``k`` (seen items excluded) and the first ``per_user``
    explanations with a relation are kept. Returns (rows, number of users read).
    """
    from m6rec.explain.explanation import Explainer

    explainer, checker = Explainer(model, ds), KGChecker(ds)
    out: list[dict] = []
    users = np.random.default_rng(seed).permutation(ds.n_users)
    read = 0
    for u in users.tolist():
        if len(out) >= n:
            break
        read += 1
        h = ds.histories(np.array([u]))
        ids, _ = model.recommend(h, k=k)
        kept = 0
        for ex in explainer.explain(h.row(0), ids[0]):
            if not ex.relations or len(out) >= n or kept >= per_user:
                continue
            kept += 1
            item = ds.item_index(ex.item_id)
            checks = [checker.check(item, ds.item_index(r["item_id"]), r["phrase"])
                      for r in ex.relations]
            out.append({"user_id": str(ds.user_ids[u]), "item_id": ex.item_id,
                        "title": ex.title, "sentence": ex.sentence,
                        "claims": [{"phrase": c.phrase, "relation": c.relation,
                                    "other_item_id": str(ds.item_ids[c.other]),
                                    "verdict": c.verdict} for c in checks],
                        "in_sentence": all(r["phrase"] in ex.sentence for r in ex.relations)})
    return out, read
