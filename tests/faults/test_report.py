"""Fault injection into the report: runs with NaN metrics, a model with one seed, a folder that
holds another report, a mistyped command line."""

import json
import re

import pytest

from recsys import report
from recsys.report import MAIN_METRICS, Runs, readme_section
from recsys.tracking import RunTracker
from tests.conftest import fresh_store
from tests.faults.harness import failing_cli

NAN = float("nan")


@pytest.fixture(autouse=True)
def quiet_mlflow(monkeypatch):
    """``report.main`` sets this for a CLI; keep it from leaking into other tests."""
    monkeypatch.setenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


def log_run(uri: str, experiment: str, model: str, seed: int, value: float) -> str:
    """A finished run with the tags, protocol and test metrics at K = 10 the report reads (no
    artifacts: a refused report never reads them); its run id."""
    tracker = RunTracker(uri, experiment, f"{model}-{seed}")
    tracker.set_tags({"model": model, "seed": seed, "has_embeddings": "false"})
    tracker.log_params({"data.name": "ml-synthetic", "split.test_ratio": 0.25})
    tracker.log_metrics({**{f"test/{m}@10": value for m in (*MAIN_METRICS, "coverage")},
                         "time/fit_seconds": 0.1})  # fmt: skip
    tracker.end()
    return tracker.run_id


@pytest.fixture(scope="module")
def nan_store(tmp_path_factory, mlflow_template):
    """Experiment ``nan``: popular seeds 1, 2 and ease seed 1 are fine; ease seed 2 logged NaN
    metrics (what `python -m recsys.train data.min_rating=9` logs: no user to evaluate).
    Yields ``(uri, folder, NaN run id)``."""
    folder = tmp_path_factory.mktemp("nan-store")
    uri = fresh_store(folder, mlflow_template)
    for model, seed in (("popular", 1), ("popular", 2), ("ease", 1)):
        log_run(uri, "nan", model, seed, 0.3)
    return uri, folder, log_run(uri, "nan", "ease", 2, NAN)


def test_a_run_with_nan_metrics_is_refused_by_name(nan_store, tmp_path, capsys):
    uri, folder, nan_run = nan_store
    out = tmp_path / "reports"
    line = failing_cli(capsys, report.main, ["--tracking-uri", uri, "--experiment", "nan",
                                             "--out", str(out), "--ks", "10"],
                       protect=(folder, tmp_path))  # fmt: skip
    assert line == (f"error: 1 finished run(s) of 'nan' have NaN or no test/precision@10, "
                    f"test/recall@10, test/map@10 ...: {nan_run} (ease, seed 2); delete them "
                    f"(`mlflow runs delete --run-id ID`) or pick other runs with --experiment "
                    f"or --filter")  # fmt: skip
    assert not out.exists()


def test_a_cut_off_no_run_logged_is_refused(nan_store, tmp_path, capsys):
    uri, folder, _ = nan_store
    line = failing_cli(capsys, report.main, ["--tracking-uri", uri, "--experiment", "nan",
                                             "--out", str(tmp_path / "out"), "--ks", "10", "20"],
                       protect=(folder, tmp_path))  # fmt: skip
    assert line == ("error: the runs of 'nan' logged no test/precision@20: choose --ks among "
                    "the cut-offs they were evaluated at")  # fmt: skip


# -- seeds ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def benchmark_runs(bench_runs):
    return bench_runs


def _without(runs: Runs, drop: list[tuple[str, int]]) -> Runs:
    """``runs`` less the runs of the given (model, seed) pairs."""
    keep = [(m, s) not in drop for m, s in zip(runs.table["model"], runs.table["seed"],
                                                strict=True)]  # fmt: skip
    return Runs(runs.table[keep].reset_index(drop=True), runs.client, runs.experiment,
                runs.protocol)  # fmt: skip


def _row(section: str, model: str) -> str:
    return next(line for line in section.splitlines() if line.startswith(f"| {model} |"))


