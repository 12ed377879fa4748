"""The shortlist-and-score stage: reciprocal-rank fusion of the screen, and a screened run."""

from __future__ import annotations

import textwrap

import numpy as np
import pytest

from reid_engine.commands.run import run
from reid_engine.registry.profiles import load_profile_file, parse_profile
from reid_engine.registry.spec import ConfigError
from reid_engine.runs import RunOptions
from reid_engine.scoring.stage import rrf_columns

TWO_PIPELINES = """
    [profile]
    name = "screened-test"

    [shortlist]
    embedder = {{ plugin = "fisher-vector", pca_dim = 16, n_components = 8, fit_descriptors = 5000 }}
    top_b = {top_b}
    identity_pooling = false
    {screen}

    [[pipelines]]
    name = "sift-ransac"
    extractor = {{ plugin = "hessaff-rootsift", resize = 384, max_keypoints = 300 }}
    matcher = {{ plugin = "mnn", ratio = 0.9 }}
    scorer = {{ plugin = "ransac-inliers" }}
    calibration = {{ midpoint = 10.0, width = 3.0 }}

    [[pipelines]]
    name = "sift-count"
    extractor = {{ plugin = "hessaff-rootsift", resize = 384, max_keypoints = 300 }}
    matcher = {{ plugin = "mnn", ratio = 0.8 }}
    scorer = {{ plugin = "match-count" }}
    calibration = {{ midpoint = 8.0, width = 3.0 }}
"""


def _profile(tmp_path, top_b: int, screen: str = ""):
    path = tmp_path / f"p{top_b}{bool(screen)}.toml"
    path.write_text(textwrap.dedent(TWO_PIPELINES.format(top_b=top_b, screen=screen)))
    return load_profile_file(path)


def test_rrf_keeps_what_either_ranking_puts_first():
    # columns are in the embedding's order; the screen loves column 7 (embedding rank 7)
    raw = np.array([[0, 1, 0, 0, 0, 0, 0, 50, 0, 0]], float)
    # k = 1: column 0 scores 1/1 + 1/3, column 7 1/8 + 1/1, column 1 1/2 + 1/2
    assert rrf_columns(raw, 2, k=1).tolist() == [[0, 7]]
    # k = 60 flattens the ranks: 7 (embedding rank 7) still beats 3 (1/67 + 1/60 > 1/63 + 1/64)
    assert rrf_columns(raw, 4, k=60).tolist() == [[0, 1, 2, 7]]


def test_rrf_ranks_unscored_pairs_last_and_caps_at_the_width():
    raw = np.array([[np.nan, np.nan, 0.0]])
    # screen order 2, 0, 1 (NaN after a scored 0): column 2 scores 1/3 + 1/1, column 1 1/2 + 1/3
    assert rrf_columns(raw, 10, k=1).tolist() == [[0, 2, 1]]
    assert rrf_columns(raw, 2, k=1).tolist() == [[0, 2]]


@pytest.mark.parametrize("screen, message", [
    ('screen = "nope"', "screen: 'nope' is not one of the profile's"),
    ('screen = "sift-count"\n    screen_b = 2', r"screen_b: 0 \(the whole gallery\) or at least top_b \(3\), got 2"),
])
def test_a_screen_that_cannot_work_is_refused_when_the_profile_loads(tmp_path, screen, message):
    path = tmp_path / "bad.toml"
    path.write_text(textwrap.dedent(TWO_PIPELINES.format(top_b=3, screen=screen)))
    with pytest.raises(ConfigError, match=message):
        load_profile_file(path)


def test_unknown_keys_are_still_refused():
    with pytest.raises(ConfigError, match="screens"):
        parse_profile({"profile": {"name": "x"}, "shortlist": {"screens": "a"}}, "x.toml")


def test_a_screened_run_scores_the_fused_shortlist_and_reuses_the_screen(seal_data, tmp_path):
    db = tmp_path / "g.db"  # one database: the three profiles share their features

    def go(profile):
        return run(RunOptions(profile, db, None, gallery=seal_data.gallery_csv, query=seal_data.query_csv),
                   progress=False)

    screened = go(_profile(tmp_path, 2, 'screen = "sift-count"'))
    wide = go(_profile(tmp_path, 1000))  # every gallery image, in the embedding's order, both pipelines
    assert wide.shortlist_index.shape[1] == len(wide.gallery_identities) < 1000
    keep = rrf_columns(wide.raw_scores["sift-count"], 2)
    assert screened.shortlist_index.tolist() == np.take_along_axis(wide.shortlist_index, keep, 1).tolist()
    for name in ("sift-count", "sift-ransac"):  # the screen's scores are reused, the other pipeline scores the rest
        np.testing.assert_allclose(screened.raw_scores[name], np.take_along_axis(wide.raw_scores[name], keep, 1))
    assert list(screened.raw_scores) == ["sift-ransac", "sift-count"]  # profile order
    assert screened.counts["pairs_scored"] == 2 * screened.shortlist_index.size
    assert screened.counts["pairs_screened"] == wide.shortlist_index.size  # every query against the whole gallery
