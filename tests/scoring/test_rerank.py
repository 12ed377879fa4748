"""[rerank]: NORPPA's re-evaluation of each query's best pairs by Fisher vectors of their inliers."""

from __future__ import annotations

import numpy as np
import pytest

from reid_engine.commands.run import run
from reid_engine.components import build_components
from reid_engine.errors import UsageError
from reid_engine.records import NEW_INDIVIDUAL, LocalFeatures
from reid_engine.registry import PluginTable
from reid_engine.registry.profiles import load_profile_file, parse_profile
from reid_engine.registry.spec import ConfigError
from reid_engine.runs import RunOptions
from reid_engine.scoring.rerank import subset, top_columns

RERANK = """
[rerank]
pipeline = "sift-mnn"
top_k = 3
calibration = { midpoint = 0.3, width = 0.1 }
"""


def _profile_text(fast_profile, rerank: str = RERANK) -> str:
    return fast_profile.read_text().replace("[decision]", rerank + "\n[decision]")


def test_top_columns_puts_unscored_pairs_last_and_keeps_column_order_on_ties():
    raw = np.array([[1.0, np.nan, 5.0, 1.0], [np.nan, np.nan, 2.0, 0.0]])
    assert top_columns(raw, 3).tolist() == [[2, 0, 3], [2, 3, 0]]
    assert top_columns(raw, 10).shape == (2, 4)


def test_subset_keeps_the_chosen_features_once():
    f = LocalFeatures(np.arange(10, dtype=np.float32).reshape(5, 2), np.eye(5, dtype=np.float32),
                      np.arange(5, dtype=np.float32), None, (8, 8))
    s = subset(f, np.array([3, 1, 3]))
    assert s.kpts.tolist() == [[2, 3], [6, 7]] and s.desc.shape == (2, 5) and s.image_hw == (8, 8)


@pytest.mark.parametrize("rerank, message", [
    ("[rerank]\ntop_k = 3\n", "needs pipeline"),
    ('[rerank]\npipeline = "nope"\n', "'nope' is not one of the profile's"),
    ('[rerank]\npipeline = "sift-mnn"\ntop_k = 0\n', "top_k must be at least 1"),
    ('[rerank]\npipeline = "sift-mnn"\ntopk = 3\n', "topk"),
    ('[rerank]\npipeline = "sift-mnn"\ncalibration = { width = 0.0 }\n', r"\[rerank\].calibration.width: must be positive"),
])
def test_a_bad_rerank_table_is_refused_when_the_profile_loads(fast_profile, tmp_path, rerank, message):
    path = tmp_path / "bad.toml"
    path.write_text(_profile_text(fast_profile, rerank))
    with pytest.raises(ConfigError, match=message):
        load_profile_file(path)


def test_rerank_needs_fisher_vectors_over_the_pipelines_extractor(fast_profile, tmp_path):
    path = tmp_path / "other-extractor.toml"
    path.write_text(_profile_text(fast_profile).replace(
        "fit_descriptors = 5000 }", 'fit_descriptors = 5000, extractor = "sift" }'))
    with pytest.raises(UsageError, match=r"\[rerank\].*fisher-vector over that pipeline's extractor"):
        build_components(load_profile_file(path), PluginTable.discover(), "cpu")


def test_a_reranked_run_scores_each_querys_best_pairs_by_their_inliers(seal_data, fast_profile, tmp_path):
    path = tmp_path / "rerank.toml"
    path.write_text(_profile_text(fast_profile))
    db = tmp_path / "g.db"
    options = dict(db=db, out=None, gallery=seal_data.gallery_csv, query=seal_data.query_csv, device="cpu")
    plain = run(RunOptions(profile=load_profile_file(fast_profile), **options), progress=False)
    result = run(RunOptions(profile=load_profile_file(path), **options), progress=False)

    assert list(result.raw_scores) == ["sift-mnn", "inlier-fisher"]
    np.testing.assert_array_equal(result.raw_scores["sift-mnn"], plain.raw_scores["sift-mnn"])
    re = result.raw_scores["inlier-fisher"]
    scored = np.isfinite(re)
    assert scored.sum(1).tolist() == [3] * len(re)  # exactly the top 3 of each query
    best = top_columns(result.raw_scores["sift-mnn"], 3)
    assert all(set(np.flatnonzero(scored[q])) == set(best[q]) for q in range(len(re)))
    assert np.all((re[scored] >= -1.0001) & (re[scored] <= 1.0001))
    assert "rerank_s" in result.timings

    # same-individual pairs share their pattern, other pairs' inliers (if any) are chance matches
    ids = np.array(result.gallery_identities)
    same, other = [], []
    for q, p in enumerate(result.predictions):
        for col in np.flatnonzero(scored[q]):
            (same if ids[result.shortlist_index[q, col]] == p.truth else other).append(re[q, col])
    assert same and np.mean(same) > np.mean(other) + 0.2
    known = [p for p in result.predictions if p.truth not in (None, NEW_INDIVIDUAL)]
    top1 = np.mean([p.candidates[0].identity == p.truth for p in known])
    plain_top1 = np.mean([p.candidates[0].identity == p.truth for p in plain.predictions
                          if p.truth not in (None, NEW_INDIVIDUAL)])
    assert top1 >= plain_top1  # on this tiny set both 0.625 (5 of 8)
    assert "inlier-fisher" in result.predictions[0].candidates[0].pipeline_scores


def test_with_weight_0_rerank_waits_for_calibrate_and_costs_nothing_before(seal_data, fast_profile, tmp_path):
    path = tmp_path / "rerank0.toml"
    path.write_text(_profile_text(fast_profile, RERANK + "weight = 0.0\n"))
    options = dict(db=tmp_path / "g.db", out=None, gallery=seal_data.gallery_csv, query=seal_data.query_csv,
                   device="cpu")
    plain = run(RunOptions(profile=load_profile_file(fast_profile), **options), progress=False)
    result = run(RunOptions(profile=load_profile_file(path), **options), progress=False)
    assert np.isnan(result.raw_scores["inlier-fisher"]).all() and "rerank_s" not in result.timings
    assert [p.prediction for p in result.predictions] == [p.prediction for p in plain.predictions]
    assert [p.score for p in result.predictions] == pytest.approx([p.score for p in plain.predictions])
