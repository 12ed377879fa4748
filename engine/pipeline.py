"""One identification run, stage by stage (see DESIGN.md "Data flow").

enroll gallery → features (cached) → shortlist (global embedding) → pair scoring of the
shortlisted pairs only → calibration + fusion → per-identity aggregation → decision → outputs.
"""

from __future__ import annotations

import dataclasses
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from reid_engine.registry import PluginTable
from reid_engine.registry.profiles import Profile

from .components import Components, build_components
from .database import GalleryDatabase, GalleryImage
from .errors import ReidError, UsageError
from .features import FeatureCache, ensure_features
from .calibration import GLOBAL_SOURCE, load_calibration
from .fusion import aggregate, decide, fuse, fuse_raw, logistic_calibration
from .images import ImageDecodeError, content_hash
from .manifests import UNKNOWN_GROUP, apply_split, load_manifest
from .records import (NEW_INDIVIDUAL, Candidate, ImageError, ImageRecord, LocalFeatures, Manifest, Matches,
                      Prediction)
from .embedding.stored import attach_trained_embedder, embedding_matrix
from .loading import gallery_record, image_loader, segmentation_of  # noqa: F401 - also used by callers of pipeline
from .segmentation import Segmentation
from .shortlist import embed_local, embed_pooled_local, prepare_embedder, shortlist

METADATA_FIELDS = ("bbox", "mask_path", "segmentation", "date", "orientation", "species", "sequence", "keypoints")


@dataclass
class RunOptions:
    """What ``reid-engine run`` was asked to do."""

    profile: Profile
    db: Path
    out: Path | None
    gallery: Path | None = None
    query: Path | None = None
    split: Path | None = None
    top_k: int = 5
    device: str = "auto"
    write_report: bool = True
    title: str = "reid-engine run"
    explain_top: int = 1  # report.html: match drawings of each query's top-K candidates (0 = none)


@dataclass
class RunResult:
    predictions: list[Prediction]
    errors: list[ImageError]
    metrics: dict[str, float | int]
    timings: dict[str, float]
    counts: dict[str, int]
    notices: list[str] = field(default_factory=list)
    outputs: dict[str, Path] = field(default_factory=dict)
    # for analysis (not written): shortlisted gallery rows (N_q, B), their cosine, raw pipeline scores
    shortlist_index: np.ndarray | None = None
    shortlist_sim: np.ndarray | None = None
    raw_scores: dict[str, np.ndarray] = field(default_factory=dict)
    gallery_identities: list[str] = field(default_factory=list)
    threshold: float = float("nan")
    calibration: str = "profile"


def resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda: no CUDA device is available here; use --device cpu or auto")
    if device not in ("cpu", "cuda") and not device.startswith("cuda:"):
        raise UsageError(f"--device {device!r}: choose auto, cpu or cuda")
    return device


# -- gallery -------------------------------------------------------------------------------
def enroll_manifest(db: GalleryDatabase, manifest: Manifest, errors: list[ImageError]) -> tuple[int, int]:
    """Hash and enrol a labelled manifest's images; unreadable files go to ``errors``."""
    entries = []
    for record in manifest.records:
        try:
            data = Path(record.path).read_bytes()
        except OSError as exc:
            reason = "file not found; check the path in the manifest" if isinstance(exc, FileNotFoundError) else str(exc)
            errors.append(ImageError(record.image_id, str(record.path), "enroll", f"{record.path}: {reason}"))
            continue
        if not data:
            errors.append(ImageError(record.image_id, str(record.path), "enroll", f"{record.path}: file is empty"))
            continue
        meta = {k: getattr(record, k) for k in METADATA_FIELDS if getattr(record, k) is not None}
        meta = {k: (str(Path(v).resolve()) if isinstance(v, Path) else v) for k, v in meta.items()}
        entries.append((record.image_id, content_hash(data), str(Path(record.path).resolve()), record.identity, meta))
    return db.enroll(entries, manifest.source)


def _truth_against_gallery(record: ImageRecord, identities: set[str]) -> ImageRecord:
    """A query whose true identity is not in the gallery is, for scoring, a new individual."""
    if record.truth is None or record.truth == NEW_INDIVIDUAL or record.truth in identities:
        return record
    return dataclasses.replace(record, truth=NEW_INDIVIDUAL, extra={**record.extra, UNKNOWN_GROUP: record.truth})


