"""The exported bundle: what it holds, how it is written and how it is read back.

A bundle is a folder::

    index.faiss            FAISS inner-product index over the item vectors
    user_embeddings.npy    (n_users, d) float32
    item_embeddings.npy    (n_items, d) float32
    user_ids.npy           (n_users,) MovieLens user ids, row order of the user vectors
    item_ids.npy           (n_items,) MovieLens movie ids, row order of the item vectors
    items.csv              item_id, title, year, genres ("|"-joined), rows as item_ids.npy
    seen.npz               (n_users, n_items) CSR: each user's training and validation items
                           (the interactions the model was fit on), 1.0 each
    ratings.npz            (n_users, n_items) CSR: every rating of the release, in stars
                           (training, validation and test parts, and ratings below the run's
                           ``data.min_rating``): what the demo never recommends
    new_users.json         only where the run logged them (two-tower, Mult-VAE): what scores a
    new_users.npz          user never seen (``recsys.models.base.NewUserParts``: the two-tower
                           user tower and its feature vocabularies, or Mult-VAE's encoder)
    manifest.json          run, model, metrics, fingerprints, versions, index settings, and
                           the SHA-256 of every file above

It is written into a temporary folder and renamed into place (an existing bundle survives a
crash, and only a folder that is a bundle, or a damaged one holding nothing else, is ever
replaced), and read back only if every file matches its manifest. A bundle without the
new-user files (another model's, or one exported before bundles carried them) reads as before,
with ``new_users`` ``None``. Nothing here imports MLflow or Hydra: the demo loads a bundle alone.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np
import pandas as pd
import scipy.sparse as sp

from recsys.errors import ConfigError, RecsysError
from recsys.files import atomic_path, sha256_file
from recsys.models.base import NewUserParts

MANIFEST = "manifest.json"
FILES = ("index.faiss", "user_embeddings.npy", "item_embeddings.npy", "user_ids.npy",
         "item_ids.npy", "items.csv", "seen.npz", "ratings.npz")  # fmt: skip
ARRAYS = ("user_embeddings", "item_embeddings", "user_ids", "item_ids")
NEW_USER_FILES = ("new_users.json", "new_users.npz")  # optional, both or neither


@dataclass(frozen=True)
class Bundle:
    """A bundle's contents in memory (see the module docstring)."""

    index: faiss.Index
    user_embeddings: np.ndarray
    item_embeddings: np.ndarray
    user_ids: np.ndarray
    item_ids: np.ndarray
    items: pd.DataFrame  # item_id, title, year (nullable Int64), genres (list of str)
    seen: sp.csr_matrix
    ratings: sp.csr_matrix
    manifest: dict
    new_users: NewUserParts | None = None


def is_bundle(folder: str | Path) -> bool:
    """Does ``folder`` hold a bundle (so that replacing it loses nothing else)?

    Yes if its manifest lists the bundle's files, or if it holds a ``manifest.json`` and
    nothing but bundle files (a damaged bundle: a truncated manifest, a file gone).
    """
    folder = Path(folder)
    if not folder.is_dir() or foreign_entries(folder):  # something of someone else's
        return False
    return _lists_bundle_files(folder) or (folder / MANIFEST).exists()


def _lists_bundle_files(folder: Path) -> bool:
    """Whether ``folder``'s manifest reads and lists a bundle's files."""
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError):
        return False
    files = manifest.get("files") if isinstance(manifest, dict) else None
    return isinstance(files, dict) and set(FILES) <= set(files) <= {*FILES, *NEW_USER_FILES}


def foreign_entries(folder: Path) -> list[str]:
    """The names in ``folder`` that no export writes (notes, a subfolder), sorted."""
    return sorted(entry.name for entry in folder.iterdir()
                  if entry.name not in {MANIFEST, *FILES, *NEW_USER_FILES})  # fmt: skip


def check_replaceable(out: Path) -> None:
    """``ConfigError`` unless the existing ``out`` is a bundle and nothing else, which
    ``--replace`` may then replace whole."""
    if is_bundle(out):
        return
    foreign = foreign_entries(out) if out.is_dir() else []
    if foreign and _lists_bundle_files(out):  # a bundle someone put their own files into
        shown = ", ".join(foreign[:5]) + (", ..." if len(foreign) > 5 else "")
        raise ConfigError(f"{out} holds files no export wrote ({shown}): refusing to replace "
                          f"it; move them out, or choose another --out")  # fmt: skip
    raise ConfigError(f"{out} exists and is not a bundle (no {MANIFEST} listing its files): "
                      f"refusing to replace it; choose another --out")


