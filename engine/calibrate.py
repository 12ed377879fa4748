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

import hashlib
import json
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from reid_engine.registry import PluginTable
from reid_engine.registry.profiles import Profile

from .calibration import (
    GLOBAL_SOURCE,
    calibration_key,
    load_calibration,  # noqa: F401 - re-exported: where callers have always found it
    FittedCalibration,
    IsotonicCalibrator,
    OpenSetData,
    best_threshold,
    expected_calibration_error,
    fit_weights,
    fuse_weighted,
    top_identities,
)
from .components import build_components
from .database import GalleryDatabase
from .embedding.stored import attach_trained_embedder, embedding_matrix
from .errors import UsageError
from .features import FeatureCache
from .fusion import logistic_calibration
from .metrics import top_k_accuracy
from .pipeline import _Progress, _score_pairs, enroll_manifest, ensure_gallery_features
from .records import NEW_INDIVIDUAL, ImageError

MIN_KNOWN_IDENTITIES = 2
MIN_UNKNOWN_IDENTITIES = 1


class NotEnoughData(UsageError):
    """The labelled gallery is too small to fit calibration; the message gives the fallback."""


@dataclass(frozen=True)
class OpenSplit:
    """Rows of the gallery used as known queries, unknown queries and calibration gallery."""

    known_queries: list[int]
    unknown_queries: list[int]
    gallery: list[int]
    unknown_identities: list[str]


