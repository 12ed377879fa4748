"""Evidence for the expert: what one pipeline matched between two photos.

:func:`match_pair` runs one pipeline's matcher and scorer on a pair and keeps the scorer's
inlier set when the scorer has one (``inliers(f1, f2, matches) -> bool (M,)``); without it every
match counts as an inlier and the caption says so. :class:`ReportEvidence` makes the small
JPEGs of report.html and :func:`explain_files` does the work of ``reid-engine explain``. The
drawing itself (:func:`~reid_engine.drawing.draw_matches`, colours, ellipses, writing the file)
is :mod:`reid_engine.drawing`.
"""

from __future__ import annotations

import dataclasses
import math
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from .drawing import draw_matches, encode_jpeg, image_format, save_png
from .errors import ReidError, UsageError
from .loading import gallery_record, image_loader, segmentation_of
from .records import ImageRecord, LoadedImage, LocalFeatures, Matches, Prediction

__all__ = ["PairEvidence", "ReportEvidence", "Explained", "draw_evidence", "match_pair", "explain_files"]


# --------------------------------------------------------------------------------------------
# one pipeline on one pair


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
        return f"{self.pipeline} · score {_fmt_score(self.score)}{note}"


def _fmt_score(value: float) -> str:
    return str(int(value)) if math.isfinite(value) and float(value).is_integer() else f"{value:.3f}"


def match_pair(pipeline, f1: LocalFeatures, f2: LocalFeatures) -> PairEvidence:
    """Match and score ``f1`` → ``f2`` with one :class:`~reid_engine.components.Pipeline`, as the run does.

    A ValueError or RuntimeError of the matcher or the scorer (bad features, out of memory...)
    becomes a one-line :class:`ReidError` naming the pipeline and the plugin.
    """
    name = pipeline.scorer.spec.name
    weighted = getattr(pipeline, "distinctiveness", None) is not None
    matches = _step(pipeline, "matcher", pipeline.matcher, lambda: pipeline.matcher.obj.match(f1, f2))
    score = float(_step(pipeline, "scorer", pipeline.scorer, lambda: pipeline.scorer.obj.score(f1, f2, matches)))
    find = getattr(pipeline.scorer.obj, "inliers", None)
    if callable(find):
        found = _step(pipeline, "scorer", pipeline.scorer, lambda: find(f1, f2, matches))
        inl = np.asarray(found, bool).reshape(-1)
        if inl.shape != (len(matches),):
            raise ReidError(f"scorer {name!r}: inliers() returned {inl.size} values for {len(matches)} matches; "
                            "it must return one bool per match (fix or update the plugin)")
        return PairEvidence(pipeline.name, name, matches, inl, True, score, weighted)
    return PairEvidence(pipeline.name, name, matches, np.ones(len(matches), bool), False, score, weighted)


def _step(pipeline, kind: str, built, call):
    """``call()``, with a plugin's ValueError / RuntimeError turned into one ReidError line."""
    try:
        return call()
    except (ValueError, RuntimeError) as exc:
        plugin = getattr(getattr(built, "spec", None), "name", "?")
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise ReidError(f"pipeline {pipeline.name!r}: {kind} {plugin!r} failed on this pair: {reason}") from exc


def draw_evidence(img1: LoadedImage | np.ndarray, img2: LoadedImage | np.ndarray, f1: LocalFeatures,
                  f2: LocalFeatures, evidence: PairEvidence, title: str = "", max_width: int = 1600) -> np.ndarray:
    """:func:`draw_matches` of a :class:`PairEvidence`, captioned with its pipeline and score."""
    return draw_matches(img1, img2, f1, f2, evidence.matches, evidence.inliers if evidence.inliers_known else None,
                        title, info=evidence.info(), max_width=max_width)


# --------------------------------------------------------------------------------------------
# report.html


