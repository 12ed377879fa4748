"""IS-Net mask: seconds per photo and agreement with the published 1024-px input, per input size.

    python benchmarks/isnet_input_size.py [--photos 20] [--sizes 1024 768 512 384 320 256]

Real nyala-dev photos (every k-th of metadata.csv). For each size: mean seconds per network
call (after one warm-up call), and the IoU of the cleaned largest-animal mask with the one the
1024-px input gives (median and minimum over the photos), plus the foreground share. One
process, sizes run one after the other, threads as ``reid_engine.threads.configure()`` sets
them. Writes benchmarks/results/isnet-input-size.json.
"""

from __future__ import annotations

import argparse
import csv
import json
import platform
import time
from pathlib import Path

import numpy as np

from reid_engine import threads
from reid_engine.inputs.images import read_image
from reid_engine.records import ImageRecord
from reid_engine.registry import PluginTable

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "nyala-dev"


def photos(n: int) -> list[Path]:
    rows = list(csv.DictReader(open(DATA / "metadata.csv")))
    return [DATA / r["path"] for r in rows[:: max(1, len(rows) // n)][:n]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=20)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1024, 768, 512, 384, 320, 256])
    args = parser.parse_args()
    count = threads.configure()
    spec = PluginTable.discover().get("segmenter", "isnet")
    images = [read_image(ImageRecord(p.stem, p)) for p in photos(args.photos)]
    masks: dict[int, list[np.ndarray]] = {}
    results = []
    for size in sorted(set(args.sizes) | {1024}, reverse=True):
        segmenter = spec.build(spec.make_config({"input_size": size}), "cpu")
        segmenter.probability(images[0])  # warm-up
        seconds, found = [], []
        for image in images:
            t = time.perf_counter()
            prob = segmenter.probability(image)
            seconds.append(time.perf_counter() - t)
            cleaned = segmenter.clean(prob)
            found.append(cleaned[0] if cleaned else np.zeros(prob.shape, bool))
        masks[size] = found
        iou = [float((a & b).sum() / max(1, (a | b).sum())) for a, b in zip(found, masks[1024])]
        row = {"input_size": size, "s_per_photo": float(np.mean(seconds)), "iou_vs_1024_median": float(np.median(iou)),
               "iou_vs_1024_min": float(np.min(iou)), "coverage_mean": float(np.mean([m.mean() for m in found]))}
        results.append(row)
        print(json.dumps(row))
    out = {"photos": len(images), "threads": count, "machine": {"platform": platform.platform(),
           "cpus": threads.available_cpus()}, "results": results,
           "command": "python benchmarks/isnet_input_size.py"}
    path = REPO / "benchmarks" / "results" / "isnet-input-size.json"
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
