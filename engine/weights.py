"""Pretrained model weights, offline first: every file named in a manifest and checked by sha256.

``registry/weights.toml`` lists each weight: the file name kornia looks for in
``<torch hub dir>/checkpoints/``, its sha256 and size, its upstream URLs (kornia's order),
its licence and, for weights a dependency ships, where the installed package keeps a copy.

- :func:`weight_path` gives the verified file: the cache copy, else the package copy.
- :func:`import_files` installs files the user already has; any file name works, because a
  file is recognised by its sha256.
- :func:`fetch` downloads one, for machines with internet (or copies the package copy).
- :func:`status` says, for every weight, where it is or what is wrong with it.

A file whose sha256 differs from the manifest is never installed and never returned, and an
installed file is only ever replaced atomically (temp file + ``os.replace``) by a verified one.

Weights with ``sha256 = ""`` had no reference copy (``hardnet-liberty``). They are recognised
by their file name only and verified only by loading them; :func:`fetch` refuses them unless
``verify=False`` (``--no-verify``), and an installed copy is never replaced by another one.
"""

from __future__ import annotations

import hashlib
import http.client
import importlib.util
import os
import sys
import tempfile
import tomllib
import urllib.error
import urllib.request
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Iterable, Literal, NamedTuple
from urllib.parse import urlsplit

from reid_engine.errors import ReidError, UsageError

MANIFEST_PACKAGE = "reid_engine.registry"
MANIFEST_FILE = "weights.toml"
_CHUNK = 1 << 20
_MAX_UNVERIFIED_BYTES = 2 << 30  # a download with no known size stops here
_KEYS = {"name", "description", "file", "sha256", "size", "urls", "licence", "upstream", "package", "note"}
_REQUIRED = ("name", "description", "file", "sha256", "size", "urls", "licence", "upstream")


class WeightsManifestError(ReidError):
    """``weights.toml`` is malformed (a bug in the installed engine, not in the user's data)."""


class UnknownWeight(UsageError):
    """A weight name that is not in the manifest; the message lists the known ones."""


class MissingWeights(ReidError):
    """A weight is not installed; the message names where it was expected and how to install it."""

    def __init__(self, message: str, spec: WeightSpec, expected: Path):
        super().__init__(message)
        self.spec = spec
        self.expected = expected

    def __reduce__(self):
        """Picklable with its fields, so the error crosses a benchmark cell's process intact."""
        return (type(self), (str(self), self.spec, self.expected))


class CorruptWeights(ReidError):
    """A file has the wrong sha256 (damaged, truncated or another file); it is never loaded."""


class FetchError(ReidError):
    """No URL of a weight gave the expected file (offline, refused, or wrong content)."""


@dataclass(frozen=True)
class WeightSpec:
    """One entry of ``registry/weights.toml``.

    ``file`` is the name kornia expects in :func:`weights_dir`; ``sha256`` is ``""`` when no
    reference copy was known (the file is then verified only by loading it); ``package`` is
    ``"python_module:relative/path"`` of a copy inside an installed wheel, or ``None``.
    """

    name: str
    description: str
    file: str
    sha256: str
    size: int
    urls: tuple[str, ...]
    licence: str
    upstream: str
    package: str | None = None
    note: str = ""

    @property
    def verifiable(self) -> bool:
        """Whether the manifest pins this weight's content (a sha256 is known)."""
        return bool(self.sha256)

    @property
    def file_names(self) -> frozenset[str]:
        """Names a copy of this weight may carry: the cache name, the wheel's name, the URLs' names."""
        names = {self.file, self.name}
        if self.package:
            names.add(Path(self.package.partition(":")[2]).name)
        names.update(Path(urlsplit(url).path).name for url in self.urls)
        return frozenset(n for n in names if n)