def test_a_model_with_one_seed_has_no_interval_and_no_dagger(benchmark_runs):
    full = readme_section(benchmark_runs, 10, 0.05, "wilcoxon")
    assert "†" in _row(full, "popular")  # with two seeds, the weakest model is beaten
    runs = _without(benchmark_runs, [("popular", 2)])
    section = readme_section(runs, 10, 0.05, "wilcoxon")
    popular = _row(section, "popular")
    assert popular.startswith("| popular | 1 | ") and "†" not in popular
    assert popular.count("± n/a") == 7  # six metrics and coverage
    for model in ("als", "ease"):
        assert _row(section, model).startswith(f"| {model} | 2 | ")
        assert "n/a" not in _row(section, model)
    assert re.search("Mean over each model's seeds \\(popular: seed 1 only, so no interval "
                     "\\(± n/a\\) and no significance test; (als, ease|ease, als): seeds 1, 2 "
                     "\\(1 degree of freedom\\)\\) ± half-width", section)  # fmt: skip
    assert "Models with one seed (popular) are not tested" in section
    latex = report.latex_table(report.metric_table(runs, ["ndcg@10"], 0.05, "wilcoxon"),
                               runs.models, "caption")  # fmt: skip
    assert re.search(r"popular & 1 & 0\.\d{4} \$\\pm\$ n/a \\\\", latex)


def test_with_one_seed_left_to_all_but_one_model_nothing_is_tested(benchmark_runs):
    runs = _without(benchmark_runs, [("popular", 2), ("ease", 2)])
    section = readme_section(runs, 10, 0.05, "ttest")
    assert "†" not in section.split("\n\n")[1]  # the table
    assert "No significance tests (†): fewer than two models have two or more seeds." in section


# -- the output folder ----------------------------------------------------------------------
def _report_folder(tmp_path, record: dict | None, name: str = "reports"):
    folder = tmp_path / name
    folder.mkdir()
    (folder / "results.md").write_text("# an earlier report, or a thesis chapter\n")
    if record is not None:
        (folder / report.REPORT_FILE).write_text(json.dumps(record))
    return folder


@pytest.mark.parametrize("case", ["experiment", "protocol", "foreign", "file"])
def test_a_folder_of_other_results_is_not_overwritten(tracked_benchmark, benchmark_runs,
                                                      tmp_path, capsys, case):  # fmt: skip
    uri, _, _ = tracked_benchmark
    protocol = benchmark_runs.protocol
    records = {"experiment": {"experiment": "ml-100k-msr-benchmark", "protocol": protocol},
               "protocol": {"experiment": "bench",
                            "protocol": protocol | {"split.test_ratio": "0.2"}},
               "foreign": None}  # fmt: skip
    if case == "file":
        out = tmp_path / "results.md"
        out.write_text("not a folder")
    else:
        out = _report_folder(tmp_path, records[case])
    line = failing_cli(capsys, report.main, ["--tracking-uri", uri, "--experiment", "bench",
                                             "--out", str(out)], protect=(tmp_path,))  # fmt: skip
    expected = {
        "experiment": f"error: {out} holds the report of experiment 'ml-100k-msr-benchmark', "
                      f"not 'bench': pass --force to overwrite it, or choose another --out",
        "protocol": f"error: {out} holds a report of another protocol (split.test_ratio 0.2 -> "
                    f"0.25): pass --force to overwrite it, or choose another --out",
        "foreign": f"error: {out} holds files that no report wrote (report.json missing or "
                   f"unreadable): pass --force to write into it anyway, or choose another --out",
        "file": f"error: --out {out} is a file, not a folder: choose another --out",
    }  # fmt: skip
    assert line == expected[case]


def test_an_unreadable_readme_is_refused_before_anything_is_written(tracked_benchmark, tmp_path,
                                                                     capsys):  # fmt: skip
    uri, _, _ = tracked_benchmark
    (tmp_path / "README.md").write_text("# no generated section here\n")
    cases = ((tmp_path / "missing.md", "cannot read --readme"),
             (tmp_path / "README.md", "no generated section 'results'"))  # fmt: skip
    for readme, message in cases:
        line = failing_cli(capsys, report.main, ["--tracking-uri", uri, "--experiment", "bench",
                                                 "--out", str(tmp_path / "out"),
                                                 "--readme", str(readme)],
                           protect=(tmp_path,))  # fmt: skip
        assert line.startswith(f"error: {message}")
        assert not (tmp_path / "out").exists()


