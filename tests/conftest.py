"""Small synthetic MovieLens-format data with structure, so models can be told apart."""

from __future__ import annotations

import functools
import hashlib
import io
import logging
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recsys.data import MovieLens, download, to_interactions
from recsys.data.download import DatasetSpec
from recsys.data.formats import GENRES
from recsys.data.movielens import read_items, read_users
from recsys.split import RandomRatioSplit, Split

SYNTHETIC = "ml-synthetic"
OCCUPATIONS = ["student", "engineer", "artist", "doctor", "other"]


def make_ratings(n_users=120, n_items=200, per_user=30, n_groups=4, seed=0) -> pd.DataFrame:
    """Users of a taste group mostly rate items of the same group; items have a popularity skew."""
    rng = np.random.default_rng(seed)
    user_group = np.arange(n_users) % n_groups
    item_group = np.arange(n_items) % n_groups
    popularity = 1.0 / np.arange(1, n_items + 1) ** 0.6
    rows = []
    for user in range(n_users):  # test-data generation only, not a hot path
        weight = popularity * np.where(item_group == user_group[user], 30.0, 1.0)
        items = rng.choice(n_items, size=per_user, replace=False, p=weight / weight.sum())
        for item in items:
            rows.append((user + 1, item + 1, int(rng.integers(1, 6)),
                         int(880_000_000 + rng.integers(0, 10_000_000))))  # fmt: skip
    return pd.DataFrame(rows, columns=["user_id", "item_id", "rating", "timestamp"])


def ratings_bytes(ratings: pd.DataFrame) -> bytes:
    rows = ratings.itertuples(index=False)
    return "".join(f"{u}\t{i}\t{r}\t{t}\n" for u, i, r, t in rows).encode()


def users_bytes(n_users: int) -> bytes:
    rows = ["user_id\tage\tgender\toccupation\tzip_code"]
    rows += [f"{u}\t{18 + u % 50}\t{'MF'[u % 2]}\t{OCCUPATIONS[u % 5]}\t{10000 + 37 * u:05d}"
             for u in range(1, n_users + 1)]  # fmt: skip
    return ("\n".join(rows) + "\n").encode()


def items_bytes(n_items: int, titles: dict[int, tuple[str, int]] | None = None) -> bytes:
    """Movie ``i`` is "Movie i (year)" of genres ``Action|Drama`` etc., or ``titles[i]``'s
    ``(title, year)``."""
    genres = ["Action", "Comedy", "Drama", "Sci-Fi"]
    named = {i: (f"Movie {i} ({1950 + i % 50})", 1950 + i % 50) for i in range(1, n_items + 1)}
    named |= titles or {}
    rows = ["item_id\ttitle\tyear\tgenres"]
    rows += [f"{i}\t{named[i][0]}\t{named[i][1]}\t{genres[i % 4]}|Drama"
             for i in range(1, n_items + 1)]  # fmt: skip
    return ("\n".join(rows) + "\n").encode()


def grouplens_zip(ratings: bytes, root: str = SYNTHETIC) -> bytes:
    """A zip laid out as GroupLens ships it: ``ratings`` as u.data, 200 items, 120 users."""
    flags = ["0"] * len(GENRES)
    flags[GENRES.index("Comedy")] = "1"
    items = "".join(f"{i}|Film é {i} (1995)|01-Jan-1995||http://x|{'|'.join(flags)}\n"
                    for i in range(1, 201))  # fmt: skip
    items += f"267|unknown||||{'|'.join(['1'] + ['0'] * (len(GENRES) - 1))}\n"
    users = "".join(f"{u}|{20 + u % 30}|M|other|{10000 + u}\n" for u in range(1, 121))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(f"{root}/u.data", ratings)
        archive.writestr(f"{root}/u.user", users.encode("latin-1"))
        archive.writestr(f"{root}/u.item", items.encode("latin-1"))
    return buffer.getvalue()


def synthetic_spec(ratings: bytes, name: str = SYNTHETIC) -> DatasetSpec:
    return DatasetSpec(
        name=name,
        ratings_sha256=hashlib.sha256(ratings).hexdigest(),
        grouplens_url="http://127.0.0.1:9/unreachable.zip",  # port 9 (discard): refused at once
        wheel_requirement="recsys-test-no-such-package==0.0.0",
        wheel_sha256="0" * 64,
        wheel_folder="no/such/folder",
    )


@pytest.fixture(autouse=True)
def private_model_cache(tmp_path_factory, monkeypatch):
    """Each test (and the processes it starts) gets an empty model cache of its own, so no
    test is served a model another test fitted, and the user's cache is never touched."""
    monkeypatch.setenv("RECSYS_CACHE_DIR", str(tmp_path_factory.mktemp("model-cache")))


