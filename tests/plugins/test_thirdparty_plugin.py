"""The third-party path: a separate distribution with an entry point, installed with pip,
provides a matcher that a profile then uses in a real run. Nothing registers it by hand."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import textwrap

import pytest

from tests.conftest import REPO, run_cli


@pytest.fixture(scope="module")
def installed_plugin(tmp_path_factory):
    target = tmp_path_factory.mktemp("thirdparty-site")
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index", "--no-build-isolation",
         "--target", str(target), str(REPO / "tests" / "thirdparty_plugin")],
        check=True, capture_output=True, text=True, timeout=300,
    )
    assert any(p.name.startswith("reid_thirdparty_matcher-0.3.1") and p.suffix == ".dist-info" for p in target.iterdir())
    return target


def test_plugins_lists_the_third_party_matcher(installed_plugin):
    result = run_cli("plugins", env={"PYTHONPATH": str(installed_plugin), "COLUMNS": "250"})
    assert result.returncode == 0, result.stderr
    line = next(line for line in result.stdout.splitlines() if "cosine-threshold" in line)
    assert "matcher" in line and "0.3.1" in line and "reid-thirdparty-matcher" in line


def test_a_profile_uses_the_third_party_matcher_in_a_real_run(installed_plugin, seal_data, tmp_path):
    profile = tmp_path / "thirdparty.toml"
    profile.write_text(textwrap.dedent("""
        [profile]
        name = "thirdparty"
        description = "uses a matcher from another distribution"

        [shortlist]
        embedder = { plugin = "fisher-vector", pca_dim = 16, n_components = 8, fit_descriptors = 5000 }
        top_b = 4

        [[pipelines]]
        name = "cosine"
        extractor = { plugin = "hessaff-rootsift", resize = 384, max_keypoints = 300 }
        matcher = { plugin = "cosine-threshold", min_cosine = 0.85 }
        scorer = { plugin = "match-count" }
    """))
    out = tmp_path / "out"
    result = run_cli("run", "--profile", str(profile), "--gallery", str(seal_data.gallery_csv),
                     "--query", str(seal_data.query_csv), "--out", str(out), "--quiet",
                     env={"PYTHONPATH": str(installed_plugin)})
    assert result.returncode == 0, result.stderr
    with open(out / "ranking.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert rows
    summary = (out / "summary.json").read_text()
    assert json.loads(summary)["counts"]["pairs_scored"] > 0
    # the run really went through the plugin: without it the profile is refused
    missing = run_cli("run", "--profile", str(profile), "--query", str(seal_data.query_csv),
                      "--db", str(out / "gallery.db"), "--out", str(tmp_path / "out2"), "--quiet")
    assert missing.returncode == 2
    assert "cosine-threshold" in missing.stderr
