"""Metrics on small hand-computed examples."""

from __future__ import annotations

import doctest
import math

import pytest

from reid_engine import metrics
from reid_engine.metrics import (
    baks,
    baus,
    evaluate,
    geometric_mean,
    mean_average_precision,
    rand_index,
    top_k_accuracy,
)
from reid_engine.records import NEW_INDIVIDUAL, Candidate, Prediction

NEW = NEW_INDIVIDUAL


def _pred(image_id, prediction, ranking, truth, score=0.5):
    cands = tuple(
        Candidate(rank=i + 1, identity=ident, score=1.0 - 0.1 * i, gallery_image_id=f"g_{ident}", gallery_path="")
        for i, ident in enumerate(ranking)
    )
    return Prediction(
        image_id=image_id,
        path=f"{image_id}.jpg",
        prediction=prediction,
        score=score,
        decision="new" if prediction == NEW else "known",
        candidates=cands,
        truth=truth,
    )


def test_docstring_examples():
    result = doctest.testmod(metrics)
    assert result.attempted > 0 and result.failed == 0


# --- top-k / mAP --------------------------------------------------------------------------


def test_top_k_basic():
    truth = ["a", "b", "c", NEW]
    ranked = [["a", "x"], ["x", "b"], ["x", "y"], ["a"]]
    assert top_k_accuracy(truth, ranked, 1) == pytest.approx(1 / 3)
    assert top_k_accuracy(truth, ranked, 2) == pytest.approx(2 / 3)


def test_top_k_larger_than_ranking():
    truth = ["a", "b"]
    ranked = [["x", "a"], ["x"]]
    assert top_k_accuracy(truth, ranked, 100) == pytest.approx(0.5)
    # empty ranking is just a miss
    assert top_k_accuracy(["a"], [[]], 5) == 0.0


def test_top_k_counts_distinct_identities():
    # "x" repeated must not push "a" out of the top 2
    assert top_k_accuracy(["a"], [["x", "x", "a"]], 2) == 1.0
    assert mean_average_precision(["a"], [["x", "x", "a"]]) == pytest.approx(0.5)


def test_top_k_rejects_bad_input():
    with pytest.raises(ValueError):
        top_k_accuracy(["a"], [["a"]], 0)
    with pytest.raises(ValueError):
        top_k_accuracy(["a", "b"], [["a"]], 1)


def test_top_k_and_map_nan_without_known_queries():
    assert math.isnan(top_k_accuracy([], [], 1))
    assert math.isnan(top_k_accuracy([NEW, None], [["a"], ["a"]], 1))
    assert math.isnan(mean_average_precision([], []))
    assert math.isnan(mean_average_precision([NEW], [["a"]]))


def test_mean_average_precision():
    truth = ["a", "b", "c", "d", NEW]
    ranked = [["a", "b"], ["a", "b"], ["x", "y", "c"], ["x"], ["a"]]
    # APs: 1, 1/2, 1/3, 0 ; unknown skipped
    assert mean_average_precision(truth, ranked) == pytest.approx((1 + 0.5 + 1 / 3 + 0) / 4)


# --- BAKS / BAUS --------------------------------------------------------------------------


def test_baks_balancing_differs_from_plain_accuracy():
    # identity a: 4 queries all right; identity b: 1 query wrong
    truth = ["a", "a", "a", "a", "b"]
    pred = ["a", "a", "a", "a", "a"]
    plain = sum(t == p for t, p in zip(truth, pred)) / len(truth)
    assert plain == pytest.approx(0.8)
    assert baks(truth, pred) == pytest.approx((1.0 + 0.0) / 2)


def test_baks_known_predicted_new_is_a_miss_ignores_unknowns():
    truth = ["a", "a", "b", NEW, NEW]
    pred = ["a", NEW, "b", "a", NEW]
    # a: 1/2, b: 1/1 -> 0.75 ; unknown queries do not enter BAKS
    assert baks(truth, pred) == pytest.approx(0.75)


def test_baks_nan_and_none_truth():
    assert math.isnan(baks([], []))
    assert math.isnan(baks([NEW, NEW], [NEW, "a"]))
    assert baks(["a", None], ["a", "b"]) == 1.0


def test_baus_single_class_without_groups():
    truth = ["a", NEW, NEW, NEW, NEW]
    pred = ["b", NEW, NEW, NEW, "a"]
    assert baus(truth, pred) == pytest.approx(3 / 4)


def test_baus_balanced_per_unknown_individual():
    truth = [NEW, NEW, NEW, NEW, "a"]
    pred = [NEW, NEW, NEW, "a", NEW]
    groups = ["u1", "u1", "u1", "u2", None]
    # pooled: 3/4 ; per individual: u1 = 3/3, u2 = 0/1 -> 0.5
    assert baus(truth, pred) == pytest.approx(0.75)
    assert baus(truth, pred, groups) == pytest.approx(0.5)


