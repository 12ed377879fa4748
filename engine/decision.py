"""The decision stage: fused probabilities → ranked identities → known or new, per query.

With ``[decision] sequences = "mean"`` (or ``"max"``) the photos of one query sequence (the
manifest's ``sequence`` column: photos known to show one individual, e.g. a burst or an
encounter) are identified together, as the Ladoga seal work does: each identity's probability
for the sequence is the mean (or max) of its photos' probabilities (0 where a photo's shortlist
does not hold it), and every photo of the sequence gets the sequence's ranking and answer. Each
prediction keeps what its photo alone said (``photo_prediction``, ``photo_score``).
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict

import numpy as np

from reid_engine.calibration.fit import GLOBAL_SOURCE, FittedCalibration
from reid_engine.calibration.fusion import (
    IdentityScore,
    aggregate,
    decide,
    fuse,
    fuse_raw,
    logistic_calibration,
)
from reid_engine.components import Components
from reid_engine.records import Candidate, ImageRecord, Prediction
from reid_engine.registry.profiles import Profile
from reid_engine.shortlist.global_embedding import Shortlist
from reid_engine.store.database import GalleryImage


def trained_cosine_is_evidence(components: Components, profile: Profile) -> bool:
    """Whether the uncalibrated decision fuses the trained embedder's cosine as evidence."""
    return components.trained is not None and profile.trained_embedder.weight > 0


def fused_sources(components: Components, profile: Profile) -> list[str]:
    """Names of the evidence sources the decision fuses with a weight > 0 when no calibration is
    fitted: pipelines, ``[rerank]``, and the trained embedder's cosine."""
    names = [source.name for source in components.sources() if source.weight > 0]
    if trained_cosine_is_evidence(components, profile):
        names.append("the trained embedder's cosine")
    return names


def decide_queries(components: Components, profile: Profile, queries: list[ImageRecord], gallery: list[GalleryImage],
                   scored: Shortlist, raw: dict[str, np.ndarray], top_k: int,
                   fitted: FittedCalibration | None = None) -> list[Prediction]:
    """Fused probabilities → ranked identities → known/new, with the fitted calibration when
    ``reid-engine calibrate`` stored one, else the profile's logistic calibration and threshold."""
    pipelines = components.sources()  # every pipeline, and [rerank]'s score when the profile has one
    threshold, how = profile.decision.threshold, profile.decision.aggregate
    confidence = lambda x: x  # noqa: E731 - identity-level calibration, when fitted
    if fitted is not None:
        fused = fitted.fuse({**raw, GLOBAL_SOURCE: scored.sim.astype(np.float64)})
        tiebreak = fuse_raw([raw[p.name] for p in pipelines], [1.0] * len(pipelines), [p.width for p in pipelines])
        threshold, how = fitted.confidence_threshold, fitted.aggregate
        confidence = lambda x: float(fitted.confidence(np.array([x]))[0])  # noqa: E731
    elif pipelines:
        probabilities = [logistic_calibration(raw[p.name], p.midpoint, p.width) for p in pipelines]
        weights, raws, widths = [p.weight for p in pipelines], [raw[p.name] for p in pipelines], [p.width for p in pipelines]
        if trained_cosine_is_evidence(components, profile):
            s = profile.trained_embedder
            probabilities.append(logistic_calibration(scored.sim, s.calibration.midpoint, s.calibration.width))
            weights, raws, widths = weights + [s.weight], raws + [scored.sim], widths + [s.calibration.width]
        fused = fuse(probabilities, weights)
        tiebreak = fuse_raw(raws, weights, widths)
    else:
        fused = np.clip(scored.sim, 0.0, 1.0)
        tiebreak = scored.sim
    identities = [g.identity for g in gallery]
    rankings = [aggregate(fused[qi], scored.index[qi], identities, how, tiebreak[qi]) for qi in range(len(queries))]
    owners = [[qi] * len(r) for qi, r in enumerate(rankings)]  # which query's shortlist holds each best photo
    photo = [("", float("nan"))] * len(queries)
    sequences = [record.sequence for record in queries]
    if profile.decision.sequences != "off":
        photo = [decide(_candidates(rankings[qi][:1], owners[qi][:1], gallery, scored, raw, pipelines, confidence),
                        threshold)[:2] for qi in range(len(queries))]
        for members in _sequence_groups(sequences):
            pooled, owner = pool_rankings([rankings[qi] for qi in members], members, profile.decision.sequences)
            for qi in members:
                rankings[qi], owners[qi] = pooled, owner
    predictions = []
    for qi, record in enumerate(queries):
        candidates = _candidates(rankings[qi][:top_k], owners[qi][:top_k], gallery, scored, raw, pipelines, confidence)
        prediction, score, decision = decide(candidates, threshold)
        predictions.append(Prediction(record.image_id, str(record.path), prediction, score, decision, candidates,
                                      truth=record.truth, sequence=record.sequence or "",
                                      photo_prediction=photo[qi][0], photo_score=photo[qi][1]))
    return predictions


def _candidates(ranked: list[IdentityScore], owners: list[int], gallery: list[GalleryImage], scored: Shortlist,
                raw: dict[str, np.ndarray], pipelines, confidence) -> tuple[Candidate, ...]:
    return tuple(
        Candidate(
            rank=rank, identity=s.identity, score=confidence(s.score),
            gallery_image_id=gallery[s.best_row].image_id, gallery_path=gallery[s.best_row].path,
            pipeline_scores={p.name: float(raw[p.name][qi, s.best_column]) for p in pipelines}
            | {"shortlist_cosine": float(scored.sim[qi, s.best_column])},
        )
        for rank, (s, qi) in enumerate(zip(ranked, owners), start=1)
    )


def _sequence_groups(sequences: list[str | None]) -> list[list[int]]:
    """Query indices per sequence that has two photos or more."""
    groups: dict[str, list[int]] = defaultdict(list)
    for qi, sequence in enumerate(sequences):
        if sequence:
            groups[sequence].append(qi)
    return [members for members in groups.values() if len(members) > 1]


def pool_rankings(rankings: list[list[IdentityScore]], members: list[int], how: str
                  ) -> tuple[list[IdentityScore], list[int]]:
    """One sequence's photos' identity rankings → the sequence's ranking, best first, and for
    each identity the member query whose shortlist holds its best gallery photo.

    Each identity scores the ``mean`` (or ``max``) of its photos' probabilities, a photo whose
    shortlist lacks it counting 0; ties are broken by the best tiebreak any photo gives it.
    """
    per_identity: dict[str, dict[int, IdentityScore]] = defaultdict(dict)
    for qi, ranking in zip(members, rankings):
        for s in ranking:
            per_identity[s.identity][qi] = s
    pooled, owner = [], []
    for identity, by_member in per_identity.items():
        values = [by_member[qi].score if qi in by_member else 0.0 for qi in members]
        best_member = max(by_member, key=lambda qi: (by_member[qi].score, by_member[qi].tiebreak))
        best = by_member[best_member]
        score = max(values) if how == "max" else float(np.mean(values))
        pooled.append((dataclasses.replace(best, score=score, tiebreak=max(s.tiebreak for s in by_member.values())),
                       best_member))
    pooled.sort(key=lambda item: (-item[0].score, -item[0].tiebreak, item[0].identity))
    return [p for p, _ in pooled], [m for _, m in pooled]
