"""Explanations that name what actually raised a recommended item's score."""

from m6rec.explain.contributions import explain_items, history_contributions

__all__ = ["explain_items", "history_contributions"]
