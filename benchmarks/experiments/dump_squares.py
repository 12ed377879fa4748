"""Decode every nyala-dev photo once as the embedder sees it and save the squares.

    python benchmarks/experiments/dump_squares.py --db DB --out /tmp/emb/squares.npz [--side 288]

``DB``: a database that already holds the shipped nyala profile's IS-Net masks (e.g. the one
a `reid-engine benchmark` cell leaves in DIR/cells/nyala-dev/nyala/closed/gallery.db). Saves uint8 (N, S, S, 3) for two views: ``masked`` (the animal,
background greyed, cropped and squared: :func:`reid_engine.embedding.views.animal_square`) and
``whole`` (the whole photo squared), with image ids and identities in metadata order.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import numpy as np

from reid_engine.components import build_components
from reid_engine.embedding.views import animal_square
from reid_engine.inputs.manifests import load_manifest
from reid_engine.inputs.views import image_loader
from reid_engine.registry import PluginTable
from reid_engine.registry.profiles import resolve_profile
from reid_engine.store.database import GalleryDatabase

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "nyala-dev"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--db", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--side", type=int, default=288)
    args = parser.parse_args()
    table = PluginTable.discover()
    profile, _ = resolve_profile("nyala", None)
    components = build_components(profile, table, "cpu")
    records = load_manifest(DATA / "metadata.csv", "gallery", table).records
    masked, whole = [], []
    with GalleryDatabase(args.db) as db:
        load = image_loader(components, profile, db)
        for n, record in enumerate(records):
            image = load(record)
            masked.append(animal_square(image, args.side))
            whole.append(animal_square(dataclasses.replace(image, mask=None), args.side))
            if n % 100 == 0:
                print(n, flush=True)
    np.savez(args.out, masked=np.stack(masked), whole=np.stack(whole),
             image_ids=np.array([r.image_id for r in records]), identities=np.array([r.identity for r in records]),
             orientation=np.array([str(r.orientation or "") for r in records]))


if __name__ == "__main__":
    main()
