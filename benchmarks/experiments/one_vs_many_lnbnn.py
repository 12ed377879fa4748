"""HotSpotter's one-vs-many scoring on the engine's cached Hessian-affine RootSIFT features
(nyala-dev, closed split): does matching each query feature against the *whole* gallery beat
the engine's pairwise ratio test + RANSAC?

    python benchmarks/experiments/one_vs_many_lnbnn.py --db CELL/gallery.db \
        [--pairwise CELL/scores.npz] [--k 4] [--verify 40] [--out results.json]

``--db`` is a benchmark cell's gallery database (e.g. ``/tmp/b31/cells/nyala-dev/
nyala-speed-patch19/closed/gallery.db`` after ``reid-engine benchmark --profile
benchmarks/profiles/nyala-speed-patch19.toml --split closed``); its ``hessaff-rootsift``
features (one configuration) are read straight from the blobs, by each photo's content hash.

For every query feature (RootSIFT, unit rows) its K + 1 nearest gallery features are found
among all gallery photos' features at once (Crall et al., HotSpotter, 2013). Each of the first
K votes for its photo with the LNBNN weight d(K+1) − d(i) (distances of unit vectors); a query
feature counts once per gallery photo, with its best neighbour there. Two scores per photo:

* ``lnbnn``: the sum of its votes;
* ``verified``: for the ``--verify`` photos with the most votes, the votes of the
  correspondences a homography (MAGSAC, 1.5 % of the gallery photo's longer side, as the
  engine's ``ransac-inliers``) keeps; 0 for the rest.

An identity scores as its best photo. With ``--pairwise`` (a cell's ``scores.npz``: its
first ``raw_*`` pipeline over its shortlist, unshortlisted photos last), the script also
prints that cell's own ranking, the paired wins/losses of each score against it, and their
reciprocal-rank fusion (k 20). The fusion constant is not tuned: read it as what a plain
second opinion would add. Not a test. ~5 s per query on 2 cores (brute-force neighbours
over ~1 M gallery features).
"""

from __future__ import annotations

import argparse
import csv
import json
import sqlite3
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from full_gallery_counts import rank_of_truth

from reid_engine.store.database import GalleryDatabase, content_hash

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "nyala-dev"


def load_features(db_path: Path, paths: list[Path]) -> list[tuple[torch.Tensor, np.ndarray, float]]:
    """(unit descriptors float (N, 128), keypoints float (N, 2), longer side in px) of each photo,
    from the db's blobs."""
    index = sqlite3.connect(db_path).execute(
        "select content_hash, key, config_hash from features where plugin = 'hessaff-rootsift'").fetchall()
    configs = {row[2] for row in index}
    if len(configs) != 1:
        raise SystemExit(f"{db_path}: expected one hessaff-rootsift configuration, found {sorted(configs)}")
    keys = {row[0]: row[1] for row in index}
    out = []
    with GalleryDatabase(db_path) as db:
        for path in paths:
            key = keys.get(content_hash(path.read_bytes()))
            if key is None:
                raise SystemExit(f"{path}: no cached hessaff-rootsift features in {db_path}")
            arrays = db.get_features(key)
            desc = torch.nn.functional.normalize(torch.as_tensor(arrays["desc"], dtype=torch.float32), dim=1)
            out.append((desc, np.asarray(arrays["kpts"], np.float64), float(max(arrays["image_hw"]))))
    return out


def votes(query: torch.Tensor, gallery: torch.Tensor, photo: np.ndarray, local: np.ndarray, k: int) -> np.ndarray:
    """float (V, 4) rows (query feature, gallery photo, feature in that photo, LNBNN weight): each
    query feature's best neighbour in each photo among its k nearest over the whole gallery.
    query (n, D), gallery (M, D) unit rows; photo/local int (M,) each gallery row's photo and row in it."""
    found = [(query[i:i + 256] @ gallery.T).topk(k + 1, dim=1) for i in range(0, len(query), 256)]  # ~1 GB a chunk
    sims, rows = torch.cat([f.values for f in found]), torch.cat([f.indices for f in found])
    dist = (2 - 2 * sims).clamp_min(0).sqrt()
    weight = (dist[:, k:] - dist[:, :k]).clamp_min(0).numpy()
    rows = rows[:, :k].numpy()
    flat = np.stack([np.repeat(np.arange(len(query)), k), photo[rows].ravel(), local[rows].ravel(),
                     weight.ravel()], 1)
    flat = flat[np.lexsort((-flat[:, 3], flat[:, 1], flat[:, 0]))]
    first = np.ones(len(flat), bool)
    first[1:] = (flat[1:, 0] != flat[:-1, 0]) | (flat[1:, 1] != flat[:-1, 1])
    return flat[first]


def verified(rows: np.ndarray, query_kpts: np.ndarray, gallery_kpts: np.ndarray, side: float) -> float:
    """Sum of the LNBNN weights of the correspondences (rows of ``votes``) a homography keeps, at
    the engine's ``ransac-inliers`` threshold: 1.5 % of the gallery photo's longer side."""
    if len(rows) < 5:
        return 0.0
    cv2.setRNGSeed(0)
    try:
        _, inliers = cv2.findHomography(query_kpts[rows[:, 0].astype(int)], gallery_kpts[rows[:, 2].astype(int)],
                                        cv2.USAC_MAGSAC, 0.015 * side, maxIters=2000, confidence=0.999)
    except cv2.error:
        return 0.0
    return 0.0 if inliers is None else float(rows[inliers.ravel().astype(bool), 3].sum())


