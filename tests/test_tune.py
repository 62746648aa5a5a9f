"""Optuna studies: search spaces, pruning, resuming after a kill, MLflow mirroring, write-back."""

import os
import signal
import subprocess
import sys
import time

import optuna
import pytest
from mlflow.tracking import MlflowClient

from recsys import tune
from recsys.config import CONF_DIR, compose_config, model_names
from recsys.errors import ConfigError, RecsysError
from tests.conftest import SYNTHETIC

SPACES = sorted(path.stem for path in (CONF_DIR / "search").glob("*.yaml"))


def study_config(data_dir, tmp_path, *overrides):
    return compose_config([f"data.dir={data_dir}", f"data.name={SYNTHETIC}",
                           f"tune.storage=sqlite:///{tmp_path}/optuna.db",
                           f"tune.report_dir={tmp_path}/reports", "tune.write_back=false",
                           *overrides], config_name="tune")  # fmt: skip


def test_every_search_space_belongs_to_a_model_and_parses():
    assert set(SPACES) <= set(model_names())
    for name in SPACES:
        space = tune.search_space(name)
        assert space and {p.kind for p in space} <= set(tune.KINDS)


def test_bad_search_spaces_are_one_line_errors(tmp_path, monkeypatch):
    monkeypatch.setattr(tune, "SEARCH_DIR", tmp_path)
    (tmp_path / "ease.yaml").write_text("regularization: {type: gaussian, low: 1, high: 2}\n")
    with pytest.raises(ConfigError, match="regularization.type must be one of"):
        tune.search_space("ease")
    with pytest.raises(ConfigError, match="no search space for model 'bpr'"):
        tune.search_space("bpr")
    node = compose_config(["model=ease"]).model
    with pytest.raises(ConfigError, match="model.neighbors is not a setting"):
        tune.with_params(node, {"neighbors": 5})


@pytest.mark.parametrize(("override", "message"), [
    ("tune.trials=abc", "tune.trials=abc: expected null (50 trials; 30 for a torch model) or a "
                        "positive integer"),
    ("tune.trials=0", "tune.trials=0: expected null"),
    ("tune.seeds=[1,x]", "tune.seeds=[1, 'x']: expected null or a list of split seeds"),
    ("tune.confirm_top=-1", "tune.confirm_top=-1: expected an integer >= 0"),
    ("tune.write_back=maybe", "tune.write_back=maybe: expected true or false"),
])  # fmt: skip
def test_bad_tune_values_are_one_line_before_any_work(tmp_path, override, message):
    with pytest.raises(ConfigError) as raised:
        tune.check_tune(study_config(tmp_path, tmp_path, override))
    assert str(raised.value) == message or str(raised.value).startswith(message)
    tune.check_tune(study_config(tmp_path, tmp_path))  # the defaults pass


def test_a_storage_that_cannot_be_opened_is_one_line(tmp_path):
    url = f"sqlite:///{tmp_path}/no/such/folder/optuna.db"
    with pytest.raises(ConfigError, match=f"tune.storage={url}: cannot open it .*writable"):
        tune.storage(url)
    assert not (tmp_path / "no").exists()


def test_a_study_without_a_finished_trial_is_one_line_and_a_failed_run(synthetic_data, tmp_path,
                                                                       monkeypatch):  # fmt: skip
    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    cfg = study_config(synthetic_data, tmp_path, "model=ease", "tune.trials=1",
                       "tune.seeds=[42]", f"tracking.uri={uri}")  # fmt: skip
    # every trial pruned: the study ends with no best trial to log
    monkeypatch.setattr(tune, "objective", lambda *args: (_ for _ in ()).throw(
        optuna.TrialPruned()))  # fmt: skip
    with pytest.raises(RecsysError, match="no trial completed \\(1 pruned\\): let trials run"):
        tune.tune(cfg)
    client = MlflowClient(uri)
    (parent,) = client.search_runs([client.get_experiment_by_name(cfg.tracking.experiment)
                                    .experiment_id])  # fmt: skip
    assert parent.info.status == "FAILED"


