"""Evaluation holds a bounded score block: user batches shrink as the catalogue grows, and
the results do not depend on the batch size."""

from __future__ import annotations

import numpy as np

from m6rec.eval.evaluate import evaluate
from m6rec.eval.protocols import split_loo
from m6rec.registry import build_model


def _spy(model, seen):
    inner = model._score_rows

    def wrapped(histories):
        out = inner(histories)
        seen.append(out.shape)
        return out

    model._score_rows = wrapped
    return model


def test_batches_hold_at_most_score_block_scores(checkerboard):
    split = split_loo(checkerboard)
    ref = build_model("ease", reg=5.0).fit(split.train)
    want_ids, want_scores = ref.recommend(split.test.histories, k=10)
    want = evaluate(ref, split.test, dataset=split.dataset)

    seen: list[tuple[int, int]] = []
    small = _spy(build_model("ease", reg=5.0).fit(split.train), seen)
    small.score_block = 3 * checkerboard.n_items + 1  # three users per batch
    ids, scores = small.recommend(split.test.histories, k=10)
    np.testing.assert_array_equal(ids, want_ids)
    np.testing.assert_array_equal(scores, want_scores)
    assert seen and max(r for r, _ in seen) == 3
    assert sum(r for r, _ in seen) == len(split.test)
    got = evaluate(small, split.test, dataset=split.dataset)
    assert {k: v for k, v in got.items() if k != "eval_seconds"} == \
        {k: v for k, v in want.items() if k != "eval_seconds"}

    seen.clear()
    small.score_block = 1  # never fewer than one user per batch
    five = split.test.histories.take(slice(0, 5))
    np.testing.assert_array_equal(small.score(five), ref.score(five))
    assert max(r for r, _ in seen) == 1


def test_batch_rows_follow_the_catalogue_size(checkerboard):
    m = build_model("pop").fit(checkerboard)
    assert m._batch_rows() == min(m.batch_size, m.score_block // checkerboard.n_items)
    m.n_items_ = 10**6
    assert m._batch_rows() == m.score_block // 10**6 >= 1
    m.n_items_ = 10**9
    assert m._batch_rows() == 1
