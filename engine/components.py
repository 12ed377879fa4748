"""Turning a profile into working plugin objects (the engine never imports a plugin module)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from reid_engine.errors import UsageError
from reid_engine.plugin import Matcher
from reid_engine.plugin_adapters import adapt
from reid_engine.registry import PluginSpec, PluginTable, config_hash
from reid_engine.registry.profiles import ImageSettings, PluginRef, Profile
from reid_engine.threads import worker_count


@dataclass
class Built:
    """A plugin built from a profile entry: its spec, validated config, config hash and object."""

    spec: PluginSpec
    config: Any
    config_hash: str
    obj: Any

    @property
    def cache_id(self) -> tuple[str, str, str]:
        """(plugin name, version, config hash): what a cache key needs besides the image."""
        return (self.spec.name, self.spec.version, self.config_hash)


@dataclass
class Pipeline:
    name: str
    extractor: Built
    matcher: Built
    scorer: Built
    weight: float
    midpoint: float
    width: float
    distinctiveness: Any = None  # DistinctivenessSettings, or None: the scorer's score as it is


@dataclass
class Rerank:
    """The ``[rerank]`` evidence source (``reid_engine.scoring.rerank``): ``pipeline``'s inliers
    of each query's ``top_k`` pairs, re-embedded by the shortlist's Fisher vectors; fused like a
    pipeline (``name``, ``weight``, ``midpoint``, ``width``)."""

    pipeline: Pipeline
    top_k: int
    min_inliers: int
    weight: float
    midpoint: float
    width: float
    name: str = "inlier-fisher"


@dataclass
class Components:
    preprocessors: list[Built]
    embedder: Built
    embedder_extractor: Built | None
    pipelines: list[Pipeline]
    segmenter: Built | None = None
    view: str | None = None  # hash of what extractors see (decoding, [segment], preprocessors); None: the default
    trained: Built | None = None  # the trained re-ID embedder as a one-feature extractor (embedding/stored.py)
    rerank: Rerank | None = None
    device: str = "cpu"  # where the plugins run ("cpu", "cuda", "cuda:1"...)
    # the [segment] step per (database, settings) of this run (``inputs.views.segmentation_of``): one object, so the
    # views its workers chose are at hand when the run describes each photo's animal
    segmentations: list = field(default_factory=list, repr=False, compare=False)

    def sources(self) -> list[Pipeline | Rerank]:
        """The pair-level evidence sources fused by the decision: every pipeline, then ``[rerank]``'s."""
        return [*self.pipelines, *([self.rerank] if self.rerank is not None else [])]

    def extractors(self) -> list[Built]:
        """Distinct extractors (by cache id) the run needs, in profile order (the trained embedder last)."""
        seen: dict[tuple, Built] = {}
        for built in ([p.extractor for p in self.pipelines] + ([self.embedder_extractor] if self.embedder_extractor else [])
                      + ([self.trained] if self.trained else [])):
            seen.setdefault(built.cache_id, built)
        return list(seen.values())

    def feature_workers(self) -> int:
        """Photos to decode, segment and extract side by side: ``threads.worker_count()`` (one per
        ``--threads`` unless ``--workers`` says otherwise) when the plugins run on the CPU and every
        plugin a photo goes through says it is ``thread_safe``, else 1."""
        used = [*self.preprocessors, *([self.segmenter] if self.segmenter else []), *self.extractors()]
        return workers_for(self.device, [built.obj for built in used])

    def matching_workers(self, pipeline: Pipeline) -> int:
        """Pairs of ``pipeline`` to match and score side by side: ``threads.worker_count()`` when
        its matcher and scorer are ``thread_safe``, else 1 (also 1 when the matcher overrides
        ``match_many``: one that batches pairs itself, like LightGlue, is left to do so)."""
        matcher, scorer = pipeline.matcher.obj, pipeline.scorer.obj
        batches = type(matcher).match_many is not Matcher.match_many
        return 1 if batches else workers_for(self.device, [matcher, scorer])


def workers_for(device: str, objects: list) -> int:
    """Items to work on side by side through these plugin objects: ``threads.worker_count()`` on the
    CPU when every one says it is ``thread_safe``, else 1."""
    return worker_count() if device == "cpu" and all(_thread_safe(obj) for obj in objects) else 1