class ReportEvidence:
    """report.html's match drawings: each query against its top ``top`` candidates, one pipeline.

    A context manager (it opens the gallery database for the feature cache the run just
    filled); called with a Prediction it returns ``(caption, JPEG bytes)`` per drawn candidate.
    Images are decoded again for drawing, as photographed (before preprocessing), and drawn at
    most ``max_width`` px wide as JPEG of ``quality`` (about 35 kB each on the demo's photos).
    ``queries`` / ``gallery`` map image_id → (record, image key). A drawing that fails raises
    (report.html shows a note in its place) and is counted in ``failed``, with the first
    reason in ``first_failure``, so the caller can say so once.
    """

    def __init__(self, pipeline, db_path: Path, image_settings, queries: dict[str, tuple[ImageRecord, str]],
                 gallery: dict[str, tuple[ImageRecord, str]], top: int = 1, max_width: int = 720,
                 quality: int = 70, segment=None) -> None:
        self.pipeline, self.db_path, self.image_settings = pipeline, Path(db_path), image_settings
        self.segment = segment  # (SegmentSettings, segmenter Built | None): photos are shown as the extractors saw them
        self.queries, self.gallery, self.top, self.max_width = queries, gallery, top, max_width
        self.quality = quality
        self.seconds = 0.0
        self.failed, self.first_failure = 0, ""
        self._db = self._cache = None

    def __enter__(self) -> "ReportEvidence":
        from .database import GalleryDatabase
        from .features import FeatureCache

        self._db = GalleryDatabase(self.db_path)
        try:
            self._cache = FeatureCache(self._db)
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc) -> None:
        if self._db is not None:
            self._db.close()
        self._db = self._cache = None

    def __call__(self, prediction: Prediction) -> list[tuple[str, bytes]]:
        if self._cache is None or self.top <= 0 or prediction.image_id not in self.queries:
            return []
        t = time.perf_counter()
        try:
            record, key = self.queries[prediction.image_id]
            fq = self._features(key, record)
            query_image = self._display(record)
            out = []
            for c in sorted(prediction.candidates, key=lambda c: c.rank)[: self.top]:
                if c.gallery_image_id not in self.gallery:
                    continue
                g_record, g_key = self.gallery[c.gallery_image_id]
                fg = self._features(g_key, g_record)
                evidence = match_pair(self.pipeline, fq, fg)
                title = f"query {prediction.image_id}  vs  #{c.rank} {c.identity} ({c.gallery_image_id})"
                rgb = draw_evidence(query_image, self._display(g_record), fq, fg, evidence, title, self.max_width)
                caption = (f"#{c.rank} {c.identity}: {evidence.n_inliers if evidence.inliers_known else len(evidence.matches)}"
                           f" {'inliers' if evidence.inliers_known else 'matches'} ({evidence.pipeline})")
                out.append((caption, encode_jpeg(rgb, self.quality)))
            return out
        except Exception as exc:
            self.failed += 1
            self.first_failure = self.first_failure or f"{type(exc).__name__}: {exc}"
            raise
        finally:
            self.seconds += time.perf_counter() - t

    def _features(self, key: str, record: ImageRecord) -> LocalFeatures:
        f = self._cache.get(key, self.pipeline.extractor)
        if f is None:
            raise ReidError(f"{record.path}: no cached {self.pipeline.extractor.spec.name} features in {self.db_path}")
        return f

    def _display(self, record: ImageRecord) -> LoadedImage:
        """The photo as the extractors saw it (mask outlined, crop applied), before preprocessing."""
        from .features import load_view
        from .segmentation import Segmentation

        segmentation = None if self.segment is None else Segmentation(*self.segment, self._db)
        return load_view(record, self.image_settings.max_side, self.image_settings.min_side, segmentation)


# --------------------------------------------------------------------------------------------
# reid-engine explain


@dataclass
class Explained:
    """One drawing written by :func:`explain_files`."""

    path: Path
    evidence: PairEvidence


