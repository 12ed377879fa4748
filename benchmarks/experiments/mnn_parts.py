"""Where a ratio-tested mutual-NN match of 1,024 x 1,024 descriptors (128-d, unit rows) spends its
time on the CPU: the product, the in-place passes that turn it into distances, and the
reductions ``ratio_mutual_nn`` makes (with and without indices). Random unit descriptors (the
times do not depend on the values); ms per call, mean of 50 after one warm-up, on ``--threads``.

    python benchmarks/experiments/mnn_parts.py [--threads 2]

Not a test. Found on 3 Dec 2026 (2 cores): the index-returning ``min`` along either dimension
costs ~1 ms each, ``amin`` 0.05-0.1 ms, the product 2-3 ms, the four element-wise passes 0.24 ms.
"""

from __future__ import annotations

import argparse
import time

import torch


def ms(call, repeats: int = 50) -> float:
    call()
    start = time.perf_counter()
    for _ in range(repeats):
        call()
    return (time.perf_counter() - start) / repeats * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    gen = torch.Generator().manual_seed(0)
    d1 = torch.nn.functional.normalize(torch.rand(1024, 128, generator=gen), dim=1)
    d2 = torch.nn.functional.normalize(torch.rand(1024, 128, generator=gen), dim=1)
    sq = torch.empty((1024, 1024 + 16))[:, :1024]  # the padded layout ratio_mutual_nn uses
    torch.mm(d1, d2.T, out=sq)
    parts = {
        "mm (1024 x 128) @ (128 x 1024)": lambda: torch.mm(d1, d2.T, out=sq),
        "4 in-place element-wise passes": lambda: sq.mul_(1.0).add_(0.0).add_(0.0).clamp_(min=-5.0),
        "min with index, dim 1": lambda: sq.min(1),
        "min with index, dim 0": lambda: sq.min(0),
        "amin, dim 1": lambda: sq.amin(1),
        "amin, dim 0": lambda: sq.amin(0),
        "argmin, dim 1": lambda: sq.argmin(1),
        "argmin, dim 0": lambda: sq.argmin(0),
        "topk 2, dim 1": lambda: sq.topk(2, 1),
    }
    for name, call in parts.items():
        print(f"{name:36s} {ms(call):6.2f} ms")


if __name__ == "__main__":
    main()
