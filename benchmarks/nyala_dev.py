"""Accuracy and run time of a profile on nyala-dev's fixed splits (cold, then warm cache).

    python benchmarks/nyala_dev.py --species nyala --split closed --workdir /tmp/nyala-bench

Writes benchmarks/results/nyala-dev-<profile>-<split>.json with top-1/top-5/mAP/BAKS/BAUS,
per-stage timings of a cold run (empty database) and of a warm run (same database), and the
machine it ran on. The data set lives in ../shared/data/nyala-dev (see its README).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import time
from pathlib import Path

from analyse_run import analyse  # benchmarks/ is on sys.path when this script runs

from reid_engine.pipeline import RunOptions, run
from reid_engine.registry.profiles import load_profile_file, resolve_profile

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "nyala-dev"


def machine() -> dict:
    import torch

    return {"cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(), "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(), "torch": torch.__version__,
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--species", default="nyala")
    parser.add_argument("--profile", type=Path)
    parser.add_argument("--split", default="closed", choices=["closed", "open"])
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/reid-nyala-bench"))
    parser.add_argument("--keep-cache", action="store_true", help="do not start from an empty database")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    profile = load_profile_file(args.profile) if args.profile else resolve_profile(args.species, None)[0]
    db = args.workdir / f"{profile.name}.db"
    if not args.keep_cache:
        shutil.rmtree(args.workdir, ignore_errors=True)
    options = RunOptions(profile=profile, db=db, out=args.workdir / f"out-{args.split}", gallery=DATA / "metadata.csv",
                         split=DATA / "splits" / f"{args.split}.csv", device=args.device, write_report=True,
                         title=f"nyala-dev {args.split} · {profile.name}")
    runs = {}
    for label in ("cold", "warm"):
        t = time.perf_counter()
        result = run(options, progress=False)
        runs[label] = {"wall_s": time.perf_counter() - t, "timings": result.timings, "counts": result.counts}
    record = {"profile": profile.name, "profile_source": profile.source, "split": args.split,
              "metrics": result.metrics, "stages": analyse(result), "runs": runs, "machine": machine(), "errors": len(result.errors),
              "command": f"python benchmarks/nyala_dev.py --species {args.species} --split {args.split}"}
    out = REPO / "benchmarks" / "results" / f"nyala-dev-{profile.name}-{args.split}.json"
    out.write_text(json.dumps(record, indent=2, default=str) + "\n")
    print(json.dumps({k: record[k] for k in ("profile", "split", "metrics", "stages")}, indent=2, default=str))
    for label, r in runs.items():
        print(label, f"{r['wall_s']:.1f} s", {k: round(v, 1) for k, v in r["timings"].items()})


if __name__ == "__main__":
    main()