def ensure_gallery_features(gallery: list[GalleryImage], components: Components, profile: Profile,
                            cache: FeatureCache, errors: list[ImageError],
                            advance: Callable[[], None] = lambda: None) -> dict[str, str]:
    """Cached features of every enrolled image for every extractor the profile needs
    (image_id → image key; unusable images go to ``errors``)."""
    return ensure_features([(gallery_record(g), g.content_hash) for g in gallery], components.extractors(), cache,
                           image_loader(components, profile, cache.db), errors, advance)


# -- the animal in each photo ----------------------------------------------------------------
def each_animal(records: list[ImageRecord], segmentation: Segmentation, profile: Profile,
                errors: list[ImageError]) -> list[ImageRecord]:
    """Instance policy ``each``: a query photo showing n > 1 animals becomes n queries
    ``IMAGE_ID#1`` … ``IMAGE_ID#n`` (largest first). Runs the segmenter (cached) on every query."""
    from .images import read_image
    from .segmentation import INSTANCE_KEY

    out = []
    for record in records:
        try:
            image = read_image(record, profile.image.max_side, profile.image.min_side)
            n = 1 if image.mask is not None else segmentation.instances(image)  # a manifest mask names one animal
        except ImageDecodeError:
            out.append(record)  # ensure_features reports it
            continue
        except Exception as exc:  # noqa: BLE001 - the segmenter failing on one photo must not stop the run
            errors.append(ImageError(record.image_id, str(record.path), "segment", f"{type(exc).__name__}: {exc}"))
            out.append(record)
            continue
        if n <= 1:
            out.append(record)
            continue
        for k in range(n):
            out.append(dataclasses.replace(record, image_id=f"{record.image_id}#{k + 1}",
                                           extra={**record.extra, INSTANCE_KEY: str(k)}))
    return out


def animal_views(segmentation: Segmentation, photos: list[tuple[ImageRecord, str]]) -> dict:
    """image_id → AnimalView for (record, content hash) pairs, from the mask cache (no decoding)."""
    from .segmentation import AnimalView

    return {record.image_id: segmentation.view_of(record, chash) or AnimalView("none") for record, chash in photos}


def mask_counts(views: dict, query_ids: set[str]) -> dict[str, float | int]:
    """summary.json counts: masks used, fallbacks and mean coverage, for gallery and queries."""
    out: dict[str, float | int] = {}
    for role, ids in (("gallery", [i for i in views if i not in query_ids]), ("query", [i for i in views if i in query_ids])):
        vs = [views[i] for i in ids]
        masked = [v for v in vs if v.source != "none" and not v.fallback]
        out[f"{role}_masked"] = len(masked)
        out[f"{role}_mask_fallbacks"] = sum(1 for v in vs if v.fallback)
        if masked and any(v.source != "manifest" for v in masked):
            out[f"{role}_mask_coverage"] = round(float(np.mean([v.coverage for v in masked if v.source != "manifest"])), 3)
    return out


def _mask_notices(views: dict, query_ids: set[str]) -> list[str]:
    fallbacks = [(i, v) for i, v in views.items() if v.fallback]
    if not fallbacks:
        return []
    first_id, first = fallbacks[0]
    return [f"{len(fallbacks)} of {len(views)} photos use a fallback instead of a mask "
            f"(first: {first_id}: {first.fallback}); predictions.csv's 'animal' column says which"]


