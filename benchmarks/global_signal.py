"""The global signal alone on nyala-dev: a re-ID embedder's cosine ranking, no local matching.

    python benchmarks/global_signal.py --profile P --split closed --db DB          # the model trained into DB
    python benchmarks/global_signal.py --profile P --split closed --imagenet       # EfficientNet-Lite0, no training
    python benchmarks/global_signal.py --profile P --split open --db DB --zero-shot

Queries and gallery come from the split (``--zero-shot``: only the open split's *unknown*
individuals, as their own gallery and queries - one query per individual with a same-flank
photo left, seed 0 - so the model never saw any of them). Prints and writes a JSON record:
top-1/top-5 (identities ranked by their best photo), image-level mAP, recall@B.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from reid_engine.components import build_components
from reid_engine.embedding.model import EmbedderSpec, ReidNet, imagenet_start
from reid_engine.embedding.stored import model_key
from reid_engine.inputs.manifests import load_manifest
from reid_engine.inputs.views import image_loader
from reid_engine.registry import PluginTable
from reid_engine.registry.profiles import load_profile_file
from reid_engine.store.database import GalleryDatabase

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "nyala-dev"


def zero_shot_split(rows: list[dict], seed: int = 0) -> dict[str, str]:
    """image_id → gallery/query among the open split's unknown individuals (as the closed split is drawn)."""
    rng = np.random.default_rng(seed)
    by_id: dict[str, list[dict]] = {}
    for r in rows:
        by_id.setdefault(r["identity"], []).append(r)
    split = {r["image_id"]: "gallery" for r in rows}
    for ident in sorted(by_id):
        eligible = [r for r in by_id[ident] if sum(o["orientation"] == r["orientation"] for o in by_id[ident]) >= 2]
        if eligible:
            split[eligible[int(rng.integers(len(eligible)))]["image_id"]] = "query"
    return split


def metrics(q: np.ndarray, q_ids: list[str], g: np.ndarray, g_ids: list[str]) -> dict[str, float]:
    sim = q @ g.T
    g_arr = np.array(g_ids)
    names = sorted(set(g_ids))
    best = np.stack([sim[:, g_arr == n].max(1) for n in names], 1)
    order = np.argsort(-best, 1, kind="stable")
    ranked = [[names[j] for j in row] for row in order]
    out = {f"top{k}": float(np.mean([t in r[:k] for t, r in zip(q_ids, ranked)])) for k in (1, 5, 10)}
    aps = []
    for i, t in enumerate(q_ids):
        hits = (g_arr[np.argsort(-sim[i], kind="stable")] == t)
        ranks = np.flatnonzero(hits) + 1
        aps.append(float(np.mean(np.arange(1, len(ranks) + 1) / ranks)) if len(ranks) else 0.0)
    out["mAP"] = float(np.mean(aps))
    img_order = np.argsort(-sim, 1, kind="stable")
    for b in (10, 20, 50, 100):
        out[f"recall@{b}"] = float(np.mean([t in set(g_arr[img_order[i, :b]]) for i, t in enumerate(q_ids)]))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", type=Path, required=True)
    parser.add_argument("--split", default="closed", choices=["closed", "open"])
    parser.add_argument("--db", type=Path, help="gallery database holding the trained embedder (and cached masks)")
    parser.add_argument("--imagenet", action="store_true", help="the ImageNet EfficientNet-Lite0 start, untrained")
    parser.add_argument("--zero-shot", action="store_true", help="only the open split's unknown individuals")
    parser.add_argument("--runtime", default="torch", choices=["torch", "onnx"])
    args = parser.parse_args()
    profile = load_profile_file(args.profile)
    table = PluginTable.discover()
    components = build_components(profile, table, "cpu")
    spec = table.get("embedder", "trained-embedder")
    embedder = spec.build(spec.make_config({"runtime": args.runtime}), "cpu")
    meta = {}
    if args.imagenet:
        net = ReidNet(EmbedderSpec())
        imagenet_start(net)
        embedder._use(net.eval(), "imagenet")
        label = "ImageNet EfficientNet-Lite0 (no training)"
    else:
        with GalleryDatabase(args.db) as db:
            arrays = db.get_model(model_key(profile.name))
        if arrays is None:
            sys.exit(f"{args.db}: no embedder trained for {profile.name}")
        embedder.load_state(arrays)
        meta = json.loads(bytes(arrays["meta"]).decode())
        label = f"trained ({meta.get('gallery_image_ids_sha256', '')[:8]}, {meta.get('epochs_run')} epochs)"
    rows = list(csv.DictReader(open(DATA / "metadata.csv")))
    split_rows = {r["image_id"]: r for r in csv.DictReader(open(DATA / "splits" / f"{args.split}.csv"))}
    if args.zero_shot:
        unknown = [r for r in rows if split_rows[r["image_id"]].get("truth") == "new_individual"]
        roles = zero_shot_split(unknown)
        rows = unknown
    else:
        roles = {i: ("query" if s["split"] == "query" else "gallery") for i, s in split_rows.items()}
    manifest = load_manifest(DATA / "metadata.csv", "gallery", table)
    records = {r.image_id: r for r in manifest.records}
    wanted = [r["image_id"] for r in rows]
    t = time.perf_counter()
    with GalleryDatabase(args.db or Path("/tmp/global-signal.db")) as db:
        load = image_loader(components, profile, db)
        emb = {i: embedder.embed([load(records[i])])[0] for i in wanted}
    seconds = time.perf_counter() - t
    q = [i for i in wanted if roles[i] == "query"]
    g = [i for i in wanted if roles[i] == "gallery"]
    q_ids = [records[i].identity for i in q]
    if not args.zero_shot:  # queries of individuals absent from the gallery are not scored here
        known = set(records[i].identity for i in g)
        q = [i for i, t in zip(q, q_ids) if t in known]
        q_ids = [records[i].identity for i in q]
    out = {"model": label, "profile": profile.name, "split": args.split + (" (unknown individuals only)" if args.zero_shot else ""),
           "queries": len(q), "gallery": len(g), "identities": len(set(records[i].identity for i in g)),
           **metrics(np.stack([emb[i] for i in q]), q_ids, np.stack([emb[i] for i in g]),
                     [records[i].identity for i in g]),
           "embed_seconds_per_photo": seconds / len(wanted), "cpu_count": os.cpu_count(),
           "command": "python benchmarks/global_signal.py " + " ".join(sys.argv[1:])}
    print(json.dumps(out, indent=2))
    name = "imagenet" if args.imagenet else "trained"
    path = REPO / "benchmarks" / "results" / f"global-{profile.name}-{args.split}{'-zeroshot' if args.zero_shot else ''}-{name}.json"
    path.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
