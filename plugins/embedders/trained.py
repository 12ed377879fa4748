"""``trained-embedder``: a re-ID embedding network trained on the user's photos.

The model comes from ``reid-engine train embedder``: stored in the gallery database (the
engine hands it over through ``load_state``) or a file given as ``model`` - the ``--out``
file (``.pt``) or the output of ``reid-engine export onnx`` (``.onnx``). ``runtime`` runs it
in torch or in onnxruntime (CUDA provider when present and ``device`` is CUDA); a stored
or ``.pt`` model is exported to ONNX in memory for ``runtime = "onnx"``.

Input: :class:`LoadedImage` (``input = "image"``): the animal as the profile's ``[segment]``
step found it, background greyed and cropped (reid_engine.embedding.views). ``model_sha256``
identifies the model; the engine puts it in the cache id.
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
    """

    model: str = ""
    runtime: Literal["torch", "onnx"] = "torch"
    batch_size: int = 16
    threads: int = 0


class TrainedEmbedder(Embedder):
    input = "image"

    def __init__(self, config: TrainedEmbedderConfig, device: str) -> None:
        if config.batch_size < 1:
            raise ValueError("batch_size must be at least 1")
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
            out.append(self.embed_squares(squares))
        return np.concatenate(out) if out else np.zeros((0, self.spec.dim), np.float32)

    def embed_squares(self, squares: np.ndarray) -> np.ndarray:
        """uint8 (N, S, S, 3) animal squares → float32 (N, D)."""
        x = to_input(squares, self.spec.mean, self.spec.std)
        if self._session is not None:
            return self._session.run(None, {"image": x.numpy()})[0].astype(np.float32)
        import torch

        with torch.inference_mode():
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
