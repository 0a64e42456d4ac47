"""`train_epochs`'s moving average of the weights: the average is what validation reads and what
the fitted module ends with, while the steps keep training the raw weights."""

from __future__ import annotations

import torch
from torch import nn

from m6rec.train.loop import train_epochs


def _problem():
    torch.manual_seed(0)
    x, y = torch.randn(64, 3), torch.randn(64, 1)
    module = nn.Linear(3, 1)
    return module, x, y


def _run(ema, validate_log=None, epochs=3):
    module, x, y = _problem()
    opt = torch.optim.SGD(module.parameters(), lr=0.1)

    def step(idx):
        return ((module(x[idx]) - y[idx]) ** 2).mean()

    def validate():
        if validate_log is not None:
            validate_log.append([p.detach().clone() for p in module.parameters()])
        with torch.no_grad():
            return -float(((module(x) - y) ** 2).mean())

    gen = torch.Generator().manual_seed(1)
    res = train_epochs(module, opt, step, len(x), epochs=epochs, batch_size=16, generator=gen,
                       validate=validate, patience=100, ema=ema)
    return module, res


def _reference(ema, epochs=3):
    """The same SGD steps by hand, with the average kept beside them."""
    module, x, y = _problem()
    opt = torch.optim.SGD(module.parameters(), lr=0.1)
    avg = [p.detach().clone() for p in module.parameters()]
    gen = torch.Generator().manual_seed(1)
    n, per_epoch = 0, []
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=gen)
        for b in range(4):
            idx = order[b * 16:(b + 1) * 16]
            opt.zero_grad()
            ((module(x[idx]) - y[idx]) ** 2).mean().backward()
            opt.step()
            n += 1
            d = min(ema, (1 + n) / (10 + n))
            for a, p in zip(avg, module.parameters(), strict=True):
                a.mul_(d).add_(p.detach(), alpha=1 - d)
        per_epoch.append(([a.clone() for a in avg],
                          [p.detach().clone() for p in module.parameters()]))
    return per_epoch


def test_validation_and_the_result_use_the_average_training_the_raw_weights():
    seen = []
    module, res = _run(0.9, seen)
    ref = _reference(0.9)
    assert len(seen) == 3
    for got, (avg, raw) in zip(seen, ref, strict=True):
        for g, a, r in zip(got, avg, raw, strict=True):
            torch.testing.assert_close(g, a)
            assert not torch.allclose(a, r)  # the average is not the raw weights
    # the kept weights are the best validation's average
    best = ref[res.best_epoch - 1][0]
    for p, a in zip(module.parameters(), best, strict=True):
        torch.testing.assert_close(p.detach(), a)


def test_without_an_average_validation_reads_the_raw_weights():
    seen = []
    _run(None, seen)
    ref = _reference(0.9)
    for got, (_, raw) in zip(seen, ref, strict=True):
        for g, r in zip(got, raw, strict=True):
            torch.testing.assert_close(g, r)


def test_without_validation_the_average_is_returned():
    module, x, y = _problem()
    opt = torch.optim.SGD(module.parameters(), lr=0.1)
    gen = torch.Generator().manual_seed(1)
    train_epochs(module, opt, lambda idx: ((module(x[idx]) - y[idx]) ** 2).mean(), len(x),
                 epochs=3, batch_size=16, generator=gen, ema=0.9)
    avg, _ = _reference(0.9)[-1]
    for p, a in zip(module.parameters(), avg, strict=True):
        torch.testing.assert_close(p.detach(), a)
