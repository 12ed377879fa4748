"""A third party's matcher: descriptor pairs whose cosine similarity exceeds a threshold,
kept when mutual. It imports only reid-engine's public plugin API."""

from dataclasses import dataclass

import numpy as np

from reid_engine.plugin import Matcher, Matches, PluginSpec, hookimpl


@dataclass(frozen=True)
class CosineThresholdConfig:
    min_cosine: float = 0.8


class CosineThresholdMatcher(Matcher):
    def __init__(self, config):
        self.config = config

    def match(self, f1, f2):
        if len(f1) == 0 or len(f2) == 0:
            return Matches.empty()
        a = f1.desc / np.maximum(np.linalg.norm(f1.desc, axis=1, keepdims=True), 1e-12)
        b = f2.desc / np.maximum(np.linalg.norm(f2.desc, axis=1, keepdims=True), 1e-12)
        sim = a @ b.T
        best12, best21 = sim.argmax(1), sim.argmax(0)
        i = np.arange(len(a))
        keep = (best21[best12] == i) & (sim[i, best12] >= self.config.min_cosine)
        idx = np.stack([i[keep], best12[keep]], axis=1).astype(np.int64)
        return Matches(idx, sim[i[keep], best12[keep]].astype(np.float32))


@hookimpl
def register_matchers(register):
    register(PluginSpec(
        name="cosine-threshold", kind="matcher", version="0.3.1", config_cls=CosineThresholdConfig,
        build=lambda config, device: CosineThresholdMatcher(config),
        description="mutual cosine matches above a threshold (third-party example)",
    ))
