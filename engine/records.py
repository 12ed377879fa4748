"""Plain records that flow between the engine's stages.

Every stage is a function over these dataclasses or numpy arrays; nothing here does I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

NEW_INDIVIDUAL = "new_individual"


@dataclass(frozen=True)
class ImageRecord:
    """One photo as named by a manifest.

    ``identity`` is the label of a gallery image (None for an unlabelled query). ``truth`` is
    the evaluation ground truth of a query when the manifest gives one: an identity or
    ``new_individual``. ``bbox`` is ``(x, y, width, height)`` in pixels of the decoded image.
    """

    image_id: str
    path: Path
    identity: str | None = None
    truth: str | None = None
    bbox: tuple[float, float, float, float] | None = None
    mask_path: Path | None = None
    segmentation: str | None = None
    date: str | None = None
    orientation: str | None = None
    species: str | None = None
    sequence: str | None = None
    keypoints: str | None = None
    extra: dict[str, str] = field(default_factory=dict, compare=False, hash=False)


@dataclass(frozen=True)
class Manifest:
    """The records read from one CSV file or folder; ``source`` names it in messages."""

    records: tuple[ImageRecord, ...]
    source: str
    notices: tuple[str, ...] = ()
    skipped: tuple[ImageError, ...] = ()  # files the loader passed over, each with why (go to errors.csv)

    def __len__(self) -> int:
        return len(self.records)


@dataclass(frozen=True)
class LoadedImage:
    """A decoded photo: ``rgb`` uint8 (H, W, 3); ``mask`` bool (H, W) or None (whole image).

    ``original_hw`` is the size on disk before any safety downscale on load. ``view`` is the
    :class:`~reid_engine.inputs.segmentation.AnimalView` saying which pixels these are (mask source,
    instance, fallback, crop) once the profile's ``[segment]`` step ran; None before.
    """

    record: ImageRecord
    rgb: np.ndarray
    mask: np.ndarray | None
    content_hash: str
    original_hw: tuple[int, int]
    view: object | None = None


@dataclass
class LocalFeatures:
    """Local features of one image.

    kpts   float32 (N, 2)  x, y in pixels of the image handed to the extractor
    desc   float32 (N, D)
    scores float32 (N,)    detector response (higher is better)
    lafs   float32 (N, 2, 3) local affine frames in the same pixels, or None
    image_hw (H, W) of the image the keypoints refer to
    """

    kpts: np.ndarray
    desc: np.ndarray
    scores: np.ndarray
    lafs: np.ndarray | None = None
    image_hw: tuple[int, int] = (0, 0)

    def __len__(self) -> int:
        return int(self.kpts.shape[0])

    @staticmethod
    def empty(dim: int, image_hw: tuple[int, int] = (0, 0), with_lafs: bool = True) -> "LocalFeatures":
        return LocalFeatures(
            kpts=np.zeros((0, 2), np.float32),
            desc=np.zeros((0, dim), np.float32),
            scores=np.zeros((0,), np.float32),
            lafs=np.zeros((0, 2, 3), np.float32) if with_lafs else None,
            image_hw=image_hw,
        )

    def to_arrays(self) -> dict[str, np.ndarray]:
        out = {
            "kpts": self.kpts,
            "desc": self.desc,
            "scores": self.scores,
            "image_hw": np.asarray(self.image_hw, np.int64),
        }
        if self.lafs is not None:
            out["lafs"] = self.lafs
        return out

    @staticmethod
    def from_arrays(arrays: dict[str, np.ndarray]) -> "LocalFeatures":
        hw = arrays["image_hw"]
        return LocalFeatures(
            kpts=arrays["kpts"],
            desc=arrays["desc"],
            scores=arrays["scores"],
            lafs=arrays.get("lafs"),
            image_hw=(int(hw[0]), int(hw[1])),
        )


@dataclass
class Matches:
    """Correspondences between two LocalFeatures: ``idx`` int64 (M, 2), ``conf`` float32 (M,)."""

    idx: np.ndarray
    conf: np.ndarray

    def __len__(self) -> int:
        return int(self.idx.shape[0])

    @staticmethod
    def empty() -> "Matches":
        return Matches(np.zeros((0, 2), np.int64), np.zeros((0,), np.float32))


@dataclass(frozen=True)
class ImageError:
    """An image the run could not use, and why (one row of errors.csv)."""

    image_id: str
    path: str
    stage: str
    reason: str


@dataclass(frozen=True)
class Candidate:
    """One ranked identity for a query: its fused probability and best gallery image."""

    rank: int
    identity: str
    score: float
    gallery_image_id: str
    gallery_path: str
    pipeline_scores: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Prediction:
    """The answer for one query (one row of predictions.csv plus its ranking)."""

    image_id: str
    path: str
    prediction: str
    score: float
    decision: str  # "known" | "new"
    candidates: tuple[Candidate, ...]
    truth: str | None = None
    animal: str = ""  # which pixels were used: AnimalView.describe() (mask source, instance, fallback, crop)
    sequence: str = ""  # the query's sequence (manifest column), when it has one
    photo_prediction: str = ""  # with [decision] sequences on: what this photo alone says ("" when off)
    photo_score: float = float("nan")


INSTANCE_KEY = "instance"  # ImageRecord.extra key naming the instance a query record stands for
