"""The real pipeline on the real ML-100K: download (checksum verified), split, train, evaluate,
log to a real MLflow SQLite store in a temporary folder.

Every model of ``conf/model/`` runs here with its default config and the bounds its test class
states. Iterative models run a few epochs in the default suite; their full-length runs and
quality bounds are ``slow`` tests (``make test-slow``).
"""

import asyncio
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from recsys import artifacts
from recsys.config import compose_config, model_names
from recsys.data import load_movielens
from recsys.train import run
from tests.conftest import fresh_store
from tests.models.contract import contract_for

pytestmark = pytest.mark.integration

ML100K_SHA256 = "06416e597f82b7342361e41163890c81036900f418ad91315590814211dca490"
ITERATIVE = [name for name in model_names() if contract_for(name).ml100k_quick is not None]
CLOSED_FORM = [name for name in model_names() if name not in ITERATIVE]


def real_config(data_dir, *overrides):
    return compose_config([f"data.dir={data_dir}", *overrides])


def dotlist(prefix: str, overrides: dict) -> list[str]:
    """``{"trainer": {"epochs": 5}}`` -> ``["model.trainer.epochs=5"]``."""
    items = []
    for key, value in overrides.items():
        if isinstance(value, dict):
            items += dotlist(f"{prefix}.{key}", value)
        else:
            items.append(f"{prefix}.{key}={json.dumps(value)}")
    return items


def test_real_data_is_verified_and_complete(ml100k_dir):
    data = load_movielens(ml100k_dir, download=False)
    assert data.ratings_sha256 == ML100K_SHA256
    assert len(data.ratings) == 100_000
    assert data.ratings.user_id.nunique() == 943 and data.ratings.item_id.nunique() == 1682
    assert len(data.users) == 943 and len(data.items) == 1682
    star_wars = data.items.set_index("item_id").loc[50]
    assert star_wars["title"] == "Star Wars (1977)" and "Sci-Fi" in star_wars["genres"]


def quality(ml100k_dir, name, *overrides):
    metrics = run(real_config(ml100k_dir, f"model={name}", "tracking.enabled=false", *overrides))
    assert metrics["test/n_users"] == 943
    return metrics


@pytest.mark.parametrize("name", CLOSED_FORM)
def test_default_config_ndcg(ml100k_dir, name):
    low, high = contract_for(name).ml100k_ndcg
    assert low <= quality(ml100k_dir, name)["test/ndcg@10"] <= high


@pytest.mark.parametrize("name", ITERATIVE)
def test_short_run_learns(ml100k_dir, name):
    contract = contract_for(name)
    metrics = quality(ml100k_dir, name, *dotlist("model", contract.ml100k_quick))
    low, high = contract.ml100k_quick_ndcg
    assert low <= metrics["test/ndcg@10"] <= high
    assert metrics["train/epochs_run"] == contract.ml100k_quick["trainer"]["epochs"]


@pytest.mark.slow
@pytest.mark.parametrize("name", ITERATIVE)
def test_default_config_ndcg_full_length(ml100k_dir, name):
    low, high = contract_for(name).ml100k_ndcg
    metrics = quality(ml100k_dir, name, "model.trainer.progress=false")
    assert low <= metrics["test/ndcg@10"] <= high


