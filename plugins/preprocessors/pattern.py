"""``pattern``: the photo becomes its pelage-pattern image (NORPPA's pattern extraction).

A pattern network trained with ``reid-engine train pattern`` maps the photo (background greyed
outside the animal's mask, when the profile's ``[segment]`` step or the manifest gives one)
to a pattern probability per pixel; the extractors then see that probability as a grey image
(white = pattern, black = fur without pattern and everything outside the animal). The model
file's sha256 is part of the config (``model_sha256``, filled in from the file when the profile
is read), so a retrained model never serves stale cached features.

    model          the ``train pattern --out`` file (required)
    model_sha256   its digest; filled in from the file when empty
    contrast       output = clip(p * contrast, 0, 1) (1 = the probability as it is)
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from reid_engine.plugin import (
    LoadedImage,
    PluginSpec,
    Preprocessor,
    UsageError,
    file_sha256,
    hookimpl,
    predict_pattern,
    read_pattern_model,
)


@dataclass(frozen=True)
class PatternConfig:
    model: str = ""
    model_sha256: str = ""
    contrast: float = 1.0

    def __post_init__(self) -> None:
        if not self.model:
            raise ValueError("model: give the pattern model file (`reid-engine train pattern --out FILE`)")
        if not 0.1 <= self.contrast <= 10.0:
            raise ValueError(f"contrast must lie in [0.1, 10], got {self.contrast}")
        if not self.model_sha256:
            try:
                object.__setattr__(self, "model_sha256", file_sha256(Path(self.model).expanduser()))
            except OSError:
                pass  # build() says the file is missing


class PatternImage(Preprocessor):
    thread_safe = True  # calls change nothing in the object: the engine may run two at once

    def __init__(self, config: PatternConfig, device: str) -> None:
        self.config = config
        self.device = device
        if not config.model_sha256:
            raise UsageError(f"pattern model {config.model}: file not found (write it with `reid-engine train "
                             "pattern --out FILE`)")
        self.net, self.meta, _ = read_pattern_model(config.model, config.model_sha256)
        self.net.to(device)

    def __call__(self, image: LoadedImage) -> LoadedImage:
        """uint8 RGB (H, W, 3) → the pattern image, uint8 (H, W, 3) grey; ``image`` is not changed."""
        p = predict_pattern(self.net, image.rgb, image.mask, self.device)
        grey = (np.clip(p * self.config.contrast, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
        return dataclasses.replace(image, rgb=np.repeat(grey[..., None], 3, axis=2))


@hookimpl
def register_preprocessors(register):
    register(PluginSpec(
        name="pattern", kind="preprocessor", version="1", config_cls=PatternConfig,
        build=lambda config, device: PatternImage(config, device),
        description="pelage-pattern image from a `train pattern` U-Net (NORPPA)",
    ))