class WeightStatus(NamedTuple):
    """Where a weight is: ``state`` is one of ``present (cache)``, ``present (cache, unverified)``,
    ``present (package MODULE)``, ``missing``, ``corrupt``; ``path`` the file found (for
    ``missing``, where it is expected)."""

    spec: WeightSpec
    state: str
    path: Path


@dataclass(frozen=True)
class ImportResult:
    """What :func:`import_files` did with one file.

    ``status``: ``installed`` (copied to ``path``), ``present`` (an identical copy is already at
    ``path``), ``unknown`` (matches no weight; ignored) or ``refused`` (named like a weight but
    the wrong content, or unreadable; nothing was changed). ``message`` is one line for the user.
    """

    source: Path
    status: Literal["installed", "present", "unknown", "refused"]
    message: str
    spec: WeightSpec | None = None
    path: Path | None = None

    @property
    def refused(self) -> bool:
        return self.status == "refused"


# --- the manifest ----------------------------------------------------------------------------

def _manifest_resource():
    return resources.files(MANIFEST_PACKAGE) / MANIFEST_FILE


@lru_cache(maxsize=8)
def _read_manifest(text: str, source: str) -> tuple[WeightSpec, ...]:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise WeightsManifestError(f"{source}: not valid TOML ({exc}); reinstall reid-engine") from None
    extra = set(data) - {"weight"}
    if extra:
        raise WeightsManifestError(f"{source}: unknown top-level key(s) {sorted(extra)}; only [[weight]] tables are allowed")
    specs: list[WeightSpec] = []
    for i, table in enumerate(data.get("weight", []), 1):
        where = f"{source} [[weight]] #{i}" + (f" ({table['name']})" if isinstance(table.get("name"), str) else "")
        unknown = set(table) - _KEYS
        if unknown:
            raise WeightsManifestError(f"{where}: unknown key(s) {sorted(unknown)}; allowed: {sorted(_KEYS)}")
        missing = [k for k in _REQUIRED if k not in table]
        if missing:
            raise WeightsManifestError(f"{where}: missing key(s) {missing}")
        sha = table["sha256"]
        if not isinstance(sha, str) or (sha and (len(sha) != 64 or set(sha) - set("0123456789abcdef"))):
            raise WeightsManifestError(f"{where}.sha256: expected 64 lower-case hex digits or \"\", got {sha!r}")
        if not isinstance(table["size"], int) or table["size"] < 0 or (sha and table["size"] == 0):
            raise WeightsManifestError(f"{where}.size: expected the file size in bytes, got {table['size']!r}")
        urls = table["urls"]
        if not isinstance(urls, list) or not all(isinstance(u, str) and u.startswith(("https://", "http://")) for u in urls):
            raise WeightsManifestError(f"{where}.urls: expected a list of http(s) URLs, got {urls!r}")
        package = table.get("package")
        if package is not None and (not isinstance(package, str) or package.count(":") != 1 or package.endswith(":")):
            raise WeightsManifestError(f"{where}.package: expected \"python_module:path/in/package\", got {package!r}")
        for key in ("name", "description", "file", "licence", "upstream", "note"):
            if not isinstance(table.get(key, ""), str) or (key in _REQUIRED and not table[key]):
                raise WeightsManifestError(f"{where}.{key}: expected a non-empty string")
        if "/" in table["file"] or table["file"] in (".", ".."):
            raise WeightsManifestError(f"{where}.file: must be a bare file name, got {table['file']!r}")
        specs.append(WeightSpec(name=table["name"], description=table["description"], file=table["file"],
                                sha256=sha, size=table["size"], urls=tuple(urls), licence=table["licence"],
                                upstream=table["upstream"], package=package, note=table.get("note", "")))
    for attr in ("name", "file"):
        values = [getattr(s, attr) for s in specs]
        twice = sorted({v for v in values if values.count(v) > 1})
        if twice:
            raise WeightsManifestError(f"{source}: {attr} used by more than one weight: {twice}")
    hashes = [s.sha256 for s in specs if s.sha256]
    if len(hashes) != len(set(hashes)):
        raise WeightsManifestError(f"{source}: two weights have the same sha256")
    return tuple(specs)


