"""``reid-engine run``: identify every query photo, stage by stage (see ARCHITECTURE.md).

manifests → enrol the gallery → cached features → shortlist (global embedding) → pair scoring
of the shortlisted pairs only → calibration + fusion → per-identity decision → outputs.
"""

from __future__ import annotations

import dataclasses
import shlex
import time
from collections import Counter
from pathlib import Path

from reid_engine.calibration.fit import load_calibration
from reid_engine.components import build_components
from reid_engine.decision import decide_queries, fused_sources
from reid_engine.device import resolve_device
from reid_engine.embedding.stored import attach_trained_embedder
from reid_engine.errors import ReidError
from reid_engine.inputs.animals import animal_views, mask_counts, mask_notices
from reid_engine.inputs.enrolment import enrol_gallery, ensure_gallery_features, ensure_query_features
from reid_engine.inputs.manifests import UNKNOWN_GROUP, run_manifests
from reid_engine.inputs.views import gallery_record, segmentation_of
from reid_engine.metrics import evaluate
from reid_engine.outputs.evidence import ReportEvidence
from reid_engine.outputs.run_outputs import check_out_folder, write_run_outputs
from reid_engine.outputs.tables import write_errors
from reid_engine.progress import Progress, timed
from reid_engine.records import ImageError
from reid_engine.registry import PluginTable
from reid_engine.registry.profiles import profile_argument
from reid_engine.runs import RunOptions, RunResult
from reid_engine.scoring.stage import shortlist_and_score
from reid_engine.store.database import GalleryDatabase
from reid_engine.store.features import FeatureCache


