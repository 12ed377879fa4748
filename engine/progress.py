"""Progress bars on stderr (rich), or nothing."""

from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Callable, Iterator


class Progress:
    """A rich progress bar on stderr, or nothing."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self._bar = None

    def __enter__(self) -> "Progress":
        if self.enabled:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
            )

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


@contextmanager
def timed(timings: dict[str, float], key: str) -> Iterator[None]:
    """``timings[key]`` = seconds the ``with`` block took (set when it ends without an error)."""
    start = time.perf_counter()
    yield
    timings[key] = time.perf_counter() - start
