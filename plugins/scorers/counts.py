"""Pair scorers over the matches alone: ``match-count`` and ``confidence-sum``."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from reid_engine.plugin import LocalFeatures, Matches, PluginSpec, Scorer, hookimpl


@dataclass(frozen=True)
class CountConfig:
    """min_confidence: matches below it are not counted."""

    min_confidence: float = 0.0


class MatchCount(Scorer):
    thread_safe = True  # calls change nothing in the object: the engine may run two at once

    def __init__(self, config: CountConfig) -> None:
        self.config = config

    def inliers(self, f1: LocalFeatures, f2: LocalFeatures, matches: Matches) -> np.ndarray:
        """bool (M,): the matches the score counts."""
        return matches.conf >= self.config.min_confidence

    def score(self, f1: LocalFeatures, f2: LocalFeatures, matches: Matches) -> float:
        return float(np.count_nonzero(self.inliers(f1, f2, matches)))


class ConfidenceSum(Scorer):
    thread_safe = True  # calls change nothing in the object: the engine may run two at once

    def __init__(self, config: CountConfig) -> None:
        self.config = config

    def inliers(self, f1: LocalFeatures, f2: LocalFeatures, matches: Matches) -> np.ndarray:
        """bool (M,): the matches the score sums."""
        return matches.conf >= self.config.min_confidence

    def score(self, f1: LocalFeatures, f2: LocalFeatures, matches: Matches) -> float:
        return float(matches.conf[self.inliers(f1, f2, matches)].sum())


@hookimpl
def register_scorers(register):
    register(PluginSpec(
        name="match-count", kind="scorer", version="1", config_cls=CountConfig,
        build=lambda config, device: MatchCount(config), description="number of matches above a confidence",
    ))
    register(PluginSpec(
        name="confidence-sum", kind="scorer", version="1", config_cls=CountConfig,
        build=lambda config, device: ConfidenceSum(config), description="sum of match confidences",
    ))
