"""A benchmark as MLflow's own UI shows it: a real sweep and report (``benchmark_sweep``), a real
``mlflow server`` on it, and headless Chromium driven by Playwright, reading what the page
renders. Skipped where Playwright or Chromium is missing (``pip install playwright`` and
``apt-get install chromium``: Playwright drives the system's Chromium).

The addresses are the README's: the runs page with ``workflowType=machine_learning`` (MLflow
3.17 opens an experiment on its GenAI overview until its *Model training* switch is chosen)
and the saved view ``recsys`` (``RUNS_VIEW_KEY``).
"""

import re
import shutil

import pytest
from mlflow.tracking import MlflowClient

from recsys.tracking import RUNS_VIEW_KEY
from tests.servers import mlflow_server

sync_api = pytest.importorskip("playwright.sync_api",
                               reason="playwright is not installed (pip install -e '.[dev]')")
CHROMIUM = next(filter(None, map(shutil.which, ("chromium", "chromium-browser", "chrome"))), None)

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(CHROMIUM is None, reason="no Chromium on PATH (apt-get install chromium)"),
]


@pytest.fixture(scope="module")
def ui(benchmark_sweep):
    """``(base URL, experiment id, client)`` of an ``mlflow server`` on the sweep's store."""
    uri, root = benchmark_sweep
    with mlflow_server(uri, root) as base:
        client = MlflowClient(uri)
        yield base, client.get_experiment_by_name("sweep").experiment_id, client


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield browser
        browser.close()


@pytest.fixture
def page(browser):
    """A fresh page (nothing remembered from another test), wide: the runs table draws only
    the columns in view."""
    context = browser.new_context(viewport={"width": 2400, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(30_000)
    yield page
    context.close()


def runs_named(client, experiment_id: str) -> dict:
    return {r.info.run_name: r for r in client.search_runs([experiment_id])}


def row_text(page, run_name: str) -> str:
    """The text of a run's row of the runs table (its pinned and scrolling parts)."""
    link = page.get_by_role("link", name=run_name, exact=True)
    index = page.get_by_role("row").filter(has=link).get_attribute("row-index")
    return "\n".join(page.locator(f"[role=row][row-index='{index}']").all_inner_texts())


def test_the_runs_view_nests_the_sweep_and_shows_its_metrics(ui, page):
    base, experiment_id, client = ui
    runs = runs_named(client, experiment_id)
    (parent,) = [name for name, r in runs.items() if r.data.tags.get("recsys.sweep") == "true"]
    page.goto(f"{base}/#/experiments/{experiment_id}/runs?workflowType=machine_learning"
              f"&viewStateShareKey={RUNS_VIEW_KEY}")  # fmt: skip
    page.get_by_role("link", name=parent).wait_for()
    assert page.get_by_role("link", name="als-seed1").count() == 0  # folded under the parent
    parent_cell = page.get_by_role("gridcell").filter(has=page.get_by_role("link", name=parent))
    parent_cell.get_by_role("button").click()  # unfold
    for child in ("popular-seed1", "popular-seed2", "als-seed1", "als-seed2"):
        page.get_by_role("link", name=child).wait_for()
    headers = page.get_by_role("columnheader").all_inner_texts()
    for column in ("Dataset", "Models", "model_name", "val/ndcg_at_10", "test/ndcg_at_10"):
        assert column in headers, (column, headers)
    als = row_text(page, "als-seed1")
    assert str(runs["als-seed1"].data.metrics["test/ndcg_at_10"])[:8] in als
    assert f"ml-100k ({runs['als-seed1'].data.tags['data.sha256'][:16]})" in als
    assert "\nmodel\n" in als and "\nmodel\n" not in row_text(page, "popular-seed1")


def test_the_column_picker_sorts_cut_offs_05_10_20(ui, page):
    base, experiment_id, _ = ui
    page.goto(f"{base}/#/experiments/{experiment_id}/runs?workflowType=machine_learning")
    page.get_by_role("button", name="Columns", exact=True).click()
    menu = page.get_by_role("dialog")
    menu.get_by_text("test/ndcg_at_05", exact=True).wait_for()
    cut_offs = {}
    for name in menu.get_by_text(re.compile(r"_at_\d+$")).all_inner_texts():
        family, k = name.rsplit("_at_", 1)
        cut_offs.setdefault(family, []).append(int(k))
    assert cut_offs["test/ndcg"] == [5, 10, 20]
    assert all(ks == sorted(ks) for ks in cut_offs.values()), cut_offs
    page.keyboard.press("Escape")


def test_an_als_run_shows_description_datasets_and_its_logged_model(ui, page):
    base, experiment_id, client = ui
    als = runs_named(client, experiment_id)["als-seed1"]
    page.goto(f"{base}/#/experiments/{experiment_id}/runs/{als.info.run_id}"
              "?workflowType=machine_learning")  # fmt: skip
    page.get_by_text("Logged models (1)").wait_for()
    body = page.inner_text("body")
    assert "als on ml-100k, protocol msr, seed 1: test NDCG@10" in body  # the description
    assert f"ml-100k ({als.data.tags['data.sha256'][:16]})" in body  # the dataset input
    (model,) = page.get_by_role("row").filter(has_text="Output").all_inner_texts()
    assert "model" in model and "Ready" in model


def test_the_sweep_run_holds_the_report_figures(ui, page):
    base, experiment_id, client = ui
    runs = runs_named(client, experiment_id)
    (parent,) = [r for r in runs.values() if r.data.tags.get("recsys.sweep") == "true"]
    page.goto(f"{base}/#/experiments/{experiment_id}/runs/{parent.info.run_id}/artifacts"
              "?workflowType=machine_learning")  # fmt: skip
    page.get_by_text("report", exact=True).click()
    page.get_by_text("figures", exact=True).click()
    page.get_by_text("metric_bars.png", exact=True).click()
    image = page.locator("img[src^='blob:']").first
    image.wait_for()
    assert image.evaluate("img => img.complete && img.naturalWidth") > 500  # drawn, not broken
