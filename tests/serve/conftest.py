"""Service fixtures: a tiny two-topic catalogue on disk and small models trained on it once.

Space items have titles about galaxies and rockets, kitchen items about recipes and baking;
every user sticks to one topic. A text model (m6 on the hashing encoder, text only) then places
a new item by its words, and an ID model (EASE) covers the non-text path.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

SPACE = ["galaxy rocket voyage", "rocket launch to mars", "galaxy far away stars",
         "stars and planets odyssey", "mars colony rocket", "planets beyond the galaxy",
         "space station stars", "voyage to the planets"]
KITCHEN = ["baking bread recipes", "pasta recipes kitchen", "kitchen cake baking",
           "soup recipes at home", "bread and cake kitchen", "recipes for pasta soup",
           "home baking cake", "kitchen soup bread"]


def write_topics(folder, n_users: int = 40, length: int = 6, seed: int = 0):
    rng = np.random.default_rng(seed)
    items = [(f"s{k}", t, "Sci-Fi") for k, t in enumerate(SPACE)] + [
        (f"k{k}", t, "Cooking") for k, t in enumerate(KITCHEN)]
    rows = []
    for u in range(n_users):
        prefix, n = ("s", len(SPACE)) if u % 2 == 0 else ("k", len(KITCHEN))
        for t, k in enumerate(rng.choice(n, size=length, replace=False)):
            rows.append((f"u{u}", f"{prefix}{k}", 1_000_000 + 60 * t))
    folder.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"]).to_csv(
        folder / "interactions.csv", index=False)
    pd.DataFrame(items, columns=["item_id", "title", "genres"]).to_csv(
        folder / "items.csv", index=False)
    pd.DataFrame({"user_id": [f"u{u}" for u in range(n_users)],
                  "occupation": ["astronomer" if u % 2 == 0 else "chef"
                                 for u in range(n_users)]}).to_csv(folder / "users.csv",
                                                                     index=False)
    return folder


# the Transformer tower without the teacher and long-term term: the service's behaviour tests
# were tuned on it (the default GRU tower against an extended catalogue: tests/models/test_m6.py)
M6_FAST = {"encoder": "hashing:64", "text_only": True, "hidden": 32, "inner": 64,
           "max_len": 10, "epochs": 15, "patience": 15, "lr": 5e-3, "dropout": 0.0,
           "device": "cpu", "tower": "transformer", "n_layers": 2, "teacher_weight": 0.0,
           "long_term": 0}


def train_dir(data_dir, out, name: str, **params):
    from m6rec.data import load_dataset
    from m6rec.models.io import save_model_dir
    from m6rec.registry import build_model

    ds = load_dataset(data_dir)
    model = build_model(name, **params).fit(ds)
    return save_model_dir(model, out, ds, data_spec=str(data_dir), protocol="all")


@pytest.fixture(scope="session")
def topics_dir(tmp_path_factory):
    return write_topics(tmp_path_factory.mktemp("topics") / "topics")


@pytest.fixture(scope="session")
def m6_dir(topics_dir, tmp_path_factory):
    import torch

    torch.set_num_threads(1)
    return train_dir(topics_dir, tmp_path_factory.mktemp("m6") / "model", "m6", **M6_FAST)


@pytest.fixture(scope="session")
def m6_id_dir(topics_dir, tmp_path_factory):
    """m6 with ID embeddings (the default's item side): posted items have no ID part."""
    import torch

    torch.set_num_threads(1)
    return train_dir(topics_dir, tmp_path_factory.mktemp("m6id") / "model", "m6",
                     **{**M6_FAST, "text_only": False})


@pytest.fixture(scope="session")
def ease_dir(topics_dir, tmp_path_factory):
    return train_dir(topics_dir, tmp_path_factory.mktemp("ease") / "model", "ease")


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LiveServer:
    """``m6rec serve`` in a child process on 127.0.0.1 (stopped by ``stop`` / the context)."""

    free_port = staticmethod(free_port)  # for subclasses in test modules (no conftest import)

    def __init__(self, model_dir, db: str, api_key: str = "secret", timeout: float = 90.0):
        import os
        import subprocess
        import sys

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.api_key = api_key
        env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "m6rec.cli", "serve", "--model-dir", str(model_dir),
             "--db", db, "--port", str(self.port), "--api-key", api_key],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self._wait(timeout)

    def _wait(self, timeout: float) -> None:
        import time

        import httpx

        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.proc.stderr.read().decode()[-2000:]}")
            try:
                if httpx.get(self.url + "/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"server did not answer /health within {timeout} s")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except Exception:  # noqa: BLE001
                self.proc.kill()
                self.proc.wait(10)

    def __enter__(self) -> LiveServer:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


@pytest.fixture(scope="session")
def live_server():
    """The `LiveServer` class (tests start it with their own model and database)."""
    return LiveServer
