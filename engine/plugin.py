"""The public plugin API of reid-engine: everything a plugin author imports comes from here.

A plugin is a Python module that implements one or more ``register_*`` hooks
(:mod:`reid_engine.registry.hookspecs`); each hook calls ``register`` once per plugin with a
:class:`PluginSpec` (name, kind, version, config dataclass, factory). The factory,
``build(config, device)``, returns the working object: an instance of the base class of its
kind below. Array shapes: N keypoints, D descriptor dimensions, M matches, H×W pixels.

``extractor`` — :class:`Extractor`, hook ``register_extractors``
    ``extract(image: LoadedImage) -> LocalFeatures``: kpts float32 (N, 2) in ``image.rgb``
    pixels, desc float32 (N, D), scores (N,), lafs (N, 2, 3) or None; keypoints only inside
    ``image.mask``; a photo without any gives ``LocalFeatures.empty(D, (H, W))``, never raises.
``matcher`` — :class:`Matcher`, hook ``register_matchers``
    ``match(f1, f2) -> Matches``: idx int64 (M, 2) into f1 and f2, conf float32 (M,); optional
    ``match_many(firsts, seconds) -> list[Matches]`` for many pairs at once.
``scorer`` — :class:`Scorer`, hook ``register_scorers``
    ``score(f1, f2, matches) -> float`` ≥ 0 (higher = more alike); optional
    ``inliers(f1, f2, matches) -> bool (M,) | None``: the matches the score counts.
``embedder`` — :class:`Embedder`, hook ``register_embedders``
    ``embed(items) -> float32 (len(items), D)``, rows L2-normalised; ``input = "image"`` (items
    are LoadedImage) or ``"local"`` (LocalFeatures of the extractor named in ``extractor``);
    optional ``fit(items)``, ``state() -> dict[str, ndarray]``, ``load_state(state)``.
``preprocessor`` — :class:`Preprocessor`, hook ``register_preprocessors``
    ``__call__(image: LoadedImage) -> LoadedImage``, a new one (the input is never changed).
``segmenter`` — :class:`Segmenter`, hook ``register_segmenters``
    ``probability(image) -> float (H, W)`` in [0, 1]; ``clean(prob (h, w)) -> list[bool (h, w)]``,
    largest animal first; ``model_id``: what the probability depends on besides the version.
``dataset`` — :class:`DatasetLoader`, hook ``register_datasets``
    ``can_load(path) -> bool``; ``load(path, role) -> Manifest`` (role "gallery" or "query").

Optional abilities have working defaults in the base classes (a ``match_many`` that loops over
``match``, an ``inliers`` that returns None = "no inlier set", an embedder ``fit`` that does
nothing), so the engine simply calls them; override one to do better. Objects that do not
subclass these classes (older, duck-typed plugins) still work: the engine wraps them.

``thread_safe = True`` on an extractor, matcher, scorer, preprocessor or segmenter class says its
calls change nothing shared and may run in two threads at once. On the CPU the engine then works
on several photos (and pairs) side by side, each with its share of the cores
(``reid-engine --workers``): kornia and NumPy code spends much of its time in small operators
that leave the other cores idle. The default is False: a plugin that says nothing is called from
one thread at a time.

Example (a matcher)::

    from dataclasses import dataclass
    from reid_engine.plugin import Matcher, Matches, PluginSpec, hookimpl

    @dataclass(frozen=True)
    class MyConfig:
        threshold: float = 0.8

    class MyMatcher(Matcher):
        def __init__(self, config):
            self.config = config

        def match(self, f1, f2):
            ...  # -> Matches(idx int64 (M, 2), conf float32 (M,)); Matches.empty() when none

    @hookimpl
    def register_matchers(register):
        register(PluginSpec(name="my-matcher", kind="matcher", version="1.0", config_cls=MyConfig,
                            build=lambda config, device: MyMatcher(config)))

Register the module in the distribution's ``pyproject.toml`` (the built-in plugins use the same
entry-point group)::

    [project.entry-points."reid_engine.plugins"]
    my-matcher = "my_package.my_module"

``version`` is part of every cache key: change it whenever the plugin's output changes. Bad
options raise ValueError in the config's ``__post_init__`` or in ``build``; a message for the
user is a :class:`ReidError` (:class:`UsageError` when the user must change what they passed).

Also here: the records (:class:`LoadedImage`, :class:`LocalFeatures`, :class:`Matches`,
:class:`ImageRecord`, :class:`Manifest`, whose ``skipped`` files are :class:`ImageError` rows),
the errors, weight loading (``load_weights(module, name)`` loads a verified file of
``reid-engine weights``; ``weight_path``, ``weight_state``, descriptor checkpoints), thread
settings for onnxruntime, the extractors' image-tensor helpers (``rgb_tensor``, ``grey_tensor``,
``mask_tensor``, ``crop_to_mask``, ``point_features``...) and the trained re-ID embedding models. Importing this
module is cheap (no torch): the torch-based helpers are imported on first use.
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from reid_engine.errors import ManifestError, ReidError, UsageError
from reid_engine.keypoints import landmarks_in_image, parse_keypoints
from reid_engine.records import ImageError, ImageRecord, LoadedImage, LocalFeatures, Manifest, Matches
from reid_engine.registry import EmptyConfig, PluginSpec, hookimpl
from reid_engine.threads import call_threads
from reid_engine.threads import configured as configured_threads
from reid_engine.threads import onnx_session_options, worker_share
from reid_engine.weights import MissingWeights, file_sha256, load_weights, weight_path, weight_state

if TYPE_CHECKING:  # imported on first use at run time (``__getattr__`` below): these modules import torch
    from reid_engine.embedding.model import EmbedderSpec, arrays_sha256, read_model_file
    from reid_engine.embedding.model import from_arrays as model_from_arrays
    from reid_engine.embedding.onnx_export import SPEC_KEY as ONNX_SPEC_KEY
    from reid_engine.embedding.onnx_export import export_onnx
    from reid_engine.embedding.heatmaps import render_heatmaps
    from reid_engine.embedding.views import animal_square, square_frame, to_input
    from reid_engine.image_tensors import crop_to_mask, grey_tensor, mask_tensor, point_features, resized_size, rgb_tensor, too_small
    from reid_engine.training.checkpoint import CheckpointError, load_hardnet, read_checkpoint

Register = Callable[[PluginSpec], None]
"""What a ``register_*`` hook is handed: call it once per plugin with its :class:`PluginSpec`."""

__all__ = [
    "ONNX_SPEC_KEY",
    "CheckpointError",
    "DatasetLoader",
    "Embedder",
    "EmbedderSpec",
    "EmptyConfig",
    "Extractor",
    "ImageError",
    "ImageRecord",
    "LoadedImage",
    "LocalFeatures",
    "Manifest",
    "ManifestError",
    "Matcher",
    "Matches",
    "MissingWeights",
    "PluginSpec",
    "Preprocessor",
    "Register",
    "ReidError",
    "Scorer",
    "Segmenter",
    "UsageError",
    "animal_square",
    "arrays_sha256",
    "call_threads",
    "configured_threads",
    "crop_to_mask",
    "export_onnx",
    "file_sha256",
    "grey_tensor",
    "hookimpl",
    "landmarks_in_image",
    "load_hardnet",
    "load_weights",
    "mask_tensor",
    "model_from_arrays",
    "onnx_session_options",
    "parse_keypoints",
    "point_features",
    "predict_pattern",
    "read_checkpoint",
    "read_model_file",
    "read_pattern_model",
    "render_heatmaps",
    "resized_size",
    "rgb_tensor",
    "square_frame",
    "to_input",
    "too_small",
    "weight_path",
    "weight_state",
    "worker_share",
]

# name -> (module, attribute): imported on first use, since these modules import torch
_LAZY = {
    "CheckpointError": ("reid_engine.training.checkpoint", "CheckpointError"),
    "load_hardnet": ("reid_engine.training.checkpoint", "load_hardnet"),
    "read_checkpoint": ("reid_engine.training.checkpoint", "read_checkpoint"),
    "crop_to_mask": ("reid_engine.image_tensors", "crop_to_mask"),
    "grey_tensor": ("reid_engine.image_tensors", "grey_tensor"),
    "mask_tensor": ("reid_engine.image_tensors", "mask_tensor"),
    "point_features": ("reid_engine.image_tensors", "point_features"),
    "resized_size": ("reid_engine.image_tensors", "resized_size"),
    "rgb_tensor": ("reid_engine.image_tensors", "rgb_tensor"),
    "too_small": ("reid_engine.image_tensors", "too_small"),
    "EmbedderSpec": ("reid_engine.embedding.model", "EmbedderSpec"),
    "arrays_sha256": ("reid_engine.embedding.model", "arrays_sha256"),
    "model_from_arrays": ("reid_engine.embedding.model", "from_arrays"),
    "read_model_file": ("reid_engine.embedding.model", "read_model_file"),
    "ONNX_SPEC_KEY": ("reid_engine.embedding.onnx_export", "SPEC_KEY"),
    "export_onnx": ("reid_engine.embedding.onnx_export", "export_onnx"),
    "animal_square": ("reid_engine.embedding.views", "animal_square"),
    "predict_pattern": ("reid_engine.pattern.model", "predict_pattern"),
    "read_pattern_model": ("reid_engine.pattern.model", "read_pattern_model"),
    "to_input": ("reid_engine.embedding.views", "to_input"),
    "square_frame": ("reid_engine.embedding.views", "square_frame"),
    "render_heatmaps": ("reid_engine.embedding.heatmaps", "render_heatmaps"),
}


def __getattr__(name: str) -> Any:
    try:
        module, attr = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    value = getattr(importlib.import_module(module), attr)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


# -- base classes, one per plugin kind ---------------------------------------------------------
class Extractor(ABC):
    """Kind ``extractor``: local features of one photo."""

    #: True when the engine may call this object from several threads at once (it then works on
    #: two photos or pairs side by side, one core each). Leave it False if a call changes the
    #: object or uses a library that is not thread-safe.
    thread_safe: bool = False

    @abstractmethod
    def extract(self, image: LoadedImage) -> LocalFeatures:
        """``image.rgb`` uint8 (H, W, 3), ``image.mask`` bool (H, W) or None → LocalFeatures with
        kpts float32 (N, 2) (x, y in ``image.rgb`` pixels), desc float32 (N, D), scores (N,),
        lafs (N, 2, 3) or None, ``image_hw`` = (H, W). Keypoints lie inside the mask; a photo
        without any gives ``LocalFeatures.empty(D, (H, W))``, never an exception."""


class Matcher(ABC):
    """Kind ``matcher``: correspondences between the local features of two photos."""

    thread_safe: bool = False  # as for Extractor

    @abstractmethod
    def match(self, f1: LocalFeatures, f2: LocalFeatures) -> Matches:
        """Matches f1 → f2: ``idx`` int64 (M, 2) (rows of f1, rows of f2), ``conf`` float32 (M,),
        higher = surer. Empty features give ``Matches.empty()``."""

    def match_many(self, firsts: Sequence[LocalFeatures], seconds: Sequence[LocalFeatures]) -> list[Matches]:
        """Matches of each pair (firsts[i], seconds[i]), in order. This default calls ``match``
        pair by pair; override it to batch pairs (on a GPU) or spread them over threads."""
        return [self.match(a, b) for a, b in zip(firsts, seconds)]


class Scorer(ABC):
    """Kind ``scorer``: one number per matched pair of photos."""

    thread_safe: bool = False  # as for Extractor

    @abstractmethod
    def score(self, f1: LocalFeatures, f2: LocalFeatures, matches: Matches) -> float:
        """≥ 0, higher = more alike; 0 for ``Matches.empty()``."""

    def inliers(self, f1: LocalFeatures, f2: LocalFeatures, matches: Matches) -> np.ndarray | None:
        """bool (M,): the matches the score counts (drawn by ``reid-engine explain``, weighted by
        distinctiveness), or None when the scorer has no such set (the default): then every
        match counts."""
        return None


class Embedder(ABC):
    """Kind ``embedder``: one global vector per photo, for the shortlist.

    ``input`` says what ``embed`` and ``fit`` take: ``"image"`` (LoadedImage) or ``"local"``
    (LocalFeatures of the extractor named in ``extractor``; "" = the first pipeline's).
    An embedder fitted on the gallery overrides ``fit``, ``state`` and ``load_state``: the
    engine fits it once per gallery and stores its state in the gallery database.
    """

    input: Literal["image", "local"] = "image"
    extractor: str = ""

    @abstractmethod
    def embed(self, items: Sequence[Any]) -> np.ndarray:
        """``items`` (LoadedImage or LocalFeatures, see ``input``) → float32 (len(items), D), rows
        L2-normalised."""

    @property
    def needs_fit(self) -> bool:
        """Whether the engine must ``fit`` it on the gallery first: True when ``fit`` is overridden."""
        return type(self).fit is not Embedder.fit

    def fit(self, items: Sequence[Any]) -> None:
        """Learn from the gallery's ``items``; this default learns nothing."""

    def state(self) -> dict[str, np.ndarray]:
        """What ``fit`` learnt, as named arrays (stored in the gallery database); {} by default."""
        return {}

    @property
    def loads_state(self) -> bool:
        """Whether ``load_state`` takes a stored state: True when ``load_state`` is overridden."""
        return type(self).load_state is not Embedder.load_state

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        """Take a state ``state()`` gave before. This default keeps no state: it accepts only {}."""
        if state:
            raise NotImplementedError(f"{type(self).__name__} keeps no state to load")


class Preprocessor(ABC):
    """Kind ``preprocessor``: a change to a photo before features are extracted."""

    thread_safe: bool = False  # as for Extractor

    @abstractmethod
    def __call__(self, image: LoadedImage) -> LoadedImage:
        """A new LoadedImage (e.g. ``dataclasses.replace(image, rgb=...)``, rgb uint8 (H, W, 3));
        ``image`` itself is never changed."""


class Segmenter(ABC):
    """Kind ``segmenter``: where the animals are. ``model_id`` names what ``probability``
    depends on beyond the plugin's version (the engine caches the map under it)."""

    model_id: str = ""
    thread_safe: bool = False  # as for Extractor

    @abstractmethod
    def probability(self, image: LoadedImage) -> np.ndarray:
        """Foreground probability, float (H, W) in [0, 1] at the photo's size."""

    @abstractmethod
    def clean(self, prob: np.ndarray) -> list[np.ndarray]:
        """Probability float (h, w) → the animals' masks, bool (h, w) each, largest first; []
        when none. Works at whatever size ``prob`` has."""


class DatasetLoader(ABC):
    """Kind ``dataset``: reads a manifest (CSV file, folder...) into image records."""

    @abstractmethod
    def can_load(self, path: Path) -> bool:
        """Whether ``path`` is in this loader's format (cheap: no full read)."""

    @abstractmethod
    def load(self, path: Path, role: str) -> Manifest:
        """The records of ``path``; ``role`` is ``"gallery"`` or ``"query"``. Problems raise
        :class:`ManifestError` naming the file, the line or column, and the fix."""
