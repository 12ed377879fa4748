"""What a run was asked (:class:`RunOptions`) and what it found (:class:`RunResult`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from reid_engine.records import ImageError, Prediction
from reid_engine.registry.profiles import Profile


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
    gallery_image_ids: list[str] = field(default_factory=list)  # each gallery row's image id, as gallery_identities
    threshold: float = float("nan")
    calibration: str = "profile"
    # with [decision] sequences pooled: the metrics of each photo identified alone (``metrics`` are the pooled ones)
    metrics_per_photo: dict[str, float | int] = field(default_factory=dict)
