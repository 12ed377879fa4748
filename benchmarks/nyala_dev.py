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
import sys
import time
from pathlib import Path

import numpy as np
from analyse_run import analyse  # benchmarks/ is on sys.path when this script runs

from reid_engine.commands.run import run
from reid_engine.registry.profiles import load_profile_file, resolve_profile
from reid_engine.runs import RunOptions

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "nyala-dev"


def machine() -> dict:
    import torch

    return {"cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(), "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(), "torch": torch.__version__,
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}


def calibrate_on_gallery(profile, db: Path, split: str, workdir: Path, device: str) -> dict:
    """`reid-engine calibrate` on the gallery rows of the split only (queries stay unseen)."""
    import csv

    from reid_engine.commands.calibrate import calibrate

    rows = {r["image_id"]: r for r in csv.DictReader(open(DATA / "metadata.csv"))}
    gallery_ids = [r["image_id"] for r in csv.DictReader(open(DATA / "splits" / f"{split}.csv")) if r["split"] != "query"]
    manifest = workdir / f"{split}-gallery.csv"
    with open(manifest, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["image_id", "identity", "path"])
        for i in gallery_ids:
            writer.writerow([i, rows[i]["identity"], str(DATA / rows[i]["path"])])
    t = time.perf_counter()
    result = calibrate(profile, db, manifest, unknown_share=0.2, seed=0, device=device,
                       plots_dir=REPO / "benchmarks" / "results" / f"calibration-{profile.name}-{split}")
    return {"split": result.split, "methods": result.methods, "ece_before_on_fit_pairs": result.ece_before,
            "ece_after_on_fit_pairs": result.ece_after, "seconds": time.perf_counter() - t,
            "threshold": result.fitted.threshold, "weights": list(map(float, result.fitted.weights)),
            "plots": {k: str(v) for k, v in result.plots.items()}}


def train_on_gallery(profile, db: Path, split: str, args) -> dict:
    """`reid-engine train embedder` on the split's gallery rows (queries never seen)."""
    from reid_engine.training.train_embedder import options_from_profile, train_embedder

    options = options_from_profile(profile, db=db, gallery=DATA / "metadata.csv", split=DATA / "splits" / f"{split}.csv",
                                   epochs=args.epochs, val_share=args.val_share, backbone=args.backbone,
                                   device=args.device, out=db.with_name(f"{profile.name}-{split}-embedder.pt"))
    t = time.perf_counter()
    result = train_embedder(options, log=print)
    return {"seconds": time.perf_counter() - t, "seconds_loading": result.seconds_loading,
            "seconds_training": result.seconds_training, "peak_rss_mb": result.peak_rss_mb, "init": result.init,
            "start": result.start, "history": result.history, "best_epoch": result.best_epoch,
            "train_images": result.train_images, "train_identities": result.train_identities,
            "val_images": result.val_images, "val_identities": result.val_identities,
            "model_sha256": result.model_sha256, "skipped": len(result.skipped)}


