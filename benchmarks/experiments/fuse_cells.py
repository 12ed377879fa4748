"""Offline fusion of two benchmark cells' pair scores: would a second local matcher add to the first?

    python benchmarks/experiments/fuse_cells.py BASE/scores.npz OTHER/scores.npz [--source raw_NAME]

``scores.npz`` is what ``reid-engine benchmark`` leaves beside ``cell.json`` (index int (Q, B)
gallery rows, identities (G,), truth (Q,), raw_PIPELINE float (Q, B)). BASE's first pipeline is
the base score over BASE's shortlist; OTHER's ``--source`` (default: its last pipeline) is looked
up for the same (query, gallery photo) pairs; pairs OTHER did not score count as its worst.
Prints top-1 / top-5 (identity = best photo) of each alone, then of two fusion rules:
z-scores per query summed with OTHER weighted by w, and reciprocal-rank fusion with constant k.
The weights are chosen on the very queries measured, so the best row is an optimistic bound:
read it as "how much could fusion add at most", not as a result. Not a test.
"""

from __future__ import annotations

import argparse

import numpy as np

from reid_engine.calibration.fusion import aggregate
from reid_engine.metrics import top_k_accuracy


def ranked_identities(index: np.ndarray, scores: np.ndarray, identities: np.ndarray) -> list[list[str]]:
    """Per query, identities best first: an identity scores as its best photo (``aggregate(...,
    "max")``), equal scores in shortlist order. index/scores (Q, B)."""
    first_listed = -np.arange(index.shape[1], dtype=np.float64)
    return [[s.identity for s in aggregate(row, rows, identities, "max", first_listed)]
            for rows, row in zip(index, scores)]


def top_k(ranked: list[list[str]], truth: np.ndarray) -> tuple[float, float]:
    return top_k_accuracy(truth, ranked, 1), top_k_accuracy(truth, ranked, 5)


def aligned(base_index: np.ndarray, other_index: np.ndarray, other: np.ndarray) -> np.ndarray:
    """OTHER's scores at BASE's (query, column) pairs, float (Q, B), NaN where OTHER did not score."""
    out = np.full(base_index.shape, np.nan, np.float32)
    for q in range(base_index.shape[0]):
        column = {int(row): c for c, row in enumerate(other_index[q])}
        for c, row in enumerate(base_index[q]):
            if int(row) in column:
                out[q, c] = other[q, column[int(row)]]
    return out


def per_query_z(x: np.ndarray) -> np.ndarray:
    return (x - np.nanmean(x, 1, keepdims=True)) / (np.nanstd(x, 1, keepdims=True) + 1e-9)


def ranks(x: np.ndarray) -> np.ndarray:
    """0-based rank of each column within its row, best (highest) first; NaN ranks last."""
    return np.argsort(np.argsort(-np.nan_to_num(x, nan=-np.inf), 1, kind="stable"), 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("base")
    parser.add_argument("other")
    parser.add_argument("--source", default="", help="OTHER's raw_NAME array (default: its last pipeline)")
    args = parser.parse_args()
    base, other = np.load(args.base), np.load(args.other)
    base_key = next(k for k in base.files if k.startswith("raw_"))
    other_key = args.source or [k for k in other.files if k.startswith("raw_")][-1]
    index, identities, truth = base["index"], base["identities"], base["truth"]
    a = base[base_key]
    b = aligned(index, other["index"], other[other_key])
    rows = [(f"{base_key} alone", a), (f"{other_key} alone (unscored pairs last)", np.nan_to_num(b, nan=-np.inf))]
    for w in (0.5, 1.0, 2.0):
        rows.append((f"z-sum, {other_key} weight {w}", per_query_z(a) + w * np.nan_to_num(per_query_z(b), nan=-3.0)))
    for k in (1, 5, 20, 60):
        rows.append((f"reciprocal-rank fusion, k {k}", 1.0 / (k + ranks(a)) + 1.0 / (k + ranks(b))))
    print(f"{len(truth)} queries; {int(np.isfinite(b).sum())} of {b.size} pairs scored by {other_key}")
    for name, scores in rows:
        t1, t5 = top_k(ranked_identities(index, scores, identities), truth)
        print(f"{name:55s} top-1 {t1:.3f}  top-5 {t5:.3f}")


if __name__ == "__main__":
    main()
