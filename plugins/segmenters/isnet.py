"""``isnet``: class-agnostic salient-object segmentation with IS-Net (ONNX, onnxruntime).

The weight ``isnet-small`` (``reid-engine weights list``) is published with a fixed RGB input
of 1024x1024, normalised as ``(pixel - 128) / 256``, and returns a foreground probability map
(1, 1, 1024, 1024) in [0, 1]. The network itself is fully convolutional; only its ONNX graph
pins the size (each upsampling ``Resize`` carries constant output sizes). ``resizable_graph``
rewrites those sizes as the equivalent scale factors and frees the input size, so the mask can
be computed at the resolution it is needed at: ``input_size = 384`` costs 0.26 s per photo on
2 CPU cores against 1.89 s at 1024 (benchmarks/results/isnet-input-size.json). The rewritten
graph computes exactly the same map at 1024. The engine caches that map per photo (``probability``, the
expensive part) and asks ``clean`` to threshold it, open and close it, drop connected
components smaller than ``min_blob`` of the image and split it into instances, largest first
(so changing these options never re-runs the network). The CUDA provider is used when
onnxruntime has it and the device is ``cuda``.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

from reid_engine.plugin import (LoadedImage, PluginSpec, Segmenter, call_threads, configured_threads, hookimpl,
                                 onnx_session_options, worker_share)

PUBLISHED_SIZE = 1024  # the input size the ONNX file was exported with
SIZE_STEP = 64         # the network pools 6 times by 2: other sizes must be multiples of 64


@dataclass(frozen=True)
class IsNetConfig:
    """Options of ``isnet``.

    threshold   foreground probability a pixel must exceed
    min_blob    connected components smaller than this share of the image are dropped
    close_px    closing radius (px at 1024) that fills thin gaps such as stripes on a flank
    input_size  side (px) of the square the photo is resized to for the network, a multiple of
                64 from 192 to 1024; 1024 is the published model's size, smaller is faster
                (nyala-dev: 384 gives masks with a median IoU of 0.92 against 1024's at 1/7 the time)
    threads     onnxruntime intra-op threads; 0 = the calling worker's share of ``--threads``
                (``call_threads``: all of them for a photo segmented alone)
    retry_sizes larger input sizes tried in turn when the map at ``input_size`` shows no animal
                covering at least ``retry_below`` of the photo (a small input misses small or
                low-contrast animals; nyala-dev: 256 px found none in 11 of the closed split's 126
                queries, 384 then 512 px found one in 9 of them); the first map that shows one is
                kept, else the ``input_size`` map. Costs time only on the photos retried.
    retry_below the cleaned largest mask's share of the photo under which a retry is made
    """

    threshold: float = 0.5
    min_blob: float = 0.005
    close_px: int = 7
    input_size: int = 384
    threads: int = 0
    retry_sizes: tuple[int, ...] = ()
    retry_below: float = 0.02

    def __post_init__(self) -> None:
        if not 0.0 < self.threshold < 1.0:
            raise ValueError(f"isnet.threshold must lie in (0, 1), got {self.threshold}")
        object.__setattr__(self, "retry_sizes", tuple(self.retry_sizes))  # a TOML list
        for name, size in [("input_size", self.input_size), *(("retry_sizes", s) for s in self.retry_sizes)]:
            if not isinstance(size, int) or size % SIZE_STEP or not 192 <= size <= PUBLISHED_SIZE:
                raise ValueError(f"isnet.{name} must be a multiple of {SIZE_STEP} from 192 to "
                                 f"{PUBLISHED_SIZE}, got {size!r}")
        if not 0.0 <= self.retry_below < 1.0:
            raise ValueError(f"isnet.retry_below must lie in [0, 1), got {self.retry_below}")
        if self.threads < 0:
            raise ValueError(f"isnet.threads must be 0 (the engine's setting) or more, got {self.threads}")


def resizable_graph(path) -> bytes:
    """The ONNX model at ``path`` with a free input size and only the final ``output``.

    Each ``Resize`` whose output size is a constant (the export's 1024-px shapes) gets the
    equivalent constant scale factors instead, found by shape inference at the published size;
    the deep-supervision side outputs, unused at inference, are dropped. Input ``input``
    (1, 3, H, W) and output ``output`` (1, 1, H, W) for H and W multiples of 64.
    """
    import onnx
    from onnx import numpy_helper, shape_inference

    model = onnx.load(str(path))
    final = [o for o in model.graph.output if o.name == "output"]
    del model.graph.output[:]
    model.graph.output.extend(final)
    inferred = shape_inference.infer_shapes(model).graph
    shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]
              for v in [*inferred.value_info, *inferred.input, *inferred.output]}
    for node in model.graph.node:
        if node.op_type != "Resize":
            continue
        source, target = shapes[node.input[0]], shapes[node.output[0]]
        scales = np.array([t / s for t, s in zip(target, source)], dtype=np.float32)
        name = f"{node.name}/scales"
        model.graph.initializer.append(numpy_helper.from_array(scales, name))
        x = node.input[0]
        del node.input[:]
        node.input.extend([x, "", name])  # X, roi (unused), scales
    del model.graph.value_info[:]  # the 1024-px shapes of every intermediate tensor
    for value in (model.graph.input[0], model.graph.output[0]):
        dims = value.type.tensor_type.shape.dim
        dims[2].dim_param, dims[3].dim_param = "height", "width"
    return model.SerializeToString()


def clean_mask(prob: np.ndarray, threshold: float, min_blob: float, close_px: int) -> list[np.ndarray]:
    """Probability map float (H, W) → cleaned instance masks, bool (H, W) each, largest first."""
    import cv2

    mask = (prob > threshold).astype(np.uint8)
    if close_px > 0:
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * close_px + 1, 2 * close_px + 1))
        mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, kernel)
        mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, kernel)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    keep = [i for i in range(1, count) if stats[i, cv2.CC_STAT_AREA] >= min_blob * mask.size]
    keep.sort(key=lambda i: -stats[i, cv2.CC_STAT_AREA])
    return [labels == i for i in keep]


class IsNet(Segmenter):
    thread_safe = True  # calls change nothing in the object: the engine may run two at once

    def __init__(self, config: IsNetConfig, device: str) -> None:
        import onnxruntime as ort

        from reid_engine.plugin import weight_path

        self.config = config
        self.providers = ["CPUExecutionProvider"]
        if device.startswith("cuda") and "CUDAExecutionProvider" in ort.get_available_providers():
            self.providers.insert(0, "CUDAExecutionProvider")
        self.path = weight_path("isnet-small")
        # (input size, intra-op threads) -> onnxruntime session: a call takes its worker's share of the
        # threads (``call_threads``), so photos segmented side by side share one session of one thread
        # each on 2 cores, and a photo segmented alone gets (another session with) every thread
        self._sessions: dict[tuple[int, int], object] = {}
        self._lock = threading.Lock()
        # what a run's calls take: on the CPU the feature workers' share; elsewhere photos go one at a time
        share = config.threads or (worker_share() if device == "cpu" else configured_threads())
        sides = (config.input_size, *config.retry_sizes)
        graph = resizable_graph(self.path) if any(side != PUBLISHED_SIZE for side in sides) else None
        for side in sides:  # a bad file or graph fails here, not on a photo
            self._session(side, share, graph)
        self.input = self._session(config.input_size, share).get_inputs()[0].name
        # what ``probability`` depends on (the cache key); 1024 keeps the key masks were cached under
        self.model_id = f"isnet-small@{config.input_size}"
        if config.retry_sizes:
            self.model_id += f"+retry@{','.join(map(str, config.retry_sizes))}<{config.retry_below:g}"

    def _session(self, side: int, threads: int = 0, graph: bytes | None = None):
        """The session for ``side``-px input with ``threads`` intra-op threads (0: ``config.threads``,
        else ``call_threads()``), made once; ``graph``: the resizable graph when already at hand."""
        threads = threads or self.config.threads or call_threads()
        session = self._sessions.get((side, threads))
        if session is None:
            import onnxruntime as ort

            with self._lock:
                session = self._sessions.get((side, threads))
                if session is None:
                    model = str(self.path) if side == PUBLISHED_SIZE else graph or resizable_graph(self.path)
                    session = ort.InferenceSession(model, onnx_session_options(threads), providers=self.providers)
                    self._sessions[(side, threads)] = session
        return session

    def probability(self, image: LoadedImage) -> np.ndarray:
        """Foreground probability float32 (H, W) in [0, 1] at the photo's size: at ``input_size``,
        or at the first of ``retry_sizes`` that shows an animal where ``input_size`` shows none."""
        first = self._probability(image, self.config.input_size)
        if not self.config.retry_sizes or self._shows_animal(first):
            return first
        for side in self.config.retry_sizes:
            prob = self._probability(image, side)
            if self._shows_animal(prob):
                return prob
        return first

    def _shows_animal(self, prob: np.ndarray) -> bool:
        masks = self.clean(prob)
        return bool(masks) and float(masks[0].mean()) >= self.config.retry_below

    def _probability(self, image: LoadedImage, side: int) -> np.ndarray:
        import cv2

        h, w = image.rgb.shape[:2]
        # area averaging when shrinking below the published size; 1024 keeps its original bilinear
        area = side < min(PUBLISHED_SIZE, max(h, w))
        x = cv2.resize(image.rgb, (side, side), interpolation=cv2.INTER_AREA if area else cv2.INTER_LINEAR)
        x = x.astype(np.float32)
        x = ((x - 128.0) / 256.0).transpose(2, 0, 1)[None]
        prob = self._session(side).run(["output"], {self.input: x})[0][0, 0]
        return cv2.resize(prob, (w, h), interpolation=cv2.INTER_LINEAR).clip(0.0, 1.0)

    def clean(self, prob: np.ndarray) -> list[np.ndarray]:
        """Probability float (h, w) → instance masks, bool (h, w) each, largest first; [] when nothing stands out."""
        c = self.config
        return clean_mask(prob, c.threshold, c.min_blob, max(0, round(c.close_px * max(prob.shape[:2]) / PUBLISHED_SIZE)))

    def masks(self, image: LoadedImage) -> list[np.ndarray]:
        """Instance masks at the photo's size, bool (H, W) each, largest first."""
        return self.clean(self.probability(image))


@hookimpl
def register_segmenters(register):
    register(PluginSpec(
        name="isnet", kind="segmenter", version="1", config_cls=IsNetConfig,
        build=lambda config, device: IsNet(config, device),
        description="IS-Net salient-object masks (ONNX, onnxruntime; weight isnet-small)",
    ))
