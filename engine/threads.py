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

_count: int | None = None        # the thread count decided by ``configure``
_sized: set[str] = set()         # the libraries already sized to it
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


def configured() -> int:
    """The thread count set by ``configure`` (``available_cpus()`` if it was never called)."""
    return _count or available_cpus()


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
