"""Body landmarks from a manifest's ``keypoints`` column, and where they lie in a loaded photo.

The column holds a JSON object naming each landmark with its ``[x, y]`` in pixels of the photo
as stored on disk (after its EXIF orientation), or ``null`` when the landmark is not visible::

    {"head": [212, 80], "fore_flipper": [260, 171], "hind_flippers": null}

Landmark-Id (seed paper 002) turns them into heatmap input channels; see
:mod:`reid_engine.embedding.heatmaps`.
"""

from __future__ import annotations

import json
import math

import numpy as np

from reid_engine.errors import ManifestError
from reid_engine.records import LoadedImage

Keypoints = dict[str, tuple[float, float] | None]

_EXAMPLE = '{"head": [212, 80], "tail": null}'


def parse_keypoints(text: str | None, where: str = "keypoints") -> Keypoints:
    """The landmarks of one photo (name → (x, y) px, or None when not visible); {} for no text.

    Anything else than a JSON object of ``[x, y]`` pairs or nulls raises one ManifestError that
    names ``where`` and shows the expected form.
    """
    if text is None or not str(text).strip():
        return {}
    try:
        value = json.loads(text)
    except ValueError:
        raise ManifestError(f"{where}: keypoints {text!r} is not JSON; write them as {_EXAMPLE} "
                            "(x, y in pixels of the photo; null = not visible)") from None
    if not isinstance(value, dict):
        raise ManifestError(f"{where}: keypoints must be a JSON object of landmark names, like {_EXAMPLE}")
    out: Keypoints = {}
    for name, point in value.items():
        if point is None:
            out[str(name)] = None
            continue
        if (not isinstance(point, (list, tuple)) or len(point) != 2
                or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in point)):
            raise ManifestError(f"{where}: keypoint {name!r} is {point!r}; give [x, y] in pixels, or null when "
                                "the landmark is not visible")
        out[str(name)] = (float(point[0]), float(point[1]))
    return out


def format_keypoints(points: Keypoints) -> str:
    """The column text of ``points`` (coordinates rounded to 0.1 px), keys in the given order."""
    return json.dumps({k: (None if p is None else [round(p[0], 1), round(p[1], 1)]) for k, p in points.items()})


def landmark_names(texts: list[str | None]) -> tuple[str, ...]:
    """Every landmark name used in ``texts`` (keypoints column values), sorted."""
    names: set[str] = set()
    for text in texts:
        names.update(parse_keypoints(text))
    return tuple(sorted(names))


def landmarks_in_image(image: LoadedImage, names: tuple[str, ...]) -> np.ndarray | None:
    """The record's landmarks in the pixels of ``image.rgb``: float32 (K, 2) x, y in the order
    of ``names``, NaN where a landmark is not visible, not named or outside the image; None when
    the record has no keypoints at all.

    Follows the loader's geometry: the downscale from ``original_hw`` and, when the ``[segment]``
    step cropped, the crop box (``image.view.crop``, fractions of the photo).
    """
    points = parse_keypoints(image.record.keypoints, str(image.record.path))
    if not points:
        return None
    h0, w0 = image.original_hw
    h, w = image.rgb.shape[:2]
    crop = getattr(image.view, "crop", None) or (0.0, 0.0, 1.0, 1.0)
    x0, y0, x1, y1 = crop
    out = np.full((len(names), 2), np.nan, np.float32)
    for k, name in enumerate(names):
        p = points.get(name)
        if p is None:
            continue
        fx, fy = (p[0] / w0 - x0) / (x1 - x0), (p[1] / h0 - y0) / (y1 - y0)
        if 0.0 <= fx <= 1.0 and 0.0 <= fy <= 1.0:
            out[k] = (fx * w, fy * h)
    return out
