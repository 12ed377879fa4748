"""Would a bfloat16 descriptor product make ratio-tested matching faster, and how much would it
change the matches? On real cached features of a benchmark cell (offline; not a test).

    python benchmarks/experiments/product_precision.py --db CELL/gallery.db [--threads 1] [--pairs 600]

``CELL/gallery.db`` is a cell database of a profile with Hessian-affine RootSIFT features (e.g.
the shipped nyala profile's). Pairs are the first 20 cached feature sets against the next 30.
Prints ms per product (N1 x 128 @ 128 x N2) in float32 and in bfloat16 (on a CPU with AVX512-BF16
or AMX the latter runs on them; elsewhere it may be slower), and, matching each pair with the
engine's ratio test (0.95) on distances from either product, the share of float32's matches the
bfloat16 product loses and adds (bfloat16 rounds the product itself to 8 significant bits).
"""

from __future__ import annotations

import argparse
import sqlite3
import time
from pathlib import Path

import torch

from reid_engine.plugins.matchers.nearest_neighbour import _ratio_mutual_nn_numpy
from reid_engine.records import LocalFeatures
from reid_engine.store.database import GalleryDatabase


def squared(d1: torch.Tensor, d2: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Squared distances float32 (N1, N2) of unit rows from a product computed in ``dtype``."""
    return (2.0 - 2.0 * (d1.to(dtype) @ d2.to(dtype).T).float()).clamp_(min=0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--db", type=Path, required=True)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--ratio", type=float, default=0.95)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    keys = [k for (k,) in sqlite3.connect(args.db).execute("select key from features limit 50")]
    with GalleryDatabase(args.db) as db:
        feats = [LocalFeatures.from_arrays(db.get_features(k)) for k in keys]
    desc = [torch.nn.functional.normalize(torch.from_numpy(f.desc).float(), dim=1) for f in feats]
    pairs = [(desc[i], desc[j]) for i in range(20) for j in range(20, 50) if len(desc[i]) > 1 and len(desc[j]) > 1]
    for name, dtype in (("float32", torch.float32), ("bfloat16", torch.bfloat16)):
        cast = [(a.to(dtype), b.to(dtype)) for a, b in pairs]
        for a, b in cast[:5]:
            a @ b.T
        start = time.perf_counter()
        for a, b in cast:
            a @ b.T
        print(f"{name:9s} product: {(time.perf_counter() - start) / len(cast) * 1000:.2f} ms a pair "
              f"({args.threads} thread(s), {len(pairs)} pairs)")
    kept = lost = added = 0
    for a, b in pairs:
        exact = _ratio_mutual_nn_numpy(squared(a, b, torch.float32).numpy(), args.ratio)
        rough = _ratio_mutual_nn_numpy(squared(a, b, torch.bfloat16).numpy(), args.ratio)
        e, r = set(zip(exact[1].tolist(), exact[2].tolist())), set(zip(rough[1].tolist(), rough[2].tolist()))
        kept += len(e)
        lost += len(e - r)
        added += len(r - e)
    print(f"matches from the float32 product: {kept}; the bfloat16 product loses {lost / max(kept, 1):.1%} "
          f"of them and adds {added / max(kept, 1):.1%}")


if __name__ == "__main__":
    main()
