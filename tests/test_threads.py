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


def test_negative_thread_count_is_refused():
    with pytest.raises(ValueError, match="threads"):
        threads.configure(-1)


def test_cli_threads_option_sizes_torch_and_opencv_once_for_the_command():
    code = ("import sys, torch, cv2; from reid_engine.cli import app; "
            "sys.argv = ['reid-engine', '--threads', '1', 'profiles']\n"
            "try:\n    app()\nexcept SystemExit:\n    pass\n"
            "print(torch.get_num_threads(), cv2.getNumThreads(), torch.get_num_interop_threads())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "1 1 1"
