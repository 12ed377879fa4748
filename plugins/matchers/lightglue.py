"""``lightglue``: LightGlue (kornia) for the feature types it has weights for here.

``features = "aliked"`` (ALIKED-n16/n32 descriptors, 128-d) or ``"disk"``. Weights come from
the weights manifest (``lightglue-aliked``, ``lightglue-disk``), never from the network.
Adaptive depth (early stop once confident) and width (prune points that will not match)
are on by default; ``-1`` switches either off. Confidence of a match is LightGlue's
matching score.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from reid_engine.plugin import LocalFeatures, Matcher, Matches, PluginSpec, hookimpl

from ._torch import descriptors, to_matches


@dataclass(frozen=True)
class LightGlueConfig:
    """Options of ``lightglue``.

    features          descriptor type the weights were trained for (must match the extractor)
    depth_confidence  early-stop confidence in (0, 1), -1 = run all 9 layers
    width_confidence  point-pruning confidence in (0, 1), -1 = never prune
    filter_threshold  matches below this matching score are dropped
    max_keypoints     strongest keypoints of each image used (0 = all); bounds time and memory
    batch_size        pairs per forward pass in ``match_many`` when their keypoint counts agree
                      (a GPU gains from it; with point pruning on, ``width_confidence`` > 0,
                      kornia runs the pairs one at a time, so set ``width_confidence = -1``
                      for batched GPU matching)
    workers           on the CPU, pairs of ``match_many`` matched at once, each on one thread
                      (0 = the engine's thread count, ``--threads``; 1 = one pair at a time on
                      all threads). The matches are the same either way; small attention layers
                      use two cores better as two pairs than as one; confidences differ by float rounding (2 cores, 512 keypoints:
                      11.4 against 9.8 pairs/s, benchmarks/results/lightglue-cpu.json)
    precision         ``fp32``, or ``bf16``: weights and descriptors in bfloat16 (faster on CPUs
                      with AVX-512-BF16/AMX and on GPUs; the matches differ a little from fp32's)
    """

    features: Literal["aliked", "disk"] = "aliked"
    depth_confidence: float = 0.95
    width_confidence: float = 0.99
    filter_threshold: float = 0.1
    max_keypoints: int = 0
    batch_size: int = 32
    workers: int = 0
    precision: Literal["fp32", "bf16"] = "fp32"


def rename_legacy_keys(state: dict[str, torch.Tensor], n_layers: int) -> dict[str, torch.Tensor]:
    """Old LightGlue checkpoints name layers ``self_attn.N``/``cross_attn.N``; kornia wants ``transformers.N.*``."""
    for i in range(n_layers):
        for part in ("self_attn", "cross_attn"):
            old, new = f"{part}.{i}.", f"transformers.{i}.{part}."
            state = {(new + k[len(old):] if k.startswith(old) else k): v for k, v in state.items()}
    return state


def build_lightglue(config: LightGlueConfig, device: str) -> torch.nn.Module:
    """kornia LightGlue with the manifest's weights for ``config.features``; eval mode on ``device``."""
    import kornia.feature as KF

    from reid_engine.plugin import load_weights, weight_state

    conf = dict(KF.LightGlue.features[config.features])
    conf.pop("weights", None)
    conf.update(
        depth_confidence=config.depth_confidence,
        width_confidence=config.width_confidence,
        filter_threshold=config.filter_threshold,
    )
    model = KF.LightGlue(features=None, **conf)
    name = f"lightglue-{config.features}"
    state = rename_legacy_keys(weight_state(name), model.conf.n_layers)
    # derived buffer computed in __init__; unused legacy scalars of old DISK checkpoints
    return load_weights(model, name, state=state, allowed_missing=("confidence_thresholds",),
                        allowed_unexpected=("log_assignment.",)).to(device)


def strongest(f: LocalFeatures, limit: int) -> np.ndarray:
    """Indices (K,) of the ``limit`` strongest keypoints of ``f`` (all when limit is 0)."""
    if not limit or len(f) <= limit:
        return np.arange(len(f))
    return np.sort(np.argsort(-f.scores, kind="stable")[:limit])


class LightGlueMatcher(Matcher):
    def __init__(self, config: LightGlueConfig, device: str) -> None:
        for name in ("depth_confidence", "width_confidence"):
            value = getattr(config, name)
            if value != -1 and not 0.0 < value < 1.0:
                raise ValueError(f"lightglue.{name} must lie in (0, 1) or be -1, got {value}")
        if config.max_keypoints < 0:
            raise ValueError(f"lightglue.max_keypoints must be 0 (all) or positive, got {config.max_keypoints}")
        if config.workers < 0:
            raise ValueError(f"lightglue.workers must be 0 (the engine's thread count) or more, got {config.workers}")
        self.config = config
        self.device = device
        self.model = build_lightglue(config, device)
        self.dtype = torch.bfloat16 if config.precision == "bf16" else torch.float32
        if self.dtype != torch.float32:
            self.model = self.model.to(self.dtype)

    def _check(self, f: LocalFeatures) -> None:
        from reid_engine.plugin import UsageError

        dim = self.model.conf.input_dim
        if f.desc.shape[1] != dim:
            raise UsageError(
                f"lightglue (features = {self.config.features!r}) takes {dim}-d {self.config.features} descriptors, "
                f"but the pipeline's extractor gives {f.desc.shape[1]}-d ones: use the {self.config.features!r} "
                f"extractor (aliked-n16/n16rot/n32 for 'aliked'), or another matcher (mnn, smnn)")

    def _side(self, f: LocalFeatures, keep: np.ndarray) -> dict[str, torch.Tensor]:
        h, w = f.image_hw
        kpts = torch.from_numpy(np.ascontiguousarray(f.kpts[keep], dtype=np.float32)).to(self.device)
        desc = descriptors(f, self.device)[torch.from_numpy(keep).to(self.device)].to(self.dtype)
        size = torch.tensor([[w, h]], dtype=torch.float32, device=self.device)
        return {"keypoints": kpts[None], "descriptors": desc[None], "image_size": size}

    def match(self, f1: LocalFeatures, f2: LocalFeatures) -> Matches:
        return self.match_many([f1], [f2])[0]

    def _workers(self, n_pairs: int) -> int:
        """CPU pairs to match at once (1 on a GPU, which batches instead)."""
        if not self.device.startswith("cpu") or n_pairs < 2:
            return 1
        from reid_engine.plugin import configured_threads

        return max(1, min(n_pairs, self.config.workers or configured_threads()))

    def match_many(self, first: list[LocalFeatures], second: list[LocalFeatures]) -> list[Matches]:
        """Matches of each pair (first[i], second[i]). On a GPU, pairs whose keypoint counts agree
        run as one batch; on the CPU, ``workers`` pairs run at once, one thread each."""
        for f in first[:1] + second[:1]:
            self._check(f)
        limit = self.config.max_keypoints
        keeps = [(strongest(a, limit), strongest(b, limit)) for a, b in zip(first, second)]
        out: list[Matches] = [Matches.empty()] * len(first)
        groups: dict[tuple[int, int], list[int]] = {}
        for i, (k1, k2) in enumerate(keeps):
            if len(k1) >= 2 and len(k2) >= 2:
                groups.setdefault((len(k1), len(k2)), []).append(i)
        workers = self._workers(len(first))
        if workers == 1:
            step = max(1, self.config.batch_size)
            batches = [members[s:s + step] for members in groups.values() for s in range(0, len(members), step)]
            for batch in batches:
                self._run(batch, first, second, keeps, out)
            return out
        from concurrent.futures import ThreadPoolExecutor

        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # process-wide: each worker's operators run on its own thread
        try:
            with ThreadPoolExecutor(workers, thread_name_prefix="lightglue") as pool:
                list(pool.map(lambda i: self._run([i], first, second, keeps, out),
                              [i for members in groups.values() for i in members]))
        finally:
            torch.set_num_threads(threads)
        return out

    @torch.inference_mode()
    def _run(self, batch: list[int], first: list[LocalFeatures], second: list[LocalFeatures],
             keeps: list[tuple[np.ndarray, np.ndarray]], out: list[Matches]) -> None:
        """One forward pass over the pairs ``batch`` (equal keypoint counts); writes ``out[i]``."""
        sides = [self._side(first[i], keeps[i][0]) for i in batch], [self._side(second[i], keeps[i][1]) for i in batch]
        data = {f"image{n}": {k: torch.cat([s[k] for s in side]) for k in side[0]} for n, side in enumerate(sides)}
        result = self.model(data)
        for i, idx, conf in zip(batch, result["matches"], result["scores"]):
            if idx.numel():
                idx = idx.cpu().numpy()
                pairs = np.stack([keeps[i][0][idx[:, 0]], keeps[i][1][idx[:, 1]]], axis=1)
                out[i] = to_matches(torch.from_numpy(pairs), conf)


@hookimpl
def register_matchers(register):
    register(PluginSpec(
        name="lightglue", kind="matcher", version="1", config_cls=LightGlueConfig,
        build=lambda config, device: LightGlueMatcher(config, device),
        description="LightGlue (kornia; weights lightglue-aliked / lightglue-disk), adaptive depth and width",
    ))