@pytest.fixture(autouse=True)
def private_user_cache(tmp_path_factory, monkeypatch):
    """The user's cache folder (the default data folder) is a fresh one of each test's, and no
    ``RECSYS_DATA_DIR`` of the developer's reaches a test: tests name their data folders."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("user-cache")))
    monkeypatch.delenv("RECSYS_DATA_DIR", raising=False)


@pytest.fixture(autouse=True)
def _root_logging_restored():
    """A CLI's ``main`` called in a test (``export.main``) may ``logging.basicConfig`` a
    handler on that test's captured stderr, which closes with the test: later tests' log lines
    would then print "--- Logging error ---" into their own stderr."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:], root.level = handlers, level


@pytest.fixture(autouse=True)
def _download_once(monkeypatch):
    """A failed download is not tried again (pooch waits 1 s, then 2 s, between tries)."""
    monkeypatch.setattr(download, "DOWNLOAD_RETRIES", 0)


def serve_download(patch: pytest.MonkeyPatch, archive: bytes) -> None:
    """Downloads of any release give ``archive`` (as if GroupLens were reachable)."""

    def fetched(spec, data_dir):
        path = Path(data_dir) / download.DOWNLOADS / f"{spec.name}.zip"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(archive)
        return path

    patch.setattr(download, "_download", fetched)


@pytest.fixture
def offline_pip(monkeypatch):
    """pip finds nothing (no index, no links), so the wheel source fails fast."""
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", "")
    monkeypatch.setenv("PIP_CONFIG_FILE", "/dev/null")


def write_synthetic_release(data_dir: Path, patch: pytest.MonkeyPatch,
                            titles: dict[int, tuple[str, int]] | None = None) -> Path:  # fmt: skip
    """Write the synthetic release into ``data_dir`` with its manifest, and register its
    ratings' checksum; ``titles``: real titles for some movies (``items_bytes``)."""
    ratings = ratings_bytes(make_ratings())
    patch.setitem(download.DATASETS, SYNTHETIC, synthetic_spec(ratings))
    folder = data_dir / SYNTHETIC
    folder.mkdir(parents=True)
    (folder / download.RATINGS_FILE).write_bytes(ratings)
    (folder / download.USERS_FILE).write_bytes(users_bytes(120))
    (folder / download.ITEMS_FILE).write_bytes(items_bytes(200, titles))
    download.write_manifest(folder, download.DATASETS[SYNTHETIC], "tests/conftest.py")
    return data_dir


@pytest.fixture
def synthetic_data(tmp_path, monkeypatch) -> Path:
    """A data folder holding a verified synthetic release named ``ml-synthetic``."""
    return write_synthetic_release(tmp_path / "data", monkeypatch)


@pytest.fixture(scope="session")
def ml100k_dir(tmp_path_factory) -> Path:
    """A data folder holding the real ML-100K, obtained through the real sources in order."""
    data_dir = tmp_path_factory.mktemp("data")
    download.ensure_dataset(data_dir, "ml-100k")
    return data_dir


@pytest.fixture(scope="session")
def mlflow_template(tmp_path_factory) -> Path:
    """An empty MLflow SQLite store, its schema created once (MLflow's migrations take ~2 s)."""
    from mlflow.tracking import MlflowClient

    path = tmp_path_factory.mktemp("mlflow-template") / "mlflow.db"
    MlflowClient(f"sqlite:///{path}").search_experiments()
    return path


def fresh_store(folder: Path, template: Path) -> str:
    """A copy of the empty template store in ``folder``; its tracking URI."""
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(template, folder / "mlflow.db")
    return f"sqlite:///{folder}/mlflow.db"


@pytest.fixture
def mlflow_uri(tmp_path, mlflow_template) -> str:
    """A fresh, empty MLflow store in ``tmp_path``."""
    return fresh_store(tmp_path, mlflow_template)


@pytest.fixture(scope="session")
def tracked_benchmark(tmp_path_factory, mlflow_template):
    """A real MLflow store shared by the export and report tests (read it, never write to it):
    experiment ``bench`` holds popular, EASE and ALS (8 factors) for seeds 1 and 2, then ALS
    seed 1 once more (a repeated run: the report counts the newest). Only ALS has embeddings.

    Yields ``(tracking_uri, data_dir, root)``.
    """
    from recsys.config import compose_config
    from recsys.train import run

    root = tmp_path_factory.mktemp("tracked")
    uri = fresh_store(root, mlflow_template)
    with pytest.MonkeyPatch.context() as patch:  # the release stays registered all session
        data_dir = write_synthetic_release(root / "data", patch)
        base = [f"data.dir={data_dir}", f"data.name={SYNTHETIC}", f"tracking.uri={uri}",
                "tracking.experiment=bench"]  # fmt: skip
        runs = [["model=popular"], ["model=ease"], ["model=als", "model.factors=8"]]
        with pytest.MonkeyPatch.context() as working_directory:
            working_directory.chdir(root)  # MLflow puts a SQLite store's artifacts in ./mlruns
            for overrides, seed in [(o, s) for o in runs for s in (1, 2)] + [(runs[2], 1)]:
                run(compose_config([*base, *overrides, f"seed={seed}"]))
        yield uri, data_dir, root


