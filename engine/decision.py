"""The decision stage: fused probabilities → ranked identities → known or new, per query."""

from __future__ import annotations

import numpy as np

from reid_engine.calibration.fit import GLOBAL_SOURCE, FittedCalibration
from reid_engine.calibration.fusion import (
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


def decide_queries(components: Components, profile: Profile, queries: list[ImageRecord], gallery: list[GalleryImage],
                   scored: Shortlist, raw: dict[str, np.ndarray], top_k: int,
                   fitted: FittedCalibration | None = None) -> list[Prediction]:
    """Fused probabilities → ranked identities → known/new, with the fitted calibration when
    ``reid-engine calibrate`` stored one, else the profile's logistic calibration and threshold."""
    pipelines = components.pipelines
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
        if components.trained is not None and profile.trained_embedder.weight > 0:  # its cosine is evidence too
            s = profile.trained_embedder
            probabilities.append(logistic_calibration(scored.sim, s.calibration.midpoint, s.calibration.width))
            weights, raws, widths = weights + [s.weight], raws + [scored.sim], widths + [s.calibration.width]
        fused = fuse(probabilities, weights)
        tiebreak = fuse_raw(raws, weights, widths)
    else:
        fused = np.clip(scored.sim, 0.0, 1.0)
        tiebreak = scored.sim
    identities = [g.identity for g in gallery]
    predictions = []
    for qi, record in enumerate(queries):
        ranked = aggregate(fused[qi], scored.index[qi], identities, how, tiebreak[qi])[:top_k]
        candidates = tuple(
            Candidate(
                rank=rank, identity=s.identity, score=confidence(s.score),
                gallery_image_id=gallery[s.best_row].image_id, gallery_path=gallery[s.best_row].path,
                pipeline_scores={p.name: float(raw[p.name][qi, s.best_column]) for p in pipelines}
                | {"shortlist_cosine": float(scored.sim[qi, s.best_column])},
            )
            for rank, s in enumerate(ranked, start=1)
        )
        prediction, score, decision = decide(candidates, threshold)
        predictions.append(Prediction(record.image_id, str(record.path), prediction, score, decision, candidates,
                                      truth=record.truth))
    return predictions
