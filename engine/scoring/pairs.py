"""Pair scoring: each local pipeline matches and scores the shortlisted (query, gallery) pairs."""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from typing import Callable, TypeVar

import numpy as np

from reid_engine.components import Components
from reid_engine.errors import ReidError
from reid_engine.plugin_adapters import adapt
from reid_engine.records import LocalFeatures, Matches
from reid_engine.scoring.distinctiveness import Counted, counted, fitted, weighted_scores
from reid_engine.store.features import FeatureCache
from reid_engine.threads import ordered_map

# gallery images whose shortlisted pairs are matched in one ``match_many`` call: enough pairs for a
# GPU batch or for every CPU worker of a parallel matcher, few enough gallery features in memory
GALLERY_CHUNK = 16

T = TypeVar("T")


def match_pairs(matcher, firsts: list[LocalFeatures], seconds: list[LocalFeatures]) -> list[Matches]:
    """Matches of each pair (firsts[i], seconds[i]): several pairs in one ``match_many`` call
    (LightGlue batches them on a GPU and spreads them over the CPU threads; the base class's
    default matches them one by one), a single pair with ``match``."""
    matcher = adapt("matcher", matcher)
    if len(firsts) > 1:
        return matcher.match_many(firsts, seconds)
    return [matcher.match(a, b) for a, b in zip(firsts, seconds)]


def match_and_score(matcher, firsts: list[LocalFeatures], seconds: list[LocalFeatures],
                    score: Callable[[int, Matches], T], workers: int = 1) -> list[T]:
    """``score(i, matches of pair i)`` for each pair (firsts[i], seconds[i]). With ``workers`` > 1
    that many pairs are matched (``match``) and scored side by side, one core each (matcher and
    scorer must be thread-safe: ``Components.matching_workers``); else every pair goes through
    ``match_pairs`` (one ``match_many`` call) and is scored in turn."""
    if workers > 1:
        matcher = adapt("matcher", matcher)
        return [done.result() for done in ordered_map(lambda i: score(i, matcher.match(firsts[i], seconds[i])),
                                                      range(len(firsts)), workers)]
    return [score(i, matches) for i, matches in enumerate(match_pairs(matcher, firsts, seconds))]


def score_pairs(components: Components, cache: FeatureCache, index: np.ndarray, gallery_hashes: list[str],
                query_hashes: list[str], advance: Callable[[int], None],
                identities: list[str] | None = None) -> dict[str, np.ndarray]:
    """Raw score per pipeline, float (N_q, B), NaN where not scored. ``identities`` (aligned
    with ``gallery_hashes``) are needed by pipelines with distinctiveness weighting.

    Gallery-major order: shortlisted gallery images are read ``GALLERY_CHUNK`` at a time, once
    per run, and each chunk's pairs (every query that shortlisted one of them) are matched in
    one call; query features stay in memory.
    """
    pipelines = components.pipelines
    raw = {p.name: np.full(index.shape, np.nan, np.float32) for p in pipelines}
    if not pipelines:
        return raw
    extractors = {p.extractor.cache_id: p.extractor for p in pipelines}
    query_features = {key: [cache.get(h, ex) for h in query_hashes] for key, ex in extractors.items()}
    # distinctiveness: each pair's counted matches wait (pipeline name -> query -> [(column, Counted)]) until
    # every pair is matched; then each query's neighbours are looked up once, for the features counted
    models = {p.name: fitted(cache, p.extractor, gallery_hashes, identities, p.distinctiveness)
              for p in pipelines if p.distinctiveness is not None}
    waiting: dict[str, dict[int, list[tuple[int, Counted]]]] = {name: defaultdict(list) for name in models}
    pairs_of: dict[int, list[tuple[int, int]]] = defaultdict(list)
    for qi in range(index.shape[0]):
        for col in range(index.shape[1]):
            pairs_of[int(index[qi, col])].append((qi, col))
    rows = sorted(pairs_of)
    for start in range(0, len(rows), GALLERY_CHUNK):
        chunk = rows[start:start + GALLERY_CHUNK]
        g_features = {g_row: {key: cache.get(gallery_hashes[g_row], ex) for key, ex in extractors.items()}
                      for g_row in chunk}
        for p in pipelines:
            mine = query_features[p.extractor.cache_id]
            todo = [(g_row, qi, col) for g_row in chunk for qi, col in pairs_of[g_row]
                    if g_features[g_row][p.extractor.cache_id] is not None and mine[qi] is not None]
            firsts = [mine[qi] for _, qi, _ in todo]
            seconds = [g_features[g_row][p.extractor.cache_id] for g_row, _, _ in todo]

            def pair_score(i: int, matches: Matches) -> float | Counted:  # used right away: no late binding
                if p.name in models:
                    return counted(p.scorer.obj, models[p.name], firsts[i], seconds[i], matches,
                                   identities[todo[i][0]])
                return p.scorer.obj.score(firsts[i], seconds[i], matches)

            scores = match_and_score(p.matcher.obj, firsts, seconds, pair_score, components.matching_workers(p))
            for (_, qi, col), value in zip(todo, scores):
                if isinstance(value, Counted):
                    waiting[p.name][qi].append((col, value))
                else:
                    raw[p.name][qi, col] = value
        advance(sum(len(pairs_of[g_row]) for g_row in chunk))
    for p in pipelines:
        for qi, pending in waiting.get(p.name, {}).items():
            cols = [col for col, _ in pending]
            raw[p.name][qi, cols] = weighted_scores(models[p.name], query_features[p.extractor.cache_id][qi].desc,
                                                    [c for _, c in pending])
    return raw