def ece_on_queries(result, profile, db: Path) -> dict:
    """ECE of pair probabilities on the split's real queries: profile logistic vs fitted isotonic."""
    import numpy as np

    from reid_engine.calibration.fit import expected_calibration_error, load_calibration
    from reid_engine.calibration.fusion import logistic_calibration
    from reid_engine.components import build_components
    from reid_engine.embedding.stored import attach_trained_embedder
    from reid_engine.registry import PluginTable
    from reid_engine.store.database import GalleryDatabase

    table = PluginTable.discover()
    components = build_components(profile, table, "cpu")
    with GalleryDatabase(db) as handle:
        attach_trained_embedder(handle, profile, components, table, "cpu")  # part of the calibration's key
        fitted = load_calibration(handle, profile, components)
    ids = result.gallery_identities
    truth = [p.truth for p in result.predictions]
    hits = np.array([[ids[g] == truth[q] for g in result.shortlist_index[q]] for q in range(len(truth))], float)
    out = {}
    for p in components.pipelines:
        raw = result.raw_scores[p.name]
        before, _ = expected_calibration_error(logistic_calibration(raw, p.midpoint, p.width), hits)
        after, _ = expected_calibration_error(fitted.calibrators[p.name].predict(raw), hits)
        out[p.name] = {"profile_logistic": before, "isotonic": after}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--species", default="nyala")
    parser.add_argument("--profile", type=Path)
    parser.add_argument("--split", default="closed", choices=["closed", "open"])
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/reid-nyala-bench"))
    parser.add_argument("--keep-cache", action="store_true", help="do not start from an empty database")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--once", action="store_true", help="one run only (no warm repeat)")
    parser.add_argument("--train-embedder", action="store_true",
                        help="first run `reid-engine train embedder` on the split's gallery rows (never its queries)")
    parser.add_argument("--epochs", type=int, help="train embedder: epochs [default: the profile's]")
    parser.add_argument("--val-share", type=float, default=0.1, help="train embedder: held-out identity share")
    parser.add_argument("--backbone", help="train embedder: timm backbone [default: the profile's]")
    parser.add_argument("--calibrate", action="store_true",
                        help="first run `reid-engine calibrate` on the split's gallery (seeded open-set split of it)")
    parser.add_argument("--label", default="", help="appended to the results file's name")
    args = parser.parse_args()
    profile = load_profile_file(args.profile) if args.profile else resolve_profile(args.species, None)[0]
    db = args.workdir / f"{profile.name}.db"
    if not args.keep_cache:
        shutil.rmtree(args.workdir, ignore_errors=True)
    options = RunOptions(profile=profile, db=db, out=args.workdir / f"out-{args.split}", gallery=DATA / "metadata.csv",
                         split=DATA / "splits" / f"{args.split}.csv", device=args.device, write_report=True,
                         title=f"nyala-dev {args.split} · {profile.name}")
    training = None
    if args.train_embedder:
        training = train_on_gallery(profile, db, args.split, args)
    calibration = None
    if args.calibrate:
        calibration = calibrate_on_gallery(profile, db, args.split, args.workdir, args.device)
    runs = {}
    first = "first (features already cached)" if args.keep_cache else "cold"
    for label in (first,) if args.once else (first, "warm"):
        t = time.perf_counter()
        result = run(options, progress=False)
        runs[label] = {"wall_s": time.perf_counter() - t, "timings": result.timings, "counts": result.counts}
    record = {"profile": profile.name, "profile_source": profile.source, "split": args.split,
              "metrics": result.metrics, "stages": analyse(result), "runs": runs, "training": training, "calibration": calibration,
              "ece_on_queries": ece_on_queries(result, profile, db) if args.calibrate else None, "machine": machine(), "errors": len(result.errors),
              "command": "python benchmarks/nyala_dev.py " + " ".join(sys.argv[1:])}
    # raw scores for offline fusion studies (benchmarks/experiments/view_fusion.py), next to the database
    np.savez(args.workdir / f"scores-{profile.name}-{args.split}.npz", index=result.shortlist_index,
             sim=result.shortlist_sim, identities=np.array(result.gallery_identities),
             truth=np.array([p.truth or "" for p in result.predictions]),
             **{f"raw_{name}": raw for name, raw in result.raw_scores.items()})
    suffix = ("-trained" if args.train_embedder else "") + ("-calibrated" if args.calibrate else "")
    suffix += f"-{args.label}" if args.label else ""
    out = REPO / "benchmarks" / "results" / f"nyala-dev-{profile.name}-{args.split}{suffix}.json"
    out.write_text(json.dumps(record, indent=2, default=str) + "\n")
    print(json.dumps({k: record[k] for k in ("profile", "split", "metrics", "stages", "calibration", "ece_on_queries")},
                     indent=2, default=str))
    for label, r in runs.items():
        print(label, f"{r['wall_s']:.1f} s", {k: round(v, 1) for k, v in r["timings"].items()})


if __name__ == "__main__":
    main()
