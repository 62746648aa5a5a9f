"""A cache of fitted models, so that rerunning a run (to rebuild a figure, to log it again)
trains nothing.

An entry is keyed by everything the fitted models depend on: the resolved model config (less
the progress bar), the seed, the selection objective and whether the protocol refits, the
data's SHA-256, the split's fingerprint, the code (a SHA-256 over recsys' own source files) and
the versions of the libraries that compute (numpy, scipy, torch, implicit, torch_geometric).
Any change to one of them is another key, so a changed setting retrains.

Entries are pickles written to a temporary file and renamed, so a reader sees a whole entry or
none, and parallel runs with the same key both write the same bytes. A hit refreshes the
entry's modification time; after a write, the oldest entries are removed until the folder is
under ``max_gb``. An entry that cannot be read is removed and the model is fitted again. The
folder holds only what this module writes (``*.pkl`` named by key): nothing else in it is
touched. Pickles run code when loaded: keep the folder private to its user, as a cache is.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import json
import logging
import os
import pickle
import re
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from recsys.files import atomic_path

log = logging.getLogger(__name__)

ENVIRONMENT_VARIABLE = "RECSYS_CACHE_DIR"
LIBRARIES = ("numpy", "scipy", "torch", "implicit", "torch_geometric")
ENTRY = re.compile(r"^[0-9a-f]{64}\.pkl$")
# model settings that change how training looks, not what it computes
COSMETIC = ("progress",)


def cache_dir(configured: str | None) -> Path:
    """``cache.dir`` if set, else ``$RECSYS_CACHE_DIR``, else the user's cache folder
    (``~/.cache/recsys/models`` on Linux)."""
    if configured:
        return Path(configured)
    if os.environ.get(ENVIRONMENT_VARIABLE):
        return Path(os.environ[ENVIRONMENT_VARIABLE])
    import platformdirs

    return Path(platformdirs.user_cache_dir("recsys")) / "models"


@functools.cache
def code_version() -> str:
    """SHA-256 over the path and bytes of every ``.py`` file of the recsys package."""
    package = Path(__file__).resolve().parent
    digest = hashlib.sha256()
    for path in sorted(package.rglob("*.py")):
        digest.update(str(path.relative_to(package)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def _version(name: str) -> str:
    try:
        return importlib.metadata.version(name.replace("_", "-"))
    except importlib.metadata.PackageNotFoundError:
        return "absent"


def model_settings(model_cfg: DictConfig) -> dict:
    """The resolved model config less the settings that change how training looks
    (``COSMETIC``), not what it computes."""
    model = OmegaConf.to_container(model_cfg, resolve=True)
    for key in COSMETIC:
        model.get("trainer", {}).pop(key, None)
    return model


def cache_key(cfg: DictConfig, data_sha256: str, split_fingerprint: str) -> str:
    """The entry name of the models a run of ``cfg`` fits on this data and split."""
    described = {"model": model_settings(cfg.model), "seed": cfg.seed, "objective": cfg.objective,
                 "refit": cfg.protocol.refit, "data": data_sha256, "split": split_fingerprint,
                 "code": code_version(), "libraries": {n: _version(n) for n in LIBRARIES}}
    return hashlib.sha256(json.dumps(described, sort_keys=True).encode()).hexdigest()


class ModelCache:
    """Fitted models by key in ``folder``, at most ``max_gb`` of them."""

    def __init__(self, folder: str | os.PathLike, max_gb: float):
        self.folder = Path(folder)
        self.max_bytes = int(max_gb * 2**30)

    def path(self, key: str) -> Path:
        return self.folder / f"{key}.pkl"

    def get(self, key: str):
        """The object stored under ``key``, or ``None``."""
        path = self.path(key)
        try:
            with open(path, "rb") as file:
                value = pickle.load(file)
        except FileNotFoundError:
            return None
        except Exception as error:  # noqa: BLE001 - any unreadable entry is a miss
            log.warning("model cache entry %s is unreadable (%s): removed, fitting again",
                        path, error)  # fmt: skip
            _unlink(path)
            return None
        try:
            os.utime(path)  # most recently used
        except OSError:
            pass
        return value

    def put(self, key: str, value) -> bool:
        """Store ``value`` under ``key`` (not if it alone exceeds the bound); then trim the
        folder to the bound. A store that cannot be written is a warning, not an error."""
        data = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
        if len(data) > self.max_bytes:
            log.info("fitted model (%.1f MB) exceeds cache.max_gb: not cached", len(data) / 2**20)
            return False
        try:
            with atomic_path(self.path(key)) as tmp:
                tmp.write_bytes(data)
        except OSError as error:
            log.warning("cannot write the model cache in %s (%s): continuing without it",
                        self.folder, error)  # fmt: skip
            return False
        self.trim()
        return True

    def trim(self) -> None:
        """Remove the least recently used entries until the folder fits the bound."""
        entries = []
        for path in self.folder.iterdir():
            if ENTRY.match(path.name):
                try:
                    status = path.stat()
                except FileNotFoundError:  # removed by a parallel run
                    continue
                entries.append((status.st_mtime, status.st_size, path))
        total = sum(size for _, size, _ in entries)
        for _, size, path in sorted(entries):
            if total <= self.max_bytes:
                break
            _unlink(path)
            total -= size


def _unlink(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass
