import json

import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from recsys import report
from recsys.config import compose_config
from recsys.errors import ConfigError
from recsys.report import (
    confidence_interval,
    holm,
    load_runs,
    readme_section,
    significance,
    write_report,
)
from recsys.train import run
from tests.conftest import SYNTHETIC


def test_holm_matches_a_hand_computed_case():
    adjusted = holm({"a": 0.01, "b": 0.04, "c": 0.03, "d": 0.5})
    # sorted 0.01, 0.03, 0.04, 0.5 -> 4*0.01, max(.04, 3*.03), max(.09, 2*.04), max(.09, .5)
    assert adjusted == pytest.approx({"a": 0.04, "c": 0.09, "b": 0.09, "d": 0.5})


@pytest.mark.parametrize("order", [["x", "a", "b"], ["a", "b", "x"]])
def test_holm_counts_a_missing_p_value_as_1_wherever_it_comes(order):
    p_values = {"x": float("nan"), "a": 0.01, "b": 0.02}  # x: a test with one value
    adjusted = holm({name: p_values[name] for name in order})
    assert adjusted == pytest.approx({"a": 0.03, "b": 0.04, "x": 1.0})


def test_confidence_interval_is_student_t():
    values = np.array([0.40, 0.42, 0.41, 0.43, 0.39])
    expected = 2.7764451 * values.std(ddof=1) / np.sqrt(5)  # t(0.975, 4)
    assert confidence_interval(values) == pytest.approx(expected, rel=1e-6)
    assert np.isnan(confidence_interval(np.array([0.4])))


@pytest.mark.parametrize("test", ["wilcoxon", "ttest"])
def test_significance_marks_the_worse_model_and_not_the_noisy_twin(test):
    rng = np.random.default_rng(0)
    best = rng.uniform(0.2, 0.8, size=500)
    per_user = pd.DataFrame({
        "best": best,
        "worse": best - 0.05 + rng.normal(0, 0.02, size=500),  # better by construction
        "twin": best + rng.normal(0, 0.02, size=500),  # identical up to noise
    })  # fmt: skip
    assert significance(per_user, "best", alpha=0.05, test=test) == {"worse": True,
                                                                       "twin": False}


@pytest.fixture(scope="module")
def runs(bench_runs):
    return bench_runs


@pytest.fixture(scope="module")
def written(runs, tmp_path_factory):
    out = tmp_path_factory.mktemp("report") / "reports"
    return write_report(runs, out, [10, 5, 20], alpha=0.05, test="wilcoxon")


def test_runs_are_ordered_weakest_first_and_the_newest_repeat_counts(runs):
    assert runs.models == ["popular", "als", "ease"] or runs.models == ["popular", "ease", "als"]
    means = runs.table.groupby("model")["test/ndcg_at_10"].mean()
    assert list(means[runs.models]) == sorted(means)
    assert len(runs.table) == 6 and set(runs.table["seed"]) == {1, 2}


def test_each_runs_per_user_file_is_read_once(runs, monkeypatch):
    runs.close()  # start from an empty download cache
    reads = []
    original = pd.read_csv
    monkeypatch.setattr(pd, "read_csv", lambda *a, **k: reads.append(a[0]) or original(*a, **k))
    report.metric_table(runs, ["precision@10", "recall@10", "ndcg@10", "map@5"], 0.05,
                        "wilcoxon")  # fmt: skip
    assert len(reads) == len(runs.table) == len(set(reads))


def test_report_tables_latex_figures_and_protocol(written, runs):
    markdown = written.read_text()
    assert "| model | Seeds | Precision@10 | Recall@10 | MAP@10 | NDCG@10 |" in markdown
    assert "| popular | 2 | " in markdown  # each row states its model's number of seeds
    assert "## Test metrics at K = 5, 20" in markdown
    assert markdown.count("**") >= 2 * 7 and "†" in markdown and "Holm" in markdown
    # the protocol comes from the runs' config, not from prose typed into the report
    assert f"Protocol: {SYNTHETIC}, all ratings positive; per-user stratified random split: " \
           "25 % of each user's interactions to test, then 10 % of the rest to validation" \
           in markdown
    assert "Mean over seeds 1, 2 (1 degree of freedom) ± half-width" in markdown
    assert "n/a" not in markdown
    latex = (written.parent / "results.tex").read_text()
    assert "\\toprule" in latex and "\\bottomrule" in latex and "\\textbf{" in latex
    figures = {p.name for p in (written.parent / "figures").iterdir()}
    for name in report.FIGURES:
        assert {f"{name}.png", f"{name}.pdf"} <= figures
    record = json.loads((written.parent / "report.json").read_text())
    assert record["experiment"] == "bench" and record["protocol"] == runs.protocol
    seconds = runs.table.groupby("model")["time/fit_seconds"].mean()
    assert record["fit_seconds"] == {m: round(seconds[m], 1) for m in runs.models}


