"""Descriptor checkpoints: ``{'state_dict', 'meta'[, 'optimizer']}`` written atomically.

A checkpoint written by ``reid-engine train descriptor`` loads into ``kornia.feature.HardNet``
with ``strict=True``; the ``hesaffnet-hardnet`` extractor reads it through :func:`read_checkpoint`
(``checkpoint = "PATH"`` in a profile). Upstream HardNet files (``{'state_dict', ...}``) and plain
state dicts read too. Every file is loaded with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import hashlib
import io
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from reid_engine.errors import ReidError
from reid_engine.weights import file_sha256  # noqa: F401 - re-exported: one cached sha256 for weights and checkpoints

FORMAT = "reid-engine-hardnet"
FORMAT_VERSION = 1


class CheckpointError(ReidError):
    """A checkpoint file is missing, unreadable, damaged or not a HardNet state dict."""


@dataclass(frozen=True)
class DescriptorCheckpoint:
    """A read checkpoint: network weights, free-form ``meta``, and the file's sha256 (hex)."""

    path: Path
    sha256: str
    state_dict: dict[str, torch.Tensor]
    meta: dict[str, Any] = field(default_factory=dict)
    optimizer: dict[str, Any] | None = None


def read_checkpoint(path: Path | str, expected_sha256: str = "") -> DescriptorCheckpoint:
    """Read ``path`` once, check its sha256 against ``expected_sha256`` (when given) and load it.

    The digest is taken over the very bytes that are loaded, so a file replaced between the
    check and the load cannot slip through.
    """
    path = Path(path).expanduser()
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise CheckpointError(f"{path}: checkpoint file not found") from None
    except IsADirectoryError:
        raise CheckpointError(f"{path}: is a folder, not a checkpoint file") from None
    except OSError as exc:
        raise CheckpointError(f"{path}: checkpoint cannot be read ({exc.strerror or exc})") from None
    sha = hashlib.sha256(data).hexdigest()
    if expected_sha256 and sha != expected_sha256:
        raise CheckpointError(
            f"{path}: checkpoint changed (sha256 {sha[:12]}…, expected {expected_sha256[:12]}…); "
            "run again so its features are recomputed, or restore the file the profile pins"
        )
    try:
        obj = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - pickle/zip errors of every kind mean the same here
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint ({type(exc).__name__}: {exc}); "
                              "it may be truncated; train it again or re-copy it") from None
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        state = obj["state_dict"]
        meta = obj.get("meta") if isinstance(obj.get("meta"), dict) else {}
        optimizer = obj.get("optimizer") if isinstance(obj.get("optimizer"), dict) else None
    elif isinstance(obj, dict) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        state, meta, optimizer = obj, {}, None
    else:
        raise CheckpointError(f"{path}: not a descriptor checkpoint (expected a dict with 'state_dict')")
    return DescriptorCheckpoint(path, sha, state, meta, optimizer)


def load_hardnet(checkpoint: DescriptorCheckpoint, device: str = "cpu") -> torch.nn.Module:
    """``kornia.feature.HardNet`` (never downloaded) with the checkpoint's weights, in eval mode."""
    import kornia.feature as KF

    net = KF.HardNet(pretrained=False)
    try:
        net.load_state_dict(checkpoint.state_dict, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0] if str(exc) else "keys differ"
        raise CheckpointError(f"{checkpoint.path}: not a HardNet checkpoint ({first}); pass one written by "
                              "`reid-engine train descriptor`") from None
    return net.to(device).eval()


def write_checkpoint(path: Path, state_dict: dict[str, torch.Tensor], meta: dict[str, Any],
                     optimizer: dict[str, Any] | None = None) -> str:
    """Write a checkpoint atomically (see :func:`atomic_save`); return its sha256."""
    payload: dict[str, Any] = {"state_dict": {k: v.detach().cpu() for k, v in state_dict.items()},
                               "meta": {"format": FORMAT, "format_version": FORMAT_VERSION, **meta}}
    if optimizer is not None:
        payload["optimizer"] = optimizer
    return atomic_save(payload, path)


def atomic_save(obj: Any, path: Path) -> str:
    """``torch.save`` to a temp file in the same folder, fsync, rename; return the sha256.

    A run killed while writing leaves the previous file intact (and at most a stray
    ``.NAME.PID.tmp``), never a truncated file under ``path``. What cannot be read back with
    ``weights_only=True`` is never written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    data = buffer.getvalue()
    torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    try:  # make the rename itself durable
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        pass
    return hashlib.sha256(data).hexdigest()
