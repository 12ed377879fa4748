"""Plugin discovery through entry points: built-ins, broken plugins, clashes, lookups."""

from __future__ import annotations

import pytest

from reid_engine.registry import (
    KINDS,
    ConfigError,
    PluginClash,
    PluginTable,
    UnknownPlugin,
)
from tests.conftest import make_distribution

GOOD_MATCHER = """
from dataclasses import dataclass
from reid_engine.records import Matches
from reid_engine.registry import PluginSpec, hookimpl

@dataclass(frozen=True)
class Cfg:
    k: int = 3

@hookimpl
def register_matchers(register):
    register(PluginSpec(name="{name}", kind="matcher", version="2.0", config_cls=Cfg,
                        build=lambda config, device: None))
"""


def test_builtins_are_found_through_the_entry_point_group():
    table = PluginTable.discover()
    names = {(s.kind, s.name) for s in table.all()}
    for expected in [("embedder", "fisher-vector"), ("extractor", "hessaff-rootsift"), ("matcher", "mnn"),
                     ("matcher", "adalam"), ("scorer", "match-count"), ("scorer", "ransac-inliers"),
                     ("scorer", "confidence-sum"), ("preprocessor", "clahe"), ("dataset", "csv"), ("dataset", "folder")]:
        assert expected in names
    assert all(s.source.startswith("reid-engine ") for s in table.all())
    assert table.broken == []


def test_every_kind_has_a_hook():
    from reid_engine.registry.hookspecs import HOOK_KINDS

    assert sorted(HOOK_KINDS.values()) == sorted(KINDS)


def test_a_plugin_that_fails_to_import_is_reported_and_the_others_work(plugin_site):
    make_distribution(plugin_site, "broken-plugin", "1.0", {"broken": "broken_plugin_mod"},
                      {"broken_plugin_mod": "import does_not_exist_anywhere\n"})
    make_distribution(plugin_site, "good-plugin", "1.0", {"good": "good_plugin_mod"},
                      {"good_plugin_mod": GOOD_MATCHER.format(name="good-matcher")})
    table = PluginTable.discover()
    assert [b.entry_point for b in table.broken] == ["broken"]
    assert "does_not_exist_anywhere" in table.broken[0].error
    assert "broken-plugin 1.0" in table.broken[0].source
    assert table.get("matcher", "good-matcher").version == "2.0"
    assert table.get("matcher", "mnn").name == "mnn"


def test_misspelt_hook_is_a_broken_plugin(plugin_site):
    make_distribution(plugin_site, "typo-plugin", "1.0", {"typo": "typo_plugin_mod"}, {"typo_plugin_mod": """
        from reid_engine.registry import hookimpl

        @hookimpl
        def register_matcher(register):
            pass
    """})
    table = PluginTable.discover()
    assert [b.entry_point for b in table.broken] == ["typo"]
    assert "register_matcher" in table.broken[0].error


def test_two_plugins_claiming_one_name_is_an_error_naming_both(plugin_site):
    make_distribution(plugin_site, "clash-plugin", "4.2", {"clash": "clash_plugin_mod"},
                      {"clash_plugin_mod": GOOD_MATCHER.format(name="mnn")})
    with pytest.raises(PluginClash) as info:
        PluginTable.discover()
    message = str(info.value)
    assert "'mnn'" in message and "clash-plugin 4.2" in message and "reid-engine" in message
    assert "REID_ENGINE_DISABLE_PLUGINS" in message


def test_a_plugin_can_be_disabled_by_entry_point_name(plugin_site, monkeypatch):
    make_distribution(plugin_site, "clash-plugin", "4.2", {"clash": "clash_plugin_mod2"},
                      {"clash_plugin_mod2": GOOD_MATCHER.format(name="mnn")})
    monkeypatch.setenv("REID_ENGINE_DISABLE_PLUGINS", "clash")
    assert "reid-engine" in PluginTable.discover().get("matcher", "mnn").source


def test_autoload_off_keeps_only_the_engines_own_plugins(plugin_site, monkeypatch):
    make_distribution(plugin_site, "good-plugin", "1.0", {"good": "good_plugin_mod3"},
                      {"good_plugin_mod3": GOOD_MATCHER.format(name="other-matcher")})
    monkeypatch.setenv("REID_ENGINE_DISABLE_PLUGIN_AUTOLOAD", "1")
    table = PluginTable.discover()
    assert "other-matcher" not in table.names("matcher")
    assert "mnn" in table.names("matcher")


def test_unknown_plugin_lists_the_choices():
    table = PluginTable.discover()
    with pytest.raises(UnknownPlugin) as info:
        table.get("matcher", "lightglue-x", "profile.toml [[pipelines]] #1")
    assert "profile.toml" in str(info.value) and "adalam" in str(info.value) and "mnn" in str(info.value)


def test_unknown_option_and_bad_type_are_config_errors():
    spec = PluginTable.discover().get("matcher", "mnn")
    with pytest.raises(ConfigError, match="'ratoi'.*ratio"):
        spec.make_config({"ratoi": 0.8})
    with pytest.raises(ConfigError, match="expected a number"):
        spec.make_config({"ratio": "high"})
    assert spec.make_config({"ratio": 1}).ratio == 1.0
