"""Shared fixtures: tiny synthetic data sets and throw-away plugin distributions."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


def make_distribution(site: Path, dist: str, version: str, entry_points: dict[str, str],
                      modules: dict[str, str]) -> Path:
    """Write an installed-looking distribution (modules + dist-info) into ``site``."""
    site.mkdir(parents=True, exist_ok=True)
    for name, source in modules.items():
        (site / f"{name}.py").write_text(textwrap.dedent(source))
    info = site / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir(exist_ok=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    lines = "\n".join(f"{k} = {v}" for k, v in entry_points.items())
    (info / "entry_points.txt").write_text(f"[reid_engine.plugins]\n{lines}\n")
    return site


@pytest.fixture
def plugin_site(tmp_path, monkeypatch):
    """A folder on sys.path where tests put fake plugin distributions."""
    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.syspath_prepend(str(site))
    return site


@pytest.fixture(scope="session")
def seal_data(tmp_path_factory):
    """A tiny synthetic seal data set (4 known, 2 unknown individuals)."""
    from reid_engine.synthetic.seals import SealDatasetConfig, generate_seal_dataset

    root = tmp_path_factory.mktemp("seals")
    return generate_seal_dataset(root / "data", SealDatasetConfig(n_known=4, n_unknown=2, seed=3))


@pytest.fixture(scope="session")
def fast_profile(tmp_path_factory):
    """A small, fast profile (few keypoints, MNN matcher) for end-to-end tests."""
    path = tmp_path_factory.mktemp("profiles") / "fast.toml"
    path.write_text(textwrap.dedent("""
        [profile]
        name = "fast-test"
        description = "small and quick, for tests"

        [shortlist]
        embedder = { plugin = "fisher-vector", pca_dim = 16, n_components = 8, fit_descriptors = 5000 }
        top_b = 6

        [[pipelines]]
        name = "sift-mnn"
        extractor = { plugin = "hessaff-rootsift", resize = 384, max_keypoints = 300 }
        matcher = { plugin = "mnn", ratio = 0.9 }
        scorer = { plugin = "ransac-inliers" }
        calibration = { midpoint = 10.0, width = 3.0 }

        [decision]
        threshold = 0.5
    """))
    return path


def run_cli(*args: str, env: dict | None = None, cwd: Path | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    """Run ``reid-engine ARGS`` in a subprocess (the console script of this interpreter)."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-m", "reid_engine", *args], capture_output=True, text=True,
                          env=full_env, cwd=cwd, timeout=timeout)


def write_image(path: Path, array: np.ndarray, **save_kwargs) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, **save_kwargs)
    return path


def fast_profile_with(fast_profile: Path, folder: Path, name: str, tables: str) -> Path:
    """The fast profile renamed ``name``, with ``tables`` (TOML) before its pipelines, in ``folder``."""
    path = folder / f"{name}.toml"
    text = fast_profile.read_text().replace('name = "fast-test"', f'name = "{name}"')
    path.write_text(text.replace("\n[[pipelines]]", tables + "\n[[pipelines]]", 1))
    return path


def copy_manifest(src: Path, dst: Path, keep=lambda row: True, edit=lambda row: None) -> Path:
    """The rows of manifest ``src`` that ``keep`` accepts, changed in place by ``edit``, with
    absolute paths, written to ``dst``."""
    with open(src, newline="") as handle:
        rows = [r for r in csv.DictReader(handle) if keep(r)]
    for r in rows:
        for col in ("path", "mask_path"):
            if r.get(col):
                r[col] = str((src.parent / r[col]).resolve())
        edit(r)
    with open(dst, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return dst
