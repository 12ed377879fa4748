"""The seeded open-set split that calibration is fitted on.

A share of the labelled identities is held out as "unknown" (all their images become
queries); every other identity with at least two images gives one image as a known query;
the rest is the calibration gallery.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from reid_engine.errors import UsageError

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
