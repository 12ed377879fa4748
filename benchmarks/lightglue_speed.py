"""LightGlue pairs/s on real photos: one pair at a time against pairs spread over the CPU threads.

    python benchmarks/lightglue_speed.py                      # CPU, every setting below
    python benchmarks/lightglue_speed.py --device cuda        # GPU: batched, no point pruning

ALIKED-n16 features (768 px, 2048 keypoints, as `benchmarks/pipeline_speed.py`) of nyala-dev
photos; LightGlue sees the strongest ``--keypoints`` of each. Every setting matches the same
pairs through ``match_many`` (as the engine calls it) after one warm-up call, in this one
process, one after the other; matches are compared with the first setting's (identical pairs,
mean Jaccard of the match sets). ``bf16`` runs LightGlue's weights and descriptors in bfloat16. Writes
benchmarks/results/lightglue-<device>.json.
"""

from __future__ import annotations

import argparse
import csv
import itertools
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--photos", type=int, default=12)
    parser.add_argument("--pairs", type=int, default=60)
    parser.add_argument("--keypoints", type=int, default=512)
    args = parser.parse_args()
    count = threads.configure()
    table = PluginTable.discover()

    def build(kind: str, name: str, options: dict):
        spec = table.get(kind, name)
        return spec.build(spec.make_config(options), args.device)

    rows = list(csv.DictReader(open(DATA / "metadata.csv")))
    chosen = rows[:: len(rows) // args.photos][: args.photos]
    extractor = build("extractor", "aliked", {"resize": 768, "max_keypoints": 2048})
    feats = [extractor.extract(read_image(ImageRecord(r["image_id"], DATA / r["path"]))) for r in chosen]
    pairs = list(itertools.combinations(range(len(feats)), 2))[: args.pairs]
    first, second = [feats[i] for i, _ in pairs], [feats[j] for _, j in pairs]
    if args.device.startswith("cuda"):
        settings = {"batched, no pruning (batch 64)": {"width_confidence": -1, "batch_size": 64},
                    "one pair at a time, pruning": {"batch_size": 1},
                    "batched, no pruning (batch 64), bf16": {"width_confidence": -1, "batch_size": 64,
                                                             "precision": "bf16"}}
    else:
        settings = {"one pair at a time on all threads (workers = 1)": {"workers": 1},
                    f"pairs spread over {count} threads (workers = 0)": {"workers": 0},
                    f"pairs spread over {count} threads, bf16": {"workers": 0, "precision": "bf16"}}
    results, reference = [], None
    for label, options in settings.items():
        matcher = build("matcher", "lightglue", {"features": "aliked", "max_keypoints": args.keypoints, **options})
        matcher.match_many(first[:2], second[:2])  # warm-up
        if args.device.startswith("cuda"):
            import torch

            torch.cuda.synchronize()
        t = time.perf_counter()
        matches = matcher.match_many(first, second)
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        seconds = time.perf_counter() - t
        if reference is None:
            reference = matches
        same = sum(np.array_equal(a.idx, b.idx) for a, b in zip(reference, matches))
        jaccard = [len(set(map(tuple, a.idx)) & set(map(tuple, b.idx))) / max(1, len(set(map(tuple, a.idx))
                                                                                 | set(map(tuple, b.idx))))
                   for a, b in zip(reference, matches)]
        row = {"setting": label, "options": options, "pairs": len(pairs), "pairs_per_s": len(pairs) / seconds,
               "matches_mean": float(np.mean([len(m) for m in matches])), "same_matches_as_first": f"{same}/{len(pairs)}",
               "match_jaccard_vs_first": float(np.mean(jaccard))}
        results.append(row)
        print(json.dumps(row), flush=True)
    out = {"device": args.device, "keypoints": args.keypoints, "threads": count, "results": results,
           "machine": {"platform": platform.platform(), "cpus": threads.available_cpus(),
                       "processor": platform.processor() or platform.machine()},
           "command": "python benchmarks/lightglue_speed.py" + (f" --device {args.device}" if args.device != "cpu" else "")}
    path = REPO / "benchmarks" / "results" / f"lightglue-{args.device.split(':')[0]}.json"
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
