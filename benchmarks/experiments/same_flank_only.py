"""Would matching only photos of the same flank help? nyala-dev's metadata gives each photo's
``orientation`` (left / right flank); this re-ranks a closed-split cell's pairs with every
opposite-flank gallery photo dropped, offline.

    python benchmarks/experiments/same_flank_only.py CELL/scores.npz [--data ../shared/data/nyala-dev]

``scores.npz`` is what ``reid-engine benchmark ... --split closed`` leaves beside ``cell.json``;
its gallery rows are the closed split's gallery image ids in sorted order (the database's order).
Prints top-1 / top-5 of every score array in it, all pairs against same-flank pairs only. Not a test.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("scores")
    parser.add_argument("--data", default=str(Path(__file__).resolve().parents[3] / "shared" / "data" / "nyala-dev"))
    args = parser.parse_args()
    data = Path(args.data)
    meta = {r["image_id"]: r for r in csv.DictReader(open(data / "metadata.csv"))}
    split = list(csv.DictReader(open(data / "splits" / "closed.csv")))
    gallery = sorted(r["image_id"] for r in split if r["split"] == "gallery")
    queries = [r["image_id"] for r in split if r["split"] != "gallery"]
    cell = np.load(args.scores)
    identities, index, truth = cell["identities"], cell["index"], cell["truth"]
    if [meta[g]["identity"] for g in gallery] != list(identities) or len(queries) != len(truth):
        raise SystemExit(f"{args.scores}: not a closed-split cell of {data} (gallery rows do not line up)")
    g_side = np.array([meta[g]["orientation"] for g in gallery])
    q_side = np.array([meta[q]["orientation"] for q in queries])
    for key in [k for k in cell.files if k.startswith("raw_")] + ["sim"]:
        for same_only in (False, True):
            top1 = top5 = 0
            for q in range(len(truth)):
                values = np.nan_to_num(cell[key][q].astype(np.float64), nan=-1.0)
                if same_only:
                    values[g_side[index[q]] != q_side[q]] = -np.inf
                best: dict[str, float] = {}
                for row, value in zip(index[q], values):
                    best[identities[row]] = max(best.get(identities[row], -np.inf), value)
                ranked = sorted(best, key=lambda name: -best[name])
                top1 += ranked[0] == truth[q]
                top5 += truth[q] in ranked[:5]
            label = "same flank only" if same_only else "all pairs"
            print(f"{key:20s} {label:16s} top-1 {top1 / len(truth):.3f}  top-5 {top5 / len(truth):.3f}")


if __name__ == "__main__":
    main()