def make_open_split(identities: list[str], unknown_share: float, seed: int) -> OpenSplit:
    """Seeded open-set split of labelled gallery rows (see the module docstring)."""
    rows_of: dict[str, list[int]] = defaultdict(list)
    for row, ident in enumerate(identities):
        rows_of[ident].append(row)
    names = sorted(rows_of)
    multi = [n for n in names if len(rows_of[n]) >= 2]
    rng = np.random.default_rng(seed)
    n_unknown = int(round(unknown_share * len(names)))
    if len(multi) < MIN_KNOWN_IDENTITIES or len(names) - MIN_KNOWN_IDENTITIES < MIN_UNKNOWN_IDENTITIES or n_unknown < 1:
        raise NotEnoughData(
            f"calibration needs at least {MIN_KNOWN_IDENTITIES} identities with 2+ images plus at least "
            f"{MIN_UNKNOWN_IDENTITIES} more identity to hold out as unknown (with --unknown-share {unknown_share}); "
            f"the gallery has {len(names)} identities, {len(multi)} with 2+ images. Nothing was stored: runs keep "
            "the profile's [decision] threshold and [[pipelines]] calibration. Enrol more labelled photos and "
            "calibrate again."
        )
    # hold out unknowns preferring identities that cannot serve as known queries anyway
    order = list(rng.permutation(names))
    single_first = sorted(order, key=lambda n: len(rows_of[n]) >= 2)
    unknown = single_first[:n_unknown]
    if sum(1 for n in multi if n not in unknown) < MIN_KNOWN_IDENTITIES:
        unknown = [n for n in order if n not in multi][:n_unknown] or unknown[: max(1, len(multi) - MIN_KNOWN_IDENTITIES)]
    known_queries, gallery = [], []
    for n in names:
        if n in unknown:
            continue
        rows = rows_of[n]
        if len(rows) >= 2:
            q = int(rng.choice(rows))
            known_queries.append(q)
            gallery.extend(r for r in rows if r != q)
        else:
            gallery.extend(rows)
    unknown_queries = sorted(r for n in unknown for r in rows_of[n])
    return OpenSplit(sorted(known_queries), unknown_queries, sorted(gallery), sorted(unknown))


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
    from .manifests import load_manifest
    from .shortlist import embed_local, embed_pooled_local, prepare_embedder, shortlist

    table = table or PluginTable.discover()
    components = build_components(profile, table, device)
    if not components.pipelines:
        raise UsageError(f"{profile.source}: the profile has no [[pipelines]] to calibrate")
    result = CalibrationResult()
    with GalleryDatabase(db_path) as db, _Progress(progress) as bars:
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
        extractor = components.embedder_extractor
        g_rows = split.gallery
        sub_ids = [identities[r] for r in g_rows]
        pooled = identity_of = None
        if components.trained is not None:
            # NB: the embedder was trained on the whole labelled gallery, the held-out identities included
            emb = embedding_matrix(cache, components.trained, all_hashes)
        else:
            # the vocabulary is fitted on the calibration gallery only: held-out queries stay unseen
            prepare_embedder(components.embedder, extractor, db, cache, [all_hashes[r] for r in split.gallery])
            emb = embed_local(components.embedder, cache, extractor, all_hashes)
            names = sorted(set(sub_ids))
            groups: dict[str, list[str]] = defaultdict(list)
            for r in g_rows:
                groups[identities[r]].append(all_hashes[r])
            if profile.shortlist.identity_pooling:
                pooled = embed_pooled_local(components.embedder, cache, extractor, [groups[n] for n in names])
                position = {n: i for i, n in enumerate(names)}
                identity_of = np.array([position[i] for i in sub_ids])
        q_rows = split.known_queries + split.unknown_queries
        scored = shortlist(emb[q_rows], emb[g_rows], profile.shortlist.top_b, pooled, identity_of)
        raw = _score_pairs(components, cache, scored.index, [all_hashes[r] for r in g_rows],
                           [all_hashes[r] for r in q_rows], bars.task("matching", int(scored.index.size)), sub_ids)

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
        sources = [(p.name, logistic_calibration(raw[p.name], p.midpoint, p.width)) for p in components.pipelines]
        sources.append((GLOBAL_SOURCE, np.clip(scored.sim, 0.0, 1.0)))
        calibrators, probabilities = {}, []
        for name, before in sources:
            try:
                cal = IsotonicCalibrator.fit(raw[name].ravel(), hits.ravel())
            except ValueError as exc:
                raise NotEnoughData(f"{name!r}: {exc}; nothing was stored, runs keep the profile's "
                                    "calibration and threshold. Calibrate on a larger labelled gallery.") from None
            calibrators[name] = cal
            prob = cal.predict(raw[name])
            probabilities.append(prob)
            result.ece_before[name], _ = expected_calibration_error(before, hits)
            result.ece_after[name], _ = expected_calibration_error(prob, hits)
        names = [name for name, _ in sources]
        how = profile.decision.aggregate

        def method(name: str, fused: np.ndarray, weights: np.ndarray, tau: float | None = None) -> dict:
            names_, top = top_identities(fused, data, how)
            if tau is None:
                tau, scores = best_threshold(names_, top, data)
            else:
                from .calibration import open_set_scores

                scores = open_set_scores(names_, top, tau, data)
            ranked = [_ranked_ids(fused[q], scored.index[q], sub_ids, how) for q in range(len(q_rows))]
            return {"method": name, **scores, "top1": top_k_accuracy(truth, ranked, 1), "tau": tau,
                    "weights": [round(float(w), 4) for w in weights]}

        n = len(sources)
        for i, name in enumerate(names):
            result.methods.append(method(f"{name} alone", probabilities[i], np.eye(n)[i]))
        result.methods.append(method("mean fusion (WildFusion)", fuse_weighted(probabilities, np.ones(n)), np.ones(n) / n))
        weights, tau, _ = fit_weights(probabilities, data, how, seed=seed)
        result.methods.append(method("Powell fusion", fuse_weighted(probabilities, weights), weights, tau))
        fitted = FittedCalibration(names, calibrators, weights, tau, how)
        names_, top = top_identities(fitted.fuse(raw), data, how)
        right = np.array([n == t for n, t in zip(names_, truth)], float)
        if 0 < right.sum() < len(right):  # identity level: aggregated score → P(top identity is right)
            fitted.top = IsotonicCalibrator.fit(top, right)
        result.fitted = fitted
        fitted_on = {**result.split, "profile": profile.name, "methods": result.methods,
                     "ece_before": result.ece_before, "ece_after": result.ece_after}
        arrays = fitted.to_arrays()
        for i, name in enumerate(names):
            arrays[f"data.raw{i}"] = raw[name].astype(np.float32)
        arrays["data.hits"] = hits.astype(np.uint8)
        arrays["data.query_image_ids"] = np.array([gallery[r].image_id for r in q_rows])
        db.put_model(calibration_key(profile, components), "calibration", profile.name, "1",
                     hashlib.sha256(json.dumps(result.split, sort_keys=True).encode()).hexdigest()[:16],
                     json.loads(json.dumps(fitted_on, default=float)), arrays)

        if plots_dir is not None:
            from .calibration_plots import plot_reliability, plot_threshold_sweep

            fused = fitted.fuse(raw)
            names_, top = top_identities(fused, data, how)
            result.plots["threshold"] = plot_threshold_sweep(plots_dir / "threshold-sweep.png", names_, top, data, tau)
            result.plots["reliability"] = plot_reliability(plots_dir / "reliability.png", [b for _, b in sources],
                                                          probabilities, hits, names)
    return result


def _ranked_ids(fused_row: np.ndarray, rows: np.ndarray, identities: list[str], how: str) -> list[str]:
    from .fusion import aggregate

    return [s.identity for s in aggregate(fused_row, rows, identities, how)]