def write_bundle(out: str | Path, bundle: Bundle, replace: bool = False) -> dict:
    """Write ``bundle`` to the folder ``out`` atomically; return the manifest as written
    (``bundle.manifest`` plus every file's SHA-256).

    An existing ``out`` is replaced only with ``replace`` and only if it is a bundle itself.
    """
    out = Path(out)
    if out.exists() and not replace:
        raise ConfigError(f"bundle {out} exists: pass --replace to overwrite it, or --out")
    if out.exists():
        check_replaceable(out)
    with atomic_path(out, directory=True) as tmp:
        faiss.write_index(bundle.index, str(tmp / "index.faiss"))
        for name in ARRAYS:
            np.save(tmp / f"{name}.npy", getattr(bundle, name))
        items = bundle.items.assign(genres=bundle.items["genres"].map("|".join))
        items.to_csv(tmp / "items.csv", index=False)
        sp.save_npz(tmp / "seen.npz", bundle.seen)
        sp.save_npz(tmp / "ratings.npz", bundle.ratings)
        written = FILES
        if bundle.new_users is not None:
            bundle.new_users.write(*(tmp / name for name in NEW_USER_FILES))
            written = FILES + NEW_USER_FILES
        manifest = bundle.manifest | {"files": {name: sha256_file(tmp / name)
                                                for name in written}}  # fmt: skip
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def read_bundle(path: str | Path) -> Bundle:
    """Load the bundle at ``path``, checking every file against the manifest's SHA-256.

    ``RecsysError`` naming the folder and the command that rebuilds it if the manifest is
    missing, unreadable or does not list every file of a bundle (one written before a file was
    added), a file is missing or differs from its checksum, or the arrays' shapes disagree.
    """
    folder = Path(path)
    manifest_path = folder / MANIFEST
    if not manifest_path.exists():
        raise RecsysError(f"no bundle at {folder} ({MANIFEST} missing): run "
                          f"`python -m recsys.export` first")  # fmt: skip
    manifest = _read_manifest(folder)
    unlisted = [name for name in FILES if name not in manifest["files"]]
    if unlisted:
        raise RecsysError(f"bundle {folder}: its manifest does not list {', '.join(unlisted)} "
                          f"(written by an older recsys?); {_export_again(folder, manifest)}")
    new_user_files = tuple(name for name in NEW_USER_FILES if name in manifest["files"])
    if new_user_files not in ((), NEW_USER_FILES):
        raise RecsysError(f"bundle {folder}: its manifest lists {new_user_files[0]} without "
                          f"its pair ({' and '.join(NEW_USER_FILES)} go together); "
                          f"{_export_again(folder, manifest)}")  # fmt: skip
    for name in FILES + new_user_files:
        expected = manifest["files"].get(name)
        if not (folder / name).is_file():
            raise RecsysError(f"bundle {folder} lacks {name}, which its manifest lists; "
                              f"{_export_again(folder, manifest)}")  # fmt: skip
        actual = sha256_file(folder / name)
        if expected != actual:
            raise RecsysError(f"bundle {folder} is inconsistent: {name} has SHA-256 {actual}, "
                              f"the manifest says {expected}; "
                              f"{_export_again(folder, manifest)}")  # fmt: skip
    items = pd.read_csv(folder / "items.csv", dtype={"year": "Int64"}, keep_default_na=False,
                        na_values={"year": [""]})  # fmt: skip
    items["genres"] = [g.split("|") if g else [] for g in items["genres"]]
    arrays = {name: np.load(folder / f"{name}.npy") for name in ARRAYS}
    if not np.array_equal(items["item_id"].to_numpy(), arrays["item_ids"]):
        raise RecsysError(f"bundle {folder}: items.csv and item_ids.npy disagree; "
                          f"{_export_again(folder, manifest)}")  # fmt: skip
    matrices = {name: sp.load_npz(folder / f"{name}.npz").tocsr() for name in ("seen", "ratings")}
    shape = (len(arrays["user_ids"]), len(arrays["item_ids"]))
    for name, matrix in matrices.items():
        if matrix.shape != shape:
            raise RecsysError(f"bundle {folder}: {name}.npz is {matrix.shape[0]} x "
                              f"{matrix.shape[1]}, the bundle has {shape[0]} users x {shape[1]} "
                              f"movies; {_export_again(folder, manifest)}")  # fmt: skip
    new_users = None
    if new_user_files:
        new_users = NewUserParts.read(*(folder / name for name in new_user_files))
    return Bundle(index=faiss.read_index(str(folder / "index.faiss")), items=items,
                  manifest=manifest, new_users=new_users, **matrices, **arrays)  # fmt: skip


def _read_manifest(folder: Path) -> dict:
    """The manifest of the bundle at ``folder``, a dict whose ``files`` is a dict."""
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError) as error:  # truncated, not UTF-8, a folder, unreadable
        reason = "is not valid JSON" if isinstance(error, ValueError) else "cannot be read"
        raise RecsysError(f"bundle {folder}: {MANIFEST} {reason} (truncated?); "
                          f"{_export_again(folder)}") from None  # fmt: skip
    if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), dict):
        raise RecsysError(f"bundle {folder}: {MANIFEST} does not list the bundle's files; "
                          f"{_export_again(folder)}")  # fmt: skip
    return manifest


def _export_again(folder: Path, manifest: dict | None = None) -> str:
    """The fix for a damaged bundle: the export command that rewrites it (the same run when
    the manifest names it)."""
    run = (manifest or {}).get("run_id")
    run_option = f" --run-id {run}" if isinstance(run, str) else ""
    return f"export it again with `python -m recsys.export{run_option} --out {folder} --replace`"
