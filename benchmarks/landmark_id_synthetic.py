"""Landmark-Id against ArcFace alone on a synthetic seal set with known landmarks (issue 15).

    python benchmarks/landmark_id_synthetic.py --data synthetic-seal-hard --epochs 12 --image-size 160 \
        --out benchmarks/results/landmark-id-synthetic-hard.json
    python benchmarks/landmark_id_synthetic.py --data synthetic-seal-hard --n-known 30 --gallery-per 8 ...

Both nets are trained by ``train_embedder`` with the same options and seed on the set's gallery
(its ``keypoints`` column: eye, fore flipper, hind flippers, null where hidden), then each
known query is ranked against the gallery by the embedding's cosine alone (identities ranked by
their best photo). The Landmark-Id net is measured twice: queries with their own keypoints
(``given``) and with the net's predicted landmarks (``predicted``, what a run on unannotated
photos gets). Prints and writes one JSON record with the machine, timings and peak memory.
"""

from __future__ import annotations

import argparse
import dataclasses
import csv
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from global_signal import metrics
from reid_engine.benchmark.datasets import SYNTHETIC
from reid_engine.components import build_components, build_plugin
from reid_engine.embedding.stored import model_key
from reid_engine.inputs.manifests import load_manifest
from reid_engine.inputs.views import image_loader
from reid_engine.registry import PluginTable
from reid_engine.registry.profiles import PluginRef, builtin_profiles, load_profile_file
from reid_engine.store.database import GalleryDatabase
from reid_engine.synthetic.seals import NEW_INDIVIDUAL, generate_seal_dataset
from reid_engine.training.train_embedder import TrainEmbedderOptions, train_embedder


def embed_all(db_path: Path, profile, table, records, landmarks: str) -> np.ndarray:
    """The stored model's embeddings (N, D) of ``records``, seen as the profile sees them."""
    components = build_components(profile, table, "cpu")
    with GalleryDatabase(db_path) as db:
        embedder = build_plugin(table, "embedder", PluginRef("trained-embedder", (("landmarks", landmarks),)), "cpu",
                                "benchmark").obj
        embedder.load_state(db.get_model(model_key(profile.name)))
        load = image_loader(components, profile, db)
        return embedder.embed([load(r) for r in records])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="synthetic-seal-hard", choices=sorted(SYNTHETIC))
    parser.add_argument("--n-known", type=int, help="individuals (default: the named set's)")
    parser.add_argument("--gallery-per", type=int, help="gallery photos per individual (default: the named set's)")
    parser.add_argument("--root", type=Path, default=Path(tempfile.gettempdir()) / "landmark-id-data")
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--image-size", type=int, default=160)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--methods", default="arcface,landmark-id")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    config = SYNTHETIC[args.data]
    changes = {k: v for k, v in (("n_known", args.n_known), ("gallery_per_individual", args.gallery_per)) if v}
    config = dataclasses.replace(config, **changes)
    name = args.data + "".join(f"-{k}{v}" for k, v in changes.items())
    data = generate_seal_dataset(args.root / name, config)
    table = PluginTable.discover()
    profile = load_profile_file(builtin_profiles()["seal"])
    gallery = load_manifest(data.gallery_csv, "gallery", table).records
    queries = [r for r in load_manifest(data.query_csv, "query", table).records if r.truth != NEW_INDIVIDUAL]
    with open(data.gallery_csv, newline="") as f:
        visible = [sum(v is not None for v in json.loads(r["keypoints"]).values()) for r in csv.DictReader(f)]
    record = {"data": f"{name}: {config}", "gallery_photos": len(gallery),
              "known_queries": len(queries), "landmarks_visible_per_gallery_photo": float(np.mean(visible)),
              "machine": f"{os.cpu_count()} CPU cores, no GPU", "command": " ".join(sys.argv), "runs": {}}
    work = Path(tempfile.mkdtemp(prefix="landmark-id-"))
    for method in args.methods.split(","):
        db_path = work / f"{method}.db"
        options = TrainEmbedderOptions(profile=profile, db=db_path, gallery=data.gallery_csv, method=method,
                                       epochs=args.epochs, image_size=args.image_size, seed=args.seed,
                                       checkpoint=work / f"{method}.ckpt")
        t0 = time.perf_counter()
        result = train_embedder(options, table, log=lambda line, m=method: print(f"[{m}] {line}", flush=True))
        trained_s = time.perf_counter() - t0
        modes = ("given", "predicted") if method == "landmark-id" else ("given",)
        for mode in modes:
            t1 = time.perf_counter()
            g = embed_all(db_path, profile, table, gallery, mode)
            q = embed_all(db_path, profile, table, queries, mode)
            figures = metrics(q, [r.truth for r in queries], g, [r.identity for r in gallery])
            name = method if method == "arcface" else f"{method} ({mode} landmarks on every photo)"
            record["runs"][name] = {**figures, "train_s": round(trained_s, 1),
                                    "train_s_per_epoch": round(result.seconds_training / max(1, len(result.history)), 1),
                                    "epochs_run": len(result.history), "best_epoch": result.best_epoch,
                                    "embed_s": round(time.perf_counter() - t1, 1)}
            print(name, json.dumps(record["runs"][name]), flush=True)
    record["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    text = json.dumps(record, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
