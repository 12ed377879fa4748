"""Match drawings for report.html: each query against its top candidates, one pipeline.

:class:`ReportEvidence` makes the small JPEGs of report.html from the feature cache the run
just filled; :func:`draw_evidence` draws one :class:`~reid_engine.scoring.pairs.PairEvidence`
(what :func:`~reid_engine.scoring.pairs.match_pair` found). ``reid-engine explain`` is
:mod:`reid_engine.commands.explain`; the drawing itself (colours, ellipses, writing the file)
is :mod:`reid_engine.outputs.drawing`.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from reid_engine.errors import ReidError
from reid_engine.inputs.segmentation import Segmentation
from reid_engine.inputs.views import load_view
from reid_engine.outputs.drawing import draw_matches, encode_jpeg
from reid_engine.records import ImageRecord, LoadedImage, LocalFeatures, Prediction
from reid_engine.scoring.pairs import PairEvidence, match_pair
from reid_engine.store.database import GalleryDatabase
from reid_engine.store.features import FeatureCache

__all__ = ["ReportEvidence", "draw_evidence"]


# --------------------------------------------------------------------------------------------
# one pipeline on one pair










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

        segmentation = None if self.segment is None else Segmentation(*self.segment, self._db)
        return load_view(record, self.image_settings.max_side, self.image_settings.min_side, segmentation)


# --------------------------------------------------------------------------------------------
# reid-engine explain








