"""``adalam``: AdaLAM (Cavalli et al. 2020) — locally affine-consistent filtering of nearest
neighbour matches, via kornia's ``match_adalam``. Needs affine frames (``lafs``); without
them it falls back to orientation/scale-free seeds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from reid_engine.plugin import LocalFeatures, Matcher, Matches, PluginSpec, hookimpl

from ._torch import descriptors, to_matches


@dataclass(frozen=True)
class AdalamConfig:
    """Options passed to kornia's AdaLAM (see ``kornia.feature.adalam``)."""

    area_ratio: float = 100.0
    search_expansion: float = 4.0
    ransac_iters: int = 128
    min_inliers: int = 6
    min_confidence: float = 200.0
    refit: bool = True
    force_seed_mnn: bool = True
    seed: int = 0


class AdalamMatcher(Matcher):
    thread_safe = True  # calls change nothing in the object: the engine may run two at once

    def __init__(self, config: AdalamConfig, device: str) -> None:
        self.config = config
        self.device = device

    def _lafs(self, f: LocalFeatures) -> torch.Tensor:
        if f.lafs is not None:
            return torch.from_numpy(np.ascontiguousarray(f.lafs)).to(self.device)[None]
        import kornia.feature as KF

        kp = torch.from_numpy(f.kpts).to(self.device)[None]
        return KF.laf_from_center_scale_ori(kp, torch.full((1, len(f), 1, 1), 10.0, device=self.device))

    @torch.inference_mode()
    def match(self, f1: LocalFeatures, f2: LocalFeatures) -> Matches:
        import kornia.feature as KF

        if len(f1) < 8 or len(f2) < 8:
            return Matches.empty()
        c = self.config
        config = {
            "area_ratio": c.area_ratio, "search_expansion": c.search_expansion, "ransac_iters": c.ransac_iters,
            "min_inliers": c.min_inliers, "min_confidence": c.min_confidence, "refit": c.refit,
            "force_seed_mnn": c.force_seed_mnn, "device": torch.device(self.device),
            "orientation_difference_threshold": 30, "scale_rate_threshold": 1.5,
            "detected_scale_rate_threshold": 5,
        }
        try:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(c.seed)  # AdaLAM samples hypotheses: seeded, so runs repeat exactly
                dists, idxs = KF.match_adalam(
                    descriptors(f1, self.device), descriptors(f2, self.device), self._lafs(f1), self._lafs(f2),
                    config=config, hw1=f1.image_hw, hw2=f2.image_hw,
                )
        except (RuntimeError, ValueError, IndexError):  # degenerate geometry: no confident matches
            return Matches.empty()
        conf = (1.0 - dists.reshape(-1)).clamp(0, 1)
        return to_matches(idxs, conf)


@hookimpl
def register_matchers(register):
    register(PluginSpec(
        name="adalam", kind="matcher", version="1", config_cls=AdalamConfig,
        build=lambda config, device: AdalamMatcher(config, device),
        description="AdaLAM local affine verification of NN matches, kornia",
    ))
