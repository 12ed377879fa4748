"""``reid-engine calibrate``: fit calibrators, fusion weights and τ on a labelled gallery.

1. A seeded open-set split of the gallery: a share of the identities is held out as
   "unknown" (all their images become queries); every other identity with at least two
   images gives one image as a known query; the rest is the calibration gallery.
2. The profile's shortlist and local pipelines score those queries against that gallery,
   exactly as ``run`` would.
3. Per pipeline an isotonic calibrator is fitted on the scored pairs (same individual or not).
4. Powell finds the pipeline weights, and a scan the threshold τ, that maximise
   geo-mean(BAKS, BAUS); the plain mean of calibrated scores (WildFusion) is reported beside it.
5. Everything is stored in the gallery database with the data it was fitted on; later runs
   with the same profile use it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from reid_engine.calibration.fit import (
    GLOBAL_SOURCE,
    FittedCalibration,
    OpenSetData,
    fit_open_set,
    store_calibration,
)
from reid_engine.calibration.fusion import logistic_calibration
from reid_engine.calibration.open_split import make_open_split
from reid_engine.components import build_components
from reid_engine.embedding.stored import attach_trained_embedder
from reid_engine.errors import UsageError
from reid_engine.inputs.enrolment import enroll_manifest, ensure_gallery_features
from reid_engine.inputs.manifests import load_manifest
from reid_engine.outputs.plots import write_calibration_plots
from reid_engine.progress import Progress
from reid_engine.records import NEW_INDIVIDUAL, ImageError
from reid_engine.registry import PluginTable
from reid_engine.registry.profiles import Profile
from reid_engine.scoring.stage import shortlist_and_score
from reid_engine.store.database import GalleryDatabase
from reid_engine.store.features import FeatureCache


@dataclass
class CalibrationResult:
    methods: list[dict] = field(default_factory=list)
    fitted: FittedCalibration | None = None
    ece_before: dict[str, float] = field(default_factory=dict)
    ece_after: dict[str, float] = field(default_factory=dict)
    split: dict = field(default_factory=dict)
    plots: dict[str, Path] = field(default_factory=dict)
    errors: list[ImageError] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)


def calibrate(profile: Profile, db_path: Path, gallery_path: Path | None, *, unknown_share: float = 0.2,
              seed: int = 0, device: str = "cpu", plots_dir: Path | None = None,
              table: PluginTable | None = None, progress: bool = False) -> CalibrationResult:

    table = table or PluginTable.discover()
    components = build_components(profile, table, device)
    if not components.pipelines:
        raise UsageError(f"{profile.source}: the profile has no [[pipelines]] to calibrate")
    result = CalibrationResult()
    with GalleryDatabase(db_path) as db, Progress(progress) as bars:
        notice = attach_trained_embedder(db, profile, components, table, device)
        if notice:
            result.notices.append(notice)
        if gallery_path is not None:
            enroll_manifest(db, load_manifest(gallery_path, "gallery", table), result.errors)
        gallery = db.gallery()
        cache = FeatureCache(db)
        hashes = ensure_gallery_features(gallery, components, profile, cache, result.errors,
                                         bars.task("gallery features", len(gallery)))
        gallery = [g for g in gallery if g.image_id in hashes]
        identities = [g.identity for g in gallery]
        split = make_open_split(identities, unknown_share, seed)
        all_hashes = [hashes[g.image_id] for g in gallery]
        g_rows = split.gallery
        q_rows = split.known_queries + split.unknown_queries
        sub_ids = [identities[r] for r in g_rows]
        # run's shortlist stage on the calibration gallery: a fitted embedder (Fisher vectors) is
        # fitted on it alone, so held-out queries stay unseen (a trained re-ID embedder was
        # trained on the whole labelled gallery, the held-out identities included)
        scored, raw = shortlist_and_score(components, db, cache, profile, [all_hashes[r] for r in g_rows], sub_ids,
                                          [all_hashes[r] for r in q_rows], bars)

        known = set(sub_ids)
        truth = [identities[r] if identities[r] in known else NEW_INDIVIDUAL for r in q_rows]
        data = OpenSetData(scored.index, sub_ids, truth, [identities[r] for r in q_rows])
        hits = np.array([[sub_ids[c] == identities[q] for c in scored.index[i]] for i, q in enumerate(q_rows)], float)
        result.split = {"seed": seed, "unknown_share": unknown_share, "gallery_images": len(g_rows),
                        "known_queries": len(split.known_queries), "unknown_queries": len(split.unknown_queries),
                        "unknown_identities": len(split.unknown_identities), "identities": len(set(identities))}

        # evidence sources: every local pipeline, and the shortlist's global cosine (Powell decides
        # how much it counts; it is what the AnimalCLEF 2025 winner fuses with its local matchers)
        raw = {**raw, GLOBAL_SOURCE: scored.sim.astype(np.float64)}
        before = {p.name: logistic_calibration(raw[p.name], p.midpoint, p.width) for p in components.sources()}
        before[GLOBAL_SOURCE] = np.clip(scored.sim, 0.0, 1.0)
        fit = fit_open_set(raw, before, hits, data, profile.decision.aggregate, seed=seed)
        result.methods, result.fitted = fit.methods, fit.fitted
        result.ece_before, result.ece_after = fit.ece_before, fit.ece_after
        store_calibration(db, profile, components, fit, result.split, raw, hits,
                          [gallery[r].image_id for r in q_rows])
        if plots_dir is not None:
            result.plots = write_calibration_plots(plots_dir, fit, raw, hits, data)
    return result