def _thread_safe(obj: object) -> bool:
    """A plugin object's ``thread_safe`` (False for engine-made objects and duck-typed plugins without one)."""
    return bool(getattr(obj, "thread_safe", False))


def build_plugin(table: PluginTable, kind: str, ref: PluginRef, device: str, where: str) -> Built:
    """Build one profile entry; an unknown plugin or a bad option is a UsageError (exit code 2) naming ``where``."""
    spec = table.get(kind, ref.plugin, where)  # UnknownPlugin
    config = spec.make_config(ref.options_dict, where)  # ConfigError
    try:
        obj = spec.build(config, device)
    except (ValueError, TypeError) as exc:
        raise UsageError(f"{where}: {kind} {ref.plugin!r} rejects its options: {exc}") from None
    return Built(spec, config, config_hash(config), adapt(kind, obj))  # duck-typed plugins: wrapped in the base API


def build_components(profile: Profile, table: PluginTable, device: str) -> Components:
    src = profile.source
    pre = [build_plugin(table, "preprocessor", ref, device, f"{src} [[preprocess]] #{i + 1}")
           for i, ref in enumerate(profile.preprocess)]
    segmenter = None
    if profile.segment is not None and profile.segment.segmenter is not None:
        segmenter = build_plugin(table, "segmenter", profile.segment.segmenter, device, f"{src} [segment].segmenter")
    pipelines = []
    for p in profile.pipelines:
        where = f"{src} [[pipelines]] {p.name!r}"
        pipelines.append(Pipeline(
            name=p.name,
            extractor=build_plugin(table, "extractor", p.extractor, device, f"{where}.extractor"),
            matcher=build_plugin(table, "matcher", p.matcher, device, f"{where}.matcher"),
            scorer=build_plugin(table, "scorer", p.scorer, device, f"{where}.scorer"),
            weight=p.weight, midpoint=p.calibration.midpoint, width=p.calibration.width,
            distinctiveness=p.distinctiveness,
        ))
    # what an extractor sees depends on decoding, segmentation and preprocessing: fold them into
    # its cache id (the default view - no preprocessor, no [segment], default [image] settings -
    # leaves the id as it is)
    view = None
    if pre or profile.image != ImageSettings() or profile.segment is not None:
        segment = None if profile.segment is None else [
            dataclasses.asdict(profile.segment), segmenter.cache_id if segmenter else None]
        view = config_hash([b.cache_id for b in pre], profile.image.max_side, profile.image.min_side,
                           *([segment] if segment is not None else []))
        for p in pipelines:
            p.extractor.config_hash = config_hash(p.extractor.config_hash, view)
    embedder = build_plugin(table, "embedder", profile.shortlist.embedder, device, f"{src} [shortlist].embedder")
    embedder_extractor = None
    if embedder.obj.input == "local":
        name = embedder.obj.extractor
        if not name and pipelines:
            embedder_extractor = pipelines[0].extractor
        else:
            matching = [p.extractor for p in pipelines if p.extractor.spec.name == name]
            if matching:
                embedder_extractor = matching[0]
            else:
                embedder_extractor = build_plugin(table, "extractor", PluginRef(name or "hessaff-rootsift"), device,
                                                  f"{src} [shortlist].embedder.extractor")
                if view is not None:
                    embedder_extractor.config_hash = config_hash(embedder_extractor.config_hash, view)
    rerank = None
    if profile.rerank is not None:
        r = profile.rerank
        of = next(p for p in pipelines if p.name == r.pipeline)
        if embedder.spec.name != "fisher-vector" or embedder_extractor is None \
                or embedder_extractor.cache_id != of.extractor.cache_id:
            raise UsageError(f"{src} [rerank]: the inliers of pipeline {r.pipeline!r} are re-embedded with the "
                             f"shortlist's Fisher vectors, so [shortlist].embedder must be fisher-vector over that pipeline's "
                             f"extractor ({of.extractor.spec.name} with the same options); got "
                             f"{embedder.spec.name!r}" + (f" over {embedder_extractor.spec.name!r}"
                                                          if embedder_extractor is not None else ""))
        rerank = Rerank(of, r.top_k, r.min_inliers, r.weight, r.calibration.midpoint, r.calibration.width)
    return Components(pre, embedder, embedder_extractor, pipelines, segmenter, view, rerank=rerank, device=device)
