"""The training-loop hooks used by Ray DDP and the GPU path, and the message without Ray."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from m6rec.cli import app
from m6rec.distributed import INSTALL_HINT, RayNotInstalled, require_ray
from m6rec.registry import build_model
from m6rec.train.loop import data_parallel, mixed_precision

SASREC = {"hidden": 16, "inner": 16, "epochs": 20, "lr": 1e-2, "batch_size": 32}


class HalfShards:
    """A one-process stand-in for a 2-worker context: keeps every other row of each batch."""

    def __init__(self):
        self.shards, self.means, self.wrapped = [], [], 0

    def wrap(self, module, step, validate):
        self.wrapped += 1
        return step, validate

    def shard(self, idx):
        self.shards.append((len(idx), len(idx[0::2])))
        return idx[0::2]

    def mean(self, value):
        self.means.append(value)
        return value


def test_data_parallel_context_shards_every_batch(checkerboard):
    ctx = HalfShards()
    with data_parallel(ctx):
        model = build_model("sasrec", **{**SASREC, "epochs": 3}).fit(checkerboard)
    n_windows = len(model.training_windows(checkerboard.histories())[0])
    per_epoch = -(-n_windows // 32)
    assert ctx.wrapped == 1 and len(ctx.shards) == 3 * per_epoch and len(ctx.means) == 3
    assert sum(full for full, _ in ctx.shards[:per_epoch]) == n_windows
    assert all(half == -(-full // 2) for full, half in ctx.shards)
    plain = build_model("sasrec", **{**SASREC, "epochs": 3}).fit(checkerboard)  # context gone
    assert len(ctx.shards) == 3 * per_epoch and plain.history_ != model.history_


def test_bf16_autocast_training_still_learns(checkerboard):
    with mixed_precision("bf16"):
        model = build_model("sasrec", **SASREC).fit(checkerboard)
    ids, _ = model.recommend(checkerboard.histories(), k=1)
    assert np.mean(ids[:, 0] == np.arange(checkerboard.n_users)) >= 0.9
    assert next(model.module_.parameters()).dtype == torch.float32
    with pytest.raises(ValueError, match="bf16 or None"):
        with mixed_precision("fp16"):
            pass


def test_without_ray_the_flag_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    with pytest.raises(RayNotInstalled, match="m6rec\\[ray\\]"):
        require_ray()
    res = CliRunner().invoke(app, ["encode", "--data", "ml-100k", "--encoder", "hashing:16",
                                   "--ray"])
    assert res.exit_code == 2 and INSTALL_HINT in res.output
