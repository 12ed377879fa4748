"""The shortlist stage: every query's top-B gallery images by a global embedding (the trained
re-ID embedder when the gallery has one, else the profile's local-feature embedder)."""

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
    similarity is max(own, its identity's pooled embedding)."""
    top_b = top_b or profile.shortlist.top_b
    if components.trained is not None:  # the re-ID embedder trained on this gallery (cached with the features)
        return shortlist(embedding_matrix(cache, components.trained, query_hashes),
                         embedding_matrix(cache, components.trained, gallery_hashes), top_b)
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