def test_a_readme_holding_another_experiments_results_is_kept(tracked_benchmark, tmp_path,
                                                               capsys):  # fmt: skip
    uri, _, _ = tracked_benchmark
    readme = tmp_path / "README.md"
    readme.write_text("<!-- generated:results -->\n<!-- from MLflow experiment "
                      "ml-100k-msr-benchmark -->\n| 13 models x 5 seeds |\n"
                      "<!-- /generated:results -->\n")  # fmt: skip
    line = failing_cli(capsys, report.main, ["--tracking-uri", uri, "--experiment", "bench",
                                             "--out", str(tmp_path / "out"),
                                             "--readme", str(readme)],
                       protect=(tmp_path,))  # fmt: skip
    assert line == (f"error: --readme {readme}: its results section is of MLflow experiment "
                    f"'ml-100k-msr-benchmark', not 'bench': pass --force to replace it, or "
                    f"leave out --readme")  # fmt: skip
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(("argv", "message"), [
    (["--bogus"], "unrecognized arguments: --bogus"),
    (["--ks", "0"], "argument --ks: expected a positive whole number, got '0'"),
    (["--ks", "ten"], "argument --ks: expected a positive whole number, got 'ten'"),
    (["--alpha", "5"], "argument --alpha: expected a number between 0 and 1, got '5'"),
    (["--test", "anova"], "argument --test: invalid choice: 'anova'"),
])  # fmt: skip
def test_a_mistyped_command_line_is_one_line(capsys, tmp_path, monkeypatch, argv, message):
    monkeypatch.chdir(tmp_path)  # nothing may be written, not even a default mlflow.db
    line = failing_cli(capsys, report.main, argv, protect=(tmp_path,))
    assert line.startswith(f"error: {message}")
    assert line.endswith("(see python -m recsys.report --help)")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("command", ["report", "export", "literature"])
def test_readers_report_a_dead_tracking_server_in_one_line(capsys, tmp_path, command):
    from recsys import export, literature

    main = {"report": report.main, "export": export.main, "literature": literature.main}[command]
    argv = ["--tracking-uri", "http://127.0.0.1:9", "--out", str(tmp_path / "out")]
    line = failing_cli(capsys, main, ["published", *argv] if command == "literature" else argv)
    assert "MLflow server http://127.0.0.1:9 is not reachable" in line


@pytest.mark.parametrize("command", ["report", "export", "literature"])
@pytest.mark.parametrize("given", [None, "sqlite:///typo.db", "typo.db"])
def test_readers_create_no_store_where_there_is_none(capsys, tmp_path, monkeypatch, command,
                                                     given):  # fmt: skip
    from recsys import export, literature

    monkeypatch.chdir(tmp_path)  # no mlflow.db here: a fresh clone before any training
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    main = {"report": report.main, "export": export.main, "literature": literature.main}[command]
    argv = ["--out", str(tmp_path / "out"), *(["--tracking-uri", given] if given else [])]
    line = failing_cli(capsys, main, ["published", *argv] if command == "literature" else argv)
    database = tmp_path / ("typo.db" if given else "mlflow.db")
    expected = "not a store URI: a SQLite store is sqlite:///typo.db" if given == "typo.db" \
        else "no MLflow store at"
    assert line.startswith("error: --tracking-uri ") and expected in line
    assert "tracking.uri" not in line.replace("--tracking-uri", "")
    assert not database.exists() and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("clause", ["bogus", "params.seed = 1"])
def test_a_bad_filter_is_one_line(tracked_benchmark, tmp_path, capsys, clause):
    uri, _, _ = tracked_benchmark
    line = failing_cli(capsys, report.main, ["--tracking-uri", uri, "--experiment", "bench",
                                             "--out", str(tmp_path / "out"), "--filter", clause],
                       protect=(tmp_path,))  # fmt: skip
    assert line.startswith(f"error: --filter {clause!r}: ") and "give an MLflow filter" in line
    assert not (tmp_path / "out").exists()
