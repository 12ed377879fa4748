"""``reid_engine.threads``: one thread setting for torch, OpenCV and onnxruntime."""

from __future__ import annotations

import subprocess
import sys

import pytest

from reid_engine import threads


def test_session_options_use_the_configured_count_without_spinning():
    options = threads.onnx_session_options(3)
    assert options.intra_op_num_threads == 3 and options.inter_op_num_threads == 1
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert threads.onnx_session_options().intra_op_num_threads == threads.configured()


def test_call_threads_is_the_share_in_worker_threads_only(monkeypatch):
    monkeypatch.setattr(threads, "_count", 4)
    side_by_side = [done.result() for done in threads.ordered_map(lambda _: threads.call_threads(), range(6), 2)]
    assert side_by_side == [2] * 6 and threads.call_threads() == 4  # the calling thread keeps every thread
    alone = [done.result() for done in threads.ordered_map(lambda _: threads.call_threads(), range(2), 1)]
    assert alone == [4, 4]
    assert threads.worker_share() == 4 // threads.worker_count()


def test_negative_thread_count_is_refused():
    with pytest.raises(ValueError, match="threads"):
        threads.configure(-1)


def cli_then_print(options: list[str], expression: str) -> str:
    """Run ``reid-engine OPTIONS profiles`` in a fresh interpreter, then print ``expression``; its value."""
    code = ("import sys, torch, cv2; from reid_engine.cli import app; from reid_engine import threads; "
            f"sys.argv = ['reid-engine', *{options!r}, 'profiles']\n"
            "try:\n    app()\nexcept SystemExit:\n    pass\n"
            f"print(*[{expression}])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return out.strip().splitlines()[-1]


def test_cli_threads_option_sizes_torch_and_opencv_once_for_the_command():
    assert cli_then_print(["--threads", "1"],
                          "torch.get_num_threads(), cv2.getNumThreads(), torch.get_num_interop_threads()") == "1 1 1"


def test_ordered_map_keeps_order_and_hands_each_failure_to_its_item():
    import threading

    def work(i):
        if i == 3:
            raise ValueError("bad item 3")
        return i * i, threading.current_thread().name

    for workers in (1, 2):
        results = []
        for i, outcome in enumerate(threads.ordered_map(work, range(7), workers)):
            try:
                results.append(outcome.result()[0])
            except ValueError as exc:
                assert i == 3 and "bad item 3" in str(exc)
                results.append(None)
        assert results == [0, 1, 4, None, 16, 25, 36]
    main = threading.current_thread().name
    assert {name for _, name in (f.result() for f in threads.ordered_map(work, [0, 1], 1))} == {main}
    names = {f.result()[1] for f in threads.ordered_map(work, [0, 1, 2, 4, 5], 2)}
    assert main not in names and all(name.startswith("reid-engine") for name in names)


def test_workers_share_the_cores_and_the_pools_are_restored_after():
    import torch

    threads.configure(2)
    seen = []
    outcomes = threads.ordered_map(lambda _: seen.append(torch.get_num_threads()), range(4), 2)
    for outcome in outcomes:
        outcome.result()
    assert seen == [1, 1, 1, 1] and torch.get_num_threads() == 2
    stopped = threads.ordered_map(lambda i: i, range(100), 2)
    next(stopped).result()
    stopped.close()  # a caller that stops early (an error, Ctrl-C) gets the pools back too
    assert torch.get_num_threads() == 2
    threads.configure(0)


def test_cli_workers_option_sets_how_many_photos_go_side_by_side():
    assert cli_then_print(["--threads", "2", "--workers", "1"], "threads.worker_count()") == "1"
    assert cli_then_print(["--threads", "2"], "threads.worker_count()") == "2"
    with pytest.raises(ValueError, match="workers"):
        threads.set_workers(-2)
