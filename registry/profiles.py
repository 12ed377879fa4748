"""Profiles: the whole method for a species, read from TOML and validated.

``registry/profiles/NAME.toml`` ships with the engine; ``--profile FILE`` reads any file.
Unknown tables, unknown keys and bad values are :class:`ConfigError` naming the file, the key
and the choices. Plugin options are checked later against each plugin's config dataclass.
"""

from __future__ import annotations

import dataclasses
import shlex
import tomllib
import typing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from .spec import ConfigError, coerce_value

PROFILE_PACKAGE = "reid_engine.registry"
FALLBACK_SPECIES = "generic"


@dataclass(frozen=True)
class PluginRef:
    """A plugin by name with its options (checked against the plugin's config dataclass)."""

    plugin: str
    options: tuple[tuple[str, Any], ...] = ()

    @property
    def options_dict(self) -> dict[str, Any]:
        return dict(self.options)


@dataclass(frozen=True)
class ImageSettings:
    """How photos are decoded: longer side is capped at ``max_side`` px on load."""

    max_side: int = 1600
    min_side: int = 32

    def __post_init__(self) -> None:
        if not 1 <= self.min_side <= self.max_side:
            raise ValueError(f"min_side ({self.min_side}) must be at least 1 and at most max_side ({self.max_side})")


@dataclass(frozen=True)
class ShortlistSettings:
    """Global-embedding shortlist: top ``top_b`` gallery images per query by cosine.

    With ``identity_pooling`` an image's similarity is the max of its own and its identity's
    pooled embedding (pooled = the embedder run over all of the identity's images, e.g. one
    Fisher vector over all their local descriptors).

    With ``screen`` (the name of one of the profile's ``[[pipelines]]``, a cheap one) the
    shortlist is two-staged: that pipeline first scores each query against the embedding's top
    ``screen_b`` gallery images (0: the whole gallery), and the ``top_b`` images kept are those
    best by reciprocal-rank fusion of the embedding's ranking and the screen's (k = 60); the
    other pipelines score only those, the screen's scores of them are reused.
    """

    embedder: PluginRef = PluginRef("fisher-vector")
    top_b: int = 50
    identity_pooling: bool = True
    screen: str = ""
    screen_b: int = 0


@dataclass(frozen=True)
class CalibrationSettings:
    """Raw pair score → probability: ``1 / (1 + exp(-(score - midpoint) / width))``."""

    midpoint: float = 10.0
    width: float = 3.0


@dataclass(frozen=True)
class DistinctivenessSettings:
    """Weight each counted match by how distinctive it is (engine/distinctiveness.py).

    per_image   strongest features of each gallery image kept in the fitted sample
    neighbours  nearest sample features looked up per query feature
    """

    per_image: int = 128
    neighbours: int = 10


@dataclass(frozen=True)
class PipelineSettings:
    """One local pipeline: extractor → matcher → scorer, with its fusion weight; with
    ``distinctiveness`` the score is the distinctiveness-weighted sum of the matches the scorer counts."""

    name: str
    extractor: PluginRef
    matcher: PluginRef
    scorer: PluginRef
    weight: float = 1.0
    calibration: CalibrationSettings = CalibrationSettings()
    distinctiveness: DistinctivenessSettings | None = None


@dataclass(frozen=True)
class SegmentSettings:
    """Where the animal is (engine/segmentation.py). Manifest masks and boxes always win.

    segmenter     plugin that finds animals (e.g. ``isnet``); None: only manifest masks
    instance      several animals in a photo: ``largest``, ``central`` (centroid nearest the
                  centre) or ``each`` (every animal in a query photo is its own query; gallery
                  photos use the largest)
    min_coverage  a chosen mask covering less of the photo than this is not trusted
    fallback      then: ``whole`` photo, or ``centre-box`` (the middle ``centre_box`` of each side)
    crop          crop to the mask's box (+ ``crop_margin`` of its size on each side) ...
    crop_side     ... resized so its longer side is this many px (0: keep the decoded pixels);
                  with crop, photos are decoded at up to ``max(image.max_side, 2 * crop_side)``
    """

    segmenter: PluginRef | None = None
    instance: Literal["largest", "central", "each"] = "largest"
    min_coverage: float = 0.02
    fallback: Literal["whole", "centre-box"] = "whole"
    centre_box: float = 0.8
    crop: bool = False
    crop_margin: float = 0.05
    crop_side: int = 0


