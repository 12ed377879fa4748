"""The torch device a command runs on."""

from __future__ import annotations

from reid_engine.errors import UsageError


def resolve_device(device: str) -> str:
    """``auto`` → cuda when torch sees a GPU, else cpu; a device this machine cannot serve is a UsageError."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda: no CUDA device is available here; use --device cpu or auto")
    if device not in ("cpu", "cuda") and not device.startswith("cuda:"):
        raise UsageError(f"--device {device!r}: choose auto, cpu or cuda")
    if device.startswith("cuda:"):
        index = device.removeprefix("cuda:")
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if not index.isdigit() or int(index) >= count:
            have = f"cuda:0 to cuda:{count - 1}" if count else "no CUDA device"
            raise UsageError(f"--device {device}: this machine has {have}; use --device auto, cpu"
                             + (" or one of those" if count else ""))
    return device
