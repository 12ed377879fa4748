"""Per-pipeline and fused top-1/top-5 from the raw scores a ``reid-engine benchmark`` cell saved.

    python benchmarks/experiments/view_fusion.py /tmp/nyala-bench/cells/nyala-dev/nyala-view-masked/closed/scores.npz

Each pipeline's raw pair scores (N_q, B) are put on one scale (divided by their 99th
percentile over all scored pairs), fused as a weighted sum for a few weights, and ranked by
identity (max over an identity's images, ties broken by the shortlist cosine), as the engine
does. No features are touched: this only re-reads scores, so it takes a second.
"""

from __future__ import annotations

import itertools
import sys
from pathlib import Path

import numpy as np


def top_k(score: np.ndarray, index: np.ndarray, sim: np.ndarray, identities: np.ndarray,
          truth: np.ndarray) -> tuple[float, float]:
    """top-1, top-5 of identity rankings (identity score = max over its shortlisted images)."""
    hits1 = hits5 = n = 0
    for q in range(score.shape[0]):
        if not truth[q]:
            continue
        n += 1
        best: dict[str, tuple[float, float]] = {}
        for col in range(score.shape[1]):
            ident = identities[index[q, col]]
            key = (np.nan_to_num(score[q, col], nan=-1.0), sim[q, col])
            if ident not in best or key > best[ident]:
                best[ident] = key
        ranked = sorted(best, key=lambda i: best[i], reverse=True)
        hits1 += ranked[:1] == [truth[q]]
        hits5 += truth[q] in ranked[:5]
    return hits1 / max(n, 1), hits5 / max(n, 1)


def main(path: Path) -> None:
    data = np.load(path)
    index, sim, identities, truth = data["index"], data["sim"], data["identities"], data["truth"]
    raw = {k[4:]: data[k] for k in data.files if k.startswith("raw_")}
    scaled = {k: v / max(float(np.nanpercentile(v, 99)), 1e-9) for k, v in raw.items()}
    print(f"{path.name}: {int((truth != '').sum())} queries, shortlist {index.shape[1]}")
    print(f"  {'global cosine':40s} top-1 {top_k(sim, index, sim, identities, truth)[0]:.3f}  "
          f"top-5 {top_k(sim, index, sim, identities, truth)[1]:.3f}")
    for name, s in raw.items():
        t1, t5 = top_k(s, index, sim, identities, truth)
        print(f"  {name:40s} top-1 {t1:.3f}  top-5 {t5:.3f}")
    for a, b in itertools.combinations(sorted(scaled), 2):
        for w in (0.25, 0.5, 0.75):
            t1, t5 = top_k(w * scaled[a] + (1 - w) * scaled[b], index, sim, identities, truth)
            print(f"  {w:.2f} {a} + {1 - w:.2f} {b}: top-1 {t1:.3f}  top-5 {t5:.3f}")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
