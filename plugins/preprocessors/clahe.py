"""``clahe``: contrast-limited adaptive histogram equalisation of the luminance (kornia).

Evens out dark and bright regions (shade, wet fur) before feature extraction; colour is kept
by scaling RGB with the luminance gain.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import torch

from reid_engine.plugin import LoadedImage, PluginSpec, Preprocessor, hookimpl


@dataclass(frozen=True)
class ClaheConfig:
    clip_limit: float = 2.0
    grid: int = 8


class Clahe(Preprocessor):
    thread_safe = True  # calls change nothing in the object: the engine may run two at once

    def __init__(self, config: ClaheConfig) -> None:
        self.config = config

    @torch.inference_mode()
    def __call__(self, image: LoadedImage) -> LoadedImage:
        """Returns a new LoadedImage; ``image`` is not changed."""
        from kornia.enhance import equalize_clahe

        rgb = torch.from_numpy(image.rgb.astype(np.float32) / 255.0).permute(2, 0, 1)
        luma = (rgb * torch.tensor([0.299, 0.587, 0.114])[:, None, None]).sum(0, keepdim=True)
        eq = equalize_clahe(luma[None], clip_limit=self.config.clip_limit, grid_size=(self.config.grid, self.config.grid))[0]
        gain = eq / luma.clamp_min(1e-3)
        out = (rgb * gain).clamp(0, 1).permute(1, 2, 0).numpy()
        return dataclasses.replace(image, rgb=(out * 255.0 + 0.5).astype(np.uint8))


@hookimpl
def register_preprocessors(register):
    register(PluginSpec(
        name="clahe", kind="preprocessor", version="1", config_cls=ClaheConfig,
        build=lambda config, device: Clahe(config), description="CLAHE on luminance (tone equalisation)",
    ))
