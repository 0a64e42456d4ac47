"""Update policies: when and how a serving model learns from new events.

A policy spec is a short string (the ``--policy`` of ``m6rec replay``):

- ``static``: the weights are never updated (the model still reads each user's *current*
  history at query time, as the service does);
- ``foldin`` / ``foldin:N``: every ``N`` new events (default 1000) fold them into the model
  without retraining (`m6rec.online.foldin`);
- ``finetune:N``: every ``N`` new events, a few gradient steps from the current weights on the
  recent events mixed with a replay buffer of older data (`m6rec.online.finetune`).
"""

from __future__ import annotations

from dataclasses import dataclass

KINDS = ("static", "foldin", "finetune")
DEFAULT_EVERY = 1000


@dataclass(frozen=True)
class Policy:
    """A parsed update policy.

    Attributes
    ----------
    kind : {"static", "foldin", "finetune"}
    every : int
        New events between two updates (0 for ``static``).
    """

    kind: str
    every: int = 0

    def __str__(self) -> str:
        return self.kind if self.kind == "static" else f"{self.kind}:{self.every}"

    @property
    def updates(self) -> bool:
        return self.kind != "static"


def parse_policy(spec: str | Policy) -> Policy:
    """``"static"`` | ``"foldin[:N]"`` | ``"finetune[:N]"`` -> `Policy` (ValueError otherwise)."""
    if isinstance(spec, Policy):
        return spec
    text = str(spec).strip().lower()
    kind, _, arg = text.partition(":")
    if kind not in KINDS:
        raise ValueError(f"policy {spec!r}: expected static, foldin[:N] or finetune[:N] "
                         "(N = new events between updates)")
    if kind == "static":
        if arg:
            raise ValueError(f"policy {spec!r}: static takes no argument")
        return Policy("static", 0)
    if not arg:
        return Policy(kind, DEFAULT_EVERY)
    try:
        every = int(arg)
    except ValueError:
        raise ValueError(f"policy {spec!r}: N must be a positive integer, got {arg!r}") from None
    if every < 1:
        raise ValueError(f"policy {spec!r}: N must be a positive integer, got {every}")
    return Policy(kind, every)
