"""``reid_engine.scoring.pairs``: matching and scoring shortlisted pairs."""

from __future__ import annotations

import numpy as np

from reid_engine.records import LocalFeatures
from reid_engine.registry import PluginTable
from reid_engine.scoring.pairs import match_and_score


def _features(rng, n=60, base=None):
    desc = rng.normal(size=(n, 32)).astype(np.float32) if base is None else base.desc + rng.normal(
        scale=0.05, size=base.desc.shape).astype(np.float32)
    kpts = rng.uniform(0, 200, (n, 2)).astype(np.float32) if base is None else base.kpts + 3.0
    return LocalFeatures(kpts, desc / np.linalg.norm(desc, axis=1, keepdims=True), np.ones(n, np.float32), None,
                         (240, 240))


def test_pairs_scored_side_by_side_score_as_one_at_a_time():
    rng = np.random.default_rng(1)
    table = PluginTable.discover()
    matcher = table.get("matcher", "mnn").build(table.get("matcher", "mnn").make_config({"ratio": 0.95}), "cpu")
    scorer = table.get("scorer", "ransac-inliers").build(table.get("scorer", "ransac-inliers").make_config({}), "cpu")
    firsts = [_features(rng) for _ in range(9)]
    seconds = [_features(rng, base=f) if i % 2 else _features(rng) for i, f in enumerate(firsts)]
    calls = []

    def score(i, matches):
        calls.append(i)
        return scorer.score(firsts[i], seconds[i], matches)

    one = match_and_score(matcher, firsts, seconds, score, workers=1)
    two = match_and_score(matcher, firsts, seconds, score, workers=2)
    assert one == two and sorted(calls) == sorted(list(range(9)) * 2)
    assert all(one[i] > 20 for i in range(1, 9, 2)) and all(one[i] < 10 for i in range(0, 9, 2))
