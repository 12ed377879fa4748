"""``tonemap``: local tone mapping, to bring out a pattern in over- and under-exposed regions.

NORPPA tone-maps every photo before pattern extraction with a gradient-domain operator that
adjusts contrast at several spatial frequencies without reversing global brightness or losing
low-frequency detail (Mantiuk et al.'s perceptual contrast processing). OpenCV implements
that operator (``cv2.createTonemapMantiuk``) and Reinhard's photographic operator with local
adaptation (``cv2.createTonemapReinhard``); this plugin runs either on the photo's linearised
sRGB. Parameters (profile keys):

    method        mantiuk (gradient domain, the paper's) | reinhard (photographic, local adaptation)
    gamma         output gamma of the operator (and the sRGB linearisation exponent)
    scale         mantiuk: contrast scale, < 1 compresses large contrasts (0.6-0.9 typical)
    saturation    colour saturation of the result (1 = as the photo)
    intensity     reinhard: overall brightness, in [-8, 8]
    light_adapt   reinhard: 0 = global adaptation, 1 = each pixel's own (local)
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np

from reid_engine.plugin import LoadedImage, PluginSpec, Preprocessor, hookimpl


@dataclass(frozen=True)
class TonemapConfig:
    method: Literal["mantiuk", "reinhard"] = "mantiuk"
    gamma: float = 2.2
    scale: float = 0.8
    saturation: float = 1.0
    intensity: float = 0.0
    light_adapt: float = 0.8

    def __post_init__(self) -> None:
        if self.method not in ("mantiuk", "reinhard"):
            raise ValueError(f"method must be mantiuk or reinhard, got {self.method!r}")
        if not 0.5 <= self.gamma <= 4.0:
            raise ValueError(f"gamma must lie in [0.5, 4], got {self.gamma}")
        if not 0.05 <= self.scale <= 2.0:
            raise ValueError(f"scale must lie in [0.05, 2], got {self.scale}")
        if not 0.0 <= self.light_adapt <= 1.0:
            raise ValueError(f"light_adapt must lie in [0, 1], got {self.light_adapt}")


class Tonemap(Preprocessor):
    def __init__(self, config: TonemapConfig) -> None:
        self.config = config
        c = config
        if c.method == "mantiuk":
            self.operator = cv2.createTonemapMantiuk(c.gamma, c.scale, c.saturation)
        else:
            self.operator = cv2.createTonemapReinhard(c.gamma, c.intensity, c.light_adapt, 0.0)

    def __call__(self, image: LoadedImage) -> LoadedImage:
        """uint8 RGB (H, W, 3) → tone-mapped uint8 RGB of the same size; ``image`` is not changed."""
        linear = np.power(image.rgb.astype(np.float32) / 255.0, self.config.gamma) + 1e-4  # > 0: log domain
        bgr = np.ascontiguousarray(linear[:, :, ::-1])
        out = self.operator.process(bgr)[:, :, ::-1]
        out = np.nan_to_num(out, nan=0.0, posinf=1.0, neginf=0.0)
        return dataclasses.replace(image, rgb=(np.clip(out, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8))


@hookimpl
def register_preprocessors(register):
    register(PluginSpec(
        name="tonemap", kind="preprocessor", version="1", config_cls=TonemapConfig,
        build=lambda config, device: Tonemap(config),
        description="local tone mapping (Mantiuk gradient-domain, as NORPPA; or Reinhard), OpenCV",
    ))
