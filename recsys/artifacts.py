"""What a training run logs to MLflow as files, named once: train writes them, the report,
the export and the notebooks read them (``RunArtifacts``).

Layout of a run's artifacts::

    config.yaml                      the resolved config (rerun it with `python -m recsys.train`)
    environment.txt                  every installed package, `name==version`
    metrics/validation_per_user.csv  per-user metrics (one row per evaluated user)
    metrics/test_per_user.csv
    metrics/test_top_items.npy       (n_test_users, max K) item indices, rows as the CSV's
    metrics/train_item_counts.npy    (n_items,) training interactions per item
    embeddings/{user,item}_embeddings.npy, embeddings/{user,item}_ids.npy
                                     vectors and their MovieLens ids (models that have them)
    new_users/spec.json, new_users/weights.npz
                                     what scores a user never seen (``NewUserParts``: the
                                     two-tower user tower, Mult-VAE's encoder), with the
                                     embeddings, for models that have it
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import DictConfig, OmegaConf

from recsys.models.base import NewUserParts

CONFIG = "config.yaml"
ENVIRONMENT = "environment.txt"
PER_USER = {"validation": "metrics/validation_per_user.csv", "test": "metrics/test_per_user.csv"}
TEST_TOP_ITEMS = "metrics/test_top_items.npy"
TRAIN_ITEM_COUNTS = "metrics/train_item_counts.npy"
EMBEDDINGS = "embeddings"
EMBEDDING_ARRAYS = ("user_embeddings", "item_embeddings", "user_ids", "item_ids")
NEW_USERS = "new_users"
NEW_USER_FILES = ("spec.json", "weights.npz")  # in NEW_USERS


def embedding_path(name: str) -> str:
    """``item_embeddings`` -> ``embeddings/item_embeddings.npy``."""
    return f"{EMBEDDINGS}/{name}.npy"


def write_run_files(folder: Path, *, config: str, environment: str,
                    per_user: dict[str, pd.DataFrame], test_top_items: np.ndarray,
                    train_item_counts: np.ndarray,
                    embeddings: dict[str, np.ndarray] | None,
                    new_users: NewUserParts | None = None) -> None:  # fmt: skip
    """Write a run's artifacts into ``folder`` (a fresh temporary folder) in the layout above."""
    (folder / CONFIG).write_text(config)
    (folder / ENVIRONMENT).write_text(environment)
    for part, table in per_user.items():
        path = folder / PER_USER[part]
        path.parent.mkdir(exist_ok=True)
        table.to_csv(path, index=False)
    np.save(folder / TEST_TOP_ITEMS, test_top_items.astype(np.int32))
    np.save(folder / TRAIN_ITEM_COUNTS, train_item_counts.astype(np.int32))
    if embeddings is not None:
        (folder / EMBEDDINGS).mkdir()
        for name in EMBEDDING_ARRAYS:
            np.save(folder / embedding_path(name), embeddings[name])
    if new_users is not None:
        (folder / NEW_USERS).mkdir()
        new_users.write(*(folder / NEW_USERS / name for name in NEW_USER_FILES))


class RunArtifacts:
    """A finished run's artifacts, each downloaded once (``client``: an ``MlflowClient``).

    Use as a context manager, or call ``close()``: the downloads live in a temporary folder.
    """

    def __init__(self, client, run_id: str):
        self.client, self.run_id = client, run_id
        self._folder = tempfile.TemporaryDirectory(prefix="recsys-run-")
        self._cache: dict[str, object] = {}

    def path(self, artifact: str) -> Path:
        """Local path of ``artifact`` (a file or a folder of the layout), downloaded once."""
        if artifact not in self._cache:
            self._cache[artifact] = Path(self.client.download_artifacts(
                self.run_id, artifact, self._folder.name))  # fmt: skip
        return self._cache[artifact]

    def config(self) -> DictConfig:
        return OmegaConf.load(self.path(CONFIG))

    def per_user(self, part: str = "test") -> pd.DataFrame:
        """Per-user metrics of ``part`` (``validation`` or ``test``), indexed by ``user_id``."""
        key = f"table:{part}"
        if key not in self._cache:
            self._cache[key] = pd.read_csv(self.path(PER_USER[part]), index_col="user_id")
        return self._cache[key]

    def array(self, artifact: str) -> np.ndarray:
        return np.load(self.path(artifact))

    def embeddings(self) -> dict[str, np.ndarray]:
        folder = self.path(EMBEDDINGS)
        return {name: np.load(folder / f"{name}.npy") for name in EMBEDDING_ARRAYS}

    def new_user_parts(self) -> NewUserParts | None:
        """What scores a user never seen, or ``None`` if the run logged none (a model without
        it, or a run logged before runs carried it)."""
        if not self.client.list_artifacts(self.run_id, NEW_USERS):
            return None
        folder = self.path(NEW_USERS)
        return NewUserParts.read(*(folder / name for name in NEW_USER_FILES))

    def close(self) -> None:
        self._folder.cleanup()

    def __enter__(self) -> RunArtifacts:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
