"""Pair scores → per-pipeline probabilities → fused probability → identities → decision.

Shapes: for N_q queries and B shortlisted gallery images each, raw scores are float (N_q, B)
per pipeline with NaN where a pair was not scored (e.g. an image without features).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from .records import NEW_INDIVIDUAL, Candidate


def logistic_calibration(raw: np.ndarray, midpoint: float, width: float) -> np.ndarray:
    """P(same individual) = 1 / (1 + exp(-(raw - midpoint) / width)); NaN stays NaN."""
    return 1.0 / (1.0 + np.exp(-(raw - midpoint) / width))


def fuse(probabilities: Sequence[np.ndarray], weights: Sequence[float]) -> np.ndarray:
    """Weighted mean of per-pipeline probabilities (N_q, B), over the pipelines that scored a pair.

    A pair no pipeline scored gets probability 0.
    """
    stack = np.stack(probabilities)  # (P, N_q, B)
    w = np.asarray(weights, np.float64)[:, None, None] * np.isfinite(stack)
    total = w.sum(0)
    fused = np.where(total > 0, (np.nan_to_num(stack) * w).sum(0) / np.maximum(total, 1e-12), 0.0)
    return fused.astype(np.float32)


@dataclass(frozen=True)
class IdentityScore:
    identity: str
    score: float
    best_row: int  # gallery row of the identity's best image
    best_column: int  # shortlist column of that image


def aggregate(fused_row: np.ndarray, rows: np.ndarray, identities: Sequence[str], how: str) -> list[IdentityScore]:
    """Per-identity probability from one query's shortlisted images, best first.

    fused_row float (B,), rows int (B,) gallery rows, identities[row] its label. ``max`` keeps
    the best image; ``sum`` combines an identity's images as 1 − Π(1 − p) (noisy-or), which
    grows with every agreeing image and stays a probability.
    """
    by_identity: dict[str, list[int]] = defaultdict(list)
    for col, row in enumerate(rows):
        by_identity[identities[row]].append(col)
    out = []
    for identity, cols in by_identity.items():
        p = fused_row[cols]
        best = cols[int(np.argmax(p))]
        score = float(p.max()) if how == "max" else float(1.0 - np.prod(1.0 - np.clip(p, 0, 1)))
        out.append(IdentityScore(identity, score, int(rows[best]), best))
    out.sort(key=lambda s: (-s.score, s.identity))
    return out


def decide(candidates: Sequence[Candidate], threshold: float) -> tuple[str, float, str]:
    """(prediction, score, decision) from ranked candidates: known if the top clears ``threshold``."""
    if not candidates:
        return NEW_INDIVIDUAL, 0.0, "new"
    top = candidates[0]
    if top.score >= threshold:
        return top.identity, top.score, "known"
    return NEW_INDIVIDUAL, top.score, "new"
