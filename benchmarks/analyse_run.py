"""Per-stage accuracy of one run: shortlist recall, the global embedding alone, each pipeline alone.

Used by the benchmarks; ``analyse(result)`` takes a :class:`reid_engine.runs.RunResult`.
"""

from __future__ import annotations

import numpy as np

from reid_engine.calibration.fusion import aggregate
from reid_engine.metrics import top_k_accuracy
from reid_engine.records import NEW_INDIVIDUAL


def _ranked(scores: np.ndarray, index: np.ndarray, identities: list[str]) -> list[list[str]]:
    return [[s.identity for s in aggregate(np.nan_to_num(scores[q], nan=-1.0), index[q], identities, "max", scores[q])]
            for q in range(index.shape[0])]


def analyse(result) -> dict[str, dict[str, float]]:
    truth = [p.truth for p in result.predictions]
    known = [t is not None and t != NEW_INDIVIDUAL for t in truth]
    ids = result.gallery_identities
    index = result.shortlist_index
    out = {}
    in_list = [truth[q] in {ids[r] for r in index[q]} for q in range(len(truth)) if known[q]]
    out["shortlist"] = {"recall": float(np.mean(in_list)) if in_list else float("nan"), "B": int(index.shape[1])}
    for b in (1, 5, 10, 20, 50, 100):  # recall@B: the right individual among the top-B gallery images
        if b <= index.shape[1]:
            hits = [truth[q] in {ids[r] for r in index[q, :b]} for q in range(len(truth)) if known[q]]
            out["shortlist"][f"recall@{b}"] = float(np.mean(hits)) if hits else float("nan")
    ranked = _ranked(result.shortlist_sim, index, ids)
    out["global-embedding"] = {f"top{k}": top_k_accuracy(truth, ranked, k) for k in (1, 5)}
    out["global-embedding"]["mAP@B"] = _identity_map(truth, ranked)
    for name, raw in result.raw_scores.items():
        ranked = _ranked(raw, index, ids)
        out[name] = {f"top{k}": top_k_accuracy(truth, ranked, k) for k in (1, 5)}
    return out


def _identity_map(truth: list, ranked: list[list[str]]) -> float:
    """Mean of 1/rank of the true identity among the shortlisted identities (0 when absent),
    over known queries: the mAP of identity retrieval with one relevant identity per query."""
    values = [1.0 / (r.index(t) + 1) if t in r else 0.0 for t, r in zip(truth, ranked)
              if t is not None and t != NEW_INDIVIDUAL]
    return float(np.mean(values)) if values else float("nan")
