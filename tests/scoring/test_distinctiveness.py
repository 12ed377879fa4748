"""engine/distinctiveness.py: LNBNN-style match weights fitted on the gallery."""

from __future__ import annotations

import numpy as np
import pytest

from reid_engine.records import LocalFeatures, Matches
from reid_engine.registry import ConfigError
from reid_engine.registry.profiles import DistinctivenessSettings, parse_profile
from reid_engine.scoring.distinctiveness import (
    DistinctivenessModel,
    Neighbours,
    counted,
    fit,
    fitted,
    weighted_score,
    weighted_scores,
)
from reid_engine.store.database import GalleryDatabase
from reid_engine.store.features import FeatureCache


def unit(*rows) -> np.ndarray:
    a = np.asarray(rows, np.float32)
    return a / np.linalg.norm(a, axis=1, keepdims=True)


def features(desc: np.ndarray, scores=None) -> LocalFeatures:
    n = len(desc)
    return LocalFeatures(np.zeros((n, 2), np.float32), desc.astype(np.float32),
                         np.ones(n, np.float32) if scores is None else np.asarray(scores, np.float32))


def test_other_skips_the_individual_and_falls_back_to_the_kth_distance():
    nb = Neighbours(np.array([[0.1, 0.2, 0.3], [0.1, 0.2, 0.3]], np.float32), np.array([[0, 0, 1], [0, 0, 0]]))
    np.testing.assert_allclose(nb.other(0), [0.3, 0.3])   # row 2: all three are individual 0 → 3rd distance
    np.testing.assert_allclose(nb.other(1), [0.1, 0.1])


def test_a_match_counts_by_how_much_closer_it_is_than_anyone_else():
    # gallery sample: A has feature e0, B has e1 and a near-copy of e0
    e0, e1, e2 = unit([1, 0, 0]), unit([0, 1, 0]), unit([0, 0, 1])
    near_e0 = unit([1, 0.05, 0])
    model = fit([features(np.vstack([e0, e2])), features(np.vstack([e1, near_e0]))], ["A", "B"],
                DistinctivenessSettings(per_image=8, neighbours=4))
    query = features(np.vstack([e0, e2]))
    neighbours = model.neighbours(query.desc)
    gallery_a = features(np.vstack([e0, e2]))
    matches = Matches(np.array([[0, 0], [1, 1]]), np.ones(2, np.float32))
    w = model.weights(query, gallery_a, matches, neighbours, "A")
    # e0 is nearly B's too (weight ≈ distance to near_e0, small); e2 is A's alone (weight = distance to e1/e0: √2)
    assert w[0] == pytest.approx(np.linalg.norm(e0 - near_e0), abs=1e-5) and w[0] < 0.1
    assert w[1] == pytest.approx(np.sqrt(2), abs=1e-5)
    assert (w >= 0).all()


def test_fit_keeps_the_strongest_features_of_each_image():
    desc = np.eye(6, dtype=np.float32)
    model = fit([features(desc, scores=[0, 5, 1, 4, 2, 3]), None], ["A", "B"], DistinctivenessSettings(per_image=2))
    np.testing.assert_allclose(model.desc, desc[[1, 3]])
    assert model.names == ["A", "B"] and list(model.label) == [0, 0]


def test_weighted_score_sums_only_what_the_scorer_counts():
    class Half:
        def inliers(self, f1, f2, matches):
            return np.arange(len(matches)) % 2 == 0

    e = np.eye(4, dtype=np.float32)
    model = DistinctivenessModel(e[2:], np.array([1, 1]), ["A", "B"], 2)
    q = features(e[:2])
    matches = Matches(np.array([[0, 0], [1, 1]]), np.ones(2, np.float32))
    neighbours = model.neighbours(q.desc)
    total = model.weights(q, q, matches, neighbours, "A")
    assert weighted_score(Half(), model, q, q, matches, neighbours, "A") == pytest.approx(total[0])
    assert weighted_score(Half(), model, q, q, Matches.empty(), neighbours, "A") == 0.0


def test_weighted_scores_of_one_query_equal_each_pairs_weighted_score():
    """The run looks up a query's neighbours once, for the features some pair counts: the same sums."""
    class EveryThird:
        def inliers(self, f1, f2, matches):
            return np.arange(len(matches)) % 3 != 1

    class NoInlierSet:
        def inliers(self, f1, f2, matches):
            return None

    rng = np.random.default_rng(3)
    gallery = [features(rng.normal(size=(40, 16))) for _ in range(12)]
    names = [f"ind{i % 5}" for i in range(12)]
    model = fit(gallery, names, DistinctivenessSettings(per_image=20, neighbours=4))
    query = features(rng.normal(size=(60, 16)))
    neighbours = model.neighbours(query.desc)
    for scorer in (EveryThird(), NoInlierSet()):
        pairs, expected = [], []
        for name in names + ["stranger"]:
            n = int(rng.integers(0, 25))
            rows = rng.choice(60, n, replace=False)
            g = features(query.desc[rows] + 0.3 * rng.normal(size=(n, 16)))  # the query's features, seen again
            matches = Matches(np.stack([rows, np.arange(n)], 1), np.ones(n, np.float32))
            pairs.append(counted(scorer, model, query, g, matches, name))
            expected.append(weighted_score(scorer, model, query, g, matches, neighbours, name))
        pairs.append(counted(scorer, model, query, query, Matches.empty(), "stranger"))  # a pair with nothing
        expected.append(0.0)
        ours = weighted_scores(model, query.desc, pairs)
        assert ours.shape == (14,) and max(expected) > 0.5
        np.testing.assert_allclose(ours, expected, rtol=1e-6, atol=1e-6)
        assert len(np.unique(np.concatenate([p.rows for p in pairs]))) < 60  # fewer features looked up
    assert weighted_scores(model, query.desc, []).shape == (0,)


