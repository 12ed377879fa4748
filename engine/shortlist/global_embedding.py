"""Global-embedding shortlist: fit (if the embedder needs it), embed, cosine, top-B.

Arrays: gallery embeddings G float32 (N_g, D), query embeddings Q (N_q, D), rows L2-normalised;
similarities S = Q Gᵀ computed in query blocks so memory stays O(block · N_g).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from reid_engine.components import Built
from reid_engine.errors import ReidError
from reid_engine.records import LoadedImage, LocalFeatures
from reid_engine.store.database import GalleryDatabase
from reid_engine.store.features import FeatureCache, LazyFeatures

QUERY_BLOCK = 256


@dataclass
class Shortlist:
    """``index`` int64 (N_q, B): gallery rows per query, best first; ``sim`` float32 (N_q, B);
    ``screened_pairs``: pairs a screening pipeline scored to choose them (0: no screen)."""

    index: np.ndarray
    sim: np.ndarray
    screened_pairs: int = 0


def gallery_digest(hashes: Sequence[str]) -> str:
    return hashlib.sha256("\n".join(sorted(hashes)).encode()).hexdigest()[:24]


def prepare_embedder(embedder: Built, extractor: Built | None, db: GalleryDatabase, cache: FeatureCache,
                     gallery_hashes: Sequence[str]) -> str:
    """Fit the embedder on the gallery (or load the stored fit). Returns the model key ('' if none)."""
    obj = embedder.obj
    if not obj.needs_fit:
        return ""
    digest = gallery_digest(gallery_hashes)
    name, version, chash = embedder.cache_id
    ex_id = "|".join(extractor.cache_id) if extractor else ""
    key = hashlib.sha256(f"{name}|{version}|{chash}|{ex_id}|{digest}".encode()).hexdigest()[:40]
    state = db.get_model(key)
    if state is not None:
        obj.load_state(state)
        return key
    items = LazyFeatures(cache, gallery_hashes, extractor) if extractor else gallery_hashes
    try:
        obj.fit(items)
    except ValueError as exc:
        raise ReidError(f"cannot fit the shortlist embedder {name!r} on this gallery: {exc}") from None
    db.put_model(key, "embedder", name, version, chash,
                 {"gallery_digest": digest, "n_images": len(gallery_hashes), "extractor": ex_id}, obj.state())
    return key


def embed_local(embedder: Built, cache: FeatureCache, extractor: Built, hashes: Sequence[str],
                advance: Callable[[int], None] = lambda n: None, block: int = 64) -> np.ndarray:
    """Embed images from their cached local features, ``block`` at a time → (N, D)."""
    rows = []
    lazy = LazyFeatures(cache, hashes, extractor)
    for start in range(0, len(lazy), block):
        chunk = lazy[start : start + block]
        rows.append(embedder.obj.embed(chunk))
        advance(len(chunk))
    return np.concatenate(rows) if rows else np.zeros((0, 1), np.float32)


def gallery_embeddings(embedder: Built, extractor: Built, db: GalleryDatabase, cache: FeatureCache,
                       hashes: Sequence[str], model_key: str,
                       advance: Callable[[int], None] = lambda n: None) -> np.ndarray:
    """:func:`embed_local` of the gallery (N, D), stored beside the embedder's fit.

    A fitted embedder's key (``model_key`` from :func:`prepare_embedder`) already names this
    very gallery, so its embeddings are stored once under ``model_key + "-gallery"`` with the
    image hashes, and a warm run reads one matrix instead of re-embedding every photo (nyala,
    1,087 Fisher vectors: 11 s of a single-query run). Without a fit (``model_key`` empty)
    nothing is stored.
    """
    if not model_key:
        return embed_local(embedder, cache, extractor, hashes, advance)
    key = f"{model_key}-gallery"
    stored = db.get_model(key)
    if stored is not None and stored["hashes"].shape == (len(hashes),):
        row = {h: i for i, h in enumerate(stored["hashes"].tolist())}
        if all(h in row for h in hashes):
            advance(len(hashes))
            return stored["embeddings"][[row[h] for h in hashes]]
    emb = embed_local(embedder, cache, extractor, hashes, advance)
    name, version, chash = embedder.cache_id
    db.put_model(key, "gallery-embeddings", name, version, chash, {"model": model_key, "n_images": len(hashes)},
                 {"embeddings": emb, "hashes": np.array(list(hashes))})
    return emb


def embed_pooled_local(embedder: Built, cache: FeatureCache, extractor: Built,
                       groups: Sequence[Sequence[str]]) -> np.ndarray:
    """One embedding per group of images from all their descriptors pooled → (N_groups, D)."""
    pooled = []
    for hashes in groups:
        feats = [cache.get(h, extractor) for h in hashes]
        feats = [f for f in feats if f is not None and len(f)]
        if feats:
            pooled.append(LocalFeatures(
                kpts=np.concatenate([f.kpts for f in feats]), desc=np.concatenate([f.desc for f in feats]),
                scores=np.concatenate([f.scores for f in feats]),
            ))
        else:
            pooled.append(LocalFeatures.empty(1))
    return embedder.obj.embed(pooled)


def embed_images(embedder: Built, images: Sequence[LoadedImage]) -> np.ndarray:
    return embedder.obj.embed(list(images))


def normalise(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.where(norms > 0, x / np.maximum(norms, 1e-12), 0.0).astype(np.float32)


def shortlist(queries: np.ndarray, gallery: np.ndarray, top_b: int,
              pooled: np.ndarray | None = None, identity_of: np.ndarray | None = None) -> Shortlist:
    """Top-``top_b`` gallery rows per query by cosine.

    queries (N_q, D), gallery (N_g, D); with ``pooled`` (N_id, D) and ``identity_of`` int
    (N_g,) an image's similarity is max(own, its identity's pooled).
    """
    n_q, n_g = queries.shape[0], gallery.shape[0]
    b = min(top_b, n_g)
    index = np.zeros((n_q, b), np.int64)
    sims = np.zeros((n_q, b), np.float32)
    q = normalise(queries)
    g = normalise(gallery)
    p = normalise(pooled) if pooled is not None else None
    for start in range(0, n_q, QUERY_BLOCK):
        s = q[start : start + QUERY_BLOCK] @ g.T  # (block, N_g)
        if p is not None and identity_of is not None:
            s = np.maximum(s, (q[start : start + QUERY_BLOCK] @ p.T)[:, identity_of])
        part = np.argpartition(-s, b - 1, axis=1)[:, :b] if b < n_g else np.tile(np.arange(n_g), (s.shape[0], 1))
        part_s = np.take_along_axis(s, part, 1)
        order = np.lexsort((part, -part_s), axis=1)  # by similarity, then gallery row (deterministic)
        index[start : start + QUERY_BLOCK] = np.take_along_axis(part, order, 1)
        sims[start : start + QUERY_BLOCK] = np.take_along_axis(part_s, order, 1)
    return Shortlist(index, sims)


