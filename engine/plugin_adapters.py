"""Duck-typed plugin objects behind the base classes of :mod:`reid_engine.plugin`.

``adapt(kind, obj)`` returns ``obj`` itself when it is an instance of its kind's base class
(every built-in plugin is), else a thin wrapper that is one: the wrapper forwards the kind's
methods to ``obj``, fills in the optional abilities ``obj`` lacks with the base class's
defaults, and forwards any other attribute (``model_sha256``, ``config``...) to ``obj``. This
is the only place the engine asks what a plugin object can do; everywhere else it calls the
base-class methods. ``build_plugin`` (components.py) applies it to every object a plugin's
factory returns; it is idempotent, so functions that also take hand-made plugin objects
(``scoring.pairs.match_pairs``, ``match_pair``, ``distinctiveness.weighted_score``) apply it
again at no cost.
"""

from __future__ import annotations

from typing import Any

from reid_engine.plugin import DatasetLoader, Embedder, Extractor, Matcher, Preprocessor, Scorer, Segmenter


class _Wrapper:
    """Holds the duck-typed plugin object as ``wrapped``; attributes outside the base-class API
    are looked up on it."""

    def __init__(self, wrapped: Any) -> None:
        self.__dict__["wrapped"] = wrapped

    def __getattr__(self, name: str) -> Any:  # only called for names the wrapper lacks
        try:
            wrapped = self.__dict__["wrapped"]
        except KeyError:
            raise AttributeError(name) from None
        return getattr(wrapped, name)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.wrapped!r})"

    @property
    def thread_safe(self) -> bool:  # the base classes' False would hide the wrapped object's own
        return bool(getattr(self.__dict__["wrapped"], "thread_safe", False))


class LegacyExtractor(_Wrapper, Extractor):
    def extract(self, image):
        return self.wrapped.extract(image)


class LegacyMatcher(_Wrapper, Matcher):
    def match(self, f1, f2):
        return self.wrapped.match(f1, f2)

    def match_many(self, firsts, seconds):
        many = getattr(self.wrapped, "match_many", None)
        return many(firsts, seconds) if callable(many) else super().match_many(firsts, seconds)


class LegacyScorer(_Wrapper, Scorer):
    def score(self, f1, f2, matches):
        return self.wrapped.score(f1, f2, matches)

    def inliers(self, f1, f2, matches):
        find = getattr(self.wrapped, "inliers", None)
        return find(f1, f2, matches) if callable(find) else None


class LegacyEmbedder(_Wrapper, Embedder):
    @property
    def input(self):
        return getattr(self.wrapped, "input", "image")

    @property
    def extractor(self):
        return getattr(self.wrapped, "extractor", "")

    @property
    def needs_fit(self) -> bool:
        return hasattr(self.wrapped, "fit")

    @property
    def loads_state(self) -> bool:
        return hasattr(self.wrapped, "load_state")

    def embed(self, items):
        return self.wrapped.embed(items)

    def fit(self, items) -> None:
        if hasattr(self.wrapped, "fit"):
            self.wrapped.fit(items)

    def state(self):
        return self.wrapped.state() if hasattr(self.wrapped, "state") else super().state()

    def load_state(self, state) -> None:
        if hasattr(self.wrapped, "load_state"):
            self.wrapped.load_state(state)
        else:
            super().load_state(state)


class LegacyPreprocessor(_Wrapper, Preprocessor):
    def __call__(self, image):
        return self.wrapped(image)


class LegacySegmenter(_Wrapper, Segmenter):
    @property
    def model_id(self):
        return getattr(self.wrapped, "model_id", "")

    def probability(self, image):
        return self.wrapped.probability(image)

    def clean(self, prob):
        return self.wrapped.clean(prob)


class LegacyDatasetLoader(_Wrapper, DatasetLoader):
    def can_load(self, path):
        return self.wrapped.can_load(path)

    def load(self, path, role):
        return self.wrapped.load(path, role)


# plugin kind -> (base class, wrapper for objects that do not subclass it)
ADAPTERS: dict[str, tuple[type, type]] = {
    "extractor": (Extractor, LegacyExtractor),
    "matcher": (Matcher, LegacyMatcher),
    "scorer": (Scorer, LegacyScorer),
    "embedder": (Embedder, LegacyEmbedder),
    "preprocessor": (Preprocessor, LegacyPreprocessor),
    "segmenter": (Segmenter, LegacySegmenter),
    "dataset": (DatasetLoader, LegacyDatasetLoader),
}


def adapt(kind: str, obj: Any) -> Any:
    """``obj`` as an instance of the base class of plugin kind ``kind`` (itself when it is one)."""
    base, wrapper = ADAPTERS[kind]
    return obj if isinstance(obj, base) else wrapper(obj)
