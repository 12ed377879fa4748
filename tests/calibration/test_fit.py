"""Isotonic calibration, ECE, Powell fusion weights and the novelty threshold."""

import numpy as np
import pytest

from reid_engine.calibration.fit import (
    IsotonicCalibrator,
    OpenSetData,
    best_threshold,
    expected_calibration_error,
    fit_weights,
    top_identities,
)


def test_isotonic_is_strictly_increasing_clamped_and_handles_missing():
    rng = np.random.default_rng(0)
    scores = np.concatenate([rng.normal(10, 5, 500), rng.normal(40, 10, 100), [np.nan] * 10])
    hits = np.concatenate([np.zeros(500), np.ones(100), [0] * 9 + [1]])
    cal = IsotonicCalibrator.fit(scores, hits)
    assert np.all(np.diff(cal.knots_y) > 0)
    grid = np.linspace(cal.knots_x[0], cal.knots_x[-1], 1000)
    assert np.all(np.diff(cal.predict(grid)) >= 0)
    assert cal.predict(np.array([-1e9]))[0] == cal.knots_y[0] and cal.predict(np.array([1e9]))[0] == cal.knots_y[-1]
    assert cal.predict(np.array([np.nan]))[0] == pytest.approx(0.1)
    again = IsotonicCalibrator.from_arrays(cal.to_arrays("p"), "p")
    assert np.allclose(again.predict(grid), cal.predict(grid))


def test_isotonic_needs_both_classes():
    with pytest.raises(ValueError, match="both kinds"):
        IsotonicCalibrator.fit(np.arange(5.0), np.zeros(5))


def test_calibration_lowers_ece():
    rng = np.random.default_rng(1)
    raw = rng.uniform(0, 1, 5000)
    hits = (rng.uniform(0, 1, 5000) < raw**3).astype(float)  # raw score is overconfident
    before, _ = expected_calibration_error(raw, hits)
    after, table = expected_calibration_error(IsotonicCalibrator.fit(raw, hits).predict(raw), hits)
    assert after < 0.03 < before and len(table) == 10


def _open_set():
    # 3 gallery rows: identities a, b, c; queries: a (strong), b (weak), new (medium-low)
    rows = np.array([[0, 1, 2]] * 4)
    data = OpenSetData(rows=rows, identities=["a", "b", "c"], truth=["a", "b", "new_individual", "new_individual"],
                       groups=["a", "b", "x", "y"])
    good = np.array([[0.9, 0.1, 0.1], [0.1, 0.6, 0.1], [0.3, 0.2, 0.1], [0.2, 0.1, 0.1]])
    noise = np.array([[0.1, 0.8, 0.1], [0.9, 0.1, 0.1], [0.9, 0.2, 0.1], [0.1, 0.9, 0.1]])
    return data, good, noise


def test_best_threshold_separates_known_from_new():
    data, good, _ = _open_set()
    names, top = top_identities(good, data, "max")
    tau, scores = best_threshold(names, top, data)
    assert 0.3 < tau < 0.6 and scores["geo_mean"] == 1.0


def test_powell_weights_prefer_the_informative_pipeline():
    data, good, noise = _open_set()
    weights, tau, scores = fit_weights([noise, good], data, "max")
    assert weights[1] > 0.7 and abs(weights.sum() - 1) < 1e-9
    assert scores["geo_mean"] == 1.0
