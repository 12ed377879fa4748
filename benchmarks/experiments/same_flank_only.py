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

from reid_engine.calibration.fusion import aggregate
from reid_engine.metrics import top_k_accuracy


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
            ranked = []
            for q in range(len(truth)):
                values = np.nan_to_num(cell[key][q].astype(np.float64), nan=-1.0)
                if same_only:
                    values[g_side[index[q]] != q_side[q]] = -np.inf
                first_listed = -np.arange(len(values), dtype=np.float64)  # equal scores: shortlist order
                ranked.append([s.identity for s in aggregate(values, index[q], identities, "max", first_listed)])
            label = "same flank only" if same_only else "all pairs"
            print(f"{key:20s} {label:16s} top-1 {top_k_accuracy(truth, ranked, 1):.3f}  "
                  f"top-5 {top_k_accuracy(truth, ranked, 5):.3f}")

if __name__ == "__main__":
    main()
