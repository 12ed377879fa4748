"""``mnn``: mutual nearest neighbours of descriptors, with an optional second-nearest ratio test.

``ratio < 1`` keeps mutual matches whose nearest/second-nearest distance ratio is below it
(kornia ``match_smnn``); ``ratio = 1`` keeps all mutual nearest neighbours (``match_mnn``).
Confidence is ``1 - ratio`` with the ratio test, else the cosine similarity of the pair.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from reid_engine.plugin import LocalFeatures, Matcher, Matches, PluginSpec, hookimpl

from ._torch import descriptors, to_matches


@dataclass(frozen=True)
class MnnConfig:
    """ratio: second-nearest ratio threshold in (0, 1]; 1 switches the ratio test off."""

    ratio: float = 0.9


@dataclass(frozen=True)
class SmnnConfig(MnnConfig):
    """``smnn``: the symmetric ratio test in both directions, 0.95 by default (kornia's choice)."""

    ratio: float = 0.95


class MutualNearestNeighbour(Matcher):
    def __init__(self, config: MnnConfig, device: str) -> None:
        if not 0.0 < config.ratio <= 1.0:
            name = "smnn" if isinstance(config, SmnnConfig) else "mnn"
            raise ValueError(f"{name}.ratio must lie in (0, 1], got {config.ratio}")
        self.config = config
        self.device = device

    @torch.inference_mode()
    def match(self, f1: LocalFeatures, f2: LocalFeatures) -> Matches:
        import kornia.feature as KF

        if len(f1) < 2 or len(f2) < 2:
            return Matches.empty()
        d1, d2 = descriptors(f1, self.device), descriptors(f2, self.device)
        if self.config.ratio < 1.0:
            dists, idxs = KF.match_smnn(d1, d2, self.config.ratio)
            conf = 1.0 - dists.reshape(-1)
        else:
            dists, idxs = KF.match_mnn(d1, d2)
            conf = (1.0 - dists.reshape(-1) ** 2 / 2.0).clamp(0, 1)
        return to_matches(idxs, conf)


@hookimpl
def register_matchers(register):
    register(PluginSpec(
        name="mnn", kind="matcher", version="1", config_cls=MnnConfig,
        build=lambda config, device: MutualNearestNeighbour(config, device),
        description="mutual nearest neighbours (+ optional ratio test), kornia",
    ))
    register(PluginSpec(
        name="smnn", kind="matcher", version="1", config_cls=SmnnConfig,
        build=lambda config, device: MutualNearestNeighbour(config, device),
        description="symmetric ratio-tested mutual nearest neighbours (kornia match_smnn)",
    ))
