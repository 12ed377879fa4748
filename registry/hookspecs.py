"""Every hook a reid-engine plugin can implement, in one place.

A plugin module implements one or more ``register_*`` hooks. Each is handed a ``register``
callback and calls it once per plugin it provides, with a :class:`~reid_engine.registry.spec.PluginSpec`
(name, version, config dataclass, factory). The engine owns the name → factory table; a
module never touches the plugin manager. Example (a third-party matcher)::

    from dataclasses import dataclass
    from reid_engine.registry import hookimpl, PluginSpec

    @dataclass(frozen=True)
    class MyConfig:
        threshold: float = 0.8

    @hookimpl
    def register_matchers(register):
        register(PluginSpec(name="my-matcher", kind="matcher", version="1.0",
                            config_cls=MyConfig, build=lambda config, device: MyMatcher(config)))

and in the distribution's ``pyproject.toml``::

    [project.entry-points."reid_engine.plugins"]
    my-matcher = "my_package.my_module"
"""

from __future__ import annotations

from typing import Callable

import pluggy

PROJECT = "reid_engine"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

Register = Callable[["object"], None]


@hookspec
def register_embedders(register: Register) -> None:
    """Provide global embedders (kind ``embedder``).

    Factory result: an object with ``embed(items) -> float32 (N, D)`` with L2-normalised rows,
    where ``items`` are :class:`LoadedImage` (``input = "image"``) or :class:`LocalFeatures`
    (``input = "local"``, the embedder then names its extractor in ``extractor``); optional
    ``fit(items)``, ``state() -> dict[str, ndarray]`` and ``load_state(state)`` for fitted models.
    """


@hookspec
def register_extractors(register: Register) -> None:
    """Provide local feature extractors (kind ``extractor``).

    Factory result: an object with ``extract(image: LoadedImage) -> LocalFeatures``; keypoints
    only inside ``image.mask`` when one is given; an image without keypoints returns
    ``LocalFeatures.empty(dim)``, never raises.
    """


@hookspec
def register_matchers(register: Register) -> None:
    """Provide matchers (kind ``matcher``).

    Factory result: an object with ``match(f1: LocalFeatures, f2: LocalFeatures) -> Matches``;
    empty features give ``Matches.empty()``.
    """


@hookspec
def register_scorers(register: Register) -> None:
    """Provide pair scorers (kind ``scorer``).

    Factory result: an object with ``score(f1, f2, matches) -> float`` (≥ 0, higher = more alike).
    """


@hookspec
def register_preprocessors(register: Register) -> None:
    """Provide preprocessors (kind ``preprocessor``).

    Factory result: a callable ``(LoadedImage) -> LoadedImage`` that never changes its input.
    """


@hookspec
def register_segmenters(register: Register) -> None:
    """Provide segmenters (kind ``segmenter``).

    Factory result: an object with
    ``probability(image: LoadedImage) -> float ndarray (H, W)`` in [0, 1] (the engine caches it per
    photo, keyed by the plugin's version and its ``model_id`` attribute), and
    ``clean(prob: float ndarray (h, w)) -> list[bool ndarray (h, w)]``: the animals, largest
    first ([] when none), at whatever size ``prob`` has.
    """


@hookspec
def register_datasets(register: Register) -> None:
    """Provide dataset adapters (kind ``dataset``).

    Factory result: an object with ``can_load(path) -> bool`` and ``load(path, role) -> Manifest``
    (``role`` is ``"gallery"`` or ``"query"``).
    """


# hook name -> plugin kind it registers
HOOK_KINDS: dict[str, str] = {
    "register_embedders": "embedder",
    "register_extractors": "extractor",
    "register_matchers": "matcher",
    "register_scorers": "scorer",
    "register_preprocessors": "preprocessor",
    "register_segmenters": "segmenter",
    "register_datasets": "dataset",
}
KINDS: tuple[str, ...] = tuple(HOOK_KINDS.values())