def test_the_same_runs_rebuild_the_same_report(written, runs):
    again = write_report(runs, written.parent, [10, 5, 20], 0.05, "wilcoxon")
    assert again.read_text() == written.read_text()


def test_main_k_is_the_first_of_ks(runs, tmp_path):
    markdown = write_report(runs, tmp_path / "at5", [5], 0.05, "ttest").read_text()
    assert "## Test metrics at K = 5" in markdown and "NDCG@5" in markdown
    assert "@10" not in markdown


def test_another_experiments_report_is_not_overwritten(written, runs, tmp_path):
    before = written.read_text()
    other = runs.__class__(runs.table, runs.client, "other", runs.protocol)
    with pytest.raises(ConfigError, match="experiment 'bench', not 'other'.*--force"):
        write_report(other, written.parent, [10], 0.05, "wilcoxon")
    older = _with_protocol(written.parent, runs.protocol | {"split.test_ratio": "0.2"}, tmp_path)
    with pytest.raises(ConfigError, match="another protocol \\(split.test_ratio 0.2 -> 0.25"):
        write_report(runs, older, [10], 0.05, "wilcoxon")
    assert written.read_text() == before
    foreign = tmp_path / "thesis"
    foreign.mkdir()
    (foreign / "chapter.md").write_text("mine")
    with pytest.raises(ConfigError, match="no report wrote"):
        write_report(runs, foreign, [10], 0.05, "wilcoxon")
    write_report(runs, foreign, [10], 0.05, "wilcoxon", force=True)
    assert (foreign / "chapter.md").read_text() == "mine"


def _with_protocol(folder, protocol, tmp_path):
    copy = tmp_path / "copy"
    copy.mkdir()
    record = json.loads((folder / "report.json").read_text()) | {"protocol": protocol}
    (copy / "report.json").write_text(json.dumps(record))
    return copy


def test_runs_of_two_protocols_are_refused(tracked_benchmark, mlflow_uri, tmp_path, monkeypatch):
    _, data_dir, _ = tracked_benchmark
    monkeypatch.chdir(tmp_path)
    local = mlflow_uri
    for seed, ratio in ((1, "0.25"), (2, "0.2")):
        run(compose_config([f"data.dir={data_dir}", f"data.name={SYNTHETIC}", "model=popular",
                            f"tracking.uri={local}", "tracking.experiment=mixed", f"seed={seed}",
                            f"split.test_ratio={ratio}"]))  # fmt: skip
    with pytest.raises(ConfigError, match="2 protocols .*split.test_ratio.*--filter"):
        load_runs(MlflowClient(local), "mixed")
    one = load_runs(MlflowClient(local), "mixed", "params.`split.test_ratio` = '0.2'")
    assert one.protocol["split.test_ratio"] == "0.2"


def test_readme_section_holds_the_main_table(runs):
    section = readme_section(runs, 10, 0.05, "wilcoxon")
    assert "| model | Seeds | Precision@10 |" in section and "Protocol:" in section
    assert section.count("\n| ") == len(runs.models) + 2  # header, separator, one row a model


class RecordingClient:
    def __init__(self):
        self.logged = []

    def log_artifacts(self, run_id, folder, path):
        self.logged.append((run_id, path))

    def log_artifact(self, run_id, file, path):
        self.logged.append((run_id, path))


@pytest.mark.parametrize(("parents", "expected"), [
    (["a", "a", "b"], "a"),  # a benchmark and one model added by a later sweep
    ([None, "b", None], "b"),
    ([None, None], None),  # no sweep: nothing to attach to
])  # fmt: skip
def test_the_report_goes_to_the_sweep_holding_most_runs(tmp_path, parents, expected):
    import pandas as pd

    from recsys.report import Runs, log_to_sweep

    client = RecordingClient()
    runs = Runs(pd.DataFrame({"parent": parents}), client, "x", {})
    assert log_to_sweep(runs, tmp_path) == expected
    assert {run_id for run_id, _ in client.logged} == ({expected} if expected else set())


def test_a_filtered_report_is_not_attached_to_the_sweep(tracked_benchmark, tmp_path,
                                                        monkeypatch):  # fmt: skip
    # a report of some of a sweep's runs must not replace the sweep's own report in MLflow
    uri, _, _ = tracked_benchmark
    monkeypatch.setenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    attached = []
    monkeypatch.setattr(report, "log_to_sweep", lambda runs, out: attached.append(out))
    argv = ["--tracking-uri", uri, "--experiment", "bench", "--ks", "10"]
    assert report.main([*argv, "--out", str(tmp_path / "some"),
                        "--filter", "tags.model != 'popular'"]) == 0  # fmt: skip
    assert attached == []
    assert report.main([*argv, "--out", str(tmp_path / "all")]) == 0
    assert attached == [tmp_path / "all"]
