"""``reid-engine export onnx``: write a trained embedder as an ONNX model."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from reid_engine.embedding.model import from_arrays, read_model_file
from reid_engine.embedding.onnx_export import export_onnx
from reid_engine.embedding.stored import model_key, train_command
from reid_engine.errors import UsageError
from reid_engine.registry.profiles import resolve_profile
from reid_engine.store.database import GalleryDatabase


def export_onnx_model(out: Path, *, model: Path | None = None, db: Path | None = None, species: str | None = None,
                      profile_file: Path | None = None, notify: Callable[[str], None] = lambda message: None) -> Path:
    """Export the embedder in the model file ``model`` (from ``train embedder --out``), else the one
    trained for the profile (``profile_file``, else ``species``) stored in the gallery database
    ``db``, to ``out``; returns ``out``. The profile fallback notice goes to ``notify``."""
    if model is not None:
        net = read_model_file(model)[0]
    else:
        profile, notice = resolve_profile(species, profile_file)
        if notice:
            notify(notice)
        if db is None or not db.is_file():
            raise UsageError(f"--db {db}: no gallery database; pass --db (or --model FILE)")
        with GalleryDatabase(db) as gdb:
            arrays = gdb.get_model(model_key(profile.name))
        if arrays is None:
            raise UsageError(f"{db}: no embedder trained for profile {profile.name!r}; `{train_command(profile)}`")
        net = from_arrays(arrays)[0]
    export_onnx(net, out)
    return out
