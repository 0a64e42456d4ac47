"""Next-item losses over a catalogue.

- `full_softmax_ce`: cross-entropy over every item (the strong SASRec / GRU4Rec training
  objective of Klenitskiy & Vasilev, "Turning Dross Into Gold Loss: is BERT4Rec really better
  than SASRec?", RecSys 2023).
- `sampled_softmax_ce`: InfoNCE over the mini-batch's own targets (in-batch negatives) plus
  ``n_negatives`` items drawn uniformly, with a temperature, for catalogues too large for the full
  softmax. Accidental hits (a candidate equal to the row's target) are masked; no logQ
  correction is applied.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

LOSSES = ("auto", "ce", "sampled")


def full_softmax_ce(hidden: torch.Tensor, targets: torch.Tensor, item_table: torch.Tensor,
                    temperature: float = 1.0,
                    exclude: tuple[torch.Tensor, torch.Tensor] | None = None,
                    soft: torch.Tensor | None = None) -> torch.Tensor:
    """Mean CE of ``hidden`` [N, d] against every row of ``item_table`` [n_items, d];
    ``targets`` [N] int64 item indices. ``exclude = (rows, items)`` drops those (row, item)
    logits from the softmax (e.g. items the row's user already saw: they are never
    recommended, so they should not compete with the target); a row's own target is never
    dropped. ``soft`` [N, n_items] (>= 0) adds soft targets (e.g. a teacher's distribution
    times a distillation weight): each row's loss gains ``sum_i soft_i * -log softmax_i``;
    an excluded item must have no soft weight.

    Same value and gradients as ``F.cross_entropy(hidden @ item_table.T / temperature,
    targets)``; the softmax and its gradient are computed in place in the one [N, n_items]
    logits buffer. `FullSoftmaxCE` also keeps that buffer between calls."""
    return FullSoftmaxCE(keep_buffer=False)(hidden, targets, item_table, temperature, exclude,
                                            soft)


class FullSoftmaxCE:
    """`full_softmax_ce` as a callable that reuses its [N, n_items] logits buffer from one
    training step to the next (allocating tens of MB per step costs page faults that can exceed
    the softmax itself on CPU). A call made while the previous graph's backward has not run
    yet gets a fresh buffer, so results never depend on the reuse."""

    def __init__(self, keep_buffer: bool = True):
        self.keep_buffer = keep_buffer
        self._buffer: torch.Tensor | None = None
        self._busy = False

    def __call__(self, hidden: torch.Tensor, targets: torch.Tensor, item_table: torch.Tensor,
                 temperature: float = 1.0,
                 exclude: tuple[torch.Tensor, torch.Tensor] | None = None,
                 soft: torch.Tensor | None = None) -> torch.Tensor:
        if temperature != 1.0:
            hidden = hidden / temperature
        if exclude is not None:
            rows, cols = exclude
            keep = cols != targets[rows]
            exclude = (rows[keep], cols[keep])
        return _FullSoftmaxCE.apply(hidden, item_table, targets, self, exclude, soft)

    def _acquire(self, n: int, like: torch.Tensor) -> tuple[torch.Tensor, bool]:
        buf = self._buffer
        if self._busy or not self.keep_buffer:
            return torch.empty(n, dtype=like.dtype, device=like.device), False
        if buf is None or buf.numel() < n or buf.dtype != like.dtype or buf.device != like.device:
            buf = self._buffer = torch.empty(n, dtype=like.dtype, device=like.device)
        self._busy = True
        return buf[:n], True

    def _release(self) -> None:
        self._busy = False


class _FullSoftmaxCE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden, table, targets, owner, exclude, soft):
        n, m = hidden.shape[0], table.shape[0]
        flat, shared = owner._acquire(n * m, hidden)
        z = torch.mm(hidden, table.T, out=flat.view(n, m))
        picked = z.gather(1, targets[:, None])[:, 0]
        mass = 1.0  # the targets' total weight per row
        if soft is not None:  # soft targets: sum_i w_i * (lse - z_i); rows dotted by a bmm
            mass = 1.0 + soft.sum(1)  # (no [N, n] temporary), before excluded logits are -inf
            picked = picked + torch.bmm(soft[:, None, :], z[:, :, None]).view(-1)
        if exclude is not None:  # exp(-inf) = 0: no probability, no gradient
            z.index_put_(exclude, z.new_tensor(float("-inf")))
        top = z.amax(dim=1)
        z.sub_(top[:, None]).exp_()  # z = exp(logits - max), in place
        total = z.sum(dim=1)
        loss = (mass * (top + total.log()) - picked).mean()
        ctx.save_for_backward(hidden, table, targets, total)
        ctx.z, ctx.owner, ctx.shared, ctx.soft = z, owner, shared, soft
        return loss

    @staticmethod
    def backward(ctx, grad):
        hidden, table, targets, total = ctx.saved_tensors
        p = ctx.z.div_(total[:, None])  # softmax, in place
        if ctx.soft is not None:  # d/dz of sum_i w_i (lse - z_i) = (sum_i w_i) p - w
            p.mul_(1.0 + ctx.soft.sum(1)[:, None]).sub_(ctx.soft)
        p[torch.arange(len(targets), device=p.device), targets] -= 1.0
        scale = grad / len(targets)
        grad_hidden = (p @ table) * scale if ctx.needs_input_grad[0] else None
        grad_table = (p.T @ hidden) * scale if ctx.needs_input_grad[1] else None
        ctx.z = ctx.soft = None
        if ctx.shared:
            ctx.owner._release()
        return grad_hidden, grad_table, None, None, None, None


def sampled_softmax_ce(hidden: torch.Tensor, targets: torch.Tensor, item_table: torch.Tensor,
                       n_negatives: int = 256, temperature: float = 1.0,
                       generator: torch.Generator | None = None,
                       negatives: torch.Tensor | None = None) -> torch.Tensor:
    """Mean InfoNCE of ``hidden`` [N, d] with candidates = the unique ``targets`` of the batch
    plus ``n_negatives`` uniform draws from ``item_table`` [n_items, d] (``generator`` on the
    CPU), or the rows ``negatives`` of the table drawn by the caller."""
    n_items = item_table.shape[0]
    uniq, label = torch.unique(targets, return_inverse=True)
    neg = negatives if negatives is not None else torch.randint(
        0, n_items, (int(n_negatives),), generator=generator).to(targets.device)
    cand = torch.cat([uniq, neg])
    logits = (hidden @ item_table[cand].T) / temperature
    hit = neg[None, :] == targets[:, None]  # a uniform draw that is this row's positive
    mask = torch.cat([torch.zeros(len(targets), len(uniq), dtype=torch.bool,
                                  device=targets.device), hit], dim=1)
    logits = logits.masked_fill(mask, float("-inf"))
    return F.cross_entropy(logits, label)


#: the largest catalogue ``loss="auto"`` trains with the full softmax
CE_MAX_ITEMS = 20000
#: uniform negatives per step of the sampled softmax
N_NEGATIVES = 256


def choose_loss(loss: str, n_items: int, ce_max_items: int = CE_MAX_ITEMS) -> str:
    """Resolve ``"auto"``: the full softmax up to ``ce_max_items`` items, sampled beyond."""
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {', '.join(LOSSES)}, got {loss!r}")
    if loss == "auto":
        return "ce" if n_items <= ce_max_items else "sampled"
    return loss
