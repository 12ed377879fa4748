"""``fginn``: first-geometric-inconsistent nearest-neighbour ratio test (kornia ``match_fginn``).

Like the ratio test, but the second-nearest neighbour is the nearest one *lying farther
than* ``spatial_th`` pixels from the first in the other image, so repeated texture of one
region (a stripe next to the same stripe) does not veto a good match. Needs LAFs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from reid_engine.plugin import LocalFeatures, Matcher, Matches, PluginSpec, hookimpl

from ._torch import descriptors, to_matches


@dataclass(frozen=True)
class FginnConfig:
    """ratio: distance ratio threshold in (0, 1]; spatial_th: px in the second image; mutual: keep mutual only."""

    ratio: float = 0.85
    spatial_th: float = 10.0
    mutual: bool = True


class Fginn(Matcher):
    thread_safe = True  # calls change nothing in the object: the engine may run two at once

    def __init__(self, config: FginnConfig, device: str) -> None:
        if not 0.0 < config.ratio <= 1.0:
            raise ValueError(f"fginn.ratio must lie in (0, 1], got {config.ratio}")
        self.config = config
        self.device = device

    @torch.inference_mode()
    def match(self, f1: LocalFeatures, f2: LocalFeatures) -> Matches:
        import kornia.feature as KF

        if len(f1) < 2 or len(f2) < 2:
            return Matches.empty()
        if f1.lafs is None or f2.lafs is None:
            from reid_engine.plugin import UsageError

            raise UsageError("fginn needs local affine frames (regions), and this pipeline's extractor gives none: "
                             "use mnn or smnn as its matcher")
        lafs1 = torch.from_numpy(np.ascontiguousarray(f1.lafs)).to(self.device)[None]
        lafs2 = torch.from_numpy(np.ascontiguousarray(f2.lafs)).to(self.device)[None]
        c = self.config
        dists, idxs = KF.match_fginn(descriptors(f1, self.device), descriptors(f2, self.device), lafs1, lafs2,
                                     th=c.ratio, spatial_th=c.spatial_th, mutual=c.mutual)
        return to_matches(idxs, 1.0 - dists.reshape(-1))


@hookimpl
def register_matchers(register):
    register(PluginSpec(
        name="fginn", kind="matcher", version="1", config_cls=FginnConfig,
        build=lambda config, device: Fginn(config, device),
        description="geometry-aware ratio test (kornia match_fginn; needs LAFs)",
    ))
