"""Writing a run's results: predictions.csv, ranking.csv, errors.csv (atomically)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Sequence

from reid_engine.files import write_atomic as write_bytes_atomic
from reid_engine.records import ImageError, Prediction


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` (UTF-8, line ends as given) to ``path`` whole or not at all."""
    write_bytes_atomic(path, text.encode("utf-8"))


def _csv(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue()


def write_predictions(path: Path, predictions: Sequence[Prediction]) -> None:
    """One row per query; where sequences were identified together ([decision] sequences) also
    the sequence and what the photo alone said."""
    header = ("image_id", "path", "prediction", "score", "decision", "animal")
    rows = [(p.image_id, p.path, p.prediction, f"{p.score:.6f}", p.decision, p.animal) for p in predictions]
    if any(p.photo_prediction for p in predictions):
        header += ("sequence", "photo_prediction", "photo_score")
        rows = [row + (p.sequence, p.photo_prediction, f"{p.photo_score:.6f}") for row, p in zip(rows, predictions)]
    write_atomic(path, _csv(header, rows))


def write_ranking(path: Path, predictions: Sequence[Prediction]) -> None:
    rows = [
        (p.image_id, c.rank, c.identity, f"{c.score:.6f}", c.gallery_image_id)
        for p in predictions
        for c in p.candidates
    ]
    write_atomic(path, _csv(("image_id", "rank", "identity", "score", "gallery_image_id"), rows))


def write_errors(path: Path, errors: Sequence[ImageError]) -> None:
    rows = [(e.image_id, e.path, e.stage, e.reason) for e in errors]
    write_atomic(path, _csv(("image_id", "path", "stage", "reason"), rows))


def _no_nan(value: object) -> object:
    """NaN/inf → None, so the file is valid JSON."""
    if isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
        return None
    if isinstance(value, dict):
        return {k: _no_nan(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_no_nan(v) for v in value]
    return value


def json_text(data: object) -> str:
    """``data`` as a JSON document (NaN/inf as null, keys sorted, 2-space indent, final newline)."""
    return json.dumps(_no_nan(data), indent=2, sort_keys=True, default=str) + "\n"


def write_json(path: Path, data: object) -> None:
    write_atomic(path, json_text(data))
