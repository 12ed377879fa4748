"""Shared helpers of the built-in matchers: LocalFeatures → torch tensors."""

from __future__ import annotations

import numpy as np
import torch

from reid_engine.plugin import LocalFeatures, Matches


def descriptors(f: LocalFeatures, device: str) -> torch.Tensor:
    """float32 (N, D) tensor on ``device``."""
    return torch.from_numpy(np.ascontiguousarray(f.desc, dtype=np.float32)).to(device)


def to_matches(idxs: torch.Tensor, conf: torch.Tensor) -> Matches:
    """kornia's (M, 2) index tensor and (M,) confidences → :class:`Matches`."""
    if idxs.numel() == 0:
        return Matches.empty()
    return Matches(idxs.reshape(-1, 2).cpu().numpy().astype(np.int64), conf.reshape(-1).float().cpu().numpy())