@dataclass(frozen=True)
class DecisionSettings:
    """Identity aggregation, the known/new threshold on the fused probability, and whether the
    photos of one query sequence are identified together (``sequences``: off, mean or max of
    the photos' identity probabilities; see reid_engine.decision)."""

    aggregate: Literal["max", "sum"] = "max"
    threshold: float = 0.5
    sequences: Literal["off", "mean", "max"] = "off"


@dataclass(frozen=True)
class TrainedEmbedderSettings:
    """A re-ID embedder trained on the user's gallery (``reid-engine train embedder``).

    use          ``when-trained``: shortlist with it and fuse its cosine as evidence when the
                 gallery database holds one for this profile (else the ``[shortlist]``
                 embedder, with a notice naming the command); ``never``: ignore it
    embedder     the plugin serving it (``trained-embedder``; options ``runtime``, ``model``...)
    shortlist    true: its cosine also picks the shortlist, instead of the ``[shortlist]``
                 embedder; false: the ``[shortlist]`` embedder keeps picking the candidates
                 and the trained cosine is evidence in fusion only (where a weak embedding
                 would lose good candidates that a wide list keeps)
    weight       fusion weight of its cosine beside the ``[[pipelines]]`` (before ``calibrate``)
    calibration  its cosine → probability (logistic), until ``reid-engine calibrate`` fits one
    backbone, image_size, epochs, flip, method (arcface, landmark-id, dve): the defaults of ``train embedder`` for this
                 species (``flip``: horizontal flips are identity-preserving, i.e. left and
                 right sides look alike; false for nyala and seals)
    """

    use: Literal["when-trained", "never"] = "when-trained"
    embedder: PluginRef = PluginRef("trained-embedder")
    shortlist: bool = True
    weight: float = 1.0
    calibration: CalibrationSettings = CalibrationSettings(midpoint=0.5, width=0.08)
    method: Literal["arcface", "landmark-id", "dve"] = "arcface"
    backbone: str = "tf_efficientnet_lite0"
    image_size: int = 224
    epochs: int = 12
    flip: bool = False


@dataclass(frozen=True)
class RerankSettings:
    """NORPPA's re-evaluation of the best candidates by their geometrically consistent regions.

    For each query, the ``top_k`` shortlisted gallery photos that ``pipeline`` scores highest
    are matched again by it; the Fisher vectors of only the query's and the gallery photo's
    inlier descriptors (the pipeline scorer's ``inliers()``: RANSAC inliers) are computed with
    the shortlist's fitted vocabulary, and their cosine is one more evidence source
    (``inlier-fisher``), fused with ``weight`` and ``calibration`` (logistic, until
    ``reid-engine calibrate`` fits one). Pairs outside a query's top ``top_k`` are not scored;
    pairs with fewer than ``min_inliers`` inliers score 0.
    Needs the ``[shortlist]`` embedder to be ``fisher-vector`` over that pipeline's extractor.
    """

    pipeline: str
    top_k: int = 10
    min_inliers: int = 4
    weight: float = 1.0
    calibration: CalibrationSettings = CalibrationSettings(midpoint=0.4, width=0.1)

    def __post_init__(self) -> None:
        if self.top_k < 1:
            raise ValueError(f"top_k must be at least 1, got {self.top_k}")
        if self.min_inliers < 1:
            raise ValueError(f"min_inliers must be at least 1, got {self.min_inliers}")
        if self.weight < 0:
            raise ValueError(f"weight must be ≥ 0, got {self.weight}")


# Where a Profile field comes from in the TOML file (the field's metadata "toml"): a key of the
# [profile] table, or a top-level table of its own (their order is that of the "allowed keys"
# messages); a field without it (source) is not in the file. The keys allowed in every table
# are the fields of its dataclass: nothing else lists them.
_HEAD = {"toml": "profile"}
_TABLE = {"toml": "table"}