def test_baus_groups_none_pool_together():
    truth = [NEW, NEW, NEW]
    pred = [NEW, "a", NEW]
    # u1: 1/1 ; pooled None group: 1/2 -> 0.75
    assert baus(truth, pred, ["u1", None, None]) == pytest.approx(0.75)


def test_baus_nan_and_length_check():
    assert math.isnan(baus([], []))
    assert math.isnan(baus(["a"], [NEW]))
    with pytest.raises(ValueError):
        baus([NEW], [NEW], ["u1", "u2"])


def test_geometric_mean():
    assert geometric_mean(0.25, 1.0) == pytest.approx(0.5)
    assert geometric_mean(0.0, 1.0) == 0.0
    assert math.isnan(geometric_mean(float("nan"), 1.0))
    assert math.isnan(geometric_mean(0.5, float("nan")))


# --- rand index ---------------------------------------------------------------------------


def test_rand_index():
    assert rand_index(["a", "a", "b"], [7, 7, 3]) == 1.0
    # pairs (01, 02, 12): true same/diff/diff ; pred same/same/same -> agree on 1 of 3
    assert rand_index(["a", "a", "b"], ["x", "x", "x"]) == pytest.approx(1 / 3)
    assert rand_index(["a", None, "b"], ["x", "y", "z"]) == 1.0
    assert math.isnan(rand_index([], []))


# --- evaluate -----------------------------------------------------------------------------


def test_evaluate_hand_computed():
    preds = [
        _pred("q1", "a", ["a", "b", "c"], "a"),  # known, right
        _pred("q2", "b", ["b", "a", "c"], "a"),  # known a, wrong; a at rank 2
        _pred("q3", NEW, ["b", "c", "d", "e", "f", "g"], "b"),  # known predicted new: BAKS miss, top1 hit
        _pred("q4", NEW, ["a", "b"], NEW),  # unknown, right
        _pred("q5", "c", ["c", "a"], NEW),  # unknown, wrong
        _pred("q6", "a", ["a"], None),  # no truth: skipped
        _pred("q7", "c", ["x", "y", "z", "w", "v", "c"], "c"),  # c only at rank 6
    ]
    out = evaluate(preds)
    assert out["n_queries"] == 6
    assert out["n_known_queries"] == 4
    assert out["n_unknown_queries"] == 2
    # top1: q1 yes, q2 no, q3 yes, q7 no -> 2/4
    assert out["top1"] == pytest.approx(0.5)
    # top5: q1, q2, q3 yes, q7 no -> 3/4
    assert out["top5"] == pytest.approx(0.75)
    assert out["mAP"] == pytest.approx((1 + 0.5 + 1 + 1 / 6) / 4)
    # BAKS: a -> 1/2 (q1 right, q2 wrong), b -> 0/1 (predicted new), c -> 1/1 (q7 predicted c)
    assert out["BAKS"] == pytest.approx((0.5 + 0 + 1) / 3)
    assert out["BAUS"] == pytest.approx(0.5)
    assert out["geo_mean"] == pytest.approx(math.sqrt(out["BAKS"] * 0.5))
    assert out["known_accuracy_closed"] == pytest.approx(0.5)
    assert set(out) == {
        "n_queries", "n_known_queries", "n_unknown_queries", "top1", "top5",
        "mAP", "BAKS", "BAUS", "geo_mean", "known_accuracy_closed",
    }


def test_evaluate_uses_candidate_rank_not_tuple_order():
    p = _pred("q1", "a", [], "a")
    cands = (
        Candidate(rank=2, identity="b", score=0.2, gallery_image_id="gb", gallery_path=""),
        Candidate(rank=1, identity="a", score=0.9, gallery_image_id="ga", gallery_path=""),
    )
    p = Prediction(p.image_id, p.path, p.prediction, p.score, p.decision, cands, p.truth)
    assert evaluate([p], top_ks=(1,))["top1"] == 1.0


def test_evaluate_custom_top_ks_and_unknown_groups():
    preds = [
        _pred("q1", NEW, ["a"], NEW),
        _pred("q2", NEW, ["a"], NEW),
        _pred("q3", "a", ["a"], NEW),
    ]
    out = evaluate(preds, top_ks=(3, 10))
    assert "top1" not in out and "top3" in out and "top10" in out
    assert math.isnan(out["top3"]) and math.isnan(out["mAP"]) and math.isnan(out["BAKS"])
    assert math.isnan(out["geo_mean"])
    assert out["BAUS"] == pytest.approx(2 / 3)
    grouped = evaluate(preds, unknown_groups={"q1": "u1", "q2": "u1", "q3": "u2"})
    assert grouped["BAUS"] == pytest.approx(0.5)


def test_evaluate_empty():
    assert evaluate([]) == {}
    assert evaluate([_pred("q1", "a", ["a"], None)]) == {}
