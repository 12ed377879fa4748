"""Pair scores → per-pipeline probabilities → fused probability → identities → decision.

Shapes: for N_q queries and B shortlisted gallery images each, raw scores are float (N_q, B)
per pipeline with NaN where a pair was not scored (e.g. an image without features).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from reid_engine.records import NEW_INDIVIDUAL, Candidate


def logistic_calibration(raw: np.ndarray, midpoint: float, width: float) -> np.ndarray:
    """P(same individual) = 1 / (1 + exp(-(raw - midpoint) / width)) in float64; NaN stays NaN."""
    return 1.0 / (1.0 + np.exp(-(np.asarray(raw, np.float64) - midpoint) / width))


def fuse_raw(raws: Sequence[np.ndarray], weights: Sequence[float], widths: Sequence[float]) -> np.ndarray:
    """Weighted mean of raw scores in units of each pipeline's calibration width (N_q, B).

    Used only to break ties between saturated probabilities, so the ranking keeps the order
    of the raw evidence; unscored pairs count as 0.
    """
    stack = np.stack([np.nan_to_num(r, nan=0.0) / w for r, w in zip(raws, widths)])
    return np.tensordot(np.asarray(weights, np.float64), stack, axes=1) / max(sum(weights), 1e-12)


def fuse(probabilities: Sequence[np.ndarray], weights: Sequence[float]) -> np.ndarray:
    """Weighted mean of per-pipeline probabilities (N_q, B), over the pipelines that scored a pair.

    A pair no pipeline scored gets probability 0.
    """
    stack = np.stack(probabilities)  # (P, N_q, B)
    w = np.asarray(weights, np.float64)[:, None, None] * np.isfinite(stack)
    total = w.sum(0)
    return np.where(total > 0, (np.nan_to_num(stack) * w).sum(0) / np.maximum(total, 1e-12), 0.0)


@dataclass(frozen=True)
class IdentityScore:
    identity: str
    score: float
    best_row: int  # gallery row of the identity's best image
    best_column: int  # shortlist column of that image
    tiebreak: float = 0.0


def aggregate(fused_row: np.ndarray, rows: np.ndarray, identities: Sequence[str], how: str,
              tiebreak_row: np.ndarray | None = None) -> list[IdentityScore]:
    """Per-identity probability from one query's shortlisted images, best first.

    fused_row float (B,), rows int (B,) gallery rows, identities[row] its label. ``max`` keeps
    the best image; ``sum`` combines an identity's images as 1 − Π(1 − p) (noisy-or), which
    grows with every agreeing image and stays a probability. Equal probabilities (saturated
    calibration) are ordered by ``tiebreak_row`` (B,), e.g. the fused raw score.
    """
    if tiebreak_row is None:
        tiebreak_row = np.zeros(len(rows))
    by_identity: dict[str, list[int]] = defaultdict(list)
    for col, row in enumerate(rows):
        by_identity[identities[row]].append(col)
    out = []
    for identity, cols in by_identity.items():
        p = fused_row[cols]
        best = cols[int(np.lexsort((-tiebreak_row[cols], -p))[0])]
        score = float(p.max()) if how == "max" else float(1.0 - np.prod(1.0 - np.clip(p, 0, 1)))
        tie = float(tiebreak_row[cols].max()) if how == "max" else float(tiebreak_row[cols].sum())
        out.append(IdentityScore(identity, score, int(rows[best]), best, tie))
    out.sort(key=lambda s: (-s.score, -s.tiebreak, s.identity))
    return out


def decide(candidates: Sequence[Candidate], threshold: float) -> tuple[str, float, str]:
    """(prediction, score, decision) from ranked candidates: known if the top clears ``threshold``."""
    if not candidates:
        return NEW_INDIVIDUAL, 0.0, "new"
    top = candidates[0]
    if top.score >= threshold:
        return top.identity, top.score, "known"
    return NEW_INDIVIDUAL, top.score, "new"
