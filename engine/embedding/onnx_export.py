"""A trained embedder as ONNX: for onnxruntime (CPU or CUDA provider) and other runtimes."""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path

from reid_engine.embedding.model import ReidNet
from reid_engine.errors import ReidError

SPEC_KEY = "reid_engine_spec"  # metadata entry holding the EmbedderSpec (JSON)


def export_onnx(net: ReidNet, path: Path | None = None) -> bytes:
    """The model as ONNX bytes (input ``image`` (N, 3, S, S), output ``embedding`` (N, D)); the
    spec is kept in the file's metadata. Written atomically to ``path`` when given. A Landmark-Id
    net has two more inputs: ``heatmaps`` (N, K, S, S) and ``given`` (N,) (1: use these heatmaps,
    0: the net's own landmark locator's)."""
    import torch

    try:
        import onnx
    except ImportError:
        raise ReidError("ONNX export needs the `onnx` package: pip install onnx") from None
    size = net.spec.image_size
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        inputs, names = (torch.zeros(1, 3, size, size),), ["image"]
        if net.landmark_count:
            inputs += (torch.zeros(1, net.landmark_count, size, size), torch.zeros(1))
            names += ["heatmaps", "given"]
        torch.onnx.export(net.cpu().eval(), inputs, buffer, input_names=names, output_names=["embedding"],
                          dynamic_axes={**{n: {0: "n"} for n in names}, "embedding": {0: "n"}},
                          opset_version=17, dynamo=False)
    proto = onnx.load_from_string(buffer.getvalue())
    entry = proto.metadata_props.add()
    entry.key, entry.value = SPEC_KEY, net.spec.to_json()
    data = proto.SerializeToString()
    if path is not None:
        path = Path(path)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)
    return data
