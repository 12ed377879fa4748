"""The pattern network: a timm encoder (offline ImageNet start) and a light U-Net decoder.

``PatternNet(x)``: x float32 (N, 3, H, W), ImageNet-normalised, H and W multiples of 32 →
logits float32 (N, 1, H, W); sigmoid gives the probability that a pixel is pelage pattern
(NORPPA's pattern extraction). :func:`predict_pattern` runs it on one photo of any size.
Files (``train pattern --out``) are ``{'state_dict', 'meta'}`` with ``meta['spec']``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from reid_engine.embedding.model import IMAGENET_MEAN, IMAGENET_STD, IMAGENET_WEIGHTS, imagenet_backbone_state
from reid_engine.embedding.views import GREY, to_input
from reid_engine.errors import ReidError, UsageError

FORMAT = "reid-engine-pattern"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class PatternSpec:
    """What a pattern model is: enough to rebuild it."""

    encoder: str = "tf_efficientnet_lite0"
    decoder_channels: tuple[int, ...] = (96, 64, 48, 32)

    @staticmethod
    def from_dict(d: dict[str, Any]) -> "PatternSpec":
        names = {f.name for f in dataclasses.fields(PatternSpec)}
        return PatternSpec(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in d.items() if k in names})


class _Up(nn.Module):
    """Upsample ×2, concatenate the skip, conv 3×3 + BN + ReLU."""

    def __init__(self, below: int, skip: int, out: int) -> None:
        super().__init__()
        self.conv = nn.Sequential(nn.Conv2d(below + skip, out, 3, padding=1, bias=False), nn.BatchNorm2d(out),
                                  nn.ReLU(inplace=True))

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = nn.functional.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
        return self.conv(torch.cat([x, skip], 1))


class PatternNet(nn.Module):
    """Encoder features at strides 2..32 → decoder up to stride 2 → logits at full size."""

    def __init__(self, spec: PatternSpec = PatternSpec()) -> None:
        super().__init__()
        import timm

        self.spec = spec
        try:
            self.encoder = timm.create_model(spec.encoder, pretrained=False, features_only=True)
        except RuntimeError as exc:
            raise UsageError(f"--encoder {spec.encoder!r}: {exc}") from None
        channels = self.encoder.feature_info.channels()  # strides 2, 4, 8, 16, 32
        skips = channels[:-1][::-1]
        below = channels[-1]
        ups = []
        for skip, out in zip(skips, spec.decoder_channels):
            ups.append(_Up(below, skip, out))
            below = out
        self.ups = nn.ModuleList(ups)
        self.head = nn.Conv2d(below, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.encoder(x)
        y = features[-1]
        for up, skip in zip(self.ups, features[:-1][::-1]):
            y = up(y, skip)
        y = self.head(y)
        return nn.functional.interpolate(y, size=x.shape[-2:], mode="bilinear", align_corners=False)


def imagenet_encoder_start(net: PatternNet) -> str:
    """The offline ImageNet weights into the encoder (''  when there are none for it)."""
    if net.spec.encoder not in IMAGENET_WEIGHTS:
        return ""
    import timm

    full = timm.create_model(net.spec.encoder, pretrained=False, num_classes=0, global_pool="")
    state = imagenet_backbone_state(net.spec.encoder, full.state_dict())
    own = net.encoder.state_dict()
    net.encoder.load_state_dict({k: v for k, v in state.items() if k in own}, strict=True)
    return IMAGENET_WEIGHTS[net.spec.encoder]


def network_input(rgb: np.ndarray, mask: np.ndarray | None) -> torch.Tensor:
    """uint8 (H, W, 3) and bool (H, W) or None → float32 (3, H, W), background greyed (as the
    re-ID embedder's view), normalised."""
    if mask is not None and mask.any():
        rgb = np.where(mask[..., None], rgb, np.array(GREY, np.uint8))
    return to_input(np.ascontiguousarray(rgb)[None], IMAGENET_MEAN, IMAGENET_STD)[0]


@torch.inference_mode()
def predict_pattern(net: PatternNet, rgb: np.ndarray, mask: np.ndarray | None, device: str = "cpu") -> np.ndarray:
    """One photo uint8 (H, W, 3) (+ animal mask) → pattern probability float32 (H, W) in [0, 1]
    (0 outside the mask). The photo is padded to a multiple of 32 and cropped back."""
    h, w = rgb.shape[:2]
    x = network_input(rgb, mask)
    ph, pw = (-h) % 32, (-w) % 32
    x = nn.functional.pad(x[None], (0, pw, 0, ph), mode="replicate")
    p = torch.sigmoid(net(x.to(device)))[0, 0, :h, :w].float().cpu().numpy()
    if mask is not None and mask.any():
        p = np.where(mask, p, 0.0)
    return p.astype(np.float32)


def to_payload(net: PatternNet, meta: dict[str, Any]) -> dict[str, Any]:
    return {"state_dict": {k: v.detach().cpu() for k, v in net.state_dict().items()},
            "meta": {"format": FORMAT, "format_version": FORMAT_VERSION, "spec": dataclasses.asdict(net.spec), **meta}}


def read_pattern_model(path: Path | str, expected_sha256: str = "") -> tuple[PatternNet, dict[str, Any], str]:
    """A ``train pattern --out`` file → (net in eval mode, meta, sha256 of the file's bytes)."""
    path = Path(path).expanduser()
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise UsageError(f"{path}: pattern model file not found (write one with `reid-engine train pattern --out`)") \
            from None
    except OSError as exc:
        raise ReidError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    sha = hashlib.sha256(data).hexdigest()
    if expected_sha256 and sha != expected_sha256:
        raise ReidError(f"{path}: the pattern model changed since the profile was read (sha256 {sha[:12]}…, expected "
                        f"{expected_sha256[:12]}…); run again")
    try:
        payload = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - truncated files, other formats
        raise UsageError(f"{path}: not a reid-engine pattern model ({type(exc).__name__})") from None
    if not isinstance(payload, dict) or payload.get("meta", {}).get("format") != FORMAT:
        raise UsageError(f"{path}: not a reid-engine pattern model (write one with `reid-engine train pattern --out`)")
    net = PatternNet(PatternSpec.from_dict(payload["meta"].get("spec", {})))
    try:
        net.load_state_dict(payload["state_dict"])
    except RuntimeError as exc:
        raise ReidError(f"{path}: the pattern model does not fit its spec ({str(exc).splitlines()[0]})") from None
    return net.eval(), payload["meta"], sha