def load_manifest(path: Path | None = None) -> dict[str, WeightSpec]:
    """Every known weight by name, in manifest order (``registry/weights.toml`` unless ``path``)."""
    resource = Path(path) if path is not None else _manifest_resource()
    try:
        text = resource.read_text(encoding="utf-8")
    except OSError as exc:
        raise WeightsManifestError(f"cannot read the weights manifest {resource}: {exc}; reinstall reid-engine") from None
    return {s.name: s for s in _read_manifest(text, str(resource))}


def get_spec(name: str) -> WeightSpec:
    """The manifest entry called ``name``; :class:`UnknownWeight` (listing the known names) otherwise."""
    manifest = load_manifest()
    try:
        return manifest[name]
    except KeyError:
        raise UnknownWeight(f"unknown weight {name!r}; known weights: {', '.join(manifest)} "
                            "(`reid-engine weights list` shows them with their state)") from None


# --- where files are -------------------------------------------------------------------------

def weights_dir() -> Path:
    """``<torch hub dir>/checkpoints``, the folder kornia reads before downloading anything.

    Same as ``Path(torch.hub.get_dir()) / "checkpoints"`` (honours ``TORCH_HOME`` and
    ``XDG_CACHE_HOME``) without importing torch when it is not loaded yet.
    """
    torch = sys.modules.get("torch")
    if torch is not None and hasattr(torch, "hub"):
        return Path(torch.hub.get_dir()) / "checkpoints"
    cache = os.getenv("XDG_CACHE_HOME", os.path.join("~", ".cache"))
    home = os.path.expanduser(os.getenv("TORCH_HOME", os.path.join(cache, "torch")))
    return Path(home) / "hub" / "checkpoints"


def package_file(spec: WeightSpec) -> Path | None:
    """The copy shipped inside an installed package (``spec.package``), or ``None``.

    Only finds the package's folder (``importlib.util.find_spec``); the package is not imported
    and nothing is downloaded.
    """
    if not spec.package:
        return None
    module, _, relative = spec.package.partition(":")
    try:
        found = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None
    roots = list(found.submodule_search_locations or []) if found is not None else []
    for root in roots:
        candidate = Path(root) / relative
        if candidate.is_file():
            return candidate
    return None


_DIGESTS: dict[tuple, str] = {}


