"""How much would a narrower shortlist cost? Re-ranks a benchmark cell's saved pair scores over
only the first B candidates of its shortlist, for several B (offline, no features touched).

    python benchmarks/experiments/shortlist_width.py CELL/scores.npz [--pipeline hessaff-snn]

``CELL/scores.npz`` (``reid-engine benchmark``): index int (Q, B_max) gallery rows, sim float
(Q, B_max) the shortlist embedder's cosine, identities (G,), truth (Q,), raw_PIPELINE float
(Q, B_max). For each B the B highest-``sim`` candidates are kept; identities are ranked by their
best photo's raw score (NaN lowest, ties by ``sim``), as the engine ranks a single pipeline.
Prints top-1, top-5 and the shortlist's recall (the true individual among the B). Not a test.
"""

from __future__ import annotations

import argparse

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("cell")
    parser.add_argument("--pipeline", default="hessaff-snn")
    parser.add_argument("--widths", default="50,100,150,200,250,300")
    args = parser.parse_args()
    d = np.load(args.cell)
    index, sim, ids, truth = d["index"], d["sim"], d["identities"], d["truth"]
    raw = np.nan_to_num(d[f"raw_{args.pipeline}"], nan=-np.inf)
    for width in (int(w) for w in args.widths.split(",")):
        top1 = top5 = recall = 0
        for q in range(len(index)):
            kept = np.argsort(-sim[q], kind="stable")[:width]
            best: dict[str, tuple[float, float]] = {}
            for j in kept:
                key, who = (raw[q, j], sim[q, j]), ids[index[q, j]]
                if who not in best or key > best[who]:
                    best[who] = key
            ranked = sorted(best, key=best.__getitem__, reverse=True)
            top1 += ranked[0] == truth[q]
            top5 += truth[q] in ranked[:5]
            recall += truth[q] in best
        n = len(index)
        print(f"B {width:4d}: top-1 {top1 / n:.3f}  top-5 {top5 / n:.3f}  shortlist recall {recall / n:.3f}")


if __name__ == "__main__":
    main()
