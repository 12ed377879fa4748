"""Sequences identified together: pooling the photos' identity probabilities."""

from __future__ import annotations

import csv
import json
from types import SimpleNamespace

import pytest

from reid_engine.calibration.fusion import IdentityScore
from reid_engine.decision import fused_sources, pool_rankings, trained_cosine_is_evidence
from reid_engine.registry.profiles import load_profile_file
from tests.conftest import run_cli


def _s(identity: str, score: float, row: int = 0, tie: float = 0.0) -> IdentityScore:
    return IdentityScore(identity, score, row, row, tie)


def test_mean_pooling_counts_a_missing_identity_as_zero_and_keeps_the_best_photo():
    a = [_s("x", 0.9, row=1), _s("y", 0.8, row=2)]
    b = [_s("y", 0.7, row=3), _s("z", 0.2, row=4)]
    ranked, owners = pool_rankings([a, b], [10, 11], "mean")
    assert [(s.identity, round(s.score, 3)) for s in ranked] == [("y", 0.75), ("x", 0.45), ("z", 0.1)]
    assert owners == [10, 10, 11]  # y's best photo is in query 10's shortlist (0.8 > 0.7)
    assert ranked[0].best_row == 2


def test_max_pooling_takes_the_best_photo():
    ranked, _ = pool_rankings([[_s("x", 0.9)], [_s("y", 0.95)]], [0, 1], "max")
    assert [s.identity for s in ranked] == ["y", "x"]


def test_run_pools_a_sequence_and_reports_each_photo_alone(tmp_path, seal_data, fast_profile):
    """Two photos of one seal in one sequence get one answer; predictions.csv keeps each photo's own."""
    profile = tmp_path / "pooled.toml"
    profile.write_text(fast_profile.read_text().replace("[decision]", '[decision]\nsequences = "mean"'))
    assert load_profile_file(profile).decision.sequences == "mean"
    out = tmp_path / "out"
    result = run_cli("run", "--profile", str(profile), "--gallery", str(seal_data.gallery_csv),
                     "--query", str(seal_data.query_csv), "--db", str(tmp_path / "g.db"), "--out", str(out),
                     "--no-report")
    assert result.returncode == 0, result.stderr
    assert "each photo alone" in result.stdout
    rows = list(csv.DictReader((out / "predictions.csv").open()))
    assert {"sequence", "photo_prediction", "photo_score"} <= set(rows[0])
    by_sequence = {}
    for r in rows:
        by_sequence.setdefault(r["sequence"], set()).add(r["prediction"])
    assert all(len(answers) == 1 for answers in by_sequence.values())  # one answer per sequence
    summary = json.loads((out / "summary.json").read_text())
    assert summary["counts"]["sequences_pooled"] >= 1 and "top1" in summary["metrics_per_photo"]
    assert not any("fuses" in notice for notice in summary["notices"])  # one evidence source: nothing to say


def test_uncalibrated_fusion_of_two_sources_is_said_with_the_command_that_fits_it(tmp_path, seal_data, fast_profile):
    """Two weighted pipelines fused with the profile's hand-set calibration (nyala-dev: a trained
    embedder's cosine fused beside Hessian-affine took top-1 from 0.389 to 0.238) get a notice
    naming both and `reid-engine calibrate`; a second pipeline at weight 0 does not count."""
    second = """
[[pipelines]]
name = "sift-count"
extractor = { plugin = "hessaff-rootsift", resize = 384, max_keypoints = 300 }
matcher = { plugin = "mnn", ratio = 0.8 }
scorer = { plugin = "match-count" }
calibration = { midpoint = 10.0, width = 3.0 }
weight = WEIGHT
"""
    for weight, said in (("1.0", True), ("0.0", False)):
        profile = tmp_path / f"two-{weight}.toml"
        tables = second.replace("WEIGHT", weight) + "\n[decision]"
        profile.write_text(fast_profile.read_text().replace("\n[decision]", tables))
        out = tmp_path / f"out-{weight}"
        result = run_cli("run", "--profile", str(profile), "--gallery", str(seal_data.gallery_csv),
                         "--query", str(seal_data.query_csv), "--db", str(tmp_path / "g.db"), "--out", str(out),
                         "--no-report", "--quiet")
        assert result.returncode == 0, result.stderr
        notices = [n for n in json.loads((out / "summary.json").read_text())["notices"] if "fuses" in n]
        if said:
            assert len(notices) == 1 and "sift-mnn, sift-count" in notices[0]
            command = f"reid-engine calibrate --profile {profile} --gallery LABELLED --db {tmp_path / 'g.db'}"
            assert command in notices[0]
            assert "fuses" in result.stderr
        else:
            assert notices == []


def test_sequences_setting_is_checked(tmp_path, fast_profile):
    bad = tmp_path / "bad.toml"
    bad.write_text(fast_profile.read_text().replace("[decision]", '[decision]\nsequences = "median"'))
    with pytest.raises(Exception, match="sequences"):
        load_profile_file(bad)
    assert load_profile_file(fast_profile).decision.sequences == "off"  # the default


def test_fused_sources_are_what_the_uncalibrated_decision_weighs():
    """Pipelines and [rerank] count with weight > 0; the trained embedder's cosine counts when one
    is attached and [trained_embedder].weight > 0 (as shortlist only, weight 0, it does not)."""
    def source(name, weight):
        return SimpleNamespace(name=name, weight=weight)

    def components(sources, trained):
        return SimpleNamespace(sources=lambda: sources, trained=trained)

    def profile(weight):
        return SimpleNamespace(trained_embedder=SimpleNamespace(weight=weight))

    pipelines = [source("a", 1.0), source("b", 0.0)]
    assert fused_sources(components(pipelines, None), profile(1.0)) == ["a"]
    assert fused_sources(components([*pipelines, source("inlier-fisher", 0.0)], object()), profile(0.0)) == ["a"]
    assert fused_sources(components([*pipelines, source("inlier-fisher", 0.5)], object()), profile(1.0)) == [
        "a", "inlier-fisher", "the trained embedder's cosine"]
    assert not trained_cosine_is_evidence(components(pipelines, None), profile(1.0))
    assert trained_cosine_is_evidence(components(pipelines, object()), profile(0.5))