def test_als_run_is_logged_and_reproducible(ml100k_dir, mlflow_uri, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    # without the model cache, or the second run would reuse the first one's fit
    first = run(real_config(ml100k_dir, "model=als", f"tracking.uri={mlflow_uri}",
                            "cache.enabled=false"))  # fmt: skip
    second = run(real_config(ml100k_dir, "model=als", f"tracking.uri={mlflow_uri}",
                             "cache.enabled=false"))  # fmt: skip
    assert first["test/ndcg@10"] == second["test/ndcg@10"]
    client = MlflowClient(mlflow_uri)
    runs = client.search_runs([client.get_experiment_by_name("ml-100k").experiment_id])
    assert len(runs) == 2
    assert runs[0].data.tags["split.fingerprint"] == runs[1].data.tags["split.fingerprint"]
    assert runs[0].data.tags["data.sha256"] == ML100K_SHA256
    with artifacts.RunArtifacts(client, runs[0].info.run_id) as logged:
        per_user = logged.per_user("test")
        items = logged.array(artifacts.embedding_path("item_embeddings"))
    assert len(per_user) == 943
    assert per_user["ndcg@10"].mean() == pytest.approx(runs[0].data.metrics["test/ndcg_at_10"])
    assert items.shape == (1682, int(runs[0].data.params["model.factors"]))


def test_cli_prints_test_ndcg(ml100k_dir, tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "recsys.train", "model=als", f"data.dir={ml100k_dir}"],
        cwd=tmp_path, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "test NDCG@10 = 0.4" in result.stdout
    assert (tmp_path / "mlflow.db").exists()


@pytest.fixture(scope="module")
def small_benchmark(ml100k_dir, tmp_path_factory, mlflow_template):
    """A small, fast benchmark in a fresh MLflow store: popular and ALS x two seeds, and BPR
    (03_embeddings compares its vectors with ALS's) for a few epochs with one seed."""
    root = tmp_path_factory.mktemp("root")
    uri = fresh_store(root, mlflow_template)
    bpr = ["model=bpr", *dotlist("model", contract_for("bpr").ml100k_quick)]
    runs = [(["model=popular"], 1), (["model=popular"], 2), (["model=als"], 1),
            (["model=als"], 2), (bpr, 1)]  # fmt: skip
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        for overrides, seed in runs:
            run(compose_config([f"data.dir={ml100k_dir}", f"tracking.uri={uri}", *overrides,
                                f"seed={seed}", "tracking.experiment=notebooks"]))  # fmt: skip
    return root, uri


NOTEBOOKS = sorted((Path(__file__).parents[1] / "notebooks").glob("*.ipynb"))
# a cell that draws: it makes or shows a matplotlib figure, or calls the report's `figure`
DRAWS = re.compile(r"\b(plt\.(subplots|figure|show)|figure)\(")
# what a reader should never see: a warning's class name, a tqdm bar ("45%|####  | 9/20 [")
NOISE = re.compile(r"\b\w+Warning\b|\d%\||\d+/\d+ \[")
# the demo's notebook is changed on its own branch; it still shows MLflow's download bars
def cells_without_figure(notebook) -> list[int]:
    """Indices of the code cells that draw but have no PNG among their outputs."""
    drawing = [index for index, cell in enumerate(notebook.cells)
               if cell.cell_type == "code" and DRAWS.search(cell.source)]  # fmt: skip
    return [index for index in drawing
            if not any("image/png" in out.get("data", {}) for out in notebook.cells[index].outputs)]


def noisy_outputs(notebook) -> list[tuple[int, str]]:
    """``(cell index, text)`` of every stderr stream, warning or progress bar (text or widget)."""
    noisy = []
    for index, cell in enumerate(notebook.cells):
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            text = output.get("text", "") + data.get("text/plain", "")
            if (output.get("name") == "stderr" or NOISE.search(text)
                    or "application/vnd.jupyter.widget-view+json" in data):
                noisy.append((index, text[:200]))
    return noisy


def test_notebooks_run_top_to_bottom(small_benchmark, ml100k_dir, monkeypatch):
    # all four at once, each in its own kernel process: the kernels' start-up and imports are
    # most of their time, and run side by side on two cores
    import nbformat
    from nbclient import NotebookClient

    root, uri = small_benchmark
    monkeypatch.setenv("RECSYS_ROOT", str(root))
    monkeypatch.setenv("RECSYS_DATA_DIR", str(ml100k_dir))
    monkeypatch.setenv("RECSYS_EXPERIMENT", "notebooks")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.delenv("MPLBACKEND", raising=False)  # the kernel's inline backend, as in Lab
    # the kernel spec runs "python": make it this interpreter, with recsys installed
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    notebooks = {path.name: nbformat.read(path, 4) for path in NOTEBOOKS}

    async def execute_all():
        clients = [NotebookClient(notebook, timeout=600, kernel_name="python3",
                                  resources={"metadata": {"path": str(root)}})
                   for notebook in notebooks.values()]  # fmt: skip
        return await asyncio.gather(*(c.async_execute() for c in clients), return_exceptions=True)

    results = dict(zip(notebooks, asyncio.run(execute_all()), strict=True))
    failed = {name: result for name, result in results.items() if isinstance(result, Exception)}
    assert not failed, failed
    assert len(notebooks) == 4
    assert any(DRAWS.search(cell.source) for notebook in notebooks.values()
               for cell in notebook.cells if cell.cell_type == "code")  # fmt: skip
    for name, notebook in notebooks.items():
        outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
        assert not [o for o in outputs if o.output_type == "error"], name
        assert not cells_without_figure(notebook), (name, cells_without_figure(notebook))
        assert not noisy_outputs(notebook), (name, noisy_outputs(notebook))
        if name == "demo.ipynb":
            text = json.dumps([o.get("data", {}).get("text/plain", o.get("text", ""))
                               for o in outputs])  # fmt: skip
            assert "did you mean: Star Wars (1977)" in text
            assert (root / "data" / "bundles" / "notebooks" / "manifest.json").exists()

