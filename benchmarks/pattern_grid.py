"""Pattern extraction on synthetic seals the network never saw: IoU/F1, seconds per photo, and a
PNG grid (photo | true pattern | extracted pattern) of 12 photos.

    python benchmarks/pattern_grid.py --model seal-pattern.pt [--dataset synthetic-seal-hard ...]

The model comes from `reid-engine train pattern --data DIR`; the built-in synthetic sets
(seeds 21 and 23) hold individuals other than those of the `synthetic-seal` set (seed 22) it
is trained on in benchmarks/README.md. Writes benchmarks/results/pattern-grid.png and
pattern-extraction.json.
"""

from __future__ import annotations

import argparse
import csv
import json
import platform
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from reid_engine.benchmark.datasets import resolve_dataset
from reid_engine.pattern.model import predict_pattern, read_pattern_model

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", type=Path, required=True)
    p.add_argument("--dataset", action="append", default=None)
    p.add_argument("--workdir", type=Path, default=Path("/tmp/reid-pattern-grid"))
    p.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    p.add_argument("--tiles", type=int, default=12)
    args = p.parse_args()
    net, meta, sha = read_pattern_model(args.model)
    report, tiles = {"model": str(args.model), "sha256": sha, "trained_on": meta.get("trained_on"),
                     "machine": f"{platform.processor() or platform.machine()}, CPU"}, []
    for name in args.dataset or ["synthetic-seal-easy", "synthetic-seal-hard"]:
        dataset = resolve_dataset(name, args.workdir)
        root = dataset.metadata.parent
        patterns = {}  # image id -> the generator's pattern mask (its own gallery.csv / query.csv)
        for generated in (root / "data").glob("*.csv"):
            with generated.open(encoding="utf-8") as handle:
                patterns.update({r["image_id"]: root / "data" / r["pattern_path"] for r in csv.DictReader(handle)})
        tp = fp = fn = 0
        seconds = []
        for i, row in enumerate(dataset.rows()):
            rgb = np.asarray(Image.open(root / row["path"]).convert("RGB"))
            animal = np.asarray(Image.open(root / row["mask_path"])) > 127
            truth = np.asarray(Image.open(patterns[row["image_id"]])) > 127
            t = time.perf_counter()
            prob = predict_pattern(net, rgb, animal)
            seconds.append(time.perf_counter() - t)
            pred = (prob > 0.5) & animal
            truth &= animal
            tp += int((pred & truth).sum())
            fp += int((pred & ~truth).sum())
            fn += int((~pred & truth).sum())
            if len(tiles) < args.tiles and i % 7 == 0:
                tiles.append((rgb, truth, prob))
        report[name] = {"photos": len(seconds), "pattern_iou": tp / max(1, tp + fp + fn),
                        "pattern_f1": 2 * tp / max(1, 2 * tp + fp + fn), "s_per_photo": float(np.mean(seconds))}
        print(name, report[name])
    w = 256
    h = int(w * tiles[0][0].shape[0] / tiles[0][0].shape[1])
    grid = Image.new("RGB", (3 * w, 20 + h * len(tiles)), "white")
    draw = ImageDraw.Draw(grid)
    for c, label in enumerate(("photo", "true pattern (generator)", "extracted pattern")):
        draw.text((c * w + 4, 4), label, fill="black")
    for r, (rgb, truth, prob) in enumerate(tiles):
        for c, tile in enumerate((rgb, np.repeat((truth * 255).astype(np.uint8)[..., None], 3, 2),
                                  np.repeat((prob * 255).astype(np.uint8)[..., None], 3, 2))):
            grid.paste(Image.fromarray(tile).resize((w, h)), (c * w, 20 + r * h))
    args.out.mkdir(parents=True, exist_ok=True)
    grid.save(args.out / "pattern-grid.png")
    (args.out / "pattern-extraction.json").write_text(json.dumps(report, indent=2) + "\n")
    print(args.out / "pattern-grid.png")


if __name__ == "__main__":
    main()
