"""Shortlist and pair scoring as one stage, with the optional screening pass in between.

Without ``[shortlist].screen`` this is the shortlist stage (global embedding, top ``top_b``)
followed by every pipeline on the shortlisted pairs. With it, a cheap pipeline first scores
each query against a wider list (the embedding's top ``screen_b``, 0 = the whole gallery); the
``top_b`` images kept are those best by reciprocal-rank fusion of the two rankings, so an image
the embedding ranks low but that matches well locally still reaches the expensive pipelines.
With ``[rerank]`` the best pairs of one pipeline are then scored again by their inlier regions
(:mod:`reid_engine.scoring.rerank`). ``run`` and ``calibrate`` both call :func:`shortlist_and_score`.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from reid_engine.components import Components
from reid_engine.progress import Progress, timed
from reid_engine.registry.profiles import Profile
from reid_engine.scoring.pairs import score_pairs
from reid_engine.scoring.rerank import inlier_fisher_scores
from reid_engine.shortlist.global_embedding import Shortlist
from reid_engine.shortlist.stage import shortlist_stage
from reid_engine.store.database import GalleryDatabase
from reid_engine.store.features import FeatureCache

RRF_K = 60  # reciprocal-rank fusion constant (Cormack et al. 2009); nyala-dev: recall@100 0.91 at 60, 0.90 at 10


def rrf_columns(screen_raw: np.ndarray, top_b: int, k: int = RRF_K) -> np.ndarray:
    """Columns of a wide shortlist to keep, int64 (N_q, min(top_b, W)), best first.

    ``screen_raw`` float (N_q, W): the screen's raw scores of the wide shortlist, whose columns are
    in the embedding's order (column c has embedding rank c). Unscored pairs (NaN) rank last for
    the screen; ties keep the embedding's order. Score = 1/(k + embedding rank) + 1/(k + screen rank).
    """
    n_q, width = screen_raw.shape
    b = min(top_b, width)
    columns = np.arange(width)
    keyed = np.where(np.isnan(screen_raw), -np.inf, screen_raw)
    screen_order = np.argsort(-keyed, axis=1, kind="stable")  # ties: lower column (embedding rank) first
    screen_rank = np.empty_like(screen_order)
    np.put_along_axis(screen_rank, screen_order, columns[None, :].repeat(n_q, 0), axis=1)
    fused = 1.0 / (k + columns[None, :]) + 1.0 / (k + screen_rank)
    return np.argsort(-fused, axis=1, kind="stable")[:, :b]


def shortlist_and_score(components: Components, db: GalleryDatabase, cache: FeatureCache, profile: Profile,
                        gallery_hashes: list[str], identities: list[str], query_hashes: list[str],
                        bars: Progress, timings: dict[str, float] | None = None, rerank: bool = True
                        ) -> tuple[Shortlist, dict[str, np.ndarray]]:
    """(shortlist, raw score per evidence source float (N_q, B): every pipeline, then ``[rerank]``'s)
    for every query (see the module docstring); seconds go to ``timings`` as ``shortlist_s``
    (embedding), ``matching_s`` (screen + pipelines) and ``rerank_s``. With ``rerank`` False the
    ``[rerank]`` score is left unscored (NaN): a run whose fusion gives it no weight skips it."""
    settings = profile.shortlist
    timings = {} if timings is None else timings
    if not settings.screen:
        with timed(timings, "shortlist_s"):
            scored = shortlist_stage(components, db, cache, profile, gallery_hashes, identities, query_hashes, bars)
        with timed(timings, "matching_s"):
            raw = score_pairs(components, cache, scored.index, gallery_hashes, query_hashes,
                              bars.task("matching", int(scored.index.size)), identities)
    else:
        with timed(timings, "shortlist_s"):
            wide = shortlist_stage(components, db, cache, profile, gallery_hashes, identities, query_hashes, bars,
                                   top_b=settings.screen_b or len(gallery_hashes))
        with timed(timings, "matching_s"):
            scored, raw = _screen_then_score(components, cache, settings, wide, gallery_hashes, identities,
                                             query_hashes, bars)
    if components.rerank is not None and not rerank:
        raw[components.rerank.name] = np.full(scored.index.shape, np.nan, np.float32)
    elif components.rerank is not None:
        with timed(timings, "rerank_s"):
            top = min(components.rerank.top_k, scored.index.shape[1])
            raw[components.rerank.name] = inlier_fisher_scores(
                components, db, cache, scored.index, raw, gallery_hashes, query_hashes,
                bars.task(f"re-ranking ({components.rerank.pipeline.name} inliers)", scored.index.shape[0] * top))
    return scored, raw


def _screen_then_score(components: Components, cache: FeatureCache, settings, wide: Shortlist,
                       gallery_hashes: list[str], identities: list[str], query_hashes: list[str],
                       bars: Progress) -> tuple[Shortlist, dict[str, np.ndarray]]:
    screen = next(p for p in components.pipelines if p.name == settings.screen)
    wide_raw = score_pairs(dataclasses.replace(components, pipelines=[screen]), cache, wide.index, gallery_hashes,
                           query_hashes, bars.task(f"screening ({screen.name})", int(wide.index.size)),
                           identities)[screen.name]
    keep = rrf_columns(wide_raw, settings.top_b)
    scored = Shortlist(np.take_along_axis(wide.index, keep, 1), np.take_along_axis(wide.sim, keep, 1),
                       screened_pairs=int(np.isfinite(wide_raw).sum()))
    others = dataclasses.replace(components, pipelines=[p for p in components.pipelines if p is not screen])
    raw = score_pairs(others, cache, scored.index, gallery_hashes, query_hashes,
                      bars.task("matching", int(scored.index.size) * len(others.pipelines)), identities)
    raw[screen.name] = np.take_along_axis(wide_raw, keep, 1)
    return scored, {p.name: raw[p.name] for p in components.pipelines}