# a few films of the synthetic release under real titles, for the served page's tests
FAMOUS = {100: ("Fargo (1996)", 1996), 50: ("Star Wars (1977)", 1977),
          1: ("Toy Story (1995)", 1995), 127: ("Godfather, The (1972)", 1972),
          98: ("Silence of the Lambs, The (1991)", 1991)}  # fmt: skip
# short trainings of the models whose bundles serve new users their own way
NEW_USER_RUNS = {
    "als": ["model=als", "model.factors=8"],
    "two_tower": ["model=two_tower", "model.dim=16", "model.trainer.epochs=3",
                  "model.trainer.min_epochs=0", "model.trainer.progress=false"],
    "multvae": ["model=multvae", "model.hidden=32", "model.latent=8", "model.trainer.epochs=3",
                "model.trainer.progress=false"],
}  # fmt: skip


@pytest.fixture(scope="session")
def new_user_bundles(tmp_path_factory, mlflow_template) -> dict[str, Path]:
    """Bundles exported from real runs (tracked in a real MLflow store) of ALS, two-tower and
    Mult-VAE, briefly trained on the synthetic release with the ``FAMOUS`` titles:
    ``{model: bundle folder}``. Read them, never write to them (copy first)."""
    from mlflow.tracking import MlflowClient

    from recsys.config import compose_config
    from recsys.export import IndexSettings, export_bundle
    from recsys.train import run

    root = tmp_path_factory.mktemp("new-user-bundles")
    uri = fresh_store(root, mlflow_template)
    client = MlflowClient(uri)
    with pytest.MonkeyPatch.context() as patch:  # the release stays registered all session
        data_dir = write_synthetic_release(root / "data", patch, FAMOUS)
        base = [f"data.dir={data_dir}", f"data.name={SYNTHETIC}", f"tracking.uri={uri}",
                "tracking.experiment=serve", "cache.enabled=false"]  # fmt: skip
        bundles = {}
        with pytest.MonkeyPatch.context() as working_directory:
            working_directory.chdir(root)  # MLflow puts a SQLite store's artifacts in ./mlruns
            working_directory.setenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
            for model, overrides in NEW_USER_RUNS.items():
                run(compose_config([*base, *overrides]))
                experiment = client.get_experiment_by_name("serve").experiment_id
                logged = client.search_runs([experiment], f"tags.model = '{model}'")[0]
                bundles[model] = root / "bundles" / model
                export_bundle(client, logged, bundles[model], IndexSettings("exact"))
        yield bundles


@pytest.fixture(scope="session")
def benchmark_sweep(ml100k_dir, tmp_path_factory, mlflow_template):
    """A real multirun on the real ML-100K, as ``make benchmark`` runs one: ``python -m
    recsys.train -m`` over popular and ALS x seeds 1 and 2 into experiment ``sweep`` of a fresh
    store, then ``recsys.report``, which attaches its figures to the sweep's parent run. Read
    it, never write to it.

    Returns ``(tracking_uri, root)``.
    """
    from recsys import report

    root = tmp_path_factory.mktemp("sweep")
    uri = fresh_store(root, mlflow_template)
    command = [sys.executable, "-m", "recsys.train", "-m", "model=popular,als", "seed=1,2",
               f"data.dir={ml100k_dir}", f"tracking.uri={uri}", "tracking.experiment=sweep"]
    result = subprocess.run(command, cwd=root, capture_output=True, text=True, timeout=300,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})  # fmt: skip
    assert result.returncode == 0, result.stderr
    argv = ["--experiment", "sweep", "--tracking-uri", uri, "--out", str(root / "report"),
            "--ks", "10"]  # fmt: skip
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        assert report.main(argv) == 0
    return uri, root


@pytest.fixture(scope="session")
def bench_runs(tracked_benchmark):
    """The report's ``Runs`` of ``tracked_benchmark``'s experiment ``bench`` (read only)."""
    from mlflow.tracking import MlflowClient

    from recsys.report import load_runs

    uri, _, _ = tracked_benchmark
    loaded = load_runs(MlflowClient(uri), "bench")
    yield loaded
    loaded.close()


@functools.cache
def synthetic_movielens() -> MovieLens:
    """The synthetic release in memory (what ``load_movielens`` reads from ``synthetic_data``)."""
    users = read_users(io.BytesIO(users_bytes(120)))
    items = read_items(io.BytesIO(items_bytes(200)))
    return MovieLens(SYNTHETIC, make_ratings(), users, items, ratings_sha256="synthetic")


@functools.cache
def synthetic_split() -> Split:
    """The synthetic release split 75/25 with a 10 % validation carve-out, seed 0."""
    data = synthetic_movielens()
    interactions = to_interactions(data.ratings, data.users["user_id"], data.items["item_id"])
    return RandomRatioSplit(test_ratio=0.25, val_ratio=0.1)(interactions, seed=0)


@pytest.fixture(scope="session")
def synthetic_matrices():
    """``(train, validation, test)`` CSR matrices of ``synthetic_split()``."""
    split = synthetic_split()
    return split.train.to_csr(), split.validation.to_csr(), split.test.to_csr()
