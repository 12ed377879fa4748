"""The shortlist stage: every query's top-B gallery images by a global embedding (the trained
re-ID embedder when the gallery has one and its ``shortlist`` is true, else the profile's
local-feature embedder)."""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from reid_engine.components import Components
from reid_engine.embedding.stored import embedding_matrix
from reid_engine.errors import UsageError
from reid_engine.progress import Progress
from reid_engine.registry.profiles import Profile
from reid_engine.shortlist.global_embedding import (
    Shortlist,
    embed_local,
    embed_pooled_local,
    gallery_embeddings,
    normalise,
    prepare_embedder,
    shortlist,
)
from reid_engine.store.database import GalleryDatabase
from reid_engine.store.features import FeatureCache


def shortlist_stage(components: Components, db: GalleryDatabase, cache: FeatureCache, profile: Profile,
                    gallery_hashes: list[str], identities: list[str], query_hashes: list[str],
                    bars: Progress, top_b: int | None = None) -> Shortlist:
    """Each query's top ``top_b`` (default ``profile.shortlist.top_b``) gallery images (gallery rows aligned with
    ``gallery_hashes`` / ``identities``). A fitted embedder (Fisher vectors) is fitted on exactly
    these gallery images (or its stored fit is loaded); with identity pooling an image's
    similarity is max(own, its identity's pooled embedding). With a trained embedder its cosine
    picks the list, or (``[trained_embedder] shortlist = false``) the ``[shortlist]`` embedder
    picks it and ``sim`` holds the trained cosine of those candidates, the evidence fused later."""
    top_b = top_b or profile.shortlist.top_b
    if components.trained is None:
        return local_shortlist(components, db, cache, profile, gallery_hashes, identities, query_hashes, bars, top_b)
    trained_q = embedding_matrix(cache, components.trained, query_hashes)  # trained on this gallery
    trained_g = embedding_matrix(cache, components.trained, gallery_hashes)
    if profile.trained_embedder.shortlist:
        return shortlist(trained_q, trained_g, top_b)
    listed = local_shortlist(components, db, cache, profile, gallery_hashes, identities, query_hashes, bars, top_b)
    return Shortlist(listed.index, pair_cosines(trained_q, trained_g, listed.index), listed.screened_pairs)


def pair_cosines(queries: np.ndarray, gallery: np.ndarray, index: np.ndarray) -> np.ndarray:
    """Cosine of each query (N_q, D) to its listed gallery rows ``index`` int64 (N_q, B) of
    ``gallery`` (N_g, D) → float32 (N_q, B)."""
    q, g = normalise(queries), normalise(gallery)
    return np.stack([g[rows] @ q[i] for i, rows in enumerate(index)]).astype(np.float32) if len(index) \
        else np.zeros(index.shape, np.float32)


def local_shortlist(components: Components, db: GalleryDatabase, cache: FeatureCache, profile: Profile,
                    gallery_hashes: list[str], identities: list[str], query_hashes: list[str], bars: Progress,
                    top_b: int) -> Shortlist:
    """The ``[shortlist]`` embedder's list (see :func:`shortlist_stage`)."""
    embedder, extractor = components.embedder, components.embedder_extractor
    if extractor is None:
        raise UsageError(f"{profile.source}: embedder {embedder.spec.name!r} takes images; only local-feature "
                         "embedders are supported by this engine version")
    model_key = prepare_embedder(embedder, extractor, db, cache, gallery_hashes)
    g_emb = gallery_embeddings(embedder, extractor, db, cache, gallery_hashes, model_key,
                               bars.task("gallery embeddings", len(gallery_hashes)))
    q_emb = embed_local(embedder, cache, extractor, query_hashes)
    pooled = identity_of = None
    if profile.shortlist.identity_pooling:
        names = sorted(set(identities))
        position = {n: i for i, n in enumerate(names)}
        groups: dict[str, list[str]] = defaultdict(list)
        for h, ident in zip(gallery_hashes, identities):
            groups[ident].append(h)
        pooled = embed_pooled_local(embedder, cache, extractor, [groups[n] for n in names])
        identity_of = np.array([position[i] for i in identities], np.int64)
    return shortlist(q_emb, g_emb, top_b, pooled, identity_of)
