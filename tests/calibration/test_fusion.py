"""Calibration, fusion, per-identity aggregation and the known/new decision."""

import numpy as np

from reid_engine.calibration.fusion import (
    aggregate,
    decide,
    fuse,
    fuse_raw,
    logistic_calibration,
)
from reid_engine.records import Candidate


def test_logistic_calibration_is_monotone_and_keeps_nan():
    p = logistic_calibration(np.array([0.0, 10.0, 20.0, np.nan]), midpoint=10.0, width=2.0)
    assert p[1] == 0.5 and p[0] < p[1] < p[2] and np.isnan(p[3])


def test_fuse_ignores_unscored_pairs_and_weights():
    a = np.array([[0.9, np.nan]])
    b = np.array([[0.1, np.nan]])
    fused = fuse([a, b], [3.0, 1.0])
    assert np.isclose(fused[0, 0], 0.7) and fused[0, 1] == 0.0


def test_aggregate_max_and_noisy_or_sum_and_tiebreak():
    fused = np.array([0.6, 0.5, 0.9, 0.9])
    rows = np.array([0, 1, 2, 3])
    identities = ["a", "a", "b", "c"]
    by_max = aggregate(fused, rows, identities, "max", tiebreak_row=np.array([0, 0, 5.0, 7.0]))
    assert [s.identity for s in by_max] == ["c", "b", "a"]  # b and c tie at 0.9: raw evidence decides
    by_sum = aggregate(fused, rows, identities, "sum")
    assert np.isclose(next(s for s in by_sum if s.identity == "a").score, 1 - 0.4 * 0.5)
    best = next(s for s in by_max if s.identity == "a")
    assert best.best_row == 0 and best.best_column == 0


def test_decide_threshold():
    cands = (Candidate(1, "a", 0.7, "g1", "p"),)
    assert decide(cands, 0.5) == ("a", 0.7, "known")
    assert decide(cands, 0.8) == ("new_individual", 0.7, "new")
    assert decide((), 0.5)[2] == "new"


def test_fuse_raw_orders_by_evidence():
    r = fuse_raw([np.array([[10.0, np.nan]])], [1.0], [2.0])
    assert r[0, 0] == 5.0 and r[0, 1] == 0.0
