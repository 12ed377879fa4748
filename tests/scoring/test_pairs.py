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


def test_score_pairs_gives_each_pairs_own_scores_with_and_without_distinctiveness(tmp_path):
    """The run defers distinctiveness-weighted scores until every pair is matched; they must be
    each pair's ``weighted_score``, beside a plain pipeline's, with one worker or two; pairs with a
    photo that has no features stay NaN."""
    from reid_engine import threads
    from reid_engine.components import build_components
    from reid_engine.registry.profiles import parse_profile
    from reid_engine.scoring.distinctiveness import fitted, weighted_score
    from reid_engine.scoring.pairs import score_pairs
    from reid_engine.store.database import GalleryDatabase
    from reid_engine.store.features import FeatureCache

    profile = parse_profile({"profile": {"name": "p"}, "pipelines": [
        {"name": "weighted", "extractor": "sift", "matcher": {"plugin": "mnn", "ratio": 0.95},
         "scorer": "ransac-inliers", "distinctiveness": {"per_image": 20, "neighbours": 5}},
        {"name": "plain", "extractor": "sift", "matcher": {"plugin": "mnn", "ratio": 0.95}, "scorer": "match-count"},
    ]}, "p.toml")
    rng = np.random.default_rng(2)
    gallery = [_features(rng) for _ in range(8)]
    identities = [f"ind{i % 4}" for i in range(8)]
    queries = [_features(rng, base=gallery[i]) for i in (1, 2, 5)] + [_features(rng)]
    g_hashes, q_hashes = [f"g{i}".ljust(64, "0") for i in range(8)], [f"q{i}".ljust(64, "0") for i in range(4)]
    index = np.array([[1, 0, 3, 7], [2, 5, 6, 0], [5, 4, 1, 2], [0, 1, 2, 3]])
    found = {}
    for workers in (1, 2):
        threads.configure(workers)
        try:
            components = build_components(profile, PluginTable.discover(), "cpu")
            with GalleryDatabase(tmp_path / f"g{workers}.db") as db:
                cache = FeatureCache(db)
                extractor = components.pipelines[0].extractor
                for h, f in zip(g_hashes, gallery):
                    cache.put(h, extractor, f)
                for h, f in zip(q_hashes[:3], queries[:3]):  # the last query has no features
                    cache.put(h, extractor, f)
                found[workers] = score_pairs(components, cache, index, g_hashes, q_hashes, lambda n: None,
                                             identities)
                model = fitted(cache, extractor, g_hashes, identities, profile.pipelines[0].distinctiveness)
                weighted, plain = components.pipelines
                for qi in range(3):
                    for col, g in enumerate(index[qi]):
                        matches = weighted.matcher.obj.match(queries[qi], gallery[g])
                        expected = weighted_score(weighted.scorer.obj, model, queries[qi], gallery[g], matches,
                                                  model.neighbours(queries[qi].desc), identities[g])
                        assert found[workers]["weighted"][qi, col] == np.float32(expected) or abs(
                            found[workers]["weighted"][qi, col] - expected) < 1e-5
                        assert found[workers]["plain"][qi, col] == plain.scorer.obj.score(
                            queries[qi], gallery[g], plain.matcher.obj.match(queries[qi], gallery[g]))
        finally:
            threads.configure(0)
    for name in ("weighted", "plain"):
        assert np.isnan(found[1][name][3]).all()  # no features: not scored
        assert np.array_equal(found[1][name], found[2][name], equal_nan=True)
    assert found[1]["weighted"][0, 0] > 1.0 and found[1]["weighted"][0, 1] < found[1]["weighted"][0, 0]