@dataclass
class PairEvidence:
    """What one pipeline found between two images.

    matches        Matches (M,) of the pipeline's matcher, f1 → f2
    inliers        bool (M,): the scorer's inlier set, or all True when it gives none
    inliers_known  whether the scorer gave an inlier set (``inliers(f1, f2, matches)``)
    score          the scorer's raw score of the pair (what the run fuses, unless ``weighted``)
    weighted       the pipeline weights its counted matches by distinctiveness: the run's score
                   of the pair is their weight sum (ranking.csv / report), not ``score``
    """

    pipeline: str
    scorer: str
    matches: Matches
    inliers: np.ndarray
    inliers_known: bool
    score: float
    weighted: bool = False

    @property
    def n_inliers(self) -> int:
        return int(self.inliers.sum())

    def info(self) -> str:
        note = " (before distinctiveness weighting)" if self.weighted else ""
        return f"{self.pipeline} · score {format_score(self.score)}{note}"


def format_score(value: float) -> str:
    return str(int(value)) if math.isfinite(value) and float(value).is_integer() else f"{value:.3f}"


def match_pair(pipeline, f1: LocalFeatures, f2: LocalFeatures) -> PairEvidence:
    """Match and score ``f1`` → ``f2`` with one :class:`~reid_engine.components.Pipeline`, as the run does.

    A ValueError or RuntimeError of the matcher or the scorer (bad features, out of memory...)
    becomes a one-line :class:`ReidError` naming the pipeline and the plugin.
    """
    name = pipeline.scorer.spec.name
    weighted = getattr(pipeline, "distinctiveness", None) is not None
    matcher, scorer = adapt("matcher", pipeline.matcher.obj), adapt("scorer", pipeline.scorer.obj)
    matches = _plugin_step(pipeline, "matcher", pipeline.matcher, lambda: matcher.match(f1, f2))
    score = float(_plugin_step(pipeline, "scorer", pipeline.scorer, lambda: scorer.score(f1, f2, matches)))
    found = _plugin_step(pipeline, "scorer", pipeline.scorer, lambda: scorer.inliers(f1, f2, matches))
    if found is not None:
        inl = np.asarray(found, bool).reshape(-1)
        if inl.shape != (len(matches),):
            raise ReidError(f"scorer {name!r}: inliers() returned {inl.size} values for {len(matches)} matches; "
                            "it must return one bool per match (fix or update the plugin)")
        return PairEvidence(pipeline.name, name, matches, inl, True, score, weighted)
    return PairEvidence(pipeline.name, name, matches, np.ones(len(matches), bool), False, score, weighted)


def _plugin_step(pipeline, kind: str, built, call):
    """``call()``, with a plugin's ValueError / RuntimeError turned into one ReidError line."""
    try:
        return call()
    except (ValueError, RuntimeError) as exc:
        plugin = getattr(getattr(built, "spec", None), "name", "?")
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise ReidError(f"pipeline {pipeline.name!r}: {kind} {plugin!r} failed on this pair: {reason}") from exc