def run(options: RunOptions, table: PluginTable | None = None, progress: bool = True) -> RunResult:
    """Identify every query of ``options``; write outputs when ``options.out`` is set."""
    timings: dict[str, float] = {}
    t_start = time.perf_counter()
    table = table or PluginTable.discover()
    device = resolve_device(options.device)
    profile = options.profile
    errors: list[ImageError] = []
    check_out_folder(options.out)
    gallery_manifest, query_manifest = run_manifests(options.gallery, options.query, options.split, table)
    notices = [n for m in (gallery_manifest, query_manifest) if m is not None for n in m.notices]
    errors.extend(query_manifest.skipped)  # the gallery's are added when it is enrolled
    # after the manifests: a wrong path is reported before a missing model weight
    components = build_components(profile, table, device)

    with GalleryDatabase(options.db) as db, Progress(progress) as bars:
        notices.extend(filter(None, [attach_trained_embedder(db, profile, components, table, device)]))
        with timed(timings, "enroll_s"):
            gallery, added, unchanged = enrol_gallery(db, gallery_manifest, options.split is not None, errors,
                                                      notices)

        cache = FeatureCache(db)
        with timed(timings, "features_s"):
            g_keys = ensure_gallery_features(gallery, components, profile, cache, errors,
                                             bars.task("gallery features", len(gallery)))
            gallery = [g for g in gallery if g.image_id in g_keys]
            if not gallery:
                _no_usable_gallery(errors, options.out)
            queries, q_keys, q_content = ensure_query_features(list(query_manifest.records), gallery, components,
                                                               profile, cache, errors, bars)
        animals = {}
        segmentation = segmentation_of(components, profile, db)
        if segmentation is not None:
            animals = (animal_views(segmentation, [(gallery_record(g), g.content_hash) for g in gallery], remember=True)
                       | animal_views(segmentation, [(r, q_content[r.image_id]) for r in queries]))
            notices.extend(mask_notices(animals, {r.image_id for r in queries}))

        gallery_keys = [g_keys[g.image_id] for g in gallery]
        query_keys = [q_keys[r.image_id] for r in queries]
        identities = [g.identity for g in gallery]
        fitted = load_calibration(db, profile, components)
        scored, raw = shortlist_and_score(components, db, cache, profile, gallery_keys, identities, query_keys,
                                          bars, timings, rerank=fitted is not None or _rerank_weighs(components))
        counts = {"gallery_images": len(gallery), "gallery_individuals": len(set(identities)),
                  "queries": len(queries), "enrolled_now": added, "already_enrolled": unchanged,
                  "features_computed": cache.computed, "features_reused": cache.reused,
                  "pairs_scored": int(scored.index.size) * len(components.pipelines), "errors": len(errors)}
        if scored.screened_pairs:
            counts["pairs_screened"] = scored.screened_pairs
        if cache.recomputed:
            counts["features_recomputed"] = cache.recomputed
            notices.append(f"{cache.recomputed} cached feature file(s) in {db.blob_dir} were damaged or gone and "
                           "were recomputed from their photos")
        if fitted is not None:
            notices.append(f"using the calibration fitted by `reid-engine calibrate` for profile {profile.name!r} "
                           f"(τ = {fitted.threshold:.3f}, weights {', '.join(f'{w:.2f}' for w in fitted.weights)})")
        elif len(fused := fused_sources(components, profile)) > 1:
            notices.append(f"profile {profile.name!r} fuses {', '.join(fused)} with the calibration and weights "
                           "written in the profile, not fitted to your photos; together they can rank worse than the "
                           f"best of them alone. `reid-engine calibrate {profile_argument(profile)} --gallery LABELLED "
                           f"--db {shlex.quote(str(options.db))}` fits them on your labelled gallery")

    predictions = decide_queries(components, profile, queries, gallery, scored, raw, options.top_k, fitted)
    if animals:
        predictions = [dataclasses.replace(p, animal=animals[p.image_id].describe()) if p.image_id in animals else p
                       for p in predictions]
        counts.update(mask_counts(animals, {r.image_id for r in queries}))
    timings["total_s"] = time.perf_counter() - t_start

    unknown_groups = {r.image_id: r.extra.get(UNKNOWN_GROUP) for r in queries}
    metrics = evaluate(predictions, unknown_groups=unknown_groups)
    metrics_per_photo = {}
    if profile.decision.sequences != "off" and any(p.sequence for p in predictions):
        alone = dataclasses.replace(profile, decision=dataclasses.replace(profile.decision, sequences="off"))
        metrics_per_photo = evaluate(decide_queries(components, alone, queries, gallery, scored, raw, options.top_k,
                                                    fitted), unknown_groups=unknown_groups)
        counts["sequences_pooled"] = sum(1 for n in Counter(p.sequence for p in predictions if p.sequence).values()
                                         if n > 1)
    result = RunResult(predictions, errors, metrics, timings, counts, notices, shortlist_index=scored.index,
                       shortlist_sim=scored.sim, raw_scores=raw, gallery_identities=identities,
                       gallery_image_ids=[g.image_id for g in gallery],
                       threshold=fitted.confidence_threshold if fitted else profile.decision.threshold,
                       calibration="fitted (reid-engine calibrate)" if fitted else "profile (logistic)",
                       metrics_per_photo=metrics_per_photo)
    if options.out is not None:
        make_evidence = None
        if options.write_report and options.explain_top > 0 and components.pipelines:
            def make_evidence():  # called by write_run_report, which writes the report without drawings if this fails
                return ReportEvidence(components.pipelines[0], options.db, profile.image,
                                      {r.image_id: (r, q_keys[r.image_id]) for r in queries},
                                      {g.image_id: (gallery_record(g), g_keys[g.image_id]) for g in gallery},
                                      top=options.explain_top,
                                      segment=None if profile.segment is None else (profile.segment,
                                                                                    components.segmenter))
        write_run_outputs(result, options, make_evidence)
    return result


def _rerank_weighs(components) -> bool:
    """Whether ``[rerank]``'s score counts before ``calibrate`` (weight > 0); with weight 0 it is
    computed only for a fitted calibration, which weighs it itself."""
    return components.rerank is not None and components.rerank.weight > 0


def _no_usable_gallery(errors: list[ImageError], out: Path | None) -> None:
    """Every gallery image failed: write errors.csv (when there is an output folder) and stop."""
    if out is not None:
        write_errors(Path(out) / "errors.csv", errors)
    first = f" (first: {errors[0].reason})" if errors else ""
    raise ReidError(f"no gallery image could be used{first}; every reason is in {Path(out or '.') / 'errors.csv'}")
