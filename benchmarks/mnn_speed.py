"""Ratio-tested mutual nearest neighbours: kornia's ``match_smnn`` against the ``mnn`` plugin's
``ratio_mutual_nn``, on cached descriptors of real photos, the same pairs, one process.

    python benchmarks/mnn_speed.py --db GALLERY.db [--pairs 300] [--ratio 0.8] [--threads 2]

GALLERY.db is any gallery database whose feature cache holds local features (e.g. a
`reid-engine benchmark` cell's, or the one `reid-engine run` wrote). Pairs are drawn among the
first 40 cached feature files; each function runs twice, alternating, after a warm-up; the
matches are compared with kornia's pair by pair. "torch reductions" is ``ratio_mutual_nn``'s path
off the CPU (and on it until 3 Dec 2026). Prints a JSON record (pairs/s of each, identical pairs).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", type=Path, required=True)
    parser.add_argument("--pairs", type=int, default=300)
    parser.add_argument("--ratio", type=float, default=0.8)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    import kornia.feature as KF

    from reid_engine.plugins.matchers.nearest_neighbour import (
        _ratio_mutual_nn_torch,
        ratio_mutual_nn,
        squared_distances,
    )

    def torch_reductions(d1: torch.Tensor, d2: torch.Tensor, ratio: float) -> tuple[torch.Tensor, torch.Tensor]:
        """ratio_mutual_nn as it was until 3 Dec 2026 on the CPU too (now only off the CPU)."""
        return _ratio_mutual_nn_torch(squared_distances(d1, d2, padded=True), ratio)

    torch.set_num_threads(args.threads)
    files = sorted((args.db.parent / (args.db.name + ".d") / "features").glob("*/*.npz"))[:40]
    if len(files) < 2:
        raise SystemExit(f"{args.db}: fewer than two cached feature files; run the engine on it first")
    descs = []
    for f in files:
        with np.load(f) as data:
            descs.append(torch.from_numpy(np.ascontiguousarray(data["desc"], dtype=np.float32)))
    rng = np.random.default_rng(0)
    pairs = [tuple(rng.choice(len(descs), 2, replace=False)) for _ in range(args.pairs)]
    pairs = [(descs[i], descs[j]) for i, j in pairs]
    functions = {"kornia match_smnn": KF.match_smnn, "torch reductions": torch_reductions,
                 "ratio_mutual_nn": ratio_mutual_nn}
    for fn in functions.values():
        fn(*pairs[0], args.ratio)
    rates: dict[str, list[float]] = {name: [] for name in functions}
    outputs = {}
    for _ in range(2):
        for name, fn in functions.items():
            t = time.perf_counter()
            outputs[name] = [fn(a, b, args.ratio)[1] for a, b in pairs]
            rates[name].append(len(pairs) / (time.perf_counter() - t))
    same = {name: sum(torch.equal(a, b) for a, b in zip(outputs["kornia match_smnn"], out))
            for name, out in outputs.items() if name != "kornia match_smnn"}
    record = {
        "what": f"ratio-tested mutual NN (ratio {args.ratio}) of cached descriptors, {len(pairs)} pairs",
        "descriptors": f"{len(descs)} files, {np.mean([len(d) for d in descs]):.0f} x {descs[0].shape[1]} on average",
        "pairs_per_s": {name: [round(r, 1) for r in v] for name, v in rates.items()},
        "pairs_with_kornias_matches": {name: f"{n}/{len(pairs)}" for name, n in same.items()},
        "threads": args.threads,
        "machine": {"platform": platform.platform(), "processor": platform.processor()},
        "command": f"python benchmarks/mnn_speed.py --db {args.db} --pairs {args.pairs} --ratio {args.ratio} "
                   f"--threads {args.threads}",
    }
    print(json.dumps(record, indent=1))


if __name__ == "__main__":
    main()
