"""How many CPU threads the engine's numeric libraries use: decided once, applied everywhere.

torch, onnxruntime and OpenCV each keep their own thread pool, and each sizes it on its own:
by the machine's cores rather than the CPUs this process may use (a container or ``taskset``
limit), and onnxruntime's workers spin-wait after each call. ``configure`` is called once per
process (the CLI does it for every command, from ``--threads``): it sizes torch's and
OpenCV's pools and records the figure that every onnxruntime session made through
``onnx_session_options`` uses, with spinning off.

Measured on 2 cores (benchmarks/results/threads-side-by-side.json, IS-Net then ALIKED on 12
nyala photos): in one process spinning made no difference (8.8 s with, 9.0 s without); two
engine processes side by side with every thread each took 10.2 s against 9.3 s one after the
other, and 8.5 s with ``--threads 1`` each. So two engines on one machine should split the
cores between them.

    configure(0)     # every CPU this process may use
    configure(1)     # one thread each, e.g. when running several engine processes side by side
"""

from __future__ import annotations

import os
import sys
import threading
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from typing import Callable, Iterable, Iterator, TypeVar

T = TypeVar("T")
R = TypeVar("R")

_count: int | None = None        # the thread count decided by ``configure``
_workers = 0                     # items worked on side by side (``set_workers``); 0: one per thread
_sized: set[str] = set()         # the libraries already sized to it
_worker = threading.local()      # .share: threads of this ``ordered_map`` worker thread (unset elsewhere)
_interop_fixed = False


def available_cpus() -> int:
    """CPUs this process may run on (its affinity mask where the OS has one, else the core count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows
        return max(1, os.cpu_count() or 1)


def configure(threads: int = 0, *, load: bool = True) -> int:
    """Size the thread pools of torch, OpenCV and (for later sessions) onnxruntime; returns the count.

    ``threads`` 0 means ``available_cpus()``. With ``load`` False only the libraries this
    process has already imported are sized now, the others on the next call with ``load``:
    the CLI decides the count at start-up without importing torch (1.8 s) for commands that
    never use it, and sizes torch and OpenCV when it loads the plugins. Calling it again with
    the same count does nothing more; with another count it resizes the pools (torch's
    inter-op pool can only be set before its first parallel work, so it is set once).
    """
    global _count
    if threads < 0:
        raise ValueError(f"threads must be 0 (all available CPUs) or more, got {threads}")
    count = threads or available_cpus()
    if count != _count:
        _count = count
        _sized.clear()
    for name, size in (("torch", _size_torch), ("cv2", _size_opencv)):
        if name not in _sized and (load or name in sys.modules):
            size(count)
            _sized.add(name)
    return count


def _size_torch(count: int) -> None:
    global _interop_fixed
    import torch

    torch.set_num_threads(count)
    if not _interop_fixed:
        _interop_fixed = True
        try:
            torch.set_num_interop_threads(1)  # the engine runs one operator at a time
        except RuntimeError:  # already fixed by earlier parallel work in this process
            pass


def _size_opencv(count: int) -> None:
    import cv2

    cv2.setNumThreads(count)


def set_workers(workers: int = 0) -> None:
    """How many photos (or pairs) the engine works on side by side, each with its share of the
    threads: 0 (default) one per configured thread, 1 one at a time with every thread on it."""
    global _workers
    if workers < 0:
        raise ValueError(f"workers must be 0 (one per thread) or more, got {workers}")
    _workers = workers


def worker_count() -> int:
    """Side-by-side workers chosen by ``set_workers`` (the configured thread count by default)."""
    return _workers or configured()


def configured() -> int:
    """The thread count set by ``configure`` (``available_cpus()`` if it was never called)."""
    return _count or available_cpus()


def worker_share(workers: int = 0) -> int:
    """Threads each of ``workers`` side-by-side workers gets (0: ``worker_count()``): ``configured() //
    workers``, at least 1."""
    return max(1, configured() // (workers or worker_count()))


def call_threads() -> int:
    """Threads a call from this thread may use: its share (``configured() // workers``) in a worker
    thread of ``ordered_map`` running several side by side, else every configured thread. A plugin
    that sizes a pool of its own, such as an onnxruntime session, reads this when it is called: two
    workers calling one IS-Net session of two threads segment at 120 ms a photo on 2 cores, of one
    thread at 108 ms (ad hoc, 3 Dec 2026), while one photo alone takes 126 ms with two threads and
    198 ms with one."""
    return getattr(_worker, "share", None) or configured()


def onnx_session_options(threads: int = 0):
    """``onnxruntime.SessionOptions`` with ``threads`` intra-op threads (0: the configured count).

    One inter-op thread (the engine runs one operator at a time) and no spin-waiting, so the
    session's workers sleep between calls instead of competing with torch for the cores.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or configured()
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3  # the rewritten graphs' unused initialisers are not worth a warning
    return options


# -- spreading independent items over the cores --------------------------------------------------
@contextmanager
def one_thread_each(workers: int) -> Iterator[None]:
    """While ``workers`` threads work side by side, each torch/OpenCV call gets the cores' share
    (``configured() // workers``, at least 1) instead of every core: no oversubscription."""
    count = configured()
    share = worker_share(max(1, workers))
    if share == count:
        yield
        return
    import torch

    cv2 = sys.modules.get("cv2")
    torch_before, cv2_before = torch.get_num_threads(), cv2.getNumThreads() if cv2 is not None else 0
    torch.set_num_threads(share)
    if cv2 is not None:
        cv2.setNumThreads(share)
    try:
        yield
    finally:
        torch.set_num_threads(torch_before)
        if cv2 is not None:
            cv2.setNumThreads(cv2_before)


def ordered_map(fn: Callable[[T], R], items: Iterable[T], workers: int = 0) -> Iterator[Future]:
    """``fn(item)`` for each item, as futures yielded in the items' order (``.result()`` gives the
    value or raises what ``fn`` raised, so a caller handles one item's failure where it reads it).

    ``workers`` threads compute them (0: ``worker_count()``; 1: in this thread, one after the other,
    nothing started). With more than one, each gets its share of torch's and
    OpenCV's threads (``one_thread_each``), and at most ``2 × workers`` items are in flight, so
    results waiting to be read stay few. ``fn`` must be safe to call from several threads at
    once: the callers check the plugins' ``thread_safe``. Measured on 2 cores (nyala photos,
    hessaff-rootsift at 512 px): two workers of one thread extract 0.44 s a photo against
    0.62 s for one worker of two threads, because kornia's many small operators leave the
    second core idle.
    """
    workers = workers or worker_count()
    if workers <= 1:
        for item in items:
            done: Future = Future()
            try:
                done.set_result(fn(item))
            except Exception as exc:  # noqa: BLE001 - handed to the caller through the future
                done.set_exception(exc)
            yield done
        return
    share = worker_share(workers)
    with one_thread_each(workers), ThreadPoolExecutor(workers, thread_name_prefix="reid-engine",
                                                      initializer=_set_share, initargs=(share,)) as pool:
        pending: deque[Future] = deque()
        try:
            for item in items:
                pending.append(pool.submit(fn, item))
                if len(pending) >= 2 * workers:
                    yield pending.popleft()
            while pending:
                yield pending.popleft()
        finally:  # the caller stopped early (an error, Ctrl-C): drop what has not started
            for future in pending:
                future.cancel()


def _set_share(share: int) -> None:
    """Worker thread start-up: the threads its calls may use (``call_threads``)."""
    _worker.share = share