@dataclass(frozen=True)
class Profile:
    name: str = field(metadata=_HEAD)
    description: str = field(metadata=_HEAD)
    source: str
    image: ImageSettings = field(default=ImageSettings(), metadata=_TABLE)
    preprocess: tuple[PluginRef, ...] = field(default=(), metadata=_TABLE)
    segment: SegmentSettings | None = field(default=None, metadata=_TABLE)
    shortlist: ShortlistSettings = field(default=ShortlistSettings(), metadata=_TABLE)
    trained_embedder: TrainedEmbedderSettings | None = field(default=None, metadata=_TABLE)
    pipelines: tuple[PipelineSettings, ...] = field(default=(), metadata=_TABLE)
    rerank: RerankSettings | None = field(default=None, metadata=_TABLE)
    decision: DecisionSettings = field(default=DecisionSettings(), metadata=_TABLE)
    species: tuple[str, ...] = field(default=(), metadata=_HEAD)

    @property
    def uses_trained_embedder(self) -> bool:
        """Whether runs use a model of `train embedder` when the database holds one: a
        ``[trained_embedder]`` table that does not say ``use = "never"``."""
        return self.trained_embedder is not None and self.trained_embedder.use != "never"


# ------------------------------------------------------------------------------------------
def _allowed_keys(cls: type, *, exclude: Any = ()) -> list[str]:
    """The keys a TOML table read into dataclass ``cls`` may hold: its fields, in order (less ``exclude``)."""
    return [f.name for f in dataclasses.fields(cls) if f.name not in exclude]


def _required_keys(cls: type) -> list[str]:
    """The fields of ``cls`` without a default: keys its TOML table must hold."""
    return [f.name for f in dataclasses.fields(cls)
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]


def _profile_keys(where: str) -> list[str]:
    """Profile fields read from ``where``: "profile" (keys of the [profile] table) or "table" (top-level tables)."""
    return [f.name for f in dataclasses.fields(Profile) if f.metadata.get("toml") == where]


def _check_keys(table: dict, allowed: list[str], where: str) -> None:
    unknown = sorted(set(table) - set(allowed))
    if unknown:
        raise ConfigError(
            f"{where}: unknown key {', '.join(map(repr, unknown))}; allowed keys: {', '.join(allowed)}"
        )


def _settings(cls: type, table: Any, where: str, **fixed: Any) -> Any:
    """Read the TOML table of ``cls``; ``fixed`` are fields already read (and not allowed as keys)."""
    if not isinstance(table, dict):
        raise ConfigError(f"{where}: expected a table, got {table!r}")
    _check_keys(table, _allowed_keys(cls, exclude=fixed), where)
    hints = typing.get_type_hints(cls)
    values = {k: coerce_value(v, hints[k], f"{where}.{k}") for k, v in table.items()}
    try:
        return cls(**values, **fixed)
    except ValueError as exc:  # the settings' own checks (__post_init__): found now, not after hours of work
        raise ConfigError(f"{where}: {exc}; fix the profile") from None


def _plugin_ref(value: Any, where: str) -> PluginRef:
    if isinstance(value, str):
        return PluginRef(value)
    if not isinstance(value, dict) or "plugin" not in value:
        raise ConfigError(f"{where}: expected a plugin name or a table with a 'plugin' key, got {value!r}")
    options = {k: v for k, v in value.items() if k != "plugin"}
    return PluginRef(str(value["plugin"]), tuple(sorted(options.items())))


def _segment_settings(table: Any, where: str) -> SegmentSettings:
    if not isinstance(table, dict):
        raise ConfigError(f"{where}: expected a table, got {table!r}")
    table = dict(table)
    segmenter = _plugin_ref(table.pop("segmenter"), f"{where}.segmenter") if "segmenter" in table else None
    s = _settings(SegmentSettings, table, where, segmenter=segmenter)
    if not 0.0 <= s.min_coverage < 1.0:
        raise ConfigError(f"{where}.min_coverage: must lie in [0, 1), got {s.min_coverage}")
    if not 0.0 < s.centre_box <= 1.0:
        raise ConfigError(f"{where}.centre_box: must lie in (0, 1], got {s.centre_box}")
    if not 0.0 <= s.crop_margin <= 1.0:
        raise ConfigError(f"{where}.crop_margin: must lie in [0, 1], got {s.crop_margin}")
    if s.crop_side < 0 or 0 < s.crop_side < 64:
        raise ConfigError(f"{where}.crop_side: 0 (keep the decoded pixels) or at least 64 px, got {s.crop_side}")
    return s


