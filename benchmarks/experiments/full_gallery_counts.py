"""Ratio-tested mutual-NN match counts of every closed query against *every* gallery photo
(no shortlist), from a pipeline's cached features.

    python benchmarks/experiments/full_gallery_counts.py --db DB --pipeline aliked-ratio --out counts.npz

``DB`` holds the shipped nyala profile's cached features (the `reid-engine benchmark` cell DIR/cells/nyala-dev/nyala/closed/gallery.db). Saves
``counts`` float32 (queries, gallery), the query and gallery image ids and identities, and prints
top-1/top-5 of identities ranked by their best photo's count.
"""

from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path

import numpy as np
import torch

from reid_engine.components import build_components
from reid_engine.inputs.manifests import load_manifest
from reid_engine.registry import PluginTable
from reid_engine.registry.profiles import resolve_profile
from reid_engine.store.database import GalleryDatabase, content_hash
from reid_engine.store.features import FeatureCache

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "nyala-dev"


def ratio_counts(dq: torch.Tensor, gallery: list[torch.Tensor], ratio: float) -> np.ndarray:
    """dq (n, D) unit rows against each gallery (m_i, D): mutual NN passing the ratio test both ways."""
    out = np.zeros(len(gallery), np.float32)
    for i, dg in enumerate(gallery):
        if len(dg) < 2 or len(dq) < 2:
            continue
        d = (2 - 2 * (dq @ dg.T)).clamp_min(0).sqrt()
        v12, i12 = d.topk(2, dim=1, largest=False)
        v21, i21 = d.topk(2, dim=0, largest=False)
        ok12 = v12[:, 0] < ratio * v12[:, 1]
        ok21 = v21[0] < ratio * v21[1]
        mutual = i21[0][i12[:, 0]] == torch.arange(len(dq))
        out[i] = float((ok12 & mutual & ok21[i12[:, 0]]).sum())
    return out


def rank_of_truth(scores: np.ndarray, g_idents: np.ndarray, truth: np.ndarray) -> np.ndarray:
    names = np.array(sorted(set(g_idents.tolist())))
    best = np.stack([scores[:, g_idents == n].max(1) for n in names], 1)
    t = best[np.arange(len(truth)), np.searchsorted(names, truth)]
    return (best > t[:, None]).sum(1)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--db", type=Path, required=True)
    p.add_argument("--pipeline", default="aliked-ratio")
    p.add_argument("--ratio", type=float, default=0.8)
    p.add_argument("--out", type=Path, required=True)
    a = p.parse_args()
    torch.set_num_threads(2)
    table = PluginTable.discover()
    profile, _ = resolve_profile("nyala", None)
    components = build_components(profile, table, "cpu")
    built = next(pl.extractor for pl in components.pipelines if pl.name == a.pipeline)
    records = load_manifest(DATA / "metadata.csv", "gallery", table).records
    split = {r["image_id"]: r["split"] for r in csv.DictReader(open(DATA / "splits" / "closed.csv"))}
    feats = {}
    with GalleryDatabase(a.db) as db:
        cache = FeatureCache(db)
        for r in records:
            f = cache.get(content_hash(r.path.read_bytes()), built)
            if f is None:
                raise SystemExit(f"{r.image_id}: no cached {a.pipeline} features in {a.db}")
            feats[r.image_id] = torch.nn.functional.normalize(torch.as_tensor(f.desc, dtype=torch.float32), dim=1)
    q = [r for r in records if split[r.image_id] == "query"]
    g = [r for r in records if split[r.image_id] == "gallery"]
    g_idents = np.array([r.identity for r in g])
    q = [r for r in q if r.identity in set(g_idents.tolist())]
    gallery = [feats[r.image_id] for r in g]
    t = time.perf_counter()
    counts = np.stack([ratio_counts(feats[r.image_id], gallery, a.ratio) for r in q])
    seconds = (time.perf_counter() - t) / len(q)
    truth = np.array([r.identity for r in q])
    rank = rank_of_truth(counts, g_idents, truth)
    print(f"{a.pipeline} ratio {a.ratio}: top-1 {np.mean(rank < 1):.3f} top-5 {np.mean(rank < 5):.3f} "
          f"({seconds:.2f} s per query against {len(g)} photos)")
    np.savez(a.out, counts=counts, query_ids=[r.image_id for r in q], gallery_ids=[r.image_id for r in g],
             truth=truth, gallery_identities=g_idents)


if __name__ == "__main__":
    main()