def file_sha256(path: Path) -> str:
    """sha256 of a file; remembered per (path, inode, size, mtime) so asking again is free."""
    st = os.stat(path)
    key = (os.path.realpath(path), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
    digest = _DIGESTS.get(key)
    if digest is None:
        with open(path, "rb") as handle:
            digest = hashlib.file_digest(handle, "sha256").hexdigest()
        _DIGESTS[key] = digest
    return digest


def _remember(path: Path, digest: str) -> None:
    st = os.stat(path)
    _DIGESTS[(os.path.realpath(path), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)] = digest


def _install_commands(spec: WeightSpec) -> str:
    if spec.verifiable:
        how = (f"if you have the file (any name), run `reid-engine weights import FILE` "
               f"(it must have sha256 {spec.sha256}, {spec.size} bytes)")
    else:
        how = (f"if you have a copy, run `reid-engine weights import FILE` with the file named {spec.file} "
               "(no reference sha256 is known, so it is checked only by loading it)")
    if not spec.urls:
        return how + "; it has no download URL, so it cannot be fetched"
    fetch_cmd = f"`reid-engine weights fetch {spec.name}" + ("`" if spec.verifiable else " --no-verify` (unverified)")
    return how + f"; with internet, {fetch_cmd}"


def _wrong_file(spec: WeightSpec, path: Path, digest: str | None, fix: str) -> str:
    size = path.stat().st_size
    got = f"sha256 {digest}, {size} bytes" if digest else f"{size} bytes"
    return (f"weight {spec.name}: {path} is not the expected file ({got}; expected sha256 {spec.sha256}, "
            f"{spec.size} bytes), so it is not used: {fix}")


def _locate(spec: WeightSpec) -> tuple[str, Path, str]:
    """(state, path, problem): the file to use, or what is wrong. ``problem`` is "" when usable."""
    cached = weights_dir() / spec.file
    if cached.is_file():
        if not spec.verifiable:
            if cached.stat().st_size == 0:
                return "corrupt", cached, (f"weight {spec.name}: {cached} is empty, so it is not used: delete it; "
                                           + _install_commands(spec))
            return "present (cache, unverified)", cached, ""
        digest = None if cached.stat().st_size != spec.size else file_sha256(cached)
        if digest == spec.sha256:
            return "present (cache)", cached, ""
        return "corrupt", cached, _wrong_file(spec, cached, digest, "delete it, then " + _install_commands(spec))
    shipped = package_file(spec)
    if shipped is not None:
        module = spec.package.partition(":")[0]
        digest = None if shipped.stat().st_size != spec.size else file_sha256(shipped)
        if digest == spec.sha256 or not spec.verifiable:
            return f"present (package {module})", shipped, ""
        return "corrupt", shipped, _wrong_file(
            spec, shipped, digest, f"reinstall the package that provides `{module}` "
            f"(pip install --force-reinstall ...), or {_install_commands(spec)}")
    where = str(cached) + (f" (or inside the installed package `{spec.package.partition(':')[0]}`)" if spec.package else "")
    return "missing", cached, (f"weight {spec.name} is not installed: expected {where}; "
                               + _install_commands(spec)
                               + (f". {spec.note}" if spec.note and not spec.verifiable else ""))


def weight_path(name: str) -> Path:
    """The verified file of weight ``name``: the cache copy, else the copy an installed package ships.

    Raises :class:`UnknownWeight`, :class:`MissingWeights` (naming the expected path and the
    import/fetch commands) or :class:`CorruptWeights` (expected vs actual hash; never loaded).
    Hashes are remembered per file, so repeated calls cost a ``stat``.
    """
    spec = get_spec(name)
    state, path, problem = _locate(spec)
    if state == "missing":
        raise MissingWeights(problem, spec, path)
    if problem:
        raise CorruptWeights(problem)
    return path


def status() -> list[WeightStatus]:
    """Every weight in manifest order with its state and file (see :class:`WeightStatus`)."""
    return [WeightStatus(spec, *_locate(spec)[:2]) for spec in load_manifest().values()]


# --- installing --------------------------------------------------------------------------------

def _atomic_install(chunks: Iterable[bytes], dest: Path, expected: str | None, what: str) -> str:
    """Write ``chunks`` to a temp file beside ``dest``, check its sha256 and ``os.replace`` it in.

    Returns the sha256. On any failure the temp file is removed and ``dest`` is untouched.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    try:
        digest = hashlib.sha256()
        with os.fdopen(fd, "wb") as out:
            for chunk in chunks:
                digest.update(chunk)
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        if expected and digest.hexdigest() != expected:
            raise CorruptWeights(f"{what} gave sha256 {digest.hexdigest()}, expected {expected}; "
                                 f"nothing was installed and {dest} is unchanged")
        os.chmod(tmp, 0o644)
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _remember(dest, digest.hexdigest())
    return digest.hexdigest()


def _read_chunks(path: Path) -> Iterable[bytes]:
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            yield chunk


def _expand(paths: Iterable[Path]) -> list[Path]:
    files: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            files.extend(sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith(".")))
        elif path.is_file():
            files.append(path)
        else:
            raise UsageError(f"{path}: no such file or folder; pass weight files or folders of them "
                             "(nothing was imported)")
    return files


def import_files(paths: Iterable[Path]) -> list[ImportResult]:
    """Install weight files the user has into :func:`weights_dir`, one :class:`ImportResult` each.

    Each path is a file or a folder (its files, not its subfolders). A file is recognised by
    its sha256, so any file name works; it is copied atomically to ``weights_dir()/spec.file``.
    A file named like a weight (cache, wheel or URL name) whose content differs is refused and
    changes nothing. A cached file with the wrong hash is replaced by a good copy; a good one
    is never replaced. A path that does not exist is a :class:`UsageError` before anything is
    copied.
    """
    files = _expand(paths)
    manifest = load_manifest()
    by_hash = {s.sha256: s for s in manifest.values() if s.verifiable}
    sizes = {s.size for s in by_hash.values()}
    results = []
    for source in files:
        try:
            results.append(_import_one(source, manifest, by_hash, sizes))
        except (OSError, CorruptWeights) as exc:
            results.append(ImportResult(source, "refused", f"could not be imported: {exc}"))
    return results


def _import_one(source: Path, manifest: dict[str, WeightSpec], by_hash: dict[str, WeightSpec],
                sizes: set[int]) -> ImportResult:
    named = next((s for s in manifest.values() if source.name in s.file_names or source.stem == s.name), None)
    size = source.stat().st_size
    digest = file_sha256(source) if size in sizes or named is not None else None
    spec = by_hash.get(digest) if digest else None
    if spec is None and named is not None and not named.verifiable:
        spec = named
    if spec is None:
        if named is None:
            return ImportResult(source, "unknown", f"not a known weight ({size} bytes); ignored "
                                "(`reid-engine weights list` shows the known ones)")
        return ImportResult(source, "refused", (
            f"wrong hash: named like weight {named.name} but it has sha256 {digest} ({size} bytes), "
            f"expected {named.sha256} ({named.size} bytes); a damaged or different file, not installed and "
            f"nothing stored was changed. Get a good copy, or run `reid-engine weights fetch {named.name}` "
            "with internet"), named)
    dest = weights_dir() / spec.file
    if dest.is_file():
        if source.resolve() == dest.resolve():
            return ImportResult(source, "present", f"already present: {spec.name} ({dest})", spec, dest)
        have = file_sha256(dest) if dest.stat().st_size == size else None
        if have == digest:
            return ImportResult(source, "present", f"already present: {spec.name} ({dest})", spec, dest)
        if not spec.verifiable and dest.stat().st_size > 0:
            return ImportResult(source, "refused", (
                f"a different copy of {spec.name} (unverified: no reference sha256) is already installed at "
                f"{dest}; it was kept. Delete it first if you mean to replace it"), spec, dest)
    _atomic_install(_read_chunks(source), dest, digest, f"copying {source}")
    note = "" if spec.verifiable else " (unverified: no reference sha256 is known; checked only when loaded)"
    return ImportResult(source, "installed", f"installed as {spec.name} → {dest}{note}", spec, dest)


# --- downloading -------------------------------------------------------------------------------

def _download_chunks(response, limit: int) -> Iterable[bytes]:
    total = 0
    while chunk := response.read(_CHUNK):
        total += len(chunk)
        if total > limit:
            raise FetchError(f"the download is larger than the expected {limit} bytes")
        yield chunk


def fetch(name: str, *, timeout: float = 60, verify: bool = True) -> Path:
    """Install weight ``name`` into :func:`weights_dir` and return its path.

    A verified cache copy is kept as it is. A verified copy shipped in an installed package is
    copied (no network). Otherwise each URL is tried in turn with urllib: downloaded to a temp
    file, its sha256 checked, then moved in atomically. Raises :class:`FetchError` naming each
    URL's failure (offline, HTTP error, wrong hash) with nothing installed. A weight with no
    reference sha256 is refused (:class:`UsageError`) unless ``verify=False``; a weight with one
    is always checked.
    """
    spec = get_spec(name)
    dest = weights_dir() / spec.file
    if not spec.verifiable and not verify and dest.is_file() and dest.stat().st_size > 0:
        return dest
    if not spec.verifiable and verify:
        raise UsageError(f"weight {name} has no reference sha256 in the manifest, so a download cannot be "
                         f"verified; pass --no-verify to accept it unverified, or import a copy you trust "
                         f"(`reid-engine weights import FILE`)")
    if spec.verifiable:
        state, path, _ = _locate(spec)
        if state == "present (cache)":
            return path
        if state.startswith("present (package"):
            _atomic_install(_read_chunks(path), dest, spec.sha256, f"copying {path}")
            return dest
    if not spec.urls:
        raise FetchError(f"weight {name} has no download URL ({spec.upstream}); " + _install_commands(spec))
    limit = spec.size if spec.verifiable else _MAX_UNVERIFIED_BYTES
    failures = []
    for url in spec.urls:
        try:
            request = urllib.request.Request(url, headers={"User-Agent": "reid-engine"})
            with urllib.request.urlopen(request, timeout=timeout) as response:
                _atomic_install(_download_chunks(response, limit), dest, spec.sha256 or None, url)
            return dest
        except urllib.error.HTTPError as exc:
            failures.append(f"{url}: HTTP {exc.code} {exc.reason}")
        except urllib.error.URLError as exc:
            failures.append(f"{url}: {exc.reason}")
        except (OSError, http.client.HTTPException, ValueError) as exc:
            failures.append(f"{url}: {type(exc).__name__}: {exc}")
        except (CorruptWeights, FetchError) as exc:
            failures.append(f"{url}: {exc}")
    raise FetchError(f"could not download weight {name}, nothing was installed: " + "; ".join(failures)
                     + f". If this machine is offline, download {spec.urls[0]} elsewhere and run "
                     f"`reid-engine weights import FILE` here"
                     + (f" (sha256 {spec.sha256})" if spec.verifiable else ""))


def weight_state(name: str, key: str | None = None) -> dict:
    """The state dict of manifest weight ``name``: verified file, loaded with ``weights_only``;
    ``key`` picks a sub-dict (e.g. DISK's ``'extractor'``), else ``{'state_dict': ...}`` is unwrapped."""
    import torch

    path = weight_path(name)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - an unverified file (hardnet-liberty) may be anything
        raise ReidError(f"weight {name!r} ({path}) cannot be loaded ({type(exc).__name__}); delete it and "
                        "install it again with `reid-engine weights import FILE`") from None
    if key is not None:
        if not isinstance(state, dict) or key not in state:
            raise ReidError(f"weight {name!r} ({path}) has no {key!r} entry; re-import it with `reid-engine weights import FILE`")
        state = state[key]
    elif isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    return state


def load_weights(module, name: str, key: str | None = None, state: dict | None = None,
                 allowed_missing: tuple[str, ...] = (), allowed_unexpected: tuple[str, ...] = ()):
    """Load manifest weight ``name`` (or an already read and renamed ``state``) into ``module``
    and return it in eval mode. Keys may differ only by the buffers named in ``allowed_missing``
    (computed in ``__init__``) and legacy entries starting with ``allowed_unexpected``."""
    state = weight_state(name, key) if state is None else state
    result = module.load_state_dict(state, strict=False)
    missing = [k for k in result.missing_keys if k not in allowed_missing]
    unexpected = [k for k in result.unexpected_keys if not k.startswith(allowed_unexpected or ("\0",))]
    if missing or unexpected:
        what = (f"missing {', '.join(missing[:3])}" if missing else f"unexpected {', '.join(unexpected[:3])}")
        raise ReidError(f"weight {name!r} ({weight_path(name)}) does not fit {type(module).__name__} ({what}); "
                        "re-import it with `reid-engine weights import FILE`")
    return module.eval()