def test_the_fitted_model_is_stored_and_refitted_when_the_gallery_changes(tmp_path):
    from reid_engine.components import build_plugin
    from reid_engine.registry import PluginTable
    from reid_engine.registry.profiles import PluginRef

    extractor = build_plugin(PluginTable.discover(), "extractor", PluginRef("sift"), "cpu", "test")
    rng = np.random.default_rng(0)
    settings = DistinctivenessSettings(per_image=4)
    with GalleryDatabase(tmp_path / "g.db") as db:
        cache = FeatureCache(db)
        for h in ("a" * 64, "b" * 64, "c" * 64):
            cache.put(h, extractor, features(rng.random((10, 8)).astype(np.float32)))
        first = fitted(cache, extractor, ["a" * 64, "b" * 64], ["A", "B"], settings)
        models = len(list(db.models()))
        again = fitted(cache, extractor, ["a" * 64, "b" * 64], ["A", "B"], settings)
        np.testing.assert_array_equal(first.desc, again.desc)
        assert len(list(db.models())) == models == 1
        bigger = fitted(cache, extractor, ["a" * 64, "b" * 64, "c" * 64], ["A", "B", "C"], settings)
        assert len(bigger.desc) == 12 and len(list(db.models())) == 2


def test_profile_turns_distinctiveness_on_per_pipeline():
    def profile(value):
        return parse_profile({"profile": {"name": "p"}, "pipelines": [{
            "name": "x", "extractor": "sift", "matcher": "mnn", "scorer": "ransac-inliers",
            "distinctiveness": value}]}, "p.toml")

    assert profile(True).pipelines[0].distinctiveness == DistinctivenessSettings()
    assert profile(False).pipelines[0].distinctiveness is None
    assert profile({"per_image": 64}).pipelines[0].distinctiveness.per_image == 64
    with pytest.raises(ConfigError, match="per_image"):
        profile({"per_image": 0})
    with pytest.raises(ConfigError, match="k"):
        profile({"k": 3})


def test_a_run_with_distinctiveness_ranks_the_seals_as_well_as_the_plain_count(seal_data, fast_profile, tmp_path):
    from reid_engine.commands.run import run
    from reid_engine.records import NEW_INDIVIDUAL
    from reid_engine.registry.profiles import load_profile_file
    from reid_engine.runs import RunOptions

    plain = fast_profile.read_text()
    pipeline = plain[plain.index("[[pipelines]]"):plain.index("[decision]")]
    distinct = (pipeline.replace('name = "sift-mnn"', 'name = "distinct"')
                .replace("calibration = { midpoint = 10.0, width = 3.0 }",
                         "distinctiveness = { per_image = 64 }\nweight = 0.0\ncalibration = { midpoint = 2.0, width = 0.5 }"))
    path = tmp_path / "distinct.toml"
    path.write_text(plain.replace("[decision]", distinct + "\n[decision]"))
    result = run(RunOptions(profile=load_profile_file(path), db=tmp_path / "g.db", out=None,
                            gallery=seal_data.gallery_csv, query=seal_data.query_csv, device="cpu"), progress=False)
    ids = np.array(result.gallery_identities)
    known = [i for i, p in enumerate(result.predictions) if p.truth not in (None, NEW_INDIVIDUAL)]

    def top1(raw):
        best = ids[result.shortlist_index[known, np.nanargmax(np.nan_to_num(raw[known], nan=-1), axis=1)]]
        return float(np.mean([b == result.predictions[q].truth for b, q in zip(best, known)]))

    raw = result.raw_scores["distinct"]
    assert 0 < np.nanmax(raw) < 2 * 300  # weights lie in [0, 2] per counted match, 300 keypoints
    assert top1(raw) >= top1(result.raw_scores["sift-mnn"]) >= 0.5


def test_match_drawings_say_their_score_is_before_weighting():
    from reid_engine.components import Pipeline, build_plugin
    from reid_engine.registry import PluginTable
    from reid_engine.registry.profiles import PluginRef
    from reid_engine.scoring.pairs import match_pair

    table = PluginTable.discover()
    built = {kind: build_plugin(table, kind, PluginRef(name), "cpu", "test")
             for kind, name in (("extractor", "sift"), ("matcher", "mnn"), ("scorer", "match-count"))}
    f = features(np.eye(8, dtype=np.float32))
    for setting, said in ((None, False), (DistinctivenessSettings(), True)):
        pipeline = Pipeline("p", built["extractor"], built["matcher"], built["scorer"], 1.0, 1.0, 1.0, setting)
        evidence = match_pair(pipeline, f, f)
        assert evidence.score == 8 and ("before distinctiveness" in evidence.info()) is said


def test_memory_stays_bounded_fit_streams_the_gallery_and_lookups_go_in_blocks():
    rng = np.random.default_rng(0)
    gallery = [features(rng.normal(size=(40, 16)), rng.random(40)) for _ in range(30)]
    names = [f"ind{i % 7}" for i in range(30)]
    settings = DistinctivenessSettings(per_image=8, neighbours=5)
    from_list = fit(gallery, names, settings)
    read = []

    def one_at_a_time():
        for f in gallery:
            read.append(f)
            yield f

    streamed = fit(one_at_a_time(), names, settings)
    assert len(read) == 30 and np.array_equal(streamed.desc, from_list.desc)
    queries = rng.normal(size=(100, 16)).astype(np.float32)
    whole = from_list.neighbours(queries)
    blocks = from_list.neighbours(queries, block_floats=3 * len(from_list.desc))  # 3 query rows per block
    assert np.allclose(whole.dist, blocks.dist, atol=1e-6) and np.array_equal(whole.label, blocks.label)  # float rounding only
