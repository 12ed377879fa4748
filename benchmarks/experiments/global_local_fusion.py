"""Would a global embedding, fused with the local pipeline, rank nyala better? (offline, closed split)

    python benchmarks/experiments/global_local_fusion.py CELL/scores.npz EMBEDDINGS.npz [--key trained]

``CELL/scores.npz`` is what ``reid-engine benchmark`` leaves beside ``cell.json`` (index int (Q, B)
gallery rows, identities (G,), truth (Q,), raw_PIPELINE float (Q, B)); EMBEDDINGS.npz holds
``image_ids`` (N,) and unit embeddings float (N, D) under ``--key`` (``arcface_minimal.py
--embeddings`` writes ``imagenet`` and ``trained``). Over the cell's own shortlist, each pair's
cosine is z-scored per query and added to the local score's per-query z-score with weight w;
identities score as their best photo. Prints top-1 / top-5 of the local score alone, the
cosine alone (over the same shortlist) and each fusion. The weights are chosen on the very
queries measured, so the best row is an optimistic bound on what fusion could add. Not a test.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np
from fuse_cells import per_query_z, ranked_identities, top_k

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "nyala-dev"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("cell")
    parser.add_argument("embeddings")
    parser.add_argument("--key", default="trained")
    args = parser.parse_args()
    cell, emb = np.load(args.cell), np.load(args.embeddings)
    rows = list(csv.DictReader(open(DATA / "metadata.csv")))
    split = {r["image_id"]: r["split"] for r in csv.DictReader(open(DATA / "splits" / "closed.csv"))}
    gallery = sorted((r for r in rows if split[r["image_id"]] == "gallery"), key=lambda r: r["image_id"])
    queries = [r for r in rows if split[r["image_id"]] == "query"]
    index, identities, truth = cell["index"], cell["identities"], cell["truth"]
    if "gallery_ids" in cell.files:  # cells saved from 3 Dec 2026 name their photos
        lined_up = (cell["query_ids"].tolist() == [r["image_id"] for r in queries]
                    and cell["gallery_ids"].tolist() == [r["image_id"] for r in gallery])
    else:
        lined_up = ([r["identity"] for r in queries] == truth.tolist()
                    and [r["identity"] for r in gallery] == identities.tolist())
    if not lined_up:
        raise SystemExit(f"{args.cell}: not the closed split's queries (manifest order) and gallery (by image id)")
    row_of = {image_id: i for i, image_id in enumerate(emb["image_ids"].tolist())}
    vectors = emb[args.key]
    q = vectors[[row_of[r["image_id"]] for r in queries]]
    g = vectors[[row_of[r["image_id"]] for r in gallery]]
    cosine = np.einsum("qd,qbd->qb", q, g[index])  # (Q, B) over the cell's shortlist
    local_key = next(k for k in cell.files if k.startswith("raw_"))
    local = np.nan_to_num(cell[local_key], nan=-1.0)  # a pair without features scores below any scored one
    table = [(f"{local_key} alone", local), (f"cosine ({args.key}) alone, same shortlist", cosine)]
    for w in (0.1, 0.25, 0.5, 1.0):
        table.append((f"z-sum, cosine weight {w}", per_query_z(local) + w * per_query_z(cosine)))
    print(f"{len(truth)} queries, shortlist of {index.shape[1]}")
    for name, scores in table:
        t1, t5 = top_k(ranked_identities(index, scores, identities), truth)
        print(f"{name:50s} top-1 {t1:.3f}  top-5 {t5:.3f}")


if __name__ == "__main__":
    main()
