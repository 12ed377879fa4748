"""Every hook a reid-engine plugin can implement, in one place.

A plugin module implements one or more ``register_*`` hooks. Each is handed a ``register``
callback and calls it once per plugin it provides, with a :class:`~reid_engine.registry.spec.PluginSpec`
(name, version, config dataclass, factory). The factory's result is an instance of the kind's
base class in :mod:`reid_engine.plugin`, the one module a plugin imports (its docstring is the
plugin author's guide). The engine owns the name → factory table; a module never touches the
plugin manager. Example (a third-party matcher)::

    from dataclasses import dataclass
    from reid_engine.plugin import Matcher, PluginSpec, hookimpl

    @dataclass(frozen=True)
    class MyConfig:
        threshold: float = 0.8

    class MyMatcher(Matcher):
        ...  # match(f1, f2) -> Matches

    @hookimpl
    def register_matchers(register):
        register(PluginSpec(name="my-matcher", kind="matcher", version="1.0",
                            config_cls=MyConfig, build=lambda config, device: MyMatcher(config)))

and in the distribution's ``pyproject.toml``::

    [project.entry-points."reid_engine.plugins"]
    my-matcher = "my_package.my_module"

A factory result that does not subclass the base class (an older, duck-typed plugin) still
works: the engine wraps it, and the optional abilities it lacks take the base class defaults.
"""

from __future__ import annotations

from collections.abc import Callable
import pluggy

from .spec import KINDS, PluginSpec

PROJECT = "reid_engine"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

# what a ``register_*`` hook is handed (``reid_engine.plugin.Register``)
Register = Callable[["PluginSpec"], None]


@hookspec
def register_embedders(register: Register) -> None:
    """Provide global embedders (kind ``embedder``).

    Factory result: a :class:`reid_engine.plugin.Embedder`: ``embed(items) -> float32 (N, D)``
    with L2-normalised rows, where ``items`` are :class:`LoadedImage` (``input = "image"``) or
    :class:`LocalFeatures` (``input = "local"``, the embedder then names its extractor in
    ``extractor``). Optional: ``fit(items)`` (the engine fits when ``needs_fit``: ``fit`` is
    overridden), ``state() -> dict[str, ndarray]`` and ``load_state(state)`` for fitted models
    (``loads_state``: ``load_state`` is overridden).
    """


@hookspec
def register_extractors(register: Register) -> None:
    """Provide local feature extractors (kind ``extractor``).

    Factory result: a :class:`reid_engine.plugin.Extractor`: ``extract(image: LoadedImage) ->
    LocalFeatures``; keypoints only inside ``image.mask`` when one is given; an image without
    keypoints returns ``LocalFeatures.empty(dim, (H, W))``, never raises. No optional abilities.
    """


@hookspec
def register_matchers(register: Register) -> None:
    """Provide matchers (kind ``matcher``).

    Factory result: a :class:`reid_engine.plugin.Matcher`: ``match(f1: LocalFeatures, f2:
    LocalFeatures) -> Matches``; empty features give ``Matches.empty()``. Optional:
    ``match_many(firsts, seconds) -> list[Matches]`` for many pairs at once (batched on a GPU,
    spread over threads); the default calls ``match`` pair by pair.
    """


@hookspec
def register_scorers(register: Register) -> None:
    """Provide pair scorers (kind ``scorer``).

    Factory result: a :class:`reid_engine.plugin.Scorer`: ``score(f1, f2, matches) -> float``
    (≥ 0, higher = more alike). Optional: ``inliers(f1, f2, matches) -> bool (M,)``, the matches
    the score counts (drawn by ``explain``, weighted by distinctiveness); the default returns
    None: no inlier set, every match counts.
    """


@hookspec
def register_preprocessors(register: Register) -> None:
    """Provide preprocessors (kind ``preprocessor``).

    Factory result: a :class:`reid_engine.plugin.Preprocessor`, a callable ``(LoadedImage) ->
    LoadedImage`` that never changes its input. No optional abilities.
    """


@hookspec
def register_segmenters(register: Register) -> None:
    """Provide segmenters (kind ``segmenter``).

    Factory result: a :class:`reid_engine.plugin.Segmenter` with
    ``probability(image: LoadedImage) -> float ndarray (H, W)`` in [0, 1] (the engine caches it per
    photo, keyed by the plugin's version and its ``model_id`` attribute, "" by default), and
    ``clean(prob: float ndarray (h, w)) -> list[bool ndarray (h, w)]``: the animals, largest
    first ([] when none), at whatever size ``prob`` has.
    """


@hookspec
def register_datasets(register: Register) -> None:
    """Provide dataset adapters (kind ``dataset``).

    Factory result: a :class:`reid_engine.plugin.DatasetLoader` with ``can_load(path) -> bool``
    and ``load(path, role) -> Manifest`` (``role`` is ``"gallery"`` or ``"query"``).
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
assert tuple(HOOK_KINDS.values()) == KINDS, "one register_* hook per plugin kind, in spec.KINDS's order"
