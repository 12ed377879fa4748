"""``reid-engine weights fetch``: download several weights, each on its own."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

from reid_engine.errors import ReidError
from reid_engine.weights import fetch, get_spec


@dataclass
class Fetched:
    """One weight of :func:`fetch_weights`: installed at ``path``, or the ``error`` that stopped it."""

    name: str
    path: Path | None = None
    error: ReidError | OSError | None = None


def fetch_weights(names: Iterable[str], *, timeout: float = 60, verify: bool = True) -> Iterator[Fetched]:
    """Fetch each weight in turn (:func:`reid_engine.weights.fetch`), yielding each as it is done.

    Every name is checked first: an unknown one raises before anything is downloaded. A weight
    that then fails does not stop the others: it is yielded with its error.
    """
    names = list(names)
    for name in names:
        get_spec(name)
    for name in names:
        try:
            yield Fetched(name, path=fetch(name, timeout=timeout, verify=verify))
        except (ReidError, OSError) as exc:
            yield Fetched(name, error=exc)
