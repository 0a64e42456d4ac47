"""Fine-tuning of the sequential models (``sasrec``, ``gru4rec``, ``m6``) on recent events.

A few gradient steps from the current weights, on a copy (the serving model is never touched).
Each step's batch mixes *recent* windows (the newest training window of every user with new
events: the window whose last target is their newest event) with *replay* windows drawn
uniformly from all users' training windows, so the model does not forget older data
(experience replay, as in continual learning for recommenders: e.g. Mi et al., "ADER:
Adaptively Distilled Exemplar Replay Towards Continual Learning for Session-based
Recommendation", RecSys 2020). Same loss as ``fit`` (full-softmax cross-entropy, or sampled
beyond 20,000 items).

For ``m6``, items that have interactions now are marked seen, so their ID part starts to count
(and is trained) — an item posted with text is scored from its text until then.
"""

from __future__ import annotations

import numpy as np

from m6rec.data.dataset import Dataset
from m6rec.models.base import Recommender
from m6rec.online.foldin import clone


def finetune(model: Recommender, dataset: Dataset, users: np.ndarray, *, steps: int = 10,
             replay: float = 0.5, lr_scale: float = 1.0, batch_size: int | None = None,
             random_state: int = 0) -> Recommender:
    """A copy of ``model`` fine-tuned on the newest events of ``users``.

    Parameters
    ----------
    model : SequentialRecommender
        Fitted; left unchanged.
    dataset : Dataset
        Every event known now (old and new), over the model's catalogue.
    users : int array
        Users with new events.
    steps : int
        Optimiser steps (Adam, fresh state).
    replay : float in [0, 1)
        Share of each batch drawn from all users' windows (the replay buffer).
    lr_scale : float
        Learning rate = the model's ``lr`` times this.
    batch_size : int, optional
        Windows per step (default: the model's ``batch_size``).
    random_state : int
        Seeds the window sampling and dropout.

    Returns
    -------
    The fine-tuned copy.
    """
    import torch

    from m6rec.models.sequential import SequentialRecommender
    from m6rec.train.loop import seeded
    from m6rec.train.losses import N_NEGATIVES, FullSoftmaxCE, choose_loss, sampled_softmax_ce

    if not isinstance(model, SequentialRecommender):
        raise ValueError(f"finetune applies to sequential models (sasrec, gru4rec, m6), not "
                         f"{model.name!r}: use the foldin policy")
    if int(steps) != steps or steps < 1:
        raise ValueError(f"steps must be an integer >= 1, got {steps!r}")
    if not 0.0 <= replay < 1.0:
        raise ValueError(f"replay must be in [0, 1), got {replay!r}")
    if dataset.n_items != model.n_items_:
        raise ValueError(f"dataset has {dataset.n_items} items, the model {model.n_items_}: "
                         "add items with Updater.add_items first")
    new = clone(model)
    new.n_users_ = dataset.n_users
    module = new.module_
    device = next(module.parameters()).device
    if hasattr(new, "item_seen_"):  # m6: items with interactions now use their ID part
        seen = np.asarray(new.item_seen_, bool) | (dataset.item_counts() > 0)
        new.item_seen_ = seen
        module.item_seen = torch.as_tensor(seen, device=device)

    users = np.unique(np.asarray(users, dtype=np.int64))
    recent = new.training_windows(dataset.histories(users), newest_only=True)
    old = new.training_windows(dataset.histories())
    if not recent[2].any():
        return new
    bs = int(batch_size or model.batch_size)
    n_replay = int(round(bs * replay)) if old[2].any() else 0
    n_recent = bs - n_replay
    kind = choose_loss(model.loss, new.n_items_)
    ce = FullSoftmaxCE()
    rng = np.random.default_rng(random_state)

    def pick(w, idx):
        items, targets, mask, extras = w
        return (items[idx], targets[idx], mask[idx], {k: v[idx] for k, v in extras.items()})

    params = [p for p in module.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=float(model.lr) * lr_scale)
    with seeded(random_state, device) as gen:
        module.train()
        for _ in range(int(steps)):
            parts = [pick(recent, rng.integers(0, len(recent[0]), n_recent))]
            if n_replay:
                parts.append(pick(old, rng.integers(0, len(old[0]), n_replay)))
            x = torch.as_tensor(np.concatenate([p[0] for p in parts]), device=device)
            y = torch.as_tensor(np.concatenate([p[1] for p in parts]), device=device)
            m = torch.as_tensor(np.concatenate([p[2] for p in parts]), device=device)
            ex = {k: torch.as_tensor(np.concatenate([p[3][k] for p in parts]), device=device)
                  for k in parts[0][3]}
            if not m.any():
                continue
            h = module.encode(x, m, ex)[m]
            if kind == "ce":
                loss = ce(h, y[m], module.item_table())
            else:
                loss = sampled_softmax_ce(h, y[m], module.item_table(), N_NEGATIVES,
                                          generator=gen)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    module.eval()
    return new