def pairwise_scores(path: Path, g_ids: list[str], g_idents: np.ndarray, q_ids: list[str],
                    q_idents: np.ndarray) -> np.ndarray:
    """float (Q, G) the cell's first pipeline's raw scores per gallery photo, -1 where not shortlisted
    or not scored. The cell's rows must be these queries (manifest order) and its gallery rows these
    gallery photos (by image id): checked on its ``gallery_ids`` / ``query_ids``, or on the
    identities for cells saved before 3 Dec 2026."""
    cell = np.load(path)
    if "gallery_ids" in cell.files:
        same = cell["gallery_ids"].tolist() == g_ids and cell["query_ids"].tolist()[: len(q_ids)] == q_ids
    else:
        same = np.array_equal(cell["identities"], g_idents) and np.array_equal(cell["truth"][: len(q_ids)], q_idents)
    if not same:
        raise SystemExit(f"{path}: its queries or gallery are not the closed split's (queries in manifest order, "
                         "gallery by image id)")
    raw = np.nan_to_num(cell[next(k for k in cell.files if k.startswith("raw_"))][: len(q_ids)], nan=-1.0)
    out = np.full((len(q_ids), len(g_idents)), -1.0, np.float32)
    np.put_along_axis(out, cell["index"][: len(q_ids)], raw, axis=1)
    return out


def summary(rank: np.ndarray) -> dict[str, float]:
    return {f"top{k}": round(float(np.mean(rank < k)), 3) for k in (1, 5, 20)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--db", type=Path, required=True)
    parser.add_argument("--pairwise", type=Path, help="the same cell's scores.npz")
    parser.add_argument("--k", type=int, default=4)
    parser.add_argument("--verify", type=int, default=40)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--limit", type=int, default=0, help="only the first N queries (a quick check)")
    args = parser.parse_args()
    torch.set_num_threads(2)
    rows = list(csv.DictReader(open(DATA / "metadata.csv")))
    split = {r["image_id"]: r["split"] for r in csv.DictReader(open(DATA / "splits" / "closed.csv"))}
    queries = [r for r in rows if split[r["image_id"]] == "query"][: args.limit or None]
    # the run's gallery order (the database's, by image id), so that a cell's scores line up
    gallery = sorted((r for r in rows if split[r["image_id"]] == "gallery"), key=lambda r: r["image_id"])
    g_idents = np.array([r["identity"] for r in gallery])
    pair = (pairwise_scores(args.pairwise, [r["image_id"] for r in gallery], g_idents, [r["image_id"] for r in queries],
                            np.array([r["identity"] for r in queries])) if args.pairwise else None)
    q_feats = load_features(args.db, [DATA / r["path"] for r in queries])
    g_feats = load_features(args.db, [DATA / r["path"] for r in gallery])
    all_desc = torch.cat([d for d, _, _ in g_feats])
    photo = np.concatenate([np.full(len(d), j) for j, (d, _, _) in enumerate(g_feats)])
    local = np.concatenate([np.arange(len(d)) for d, _, _ in g_feats])
    lnbnn = np.zeros((len(queries), len(gallery)), np.float32)
    checked = np.zeros_like(lnbnn)
    start = time.perf_counter()
    for qi, (desc, kpts, _) in enumerate(q_feats):
        found = votes(desc, all_desc, photo, local, args.k)
        np.add.at(lnbnn[qi], found[:, 1].astype(int), found[:, 3])
        for j in np.argsort(-lnbnn[qi])[: args.verify]:
            checked[qi, j] = verified(found[found[:, 1] == j], kpts, g_feats[j][1], g_feats[j][2])
    seconds = (time.perf_counter() - start) / len(queries)
    truth = np.array([r["identity"] for r in queries])
    scores = {"lnbnn": lnbnn, f"lnbnn + homography (top {args.verify})": checked + 1e-3 * lnbnn}
    ranks = {name: rank_of_truth(s, g_idents, truth) for name, s in scores.items()}
    result = {"command": "python benchmarks/experiments/one_vs_many_lnbnn.py " + " ".join(
        f"--{k} {v}" for k, v in vars(args).items() if v is not None), "split": "closed",
        "queries": len(queries), "gallery": len(gallery), "gallery_features": len(all_desc),
        "s_per_query": round(seconds, 2), "scores": {name: summary(r) for name, r in ranks.items()}}
    if pair is not None:
        base = rank_of_truth(pair, g_idents, truth)
        result["scores"]["pairwise (the cell's)"] = summary(base)
        for name, s in scores.items():
            photo_rank = [np.argsort(np.argsort(-x, 1, kind="stable"), 1) for x in (pair, s)]
            photo_rank[0] = np.where(pair < 0, pair.shape[1], photo_rank[0])  # not shortlisted: one shared last rank
            fused = sum(1.0 / (20 + r) for r in photo_rank)
            result["scores"][f"rrf(pairwise, {name})"] = summary(rank_of_truth(fused, g_idents, truth))
            result.setdefault("paired_top1_vs_pairwise", {})[name] = {
                "better": int(((ranks[name] == 0) & (base > 0)).sum()),
                "worse": int(((ranks[name] > 0) & (base == 0)).sum())}
    print(json.dumps(result, indent=1))
    if args.out:
        args.out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