# -- progress ------------------------------------------------------------------------------
class _Progress:
    """A rich progress bar on stderr, or nothing."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self._bar = None

    def __enter__(self) -> "_Progress":
        if self.enabled:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self._bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TimeElapsedColumn(), console=Console(stderr=True), transient=True)
            self._bar.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        if self._bar is not None:
            self._bar.__exit__(*exc)

    def task(self, description: str, total: int) -> Callable[[int], None]:
        if self._bar is None:
            return lambda n=1: None
        task_id = self._bar.add_task(description, total=total)
        return lambda n=1: self._bar.advance(task_id, n)


# -- the run -------------------------------------------------------------------------------
def run(options: RunOptions, table: PluginTable | None = None, progress: bool = True) -> RunResult:
    """Identify every query of ``options``; write outputs when ``options.out`` is set."""
    timings: dict[str, float] = {}
    t_start = time.perf_counter()
    table = table or PluginTable.discover()
    device = resolve_device(options.device)
    profile = options.profile
    errors: list[ImageError] = []
    notices: list[str] = []

    gallery_manifest = query_manifest = None
    if options.split is not None:
        if options.gallery is None:
            raise UsageError("--split needs --gallery: the labelled manifest the split refers to")
        if options.query is not None:
            raise UsageError("--split makes the queries from --gallery; do not pass --query as well")
        gallery_manifest, query_manifest = apply_split(load_manifest(options.gallery, "gallery", table), options.split)
    else:
        if options.gallery is not None:
            gallery_manifest = load_manifest(options.gallery, "gallery", table)
        if options.query is not None:
            query_manifest = load_manifest(options.query, "query", table)
    if query_manifest is None:
        raise UsageError("no queries: pass --query (a CSV or a folder of photos), or --split with --gallery")
    for m in (gallery_manifest, query_manifest):
        if m is not None:
            notices.extend(m.notices)
    # after the manifests: a wrong path is reported before a missing model weight
    components = build_components(profile, table, device)

    with GalleryDatabase(options.db) as db, _Progress(progress) as bars:
        trained_notice = attach_trained_embedder(db, profile, components, table, device)
        if trained_notice:
            notices.append(trained_notice)
        t = time.perf_counter()
        added = unchanged = 0
        if gallery_manifest is not None:
            added, unchanged = enroll_manifest(db, gallery_manifest, errors)
        gallery = db.gallery()
        if options.split is not None:
            # a split defines the gallery exactly: images enrolled by other runs stay out
            # (they could be this split's queries)
            wanted = {r.image_id for r in gallery_manifest.records}
            gallery = [g for g in gallery if g.image_id in wanted]
        if not gallery:
            raise UsageError(f"{options.db}: the gallery is empty; pass --gallery or run `reid-engine enroll` first")
        timings["enroll_s"] = time.perf_counter() - t

        cache = FeatureCache(db)
        t = time.perf_counter()
        g_hashes = ensure_gallery_features(gallery, components, profile, cache, errors,
                                           bars.task("gallery features", len(gallery)))
        gallery = [g for g in gallery if g.image_id in g_hashes]
        if not gallery:
            if options.out is not None:
                from .outputs import write_errors

                write_errors(Path(options.out) / "errors.csv", errors)
            first = f" (first: {errors[0].reason})" if errors else ""
            raise ReidError(f"no gallery image could be used{first}; every reason is in "
                            f"{Path(options.out or '.') / 'errors.csv'}")
        segmentation = segmentation_of(components, profile, db)
        query_records = list(query_manifest.records)
        if segmentation is not None and profile.segment.instance == "each":
            query_records = each_animal(query_records, segmentation, profile, errors)
        advance = bars.task("query features", len(query_records))
        q_content: dict[str, str] = {}
        q_hashes = ensure_features([(r, None) for r in query_records], components.extractors(), cache,
                                   image_loader(components, profile, db), errors, advance, q_content)
        queries = [_truth_against_gallery(r, {g.identity for g in gallery})
                   for r in query_records if r.image_id in q_hashes]
        timings["features_s"] = time.perf_counter() - t
        animals = {}
        if segmentation is not None:
            animals = animal_views(segmentation, [(gallery_record(g), g.content_hash) for g in gallery]
                                   + [(r, q_content[r.image_id]) for r in queries])
            notices.extend(_mask_notices(animals, {r.image_id for r in queries}))

        t = time.perf_counter()
        gallery_hashes = [g_hashes[g.image_id] for g in gallery]
        identities = [g.identity for g in gallery]
        scored = _shortlist_stage(components, db, cache, profile, gallery_hashes, identities,
                                  [q_hashes[r.image_id] for r in queries], bars)
        timings["shortlist_s"] = time.perf_counter() - t

        t = time.perf_counter()
        raw = _score_pairs(components, cache, scored.index, gallery_hashes, [q_hashes[r.image_id] for r in queries],
                           bars.task("matching", int(scored.index.size)), identities)
        timings["matching_s"] = time.perf_counter() - t
        counts = {"gallery_images": len(gallery), "gallery_individuals": len(set(identities)),
                  "queries": len(queries), "enrolled_now": added, "already_enrolled": unchanged,
                  "features_computed": cache.computed, "features_reused": cache.reused,
                  "pairs_scored": int(scored.index.size) * len(components.pipelines), "errors": len(errors)}

        fitted = load_calibration(db, profile, components)
        if fitted is not None:
            notices.append(f"using the calibration fitted by `reid-engine calibrate` for profile {profile.name!r} "
                           f"(τ = {fitted.threshold:.3f}, weights {', '.join(f'{w:.2f}' for w in fitted.weights)})")

    predictions = _decide(components, profile, queries, gallery, scored, raw, options.top_k, fitted)
    if animals:
        predictions = [dataclasses.replace(p, animal=animals[p.image_id].describe()) if p.image_id in animals else p
                       for p in predictions]
        counts.update(mask_counts(animals, {r.image_id for r in queries}))
    timings["total_s"] = time.perf_counter() - t_start

    from .metrics import evaluate

    groups = {r.image_id: r.extra.get(UNKNOWN_GROUP) for r in queries}
    metrics = evaluate(predictions, unknown_groups=groups)
    result = RunResult(predictions, errors, metrics, timings, counts, notices, shortlist_index=scored.index,
                       shortlist_sim=scored.sim, raw_scores=raw, gallery_identities=[g.identity for g in gallery],
                       threshold=fitted.confidence_threshold if fitted else profile.decision.threshold,
                       calibration="fitted (reid-engine calibrate)" if fitted else "profile (logistic)")
    if options.out is not None:
        make_evidence = None
        if options.write_report and options.explain_top > 0 and components.pipelines:
            def make_evidence():  # called by _write_report, which writes the report without drawings if this fails
                from .explain import ReportEvidence

                return ReportEvidence(components.pipelines[0], options.db, profile.image,
                                      {r.image_id: (r, q_hashes[r.image_id]) for r in queries},
                                      {g.image_id: (gallery_record(g), g_hashes[g.image_id]) for g in gallery},
                                      top=options.explain_top,
                                      segment=None if profile.segment is None else (profile.segment,
                                                                                    components.segmenter))
        _write_outputs(result, options, make_evidence)
    return result


def _no_drawings(exc: BaseException) -> str:
    return (f"report.html has no match drawings: they could not be prepared ({type(exc).__name__}: {exc}); "
            "`reid-engine explain QUERY GALLERY_IMAGE` draws one pair and shows the full error")


def _shortlist_stage(components: Components, db: GalleryDatabase, cache: FeatureCache, profile: Profile,
                     gallery_hashes: list[str], identities: list[str], query_hashes: list[str], bars: _Progress):
    if components.trained is not None:  # the re-ID embedder trained on this gallery (cached with the features)
        return shortlist(embedding_matrix(cache, components.trained, query_hashes),
                         embedding_matrix(cache, components.trained, gallery_hashes), profile.shortlist.top_b)
    embedder, extractor = components.embedder, components.embedder_extractor
    if extractor is None:
        raise UsageError(f"{profile.source}: embedder {embedder.spec.name!r} takes images; only local-feature "
                         "embedders are supported by this engine version")
    prepare_embedder(embedder, extractor, db, cache, gallery_hashes)
    g_emb = embed_local(embedder, cache, extractor, gallery_hashes, bars.task("gallery embeddings", len(gallery_hashes)))
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
    return shortlist(q_emb, g_emb, profile.shortlist.top_b, pooled, identity_of)


# gallery images whose shortlisted pairs are matched in one ``match_many`` call: enough pairs for a
# GPU batch or for every CPU worker of a parallel matcher, few enough gallery features in memory
GALLERY_CHUNK = 16


def match_pairs(matcher, firsts: list[LocalFeatures], seconds: list[LocalFeatures]) -> list[Matches]:
    """Matches of each pair (firsts[i], seconds[i]): in one call when the matcher takes many pairs
    (``match_many(list_a, list_b)``: LightGlue batches them on a GPU and spreads them over the
    CPU threads), else pair by pair."""
    if hasattr(matcher, "match_many") and len(firsts) > 1:
        return matcher.match_many(firsts, seconds)
    return [matcher.match(a, b) for a, b in zip(firsts, seconds)]


def _score_pairs(components: Components, cache: FeatureCache, index: np.ndarray, gallery_hashes: list[str],
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
    distinct = {}  # pipeline name -> (model, per-query neighbours)
    if any(p.distinctiveness is not None for p in pipelines):
        from .distinctiveness import Neighbours, fitted, weighted_score
    for p in pipelines:
        if p.distinctiveness is not None:
            model = fitted(cache, p.extractor, gallery_hashes, identities, p.distinctiveness)
            empty = Neighbours(np.zeros((0, 0), np.float32), np.zeros((0, 0), np.int64))
            distinct[p.name] = (model, [model.neighbours(f.desc) if f is not None else empty
                                        for f in query_features[p.extractor.cache_id]])
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
            for (g_row, qi, col), fq, fg, matches in zip(todo, firsts, seconds,
                                                         match_pairs(p.matcher.obj, firsts, seconds)):
                if p.name in distinct:
                    model, neighbours = distinct[p.name]
                    raw[p.name][qi, col] = weighted_score(p.scorer.obj, model, fq, fg, matches, neighbours[qi],
                                                          identities[g_row])
                else:
                    raw[p.name][qi, col] = p.scorer.obj.score(fq, fg, matches)
        advance(sum(len(pairs_of[g_row]) for g_row in chunk))
    return raw


def _decide(components: Components, profile: Profile, queries: list[ImageRecord], gallery: list[GalleryImage],
            scored, raw: dict[str, np.ndarray], top_k: int, fitted=None) -> list[Prediction]:
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


def _write_outputs(result: RunResult, options: RunOptions, make_evidence: Callable[[], object] | None = None) -> None:
    from .outputs import write_errors, write_json, write_predictions, write_ranking

    out = Path(options.out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {name: out / name for name in ("predictions.csv", "ranking.csv", "errors.csv", "summary.json")}
    write_predictions(paths["predictions.csv"], result.predictions)
    write_ranking(paths["ranking.csv"], result.predictions)
    write_errors(paths["errors.csv"], result.errors)
    summary = {"profile": options.profile.name, "profile_source": options.profile.source, "db": str(options.db),
               "metrics": result.metrics, "counts": result.counts, "timings": result.timings,
               "threshold": result.threshold, "calibration": result.calibration, "notices": result.notices}
    if options.profile.segment is not None:  # which animal of each photo was used, and how
        summary["segment"] = dataclasses.asdict(options.profile.segment)
    try:
        if options.write_report:
            paths["report.html"] = _write_report(out / "report.html", result, options, make_evidence)
    finally:  # last, so that it has the report's notices and timings; written even if the report fails
        write_json(paths["summary.json"], summary)
    result.outputs = paths


def _write_report(path: Path, result: RunResult, options: RunOptions,
                  make_evidence: Callable[[], object] | None = None) -> Path:
    """report.html, with the match drawings of ``make_evidence()`` (a ReportEvidence) when they can be made.

    The report never depends on the drawings: if they cannot be prepared (import, gallery
    database that cannot be opened...) or they break the report, it is written without them; a
    single drawing that fails is a note in its row (report.py). Each case adds a notice to
    ``result.notices`` (so to the CLI and summary.json); lost drawings are also said in the
    report's header table.
    """
    from .report import write_report

    def write(evidence, notice: str = "") -> Path:
        segment = options.profile.segment
        flat = {"profile": options.profile.name, "database": str(options.db),
                **({"animal": f"{segment.segmenter.plugin if segment.segmenter else 'manifest masks'}, instance policy "
                              f"{segment.instance}{', cropped' if segment.crop else ''}"} if segment else {}),
                "threshold": round(result.threshold, 4), "calibration": result.calibration, **result.counts,
                **{k: v for k, v in result.metrics.items()}, **{k: round(v, 2) for k, v in result.timings.items()}}
        if notice:
            flat["match drawings"] = notice
        return write_report(path, result.predictions, title=options.title, summary=flat, errors=result.errors,
                            evidence=evidence)

    def without(exc: BaseException) -> Path:
        notice = _no_drawings(exc)
        result.notices.append(notice)
        return write(None, notice)

    if make_evidence is None:
        return write(None)
    try:
        evidence = make_evidence()
        evidence.__enter__()  # opens the gallery database (locked, unreadable... : no drawings)
    except Exception as exc:  # noqa: BLE001 - the drawings must never cost the report
        return without(exc)
    try:
        report = write(evidence)
    except Exception as exc:  # noqa: BLE001
        report = None
        failure = exc
    finally:
        try:
            evidence.__exit__(None, None, None)
        except Exception:  # noqa: BLE001 - closing a read-only use of the database
            pass
        result.timings["explain_s"] = evidence.seconds
    if report is None:
        if isinstance(failure, OSError):  # report.html itself cannot be written: not the drawings' fault
            raise failure
        return without(failure)
    if evidence.failed:
        result.notices.append(f"report.html: match drawings failed for {evidence.failed} of "
                              f"{len(result.predictions)} queries; their rows say why (first: {evidence.first_failure})")
    return report
