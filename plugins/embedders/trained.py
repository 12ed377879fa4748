"""``trained-embedder``: a re-ID embedding network trained on the user's photos.

The model comes from ``reid-engine train embedder``: stored in the gallery database (the
engine hands it over through ``load_state``) or a file given as ``model`` - the ``--out``
file (``.pt``) or the output of ``reid-engine export onnx`` (``.onnx``). ``runtime`` runs it
in torch or in onnxruntime (CUDA provider when present and ``device`` is CUDA); a stored
or ``.pt`` model is exported to ONNX in memory for ``runtime = "onnx"``.

Input: :class:`LoadedImage` (``input = "image"``): the animal as the profile's ``[segment]``
step found it, background greyed and cropped (reid_engine.embedding.views). ``model_sha256``
identifies the model; the engine puts it in the cache id. A Landmark-Id model (``train embedder
--method landmark-id``) also sees the photo's landmark heatmaps: from the record's ``keypoints``
when it has them (``landmarks = "given"``), else predicted by the model's own locator.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Sequence

import numpy as np

from reid_engine.plugin import (
    ONNX_SPEC_KEY,
    Embedder,
    EmbedderSpec,
    LoadedImage,
    PluginSpec,
    ReidError,
    UsageError,
    animal_square,
    landmarks_in_image,
    render_heatmaps,
    square_frame,
    arrays_sha256,
    export_onnx,
    hookimpl,
    model_from_arrays,
    onnx_session_options,
    read_model_file,
    to_input,
)


@dataclass(frozen=True)
class TrainedEmbedderConfig:
    """Options of ``trained-embedder``.

    model       a model file (.pt from ``train embedder --out``, .onnx from ``export onnx``);
                "" = the model stored in the gallery database for the profile
    runtime     torch | onnx (onnxruntime)
    batch_size  images per forward pass
    threads     CPU threads for onnxruntime's intra-op pool (0 = the engine's `--threads` setting)
    landmarks   Landmark-Id models only: "given" uses a photo's keypoints when it has them and the
                model's predicted landmarks otherwise; "predicted" always predicts them (every
                photo then sees the same kind of heatmaps, annotated or not)
    """

    model: str = ""
    runtime: Literal["torch", "onnx"] = "torch"
    batch_size: int = 16
    threads: int = 0
    landmarks: Literal["given", "predicted"] = "given"


class TrainedEmbedder(Embedder):
    input = "image"

    def __init__(self, config: TrainedEmbedderConfig, device: str) -> None:
        if config.batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        if config.landmarks not in ("given", "predicted"):
            raise ValueError(f"landmarks must be 'given' or 'predicted', got {config.landmarks!r}")
        self.config, self.device = config, device
        self.model_sha256 = ""
        self.spec: EmbedderSpec | None = None
        self._net = None
        self._session = None
        if config.model:
            self._load_file(Path(config.model))

    # -- loading ---------------------------------------------------------------------------
    def _load_file(self, path: Path) -> None:
        if path.suffix.lower() == ".onnx":
            try:
                data = path.read_bytes()
            except OSError as exc:
                raise UsageError(f"{path}: ONNX model cannot be read ({exc.strerror or exc})") from None
            self.model_sha256 = hashlib.sha256(data).hexdigest()
            self._session, self.spec = _onnx_session(data, self.device, self.config.threads)
            return
        net, _, sha = read_model_file(path)
        self._use(net, sha)

    def load_state(self, arrays: dict[str, np.ndarray]) -> None:
        """Take the model stored in the gallery database."""
        net, _ = model_from_arrays(arrays)
        self._use(net, arrays_sha256(arrays))

    def _use(self, net, sha: str) -> None:
        self.model_sha256, self.spec = sha, net.spec
        if self.config.runtime == "onnx":
            self._session, _ = _onnx_session(export_onnx(net), self.device, self.config.threads)
        else:
            self._net = net.to(self.device).eval()

    # -- embedding -------------------------------------------------------------------------
    def embed(self, images: Sequence[LoadedImage]) -> np.ndarray:
        """Images → float32 (N, D), rows L2-normalised."""
        if self.spec is None:
            raise ReidError("trained-embedder: no model loaded (train one with `reid-engine train embedder`)")
        out = []
        for start in range(0, len(images), self.config.batch_size):
            chunk = images[start:start + self.config.batch_size]
            squares = np.stack([animal_square(im, self.spec.image_size) for im in chunk])
            if self.spec.landmarks:
                out.append(self.embed_squares(squares, *self._heatmaps(chunk)))
            else:
                out.append(self.embed_squares(squares))
        return np.concatenate(out) if out else np.zeros((0, self.spec.dim), np.float32)

    def _heatmaps(self, images: Sequence[LoadedImage]) -> tuple[np.ndarray, np.ndarray]:
        """Heatmaps float32 (N, K, S, S) of the images' keypoints and given float32 (N,): 1 where
        they are used, 0 where the model predicts them."""
        side, names = self.spec.image_size, tuple(self.spec.landmarks)
        maps = np.zeros((len(images), len(names), side, side), np.float32)
        given = np.zeros(len(images), np.float32)
        for i, image in enumerate(images):
            points = landmarks_in_image(image, names) if self.config.landmarks == "given" else None
            if points is not None:
                maps[i] = render_heatmaps(square_frame(image).points(points, side), side, self.spec.heatmap_radius)
                given[i] = 1.0
        return maps, given

    def embed_squares(self, squares: np.ndarray, heatmaps: np.ndarray | None = None,
                      given: np.ndarray | None = None) -> np.ndarray:
        """uint8 (N, S, S, 3) animal squares → float32 (N, D). A Landmark-Id model takes heatmaps
        float32 (N, K, S, S) used where ``given`` (N,) is 1 (None: predicted for all)."""
        x = to_input(squares, self.spec.mean, self.spec.std)
        if self.spec.landmarks and heatmaps is None:
            heatmaps = np.zeros((len(squares), len(self.spec.landmarks), *x.shape[2:]), np.float32)
            given = np.zeros(len(squares), np.float32)
        if self._session is not None:
            feeds = {"image": x.numpy()}
            if self.spec.landmarks:
                feeds.update(heatmaps=np.asarray(heatmaps, np.float32), given=np.asarray(given, np.float32))
            return self._session.run(None, feeds)[0].astype(np.float32)
        import torch

        with torch.inference_mode():
            if self.spec.landmarks:
                return self._net(x.to(self.device), torch.as_tensor(heatmaps, device=self.device),
                                 torch.as_tensor(given, device=self.device)).float().cpu().numpy()
            return self._net(x.to(self.device)).float().cpu().numpy()


def _onnx_session(data: bytes, device: str, threads: int):
    import json

    import onnxruntime as ort

    options = onnx_session_options(threads)
    providers = ["CPUExecutionProvider"]
    if device.startswith("cuda") and "CUDAExecutionProvider" in ort.get_available_providers():
        providers.insert(0, "CUDAExecutionProvider")
    try:
        session = ort.InferenceSession(data, options, providers=providers)
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own exception classes
        raise UsageError(f"not a loadable ONNX model ({type(exc).__name__}: {exc})") from None
    meta = session.get_modelmeta().custom_metadata_map.get(ONNX_SPEC_KEY)
    if meta is None:
        raise UsageError("ONNX model without reid-engine metadata; write it with `reid-engine export onnx`")
    return session, EmbedderSpec.from_dict(json.loads(meta))


@hookimpl
def register_embedders(register):
    register(PluginSpec(
        name="trained-embedder", kind="embedder", version="1", config_cls=TrainedEmbedderConfig,
        build=lambda config, device: TrainedEmbedder(config, device),
        description="re-ID embedding trained on your gallery (reid-engine train embedder); torch or onnxruntime",
    ))