def _calibration(table: Any, where: str) -> CalibrationSettings:
    """The ``calibration`` table of the table at ``where`` (a pipeline, [trained_embedder], [rerank])."""
    calibration = _settings(CalibrationSettings, table, f"{where}.calibration")
    if calibration.width <= 0:
        raise ConfigError(f"{where}.calibration.width: must be positive")
    return calibration


def _rerank_settings(table: Any, where: str, pipelines: set[str]) -> RerankSettings:
    if not isinstance(table, dict):
        raise ConfigError(f"{where}: expected a table, got {table!r}")
    table = dict(table)
    fixed: dict[str, Any] = {}
    if "calibration" in table:
        fixed["calibration"] = _calibration(table.pop("calibration"), where)
    if "pipeline" not in table:
        raise ConfigError(f"{where}: needs pipeline = the name of one of the profile's [[pipelines]] "
                          "(whose inliers are re-embedded)")
    rerank = _settings(RerankSettings, table, where, **fixed)
    if rerank.pipeline not in pipelines:
        raise ConfigError(f"{where}.pipeline: {rerank.pipeline!r} is not one of the profile's [[pipelines]] "
                          f"({', '.join(sorted(pipelines)) or 'it has none'}); name one of them or remove [rerank]")
    return rerank


def _trained_embedder_settings(table: Any, where: str) -> TrainedEmbedderSettings:
    if not isinstance(table, dict):
        raise ConfigError(f"{where}: expected a table, got {table!r}")
    table = dict(table)
    fixed: dict[str, Any] = {}
    if "embedder" in table:
        fixed["embedder"] = _plugin_ref(table.pop("embedder"), f"{where}.embedder")
    if "calibration" in table:
        fixed["calibration"] = _calibration(table.pop("calibration"), where)
    s = _settings(TrainedEmbedderSettings, table, where, **fixed)
    if s.weight < 0:
        raise ConfigError(f"{where}.weight: must be ≥ 0")
    if s.image_size < 32 or s.epochs < 0:
        raise ConfigError(f"{where}: image_size must be at least 32 and epochs at least 0")
    return s


