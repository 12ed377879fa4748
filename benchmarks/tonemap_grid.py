"""Before/after tone processing, as a PNG grid: each row a photo; columns original, CLAHE, tone-mapped.

    python benchmarks/tonemap_grid.py --out benchmarks/results/tonemap-grid.png [--synthetic 4] [--nyala 4]

Synthetic seals come from the built-in ``synthetic-seal-hard`` set (harsh light, shade, blur),
the nyala photos from ../shared/data/nyala-dev; seconds per photo of each operator are printed.
"""

from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from reid_engine.benchmark.datasets import resolve_dataset
from reid_engine.records import ImageRecord, LoadedImage
from reid_engine.registry import PluginTable

REPO = Path(__file__).resolve().parents[1]
NYALA = REPO.parent / "shared" / "data" / "nyala-dev"


def photos(args) -> list[Path]:
    out = []
    synthetic = resolve_dataset("synthetic-seal-hard", args.workdir)
    rows = synthetic.rows()
    rng = np.random.default_rng(0)
    out += [synthetic.metadata.parent / rows[i]["path"] for i in rng.choice(len(rows), args.synthetic, replace=False)]
    if NYALA.is_dir():
        nyala = list(csv.DictReader((NYALA / "metadata.csv").open()))
        out += [NYALA / nyala[i]["path"] for i in rng.choice(len(nyala), args.nyala, replace=False)]
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "tonemap-grid.png")
    p.add_argument("--synthetic", type=int, default=4)
    p.add_argument("--nyala", type=int, default=4)
    p.add_argument("--workdir", type=Path, default=Path("/tmp/reid-tonemap-grid"))
    p.add_argument("--side", type=int, default=320, help="width of each tile")
    args = p.parse_args()
    table = PluginTable.discover()
    operators = {name: table.get("preprocessor", name) for name in ("clahe", "tonemap")}
    built = {name: spec.build(spec.make_config({}), "cpu") for name, spec in operators.items()}
    seconds = {name: [] for name in built}
    rows = []
    for path in photos(args):
        rgb = np.asarray(Image.open(path).convert("RGB"))
        image = LoadedImage(ImageRecord(path.stem, path), rgb, None, "0" * 64, rgb.shape[:2])
        tiles = [rgb]
        for name, op in built.items():
            t = time.perf_counter()
            tiles.append(op(image).rgb)
            seconds[name].append(time.perf_counter() - t)
        rows.append(tiles)
    side = args.side
    heights = [int(side * t[0].shape[0] / t[0].shape[1]) for t in rows]
    grid = Image.new("RGB", (side * 3, 20 + sum(heights)), "white")
    draw = ImageDraw.Draw(grid)
    for c, label in enumerate(("original", "CLAHE (seal profile)", "tonemap (Mantiuk)")):
        draw.text((c * side + 4, 4), label, fill="black")
    for r, tiles in enumerate(rows):
        for c, tile in enumerate(tiles):
            grid.paste(Image.fromarray(tile).resize((side, heights[r])), (c * side, 20 + sum(heights[:r])))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    grid.save(args.out)
    for name, s in seconds.items():
        print(f"{name}: {np.mean(s):.3f} s per photo (mean of {len(s)}, 2-core CPU)")
    print(args.out)


if __name__ == "__main__":
    main()
