"""Ray Data encoding and batch top-k, and Ray Train DDP, on a local Ray with 2 CPUs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from m6rec.distributed.batch import batch_recommend
from m6rec.distributed.encode import catalogue_texts, encode_catalogue
from m6rec.registry import build_model

ray = pytest.importorskip("ray")

SASREC = {"hidden": 16, "inner": 16, "epochs": 30, "lr": 1e-2, "batch_size": 32,
          "random_state": 3}


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def test_ray_encode_writes_the_single_process_cache(local_ray, checkerboard, tmp_path):
    from m6rec.text import EncodingCache, get_encoder

    cache = EncodingCache(tmp_path / "ray")
    got = encode_catalogue(checkerboard, "hashing:32", ray=True, workers=2, cache=cache)
    texts = catalogue_texts(checkerboard)
    assert got["misses"] == len(texts) and got["encoded"] == len(set(texts)) and got["dim"] == 32
    again = encode_catalogue(checkerboard, "hashing:32", ray=False, cache=cache)
    assert again["hits"] == len(texts) and again["encoded"] == 0
    vecs, found = cache.get(get_encoder("hashing:32").name, texts)
    assert found.all()
    assert np.allclose(vecs, get_encoder("hashing:32").encode(texts), atol=1e-6)
    single = EncodingCache(tmp_path / "single")
    encode_catalogue(checkerboard, "hashing:32", ray=False, cache=single)
    assert np.array_equal(single.get(get_encoder("hashing:32").name, texts)[0], vecs)


@pytest.mark.parametrize("name,params", [("ease", {}), ("sasrec", SASREC)])
def test_ray_batch_recommend_equals_single_process(local_ray, checkerboard, name, params):
    model = build_model(name, **params).fit(checkerboard)
    single = batch_recommend(model, checkerboard, k=5, chunk=7)
    on_ray = batch_recommend(model, checkerboard, k=5, ray=True, workers=2, chunk=7)
    assert len(single) == 5 * checkerboard.n_users
    assert list(single.columns) == ["user_id", "rank", "item_id", "score"]
    pd.testing.assert_frame_equal(single, on_ray, check_exact=True)
    # the checkerboard's withheld item u comes first for user u
    first = single[single["rank"] == 1]
    assert (first["item_id"].str[1:] == first["user_id"].str[1:]).mean() >= 0.9


def test_ray_ddp_training_learns_like_one_process(local_ray, checkerboard):
    from m6rec.distributed.train import fit_distributed
    from m6rec.eval.evaluate import evaluate
    from m6rec.eval.protocols import make_split

    split = make_split(checkerboard, "loo")
    params = {**SASREC, "epochs": 20, "patience": 20}
    ddp = fit_distributed(build_model("sasrec", **params), split.train, split.valid, workers=2)
    one = build_model("sasrec", **params).fit(split.train, valid=split.valid)
    assert ddp.name == "sasrec" and len(ddp.history_) == len(one.history_) == 20
    assert ddp.history_[-1]["loss"] < ddp.history_[0]["loss"]
    got = evaluate(ddp, split.test, ks=(10,), metrics=("ndcg",), beyond_accuracy=False)
    ref = evaluate(one, split.test, ks=(10,), metrics=("ndcg",), beyond_accuracy=False)
    assert got["ndcg@10"] >= 0.5 and abs(got["ndcg@10"] - ref["ndcg@10"]) <= 0.15
    ids, _ = ddp.recommend(split.train.histories(np.arange(4)), k=3)
    assert ids.shape == (4, 3)