def test_a_smaller_study_does_not_replace_the_one_that_wrote_the_default(synthetic_data,
                                                                         tmp_path):  # fmt: skip
    study, trials = tune.recorded_study("ease")  # conf/model/ease.yaml's provenance
    run = tmp_path / "run"  # the study's storage and report folder
    (run / "reports").mkdir(parents=True)
    (run / "reports" / f"{study}.md").write_text(f"the {trials}-trial study")
    cfg = study_config(synthetic_data, run, "model=ease", "tune.trials=3", f"tune.study={study}",
                       "tune.seeds=[42]")  # fmt: skip
    with pytest.raises(ConfigError, match=f"and {run}/reports/{study}.md from {trials} trials; "
                                          f"this run would replace them with 3: give "
                                          f"tune.trials={trials}"):  # fmt: skip
        tune.tune(cfg)
    assert [p.name for p in run.iterdir()] == ["reports"]  # no optuna.db: refused before it
    assert (run / "reports" / f"{study}.md").read_text() == f"the {trials}-trial study"
    tune.check_not_smaller(cfg, trials)  # as many: a rerun of that study
    (run / "reports" / f"{study}.md").unlink()
    tune.check_not_smaller(cfg, 3)  # no write-back, and no report of that study to replace
    writes_back = study_config(synthetic_data, run, "model=ease", f"tune.study={study}",
                               "tune.write_back=true")  # fmt: skip
    with pytest.raises(ConfigError, match="this run would replace them with 3"):
        tune.check_not_smaller(writes_back, 3)  # the default in conf/model/ease.yaml
    other = study_config(synthetic_data, run, "model=ease", "tune.write_back=true")
    tune.check_not_smaller(other, 3)  # another study's name: its own report, no conflict
    assert tune.recorded_study("popular") is None  # a default no study wrote


def test_the_study_behind_a_default_is_read_however_its_note_was_wrapped(tmp_path):
    for name in ("two_tower-temporal-synthetic-v2", "a-very-long-study-name-" * 4):
        note = (f"{tune.PROVENANCE} model=two_tower` (study {name}): 100 trials, 7 pruned; "
                f"best val/ndcg@10 0.1795 (trial 16) on split seeds 42; 2026-11-24.")
        for width in range(40, 101, 3):  # every place a line can break
            (tmp_path / "two_tower.yaml").write_text(
                "".join(tune._wrap_comment(note, width)) + "dim: 8\n")
            assert tune.recorded_study("two_tower", tmp_path) == (name, 100), width


def test_a_study_resumes_where_it_stopped_and_is_mirrored_in_mlflow(synthetic_data, tmp_path,
                                                                     mlflow_uri):  # fmt: skip
    first = tune.tune(study_config(synthetic_data, tmp_path, "model=ease", "tune.trials=3",
                                   f"tracking.uri={mlflow_uri}"))  # fmt: skip
    before = [(t.number, t.params, t.value) for t in first.trials]
    cfg = study_config(synthetic_data, tmp_path, "model=ease", "tune.trials=5",
                       f"tracking.uri={mlflow_uri}")  # fmt: skip
    resumed = tune.tune(cfg)
    assert "written to" not in tune.finish(cfg, resumed)  # tune.write_back=false here
    assert [(t.number, t.params, t.value) for t in resumed.trials][:3] == before
    assert len(resumed.trials) == 5
    default = compose_config(["model=ease"]).model
    assert resumed.trials[0].params == {key: default[key] for key in resumed.trials[0].params}
    assert len(resumed.trials[0].params) == len(tune.search_space("ease"))  # the default first
    assert resumed.best_value >= resumed.trials[0].value
    # a closed-form model is validated on three splits (seeds 42, 43, 44) and scored by the mean
    per_seed = resumed.trials[0].user_attrs["per_seed"]
    assert len(per_seed) == 3 and resumed.trials[0].value == pytest.approx(sum(per_seed) / 3)
    # the same study run in one go draws the same settings (the sampler is seeded per trial)
    other = tmp_path / "one-go"
    other.mkdir()
    once = tune.tune(study_config(synthetic_data, other, "model=ease", "tune.trials=5",
                                  "tracking.enabled=false"))  # fmt: skip
    assert [t.params for t in once.trials] == [t.params for t in resumed.trials]
    client = MlflowClient(mlflow_uri)
    experiment = client.get_experiment_by_name(f"{SYNTHETIC}-tuning").experiment_id
    runs = client.search_runs([experiment])
    (parent,) = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert len(children) == 5 and parent.data.tags["study"] == f"ease-msr-{SYNTHETIC}"
    assert parent.info.status == "FINISHED"
    assert all(not key.startswith("test/") for r in runs for key in r.data.metrics)  # never test
    assert parent.data.metrics["val/ndcg_at_10"] == pytest.approx(resumed.best_value)
    report = (tmp_path / "reports" / f"ease-msr-{SYNTHETIC}.md").read_text()
    assert "**Best trial**:" in report and report.count("| complete |") == 5
    assert (tmp_path / "reports" / f"ease-msr-{SYNTHETIC}-history.png").exists()