def explain_files(query: str, gallery: str, profile, table, out: Path, *, pipeline: str | None = None,
                  db: Path | None = None, device: str = "cpu", max_width: int = 1600) -> list[Explained]:
    """Draw the matches of ``query`` against ``gallery`` for the profile's pipelines.

    ``query`` / ``gallery`` are image files; with ``db`` the gallery may also be an enrolled
    image_id, and the database's feature cache is used (and filled), else features are computed
    in a throw-away cache. With ``pipeline`` only that pipeline is built and drawn, to ``out`` (so
    another pipeline's missing weight or broken plugin does not stop it, and no model it alone
    needs is loaded); else every pipeline of the profile, to ``out`` when there is one and to
    ``OUT-PIPELINE.SUFFIX`` each when there are several. ``out`` must end in .png, .jpg or
    .jpeg (the format follows it), else a UsageError names --out before any work is done.
    """
    from .components import build_components
    from .database import GalleryDatabase
    from .features import FeatureCache, ensure_features
    from .features import load_view

    names = [p.name for p in profile.pipelines]
    if not names:
        raise UsageError(f"{profile.source}: profile {profile.name!r} has no [[pipelines]]; explain draws the "
                         "matches of a local-matching pipeline, so pick a profile that has one")
    if pipeline is not None and pipeline not in names:
        raise UsageError(f"--pipeline {pipeline!r}: profile {profile.name!r} has no such pipeline; "
                         f"choose one of: {', '.join(names)}")
    if db is not None and not Path(db).is_file():
        raise UsageError(f"--db {db}: no such gallery database; pass the file a run or enroll wrote, or leave --db out")
    out = Path(out)
    image_format(out)  # a bad --out fails now, not after the features are computed
    if pipeline is not None:  # build that pipeline only: the others may need weights that are not installed
        profile = dataclasses.replace(profile, pipelines=tuple(p for p in profile.pipelines if p.name == pipeline))
    drawn = [p.name for p in profile.pipelines]
    targets = [out] if len(drawn) == 1 else [out.with_name(f"{out.stem}-{n}{out.suffix}") for n in drawn]

    with tempfile.TemporaryDirectory(prefix="reid-explain-") as tmp, \
            GalleryDatabase(Path(db) if db is not None else Path(tmp) / "explain.db") as database:
        enrolled = database.gallery() if db is not None else []
        q_record, q_hash = _resolve(query, "QUERY", enrolled, db)
        g_record, g_hash = _resolve(gallery, "GALLERY_IMAGE", enrolled, db)
        components = build_components(profile, table, device)
        chosen = components.pipelines
        cache = FeatureCache(database)
        extractors = list({p.extractor.cache_id: p.extractor for p in chosen}.values())
        load = image_loader(components, profile, database)
        keys = []
        for record, chash in ((q_record, q_hash), (g_record, g_hash)):
            errors: list = []
            found = ensure_features([(record, chash)], extractors, cache, load, errors)
            if errors:
                err = errors[0]
                raise (UsageError if err.stage == "decode" else ReidError)(err.reason)
            keys.append(found[record.image_id])
        settings, segmentation = profile.image, segmentation_of(components, profile, database)
        images = [load_view(r, settings.max_side, settings.min_side, segmentation) for r in (q_record, g_record)]
        title = f"query {_label(q_record)}  vs  gallery {_label(g_record)}"
        written = []
        for p, target in zip(chosen, targets):
            f1, f2 = cache.get(keys[0], p.extractor), cache.get(keys[1], p.extractor)
            if f1 is None or f2 is None:
                raise ReidError(f"cached {p.extractor.spec.name} features vanished from {database.blob_dir}; run again")
            evidence = match_pair(p, f1, f2)
            save_png(target, draw_evidence(images[0], images[1], f1, f2, evidence, title, max_width))
            written.append(Explained(target, evidence))
    return written


def _label(record: ImageRecord) -> str:
    name = Path(record.path).name
    extra = f" ({record.identity})" if record.identity else ""
    return (name if record.image_id == Path(name).stem else f"{record.image_id} [{name}]") + extra


def _resolve(arg: str, role: str, enrolled: Sequence, db: Path | None) -> tuple[ImageRecord, str | None]:
    """An argument as (record, known content hash): an image file, or an enrolled image_id."""

    path = Path(arg)
    if path.is_file():
        resolved = str(path.resolve())
        for g in enrolled:  # an enrolled file keeps its bbox / mask / identity
            if g.path == resolved:
                return gallery_record(g), None
        return ImageRecord(image_id=path.stem, path=path), None
    for g in enrolled:
        if g.image_id == arg:
            return gallery_record(g), g.content_hash
    if path.is_dir():
        raise UsageError(f"{role} {arg}: is a folder; pass one image file")
    where = f", and no image enrolled in {db} has that image_id" if db is not None else ""
    raise UsageError(f"{role} {arg}: no such file{where}; pass an image file path"
                     + ("" if db is not None else " (or, with --db, an enrolled image_id)"))
