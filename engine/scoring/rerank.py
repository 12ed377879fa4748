"""NORPPA's re-evaluation (``[rerank]``): the best candidates scored again by their inlier regions.

For each query, the ``top_k`` shortlisted gallery photos that the named pipeline scored highest
are matched again by that pipeline; its scorer's inlier set (RANSAC inliers) picks the
descriptors of the regions both photos show consistently. A Fisher vector is computed from
each side's inlier descriptors alone, with the vocabulary the shortlist fitted on the gallery,
and their cosine is the pair's score: fur, background or grass matched by chance drop out, so
the vectors compare only the pattern the two photos share. Scores lie in [-1, 1] (0 for pairs
with fewer than ``min_inliers`` inliers); pairs outside the top ``top_k`` stay NaN (not scored).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Callable

import numpy as np

from reid_engine.components import Components, Rerank
from reid_engine.errors import ReidError
from reid_engine.records import LocalFeatures
from reid_engine.scoring.pairs import match_pair
from reid_engine.shortlist.global_embedding import prepare_embedder
from reid_engine.store.database import GalleryDatabase
from reid_engine.store.features import FeatureCache


def top_columns(raw: np.ndarray, k: int) -> np.ndarray:
    """int64 (N_q, min(k, B)): each row's ``k`` best-scored columns of ``raw`` float (N_q, B),
    best first; unscored pairs (NaN) last, ties in column order."""
    keyed = np.where(np.isnan(raw), -np.inf, raw)
    return np.argsort(-keyed, axis=1, kind="stable")[:, :min(k, raw.shape[1])]


def subset(features: LocalFeatures, keep: np.ndarray) -> LocalFeatures:
    """The features at indices ``keep`` int (M,) (duplicates collapsed)."""
    keep = np.unique(keep)
    return LocalFeatures(features.kpts[keep], features.desc[keep], features.scores[keep],
                         None if features.lafs is None else features.lafs[keep], features.image_hw)


def inlier_fisher_scores(components: Components, db: GalleryDatabase, cache: FeatureCache, index: np.ndarray,
                         raw: dict[str, np.ndarray], gallery_hashes: list[str], query_hashes: list[str],
                         advance: Callable[[int], None] = lambda n: None) -> np.ndarray:
    """float32 (N_q, B): the ``[rerank]`` score of each shortlisted pair (see the module docstring);
    ``index`` int (N_q, B) are gallery rows, ``raw`` the pipelines' raw scores aligned with it."""
    rerank: Rerank = components.rerank
    pipeline = rerank.pipeline
    out = np.full(index.shape, np.nan, np.float32)
    if index.size == 0:
        return out
    embedder, extractor = components.embedder, components.embedder_extractor
    prepare_embedder(embedder, extractor, db, cache, gallery_hashes)  # the shortlist's fit (stored), or fit now
    columns = top_columns(raw[pipeline.name], rerank.top_k)
    pairs_of: dict[int, list[tuple[int, int]]] = defaultdict(list)
    for qi in range(index.shape[0]):
        for col in columns[qi]:
            pairs_of[int(index[qi, col])].append((qi, int(col)))
    queries = [cache.get(h, pipeline.extractor) for h in query_hashes]
    for g_row in sorted(pairs_of):
        gallery = cache.get(gallery_hashes[g_row], pipeline.extractor)
        for qi, col in pairs_of[g_row]:
            out[qi, col] = pair_score(components, queries[qi], gallery) if gallery is not None \
                and queries[qi] is not None else np.nan
        advance(len(pairs_of[g_row]))
    return out


def pair_score(components: Components, query: LocalFeatures, gallery: LocalFeatures) -> float:
    """Cosine of the Fisher vectors of the two photos' inlier descriptors (0 with too few inliers)."""
    rerank: Rerank = components.rerank
    evidence = match_pair(rerank.pipeline, query, gallery)
    if not evidence.inliers_known:
        raise ReidError(f"[rerank]: pipeline {rerank.pipeline.name!r}'s scorer {evidence.scorer!r} gives no inlier "
                        "set (inliers()); name a pipeline with a geometric scorer such as ransac-inliers")
    kept = evidence.matches.idx[evidence.inliers]
    if len(kept) < rerank.min_inliers:
        return 0.0
    vectors = components.embedder.obj.embed([subset(query, kept[:, 0]), subset(gallery, kept[:, 1])])
    return float(np.dot(vectors[0], vectors[1]))
