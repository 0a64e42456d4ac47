"""Explanations that name what actually raised a recommended item's score."""

from m6rec.explain.contributions import explain_items, history_contributions
from m6rec.explain.explanation import Explainer, Explanation, explain, sentence
from m6rec.explain.kg_relations import KGRelations, Relation

__all__ = ["Explainer", "Explanation", "KGRelations", "Relation", "explain", "explain_items",
           "history_contributions", "sentence"]