def test_a_study_of_another_search_space_is_not_resumed(synthetic_data, tmp_path, monkeypatch):
    monkeypatch.setattr(tune, "SEARCH_DIR", tmp_path)
    (tmp_path / "ease.yaml").write_text("regularization: {type: float, low: 1, high: 1000}\n")
    cfg = study_config(synthetic_data, tmp_path, "model=ease", "tune.trials=1", "tune.seeds=[42]",
                       "tracking.enabled=false")  # fmt: skip
    tune.tune(cfg)
    (tmp_path / "ease.yaml").write_text("regularization: {type: float, low: 1, high: 2000}\n")
    with pytest.raises(ConfigError, match="another search space .* tune.study=ease-msr-"):
        tune.tune(cfg)


def test_iterative_models_report_every_epoch_and_can_be_pruned(synthetic_data, tmp_path):
    cfg = study_config(synthetic_data, tmp_path, "model=bpr", "tune.trials=6",
                       "tune.startup_trials=2", "tune.prune_after=1", "tracking.enabled=false",
                       "model.trainer.epochs=6", "model.trainer.min_epochs=0",
                       "model.trainer.progress=false", "model.trainer.device=cpu")  # fmt: skip
    study = tune.tune(cfg)
    assert all(len(t.intermediate_values) >= 1 for t in study.trials)
    states = {t.state for t in study.trials}
    assert states <= {optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED}
    # a single-split study (a torch model) re-validates its best trials and trial 0 on two more
    # splits; the best mean wins, and the result is kept in the study
    confirmed = tune.confirm(cfg, study)
    assert confirmed["seeds"] == [42, 43, 44] and confirmed["candidates"][0]["trial"] == 0
    assert all(len(row["values"]) == 3 for row in confirmed["candidates"])
    assert confirmed["mean"] == max(row["mean"] for row in confirmed["candidates"])
    assert tune.best_params(study) == confirmed["params"]
    assert tune.confirm(cfg, study) == confirmed  # stored: not computed twice
    path = tune.write_study_report(cfg, study, tmp_path / "reports")
    assert f"{len(tune._pruned(study))} pruned" in path.read_text()
    assert "**Confirmed** on split seeds 42, 43, 44" in path.read_text()


# `python -m recsys.tune ARGS`, with the synthetic release registered as a dataset
TUNE_WITH_SYNTHETIC = """
import runpy, sys
from recsys.data import download
from tests.conftest import SYNTHETIC, make_ratings, ratings_bytes, synthetic_spec
download.DATASETS[SYNTHETIC] = synthetic_spec(ratings_bytes(make_ratings()))
sys.argv = ["recsys.tune", *sys.argv[1:]]
runpy.run_module("recsys.tune", run_name="__main__", alter_sys=True)
"""


