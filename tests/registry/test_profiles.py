"""Profile tables accept exactly the fields of their settings dataclasses; an unknown key is named."""

from __future__ import annotations

import copy
import dataclasses

import pytest

from reid_engine.registry import ConfigError
from reid_engine.registry.profiles import (
    CalibrationSettings,
    DecisionSettings,
    DistinctivenessSettings,
    ImageSettings,
    PipelineSettings,
    Profile,
    RerankSettings,
    SegmentSettings,
    ShortlistSettings,
    TrainedEmbedderSettings,
    builtin_profiles,
    load_profile_file,
    parse_profile,
    profile_argument,
)

FULL = {
    "profile": {"name": "p", "description": "d", "species": ["s"]},
    "image": {"max_side": 800},
    "preprocess": ["clahe"],
    "segment": {"segmenter": "isnet", "crop": True},
    "shortlist": {"embedder": "fisher-vector", "top_b": 5},
    "trained_embedder": {"use": "never", "calibration": {"midpoint": 0.5}},
    "pipelines": [{"name": "a", "extractor": "sift", "matcher": "mnn", "scorer": "match-count",
                   "calibration": {"width": 2.0}, "distinctiveness": {"per_image": 8}}],
    "rerank": {"pipeline": "a", "top_k": 5, "calibration": {"width": 0.2}},
    "decision": {"threshold": 0.4},
}
# the Profile fields read from the [profile] table (every other one but source is a table of its own)
HEAD = ["name", "description", "species"]


def _names(cls: type, *, without: tuple[str, ...] = ()) -> list[str]:
    return [f.name for f in dataclasses.fields(cls) if f.name not in without]


# (path to the table in FULL, the keys it allows - from the dataclass it is read into)
TABLES = [
    ((), ["profile"] + _names(Profile, without=("source", *HEAD))),
    (("profile",), [n for n in _names(Profile) if n in HEAD]),
    (("image",), _names(ImageSettings)),
    (("segment",), _names(SegmentSettings, without=("segmenter",))),  # read beside the others
    (("shortlist",), _names(ShortlistSettings)),
    (("trained_embedder",), _names(TrainedEmbedderSettings, without=("calibration",))),  # (it has one)
    (("trained_embedder", "calibration"), _names(CalibrationSettings)),
    (("pipelines", 0), _names(PipelineSettings)),
    (("pipelines", 0, "calibration"), _names(CalibrationSettings)),
    (("pipelines", 0, "distinctiveness"), _names(DistinctivenessSettings)),
    (("rerank",), _names(RerankSettings, without=("calibration",))),  # (it has one)
    (("rerank", "calibration"), _names(CalibrationSettings)),
    (("decision",), _names(DecisionSettings)),
]


def test_the_full_document_parses():
    profile = parse_profile(copy.deepcopy(FULL), "p.toml")
    assert profile.image.max_side == 800 and profile.pipelines[0].distinctiveness.per_image == 8
    assert profile.trained_embedder.use == "never" and profile.segment.crop


@pytest.mark.parametrize("path, allowed", TABLES, ids=lambda v: ".".join(map(str, v)) if isinstance(v, tuple) else None)
def test_an_unknown_key_in_any_table_is_refused_naming_it_and_the_dataclass_fields(path, allowed):
    data = copy.deepcopy(FULL)
    table = data
    for step in path:
        table = table[step]
    table["colour_of_the_sky"] = "blue"
    with pytest.raises(ConfigError) as info:
        parse_profile(data, "p.toml")
    message = str(info.value)
    assert message.startswith("p.toml")
    assert f"unknown key 'colour_of_the_sky'; allowed keys: {', '.join(allowed)}" in message


def test_each_settings_field_is_a_key_and_the_top_level_tables_are_the_profile_fields():
    top = TABLES[0][1]
    assert set(top) - {"profile"} == {f.name for f in dataclasses.fields(Profile)} - {"source", *HEAD}
    assert set(FULL) == set(top)


def test_shipped_profiles_still_parse():
    for name, path in builtin_profiles().items():
        assert load_profile_file(path).name


def test_a_command_names_a_shipped_profile_by_species_and_any_other_by_its_file(tmp_path):
    shipped = builtin_profiles()["nyala"]
    assert profile_argument(load_profile_file(shipped)) == "--species nyala"
    copy_of_it = tmp_path / "nyala.toml"  # same name, not the shipped file
    copy_of_it.write_text(shipped.read_text())
    assert profile_argument(load_profile_file(copy_of_it)) == f"--profile {copy_of_it}"
