"""Knowledge distillation from an EASE teacher: its next-item distribution at every training
position, used as soft targets of the full-softmax loss (`m6rec.train.losses.full_softmax_ce`
with ``soft=``), i.e. ``weight * KL(teacher || model)`` up to a constant.

EASE (Steck, WWW 2019) sees the whole history order-free, item by item, which a sequence tower
over the newest items misses (a score fusion of the two beats either); distilled, the student
learns that view in training and scores alone, with no teacher at serving time.
"""

from __future__ import annotations

import torch

#: temperature of the teacher's softmax (EASE scores are ~0.01-1; 0.1 lost on ml-100k)
TEMPERATURE = 0.05
#: EASE's L2 weight (RecBole's default; 500 with recency weights was no better a teacher)
REG = 250.0
#: older items (before the training window) the teacher reads, at least
CONTEXT = 200


def ease_teacher(weights: torch.Tensor, items: torch.Tensor, mask: torch.Tensor,
                 older: torch.Tensor | None, rows: torch.Tensor, scale: float,
                 temperature: float = TEMPERATURE) -> torch.Tensor:
    """An EASE teacher's next-item distribution times ``scale`` [N, n] at the positions
    ``rows`` [B, L] (a subset of ``mask``) of right-aligned windows ``items`` [B, L].

    EASE (item-item ``weights`` [n + 1, n], the last row zero for pads) reads the user's
    history up to each position: the window's items so far and the ``older`` ones before the
    window [B, C] (pads -1); its score is the sum of the history items' rows and the
    distribution ``softmax(score / temperature)`` over the items not in that history (a
    history of the whole catalogue gets none)."""
    n = weights.shape[1]
    with torch.no_grad():
        r = torch.where(mask, items, n)
        s = weights.new_zeros(len(r), n)
        if older is not None:  # the older items' rows, summed by a matmul of their counts
            o = torch.where(older >= 0, older, n)
            counts = torch.zeros(len(o), n + 1, device=o.device, dtype=weights.dtype)
            counts.scatter_add_(1, o, torch.ones(o.shape, device=o.device, dtype=weights.dtype))
            s = counts @ weights
        steps = []  # s_t = s_{t-1} + B[r_t]; pads (left) leave s as it is
        for j in range(r.shape[1]):
            s = torch.where(mask[:, j, None], s + weights[r[:, j]], s)
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
