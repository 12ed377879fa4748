"""A trained embedder in the gallery database, served to the pipeline through the feature cache.

``reid-engine train embedder`` stores the model under :func:`model_key` (one per profile, the
latest training wins). A run whose profile has a ``[trained_embedder]`` table builds the
profile's embedder plugin (``trained-embedder`` by default), hands it the stored model (or the
plugin loads its own ``model`` file), and wraps it in :class:`EmbeddingAsFeatures` so each
image's embedding is computed in the same decoding pass as its local features and cached
under the model's sha256 - a retrained model never serves stale vectors.
"""

from __future__ import annotations

import json
from typing import Sequence

import numpy as np

from reid_engine.components import Built, Components, build_plugin
from reid_engine.errors import ReidError
from reid_engine.records import LoadedImage, LocalFeatures
from reid_engine.registry import PluginTable, config_hash
from reid_engine.registry.profiles import Profile, profile_argument
from reid_engine.store.database import GalleryDatabase

MODEL_KIND = "embedder"


def model_key(profile_name: str) -> str:
    """Where the embedder trained for ``profile_name`` lives in the gallery database."""
    return f"trained-embedder-{profile_name}"


def stored_info(db: GalleryDatabase, profile_name: str) -> dict | None:
    """What the stored model was trained on (``fitted_on``), or None when there is none."""
    row = db.conn.execute("SELECT fitted_on FROM models WHERE key = ?", (model_key(profile_name),)).fetchone()
    return None if row is None else json.loads(row[0])


class EmbeddingAsFeatures:
    """An image embedder seen as an extractor: one 'feature' per image whose descriptor is the
    embedding (kpts (1, 2) zeros, desc float32 (1, D)), so the feature cache stores it."""

    input = "image"

    def __init__(self, embedder: object) -> None:
        self.embedder = embedder

    def extract(self, image: LoadedImage) -> LocalFeatures:
        vector = np.asarray(self.embedder.embed([image]), np.float32).reshape(1, -1)
        return LocalFeatures(np.zeros((1, 2), np.float32), vector, np.ones(1, np.float32), None,
                             tuple(image.rgb.shape[:2]))


def train_command(profile: Profile) -> str:
    """The command that trains an embedder for ``profile`` (shipped: --species, else --profile)."""
    return f"reid-engine train embedder {profile_argument(profile)} --gallery LABELLED --db DB"


def attach_trained_embedder(db: GalleryDatabase, profile: Profile, components: Components, table: PluginTable,
                            device: str) -> str:
    """Set ``components.trained`` when the profile asks for a trained embedder and one exists.

    Returns a notice for the user: which model is used, or that none is and how to train one
    ('' when the profile has no ``[trained_embedder]`` table or says ``use = "never"``).
    """
    if not profile.uses_trained_embedder:
        return ""
    settings = profile.trained_embedder
    where = f"{profile.source} [trained_embedder].embedder"
    built = build_plugin(table, "embedder", settings.embedder, device, where)
    model_file = str(getattr(built.config, "model", "") or "")
    if not model_file:
        arrays = db.get_model(model_key(profile.name))
        if arrays is None:
            return (f"profile {profile.name!r} can use a re-ID embedder trained on your gallery, and this database has "
                    f"none: the shortlist uses {components.embedder.spec.name!r} instead. Train one with "
                    f"`{train_command(profile)}`")
        if not built.obj.loads_state:
            raise ReidError(f"{where}: plugin {built.spec.name!r} cannot load a model stored in the gallery database; "
                            "give it a model file (model = \"PATH\")")
        built.obj.load_state(arrays)
    model_id = str(getattr(built.obj, "model_sha256", ""))
    if not model_id:
        raise ReidError(f"{where}: plugin {built.spec.name!r} has no model_sha256; it cannot be cached safely")
    trained_hash = config_hash(built.config_hash, model_id, components.view)
    components.trained = Built(built.spec, built.config, trained_hash, EmbeddingAsFeatures(built.obj))
    info = stored_info(db, profile.name) if not model_file else None
    source = model_file or (f"the gallery database (trained {info.get('trained_at', '?')} on "
                            f"{info.get('images', '?')} photos of {info.get('identities', '?')} individuals)"
                            if info else "the gallery database")
    role = ("shortlist and global evidence" if settings.shortlist
            else f"global evidence ({components.embedder.spec.name!r} picks the shortlist)")
    return (f"{role}: the re-ID embedder trained for profile {profile.name!r}, "
            f"from {source} (model {model_id[:12]})")


def embedding_matrix(cache, built: Built, hashes: Sequence[str]) -> np.ndarray:
    """The cached embeddings of ``hashes`` (image keys) → float32 (N, D)."""
    rows = []
    for h in hashes:
        f = cache.get(h, built)
        if f is None:
            raise ReidError(f"the cached embedding of {cache.describe(h)} is missing or damaged in {cache.db.blob_dir}; "
                            "run again and it is recomputed")
        rows.append(f.desc[0])
    return np.stack(rows).astype(np.float32) if rows else np.zeros((0, 1), np.float32)