@pytest.mark.slow  # ~20 s: a kill mid-trial, a heartbeat's grace period, the rest of the study
def test_a_killed_study_resumes(synthetic_data, tmp_path):
    args = [sys.executable, "-c", TUNE_WITH_SYNTHETIC, "model=bpr", f"data.dir={synthetic_data}",
            f"data.name={SYNTHETIC}", f"tune.storage=sqlite:///{tmp_path}/optuna.db",
            f"tune.report_dir={tmp_path}/reports", "tune.write_back=false", "tune.trials=4",
            "tracking.enabled=false", "model.trainer.epochs=40", "model.trainer.patience=0",
            "model.trainer.progress=false", "model.trainer.device=cpu",
            f"hydra.run.dir={tmp_path}/outputs"]  # fmt: skip
    env = os.environ | {"PYTHONPATH": str(CONF_DIR.parent)}  # tests.conftest importable
    process = subprocess.Popen(args, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)  # fmt: skip
    storage = f"sqlite:///{tmp_path}/optuna.db"
    name = f"bpr-msr-{SYNTHETIC}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and _count(storage, name, "COMPLETE") < 1:
        assert process.poll() is None, "the study ended before it could be killed"
        time.sleep(0.2)
    process.send_signal(signal.SIGKILL)  # mid-way through a trial
    process.wait(timeout=30)
    done = _count(storage, name, "COMPLETE")
    assert 1 <= done < 4
    result = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=300)  # fmt: skip
    assert result.returncode == 0, result.stderr
    study = optuna.load_study(study_name=name, storage=storage)
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(complete) == 4
    assert all(t.state != optuna.trial.TrialState.RUNNING for t in study.trials)


@pytest.mark.filterwarnings("ignore:Heartbeat of storage:UserWarning")  # ask(), not optimize()
def test_a_trial_killed_before_its_first_heartbeat_is_failed_and_a_live_one_is_not(
        tmp_path, monkeypatch):  # fmt: skip
    # Optuna fails only trials whose heartbeat went stale; a process killed between creating a
    # trial and its first beat leaves one with no heartbeat at all (what CI caught, by chance)
    monkeypatch.setattr(tune, "HEARTBEAT_SECONDS", 1)
    monkeypatch.setattr(tune, "GRACE_SECONDS", 1)
    url = f"sqlite:///{tmp_path}/optuna.db"
    study = optuna.create_study(study_name="s", storage=tune.storage(url))
    killed = study.ask()  # RUNNING, never beat: its process died right here
    live = study.ask()
    beating = optuna.storages._heartbeat.get_heartbeat_thread(live._trial_id, study._storage)
    with beating:  # another process still running its trial
        tune.fail_killed_trials(study)
        states = {t.number: t.state for t in study.get_trials(deepcopy=False)}
    assert states == {killed.number: optuna.trial.TrialState.FAIL,
                      live.number: optuna.trial.TrialState.RUNNING}  # fmt: skip


def _count(storage: str, name: str, state: str) -> int:
    try:
        study = optuna.load_study(study_name=name, storage=storage)
    except (KeyError, Exception):  # noqa: BLE001 - the study is not created yet
        return 0
    return sum(t.state.name == state for t in study.trials)


def test_write_back_keeps_the_file_and_names_the_study(tmp_path):
    source = (CONF_DIR / "model" / "bpr.yaml").read_text()
    (tmp_path / "bpr.yaml").write_text(source)
    note = f"{tune.PROVENANCE} model=bpr` (study bpr-x): 3 trials, 1 pruned; best 0.1 (trial 2)."
    tune.write_back("bpr", {"factors": 64, "trainer.lr": 0.002}, note, folder=tmp_path)
    again = tune.write_back("bpr", {"factors": 32}, note.replace("bpr-x", "bpr-y"),
                            folder=tmp_path).read_text()  # fmt: skip
    cfg = compose_config(["model=bpr"]).model
    written = __import__("omegaconf").OmegaConf.create(again)
    assert written.factors == 32 and written.trainer.lr == 0.002
    assert written.regularization == cfg.regularization
    assert again.count(tune.PROVENANCE) == 1 and "bpr-y" in again and "bpr-x" not in again
    assert "_target_: recsys.models.bpr.BPRRecommender" in again
    kept = [line for line in source.splitlines() if line.startswith("# ") and
            not line.startswith(tune.PROVENANCE) and not line.startswith("#   ")]  # fmt: skip
    assert all(line in again for line in kept)  # the description is kept