def parse_profile(data: dict, source: str) -> Profile:
    """Validate a parsed TOML document into a :class:`Profile`."""
    _check_keys(data, ["profile", *_profile_keys("table")], source)
    head = data.get("profile", {})
    _check_keys(head, _profile_keys("profile"), f"{source} [profile]")
    if "name" not in head:
        raise ConfigError(f"{source} [profile]: missing key 'name'")
    image = _settings(ImageSettings, data.get("image", {}), f"{source} [image]")
    preprocess = []
    for i, entry in enumerate(data.get("preprocess", [])):
        preprocess.append(_plugin_ref(entry, f"{source} [[preprocess]] #{i + 1}"))
    segment = _segment_settings(data["segment"], f"{source} [segment]") if "segment" in data else None
    sl = dict(data.get("shortlist", {}))
    where = f"{source} [shortlist]"
    _check_keys(sl, _allowed_keys(ShortlistSettings), where)
    embedder = _plugin_ref(sl.pop("embedder", "fisher-vector"), f"{where}.embedder")
    shortlist = _settings(ShortlistSettings, sl, where, embedder=embedder)
    if shortlist.top_b < 1:
        raise ConfigError(f"{where}.top_b: must be at least 1, got {shortlist.top_b}")
    if shortlist.screen_b < 0 or (0 < shortlist.screen_b < shortlist.top_b):
        raise ConfigError(f"{where}.screen_b: 0 (the whole gallery) or at least top_b ({shortlist.top_b}), "
                          f"got {shortlist.screen_b}")
    shortlist_where = where
    pipelines = []
    names: set[str] = set()
    for i, entry in enumerate(data.get("pipelines", [])):
        where = f"{source} [[pipelines]] #{i + 1}"
        if not isinstance(entry, dict):
            raise ConfigError(f"{where}: expected a table")
        _check_keys(entry, _allowed_keys(PipelineSettings), where)
        for key in _required_keys(PipelineSettings):
            if key not in entry:
                raise ConfigError(f"{where}: missing key {key!r}")
        name = str(entry["name"])
        if name in names:
            raise ConfigError(f"{where}: pipeline name {name!r} is used twice")
        names.add(name)
        calibration = _calibration(entry.get("calibration", {}), where)
        distinct = entry.get("distinctiveness", False)
        if distinct is True:
            distinct = DistinctivenessSettings()
        elif distinct is False:
            distinct = None
        else:
            distinct = _settings(DistinctivenessSettings, distinct, f"{where}.distinctiveness")
            if distinct.per_image < 1 or distinct.neighbours < 1:
                raise ConfigError(f"{where}.distinctiveness: per_image and neighbours must be at least 1")
        weight = coerce_value(entry.get("weight", 1.0), float, f"{where}.weight")
        if weight < 0:
            raise ConfigError(f"{where}.weight: must be ≥ 0")
        pipelines.append(
            PipelineSettings(
                name=name,
                extractor=_plugin_ref(entry["extractor"], f"{where}.extractor"),
                matcher=_plugin_ref(entry["matcher"], f"{where}.matcher"),
                scorer=_plugin_ref(entry["scorer"], f"{where}.scorer"),
                weight=weight,
                calibration=calibration,
                distinctiveness=distinct,
            )
        )
    if pipelines and sum(p.weight for p in pipelines) <= 0:
        raise ConfigError(f"{source} [[pipelines]]: the weights sum to zero")
    if shortlist.screen and shortlist.screen not in names:
        raise ConfigError(f"{shortlist_where}.screen: {shortlist.screen!r} is not one of the profile's "
                          f"[[pipelines]] ({', '.join(sorted(names)) or 'it has none'}); name one of them or remove it")
    rerank = _rerank_settings(data["rerank"], f"{source} [rerank]", names) if "rerank" in data else None
    decision = _settings(DecisionSettings, data.get("decision", {}), f"{source} [decision]")
    if not 0.0 <= decision.threshold <= 1.0:
        raise ConfigError(f"{source} [decision].threshold: must lie in [0, 1], got {decision.threshold}")
    species = coerce_value(head.get("species", []), tuple[str, ...], f"{source} [profile].species")
    trained = (_trained_embedder_settings(data["trained_embedder"], f"{source} [trained_embedder]")
               if "trained_embedder" in data else None)
    return Profile(
        name=str(head["name"]),
        description=str(head.get("description", "")),
        source=source,
        image=image,
        preprocess=tuple(preprocess),
        segment=segment,
        shortlist=shortlist,
        pipelines=tuple(pipelines),
        decision=decision,
        species=species,
        trained_embedder=trained,
        rerank=rerank,
    )


def load_profile_file(path: Path) -> Profile:
    """Read and validate a profile TOML file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: profile file not found")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None
    return parse_profile(data, str(path))


def builtin_profiles() -> dict[str, Path]:
    """Species name → path of each shipped profile."""
    folder = resources.files(PROFILE_PACKAGE) / "profiles"
    return {
        entry.name[: -len(".toml")]: Path(str(entry))
        for entry in folder.iterdir()
        if entry.name.endswith(".toml")
    }


def profile_argument(profile: Profile) -> str:
    """How a command names ``profile``: ``--species NAME`` for a shipped one, else ``--profile FILE``."""
    shipped = builtin_profiles().get(profile.name)
    return f"--species {profile.name}" if shipped is not None and str(shipped) == profile.source \
        else f"--profile {shlex.quote(profile.source)}"


def resolve_profile(species: str | None, profile_file: Path | None) -> tuple[Profile, str | None]:
    """The profile for a run and an optional notice (e.g. the generic fallback)."""
    if profile_file is not None:
        return load_profile_file(profile_file), None
    shipped = builtin_profiles()
    name = (species or FALLBACK_SPECIES).lower()
    if name in shipped:
        return load_profile_file(shipped[name]), None
    notice = (
        f"no profile for species {species!r} (shipped: {', '.join(sorted(shipped))}); "
        f"using the {FALLBACK_SPECIES!r} profile. Pass --profile FILE for a custom one."
    )
    return load_profile_file(shipped[FALLBACK_SPECIES]), notice
