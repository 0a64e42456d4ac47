"""Mult-VAE: a variational autoencoder over each user's bag of items, multinomial likelihood.

Reference: D. Liang, R. G. Krishnan, M. D. Hoffman, T. Jebara, "Variational Autoencoders for
Collaborative Filtering", WWW 2018 (https://arxiv.org/abs/1802.05814); RecBole's ``MultiVAE``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from m6rec.data.dataset import Dataset
from m6rec.data.histories import Histories
from m6rec.models.base import Recommender
from m6rec.models.sequential import _require
from m6rec.train.evalset import EvalSet
from m6rec.train.params import set_train_params, shared


class MultVAE(Recommender):
    """Encoder ``n_items -> hidden -> 2 x latent`` (tanh), decoder ``latent -> hidden ->
    n_items``; the input is the L2-normalised binary history with dropout; loss = multinomial
    negative log-likelihood + beta * KL, beta annealed linearly from 0 to ``anneal_cap`` over
    ``total_anneal_steps`` updates.

    Scoring folds the query history in: the decoder's logits at the encoder mean (no sampling,
    no dropout), so any history, known user or not, is scored.

    Parameters
    ----------
    hidden : int
        Width of the hidden layer of encoder and decoder (paper: 600).
    latent : int
        Dimension of the latent code (paper: 200).
    dropout : float
        Dropout on the normalised input (paper: 0.5).
    anneal_cap : float
        Largest KL weight beta.
    total_anneal_steps : int
        Optimiser updates for beta to go from 0 to 1 (then capped at ``anneal_cap``); 0 uses
        ``anneal_cap`` from the start.
    epochs : int
        Most passes over the training users.
    batch_size : int
        Users per update.
    lr, weight_decay : float
        Adam's learning rate and L2 penalty.
    patience : int
        Validations without improvement of NDCG@10 before stopping (best weights restored).
    eval_every : int
        Epochs between validations.
    device : {"auto", "cpu", "cuda"}
    random_state : int
        Seeds initialisation, dropout, the reparameterisation noise and shuffling.
    verbose : bool
        Progress bar and per-epoch log lines.
    """

    name = "multvae"
    uses_validation = True

    train_params = shared(dropout=0.5, epochs=300, batch_size=128, lr=1e-3, patience=20,
                          device="auto", random_state=0, verbose=False)

    def __init__(self, hidden: int = 600, latent: int = 200, anneal_cap: float = 0.2,
                 total_anneal_steps: int = 20000, weight_decay: float = 0.0, eval_every: int = 1,
                 **train: Any):
        self.hidden = hidden
        self.latent = latent
        self.anneal_cap = anneal_cap
        self.total_anneal_steps = total_anneal_steps
        self.weight_decay = weight_decay
        self.eval_every = eval_every
        set_train_params(self, train)

    def _check_params(self) -> None:
        from m6rec.train.loop import resolve_device

        _require(self, ints={"hidden": 1, "latent": 1, "total_anneal_steps": 0, "epochs": 1,
                             "batch_size": 1, "patience": 1, "eval_every": 1},
                 positive=("lr",), non_negative=("weight_decay", "anneal_cap"))
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout!r}")
        resolve_device(self.device)

    def fit(self, dataset: Dataset, valid: EvalSet | None = None) -> MultVAE:
        from m6rec.train.loop import resolve_device, seeded, train_epochs
        from m6rec.train.validation import validation_ndcg

        self._check_params()
        device = resolve_device(self.device)
        self.n_items_, self.n_users_ = dataset.n_items, dataset.n_users
        x = dataset.csr().astype(np.float32)
        users = np.flatnonzero(x.getnnz(axis=1) > 0)  # users with nothing to reconstruct add 0
        if not len(users):
            raise ValueError("the training data has no interactions: nothing to learn")
        validate = None
        if valid is not None and len(valid):
            def validate() -> float:
                return validation_ndcg(self, valid)

        updates = [0]
        with seeded(self.random_state, device) as gen:
            self.module_ = module = self._build().to(device)
            opt = torch.optim.Adam(module.parameters(), lr=self.lr,
                                   weight_decay=self.weight_decay)

            def step(idx: torch.Tensor) -> torch.Tensor:
                batch = torch.as_tensor(x[users[idx.numpy()]].toarray(), device=device)
                logits, mu, logvar = module(batch)
                nll = -(F.log_softmax(logits, dim=1) * batch).sum(1).mean()
                kl = -0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(1).mean()
                updates[0] += 1
                beta = (min(self.anneal_cap, updates[0] / self.total_anneal_steps)
                        if self.total_anneal_steps > 0 else self.anneal_cap)
                return nll + beta * kl

            res = train_epochs(module, opt, step, len(users), epochs=int(self.epochs),
                               batch_size=int(self.batch_size), generator=gen,
                               validate=validate, eval_every=int(self.eval_every),
                               patience=int(self.patience), verbose=self.verbose, desc=self.name)
        self.history_ = res.history
        self.best_epoch_ = res.best_epoch
        return self

    def _build(self) -> MultVAEModule:
        return MultVAEModule(self.n_items_, int(self.hidden), int(self.latent),
                             float(self.dropout))

    def _score_rows(self, histories: Histories) -> np.ndarray:
        module = self.module_
        device = next(module.parameters()).device
        was_training = module.training
        module.eval()
        try:
            with torch.inference_mode():
                h = torch.as_tensor(histories.csr(self.n_items_).toarray(), device=device)
                scores = module.decoder(module.encode(h)[0])
        finally:
            module.train(was_training)
        return scores.float().cpu().numpy()

    def _state(self) -> dict[str, np.ndarray]:
        return {f"module.{k}": v.detach().cpu().numpy()
                for k, v in self.module_.state_dict().items()}

    def _set_state(self, state: dict[str, np.ndarray]) -> None:
        from m6rec.train.loop import resolve_device

        module = self._build()
        module.load_state_dict({k[len("module."):]: torch.from_numpy(np.array(v))
                                for k, v in state.items() if k.startswith("module.")})
        self.module_ = module.to(resolve_device(self.device)).eval()


class MultVAEModule(nn.Module):
    """The network: ``forward(x) -> (logits, mu, logvar)``; ``x`` is the binary history [B, n]."""

    def __init__(self, n_items: int, hidden: int, latent: int, dropout: float):
        super().__init__()
        self.latent = latent
        self.drop = nn.Dropout(dropout)
        self.encoder = nn.Sequential(nn.Linear(n_items, hidden), nn.Tanh(),
                                     nn.Linear(hidden, 2 * latent))
        self.decoder = nn.Sequential(nn.Linear(latent, hidden), nn.Tanh(),
                                     nn.Linear(hidden, n_items))
        for layer in (*self.encoder, *self.decoder):  # the paper's Xavier init, N(0, 0.001) bias
            if isinstance(layer, nn.Linear):
                nn.init.xavier_normal_(layer.weight)
                nn.init.normal_(layer.bias, std=0.001)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mu, logvar) [B, latent] of the normalised, dropped-out input."""
        h = self.encoder(self.drop(F.normalize(x, dim=1)))
        return h[:, :self.latent], h[:, self.latent:]

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        mu, logvar = self.encode(x)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar) if self.training else mu
        return self.decoder(z), mu, logvar
