"""RootSIFT of normalised patches: kornia's ``SIFTDescriptor`` against ``PatchRootSift``
(plugins/extractors/_patch_sift.py), the same patches, one process, alternating.

    python benchmarks/patch_sift_speed.py [--patches 1024] [--size 32] [--threads 2] [--repeats 5]

Patches are smoothed random noise (the timing does not depend on their content). Prints and
writes benchmarks/results/patch-sift-speed-<threads>-threads.json: seconds per call of each (median of
``--repeats``), and the largest absolute difference between their descriptors.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch

from reid_engine.plugins.extractors._patch_sift import PatchRootSift

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--patches", type=int, default=1024)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    import kornia.feature as KF

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    patches = torch.nn.functional.avg_pool2d(torch.rand(args.patches, 1, args.size + 2, args.size + 2), 3, 1)
    methods = {"kornia SIFTDescriptor": KF.SIFTDescriptor(args.size, rootsift=True).eval(),
               "PatchRootSift": PatchRootSift(args.size).eval()}
    seconds: dict[str, list[float]] = {name: [] for name in methods}
    with torch.inference_mode():
        outputs = {name: m(patches) for name, m in methods.items()}  # warm-up
        for _ in range(args.repeats):
            for name, m in methods.items():
                t = time.perf_counter()
                m(patches)
                seconds[name].append(time.perf_counter() - t)
    record = {"patches": args.patches, "size": args.size, "threads": args.threads, "repeats": args.repeats,
              "s_per_call": {name: statistics.median(s) for name, s in seconds.items()},
              "max_abs_difference": float((outputs["PatchRootSift"] - outputs["kornia SIFTDescriptor"]).abs().max()),
              "machine": {"platform": platform.platform(), "processor": platform.processor()},
              "command": "python benchmarks/patch_sift_speed.py " + " ".join(
                  f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items())}
    print(json.dumps(record, indent=1))
    (RESULTS / f"patch-sift-speed-{args.threads}-threads.json").write_text(json.dumps(record, indent=1) + "\n")


if __name__ == "__main__":
    main()
