import statistics
import subprocess
import sys

import pytest
from mlflow.tracking import MlflowClient

from recsys import artifacts
from recsys.artifacts import RunArtifacts
from recsys.config import build_model, compose_config, load_split, model_names
from recsys.errors import ConfigError
from recsys.metrics import evaluate
from recsys.train import run
from tests.conftest import SYNTHETIC


def synthetic_config(data_dir, uri, *overrides):
    uri = [] if uri is None else [f"tracking.uri={uri}"]
    return compose_config([f"data.dir={data_dir}", f"data.name={SYNTHETIC}", *uri, *overrides])


def only_quality(metrics):
    return {k: v for k, v in metrics.items() if not k.startswith("time/")}


def test_run_logs_config_metrics_tags_and_artifacts(synthetic_data, mlflow_uri, tmp_path,
                                                     monkeypatch):  # fmt: skip
    monkeypatch.chdir(tmp_path)
    metrics = run(synthetic_config(synthetic_data, mlflow_uri, "model=als", "model.factors=8"))
    assert metrics["test/ndcg@10"] > 0.2 and metrics["val/n_users"] > 0
    client = MlflowClient(mlflow_uri)
    experiment = client.get_experiment_by_name(SYNTHETIC)
    (logged,) = client.search_runs([experiment.experiment_id])
    assert logged.info.status == "FINISHED"
    params, tags, values = logged.data.params, logged.data.tags, logged.data.metrics
    assert params["model._target_"] == "recsys.models.als.ALSRecommender"
    assert params["model.factors"] == "8" and params["seed"] == "42"
    assert int(params["split.size.train"]) > int(params["split.size.test"]) > 0
    for k in (5, 10, 20):
        for part in ("val", "test"):
            assert f"{part}/ndcg_at_{k:02d}" in values and f"{part}/coverage_at_{k:02d}" in values
    assert values["test/ndcg_at_10"] == pytest.approx(metrics["test/ndcg@10"])
    assert {"time/fit_seconds", "time/test_eval_seconds"} <= set(values)
    assert tags["model"] == "als" and tags["seed"] == "42"
    assert len(tags["data.sha256"]) == 64 and len(tags["split.fingerprint"]) == 64
    assert tags["git.commit"] and tags["version.implicit"] and tags["version.torch"]
    assert tags["hardware.cpu_count"] and tags["command"].startswith("python -m recsys.train")
    top_level = {a.path for a in client.list_artifacts(logged.info.run_id)}
    assert {artifacts.CONFIG, artifacts.ENVIRONMENT, "metrics", artifacts.EMBEDDINGS} <= top_level
    per_user = {a.path for a in client.list_artifacts(logged.info.run_id, "metrics")}
    assert per_user == {*artifacts.PER_USER.values(), artifacts.TEST_TOP_ITEMS,
                        artifacts.TRAIN_ITEM_COUNTS}  # fmt: skip
    embeddings = {a.path for a in client.list_artifacts(logged.info.run_id, "embeddings")}
    assert embeddings == {artifacts.embedding_path(n) for n in artifacts.EMBEDDING_ARRAYS}
    with RunArtifacts(client, logged.info.run_id) as files:
        assert files.config().model.factors == 8
        assert len(files.per_user("test")) == values["test/n_users"]


def test_same_seed_same_metrics_other_seed_other_split(synthetic_data, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    first = run(synthetic_config(synthetic_data, None, "model=als", "tracking.enabled=false"))
    again = run(synthetic_config(synthetic_data, None, "model=als", "tracking.enabled=false"))
    assert only_quality(first) == only_quality(again)
    other = run(synthetic_config(synthetic_data, None, "model=als", "seed=7",
                                 "tracking.enabled=false"))  # fmt: skip
    assert only_quality(other) != only_quality(first)


def test_default_store_is_mlflow_db_in_the_working_directory(synthetic_data, tmp_path,
                                                             monkeypatch):  # fmt: skip
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    cfg = compose_config([f"data.dir={synthetic_data}", f"data.name={SYNTHETIC}", "model=popular"])
    run(cfg)
    assert (tmp_path / "mlflow.db").exists()


def test_bad_hyperparameter_is_a_config_error(synthetic_data, mlflow_uri, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match="model.factors must be"):
        run(synthetic_config(synthetic_data, mlflow_uri, "model=als", "model.factors=-3"))


def recsys_train(tmp_path, *args):
    return subprocess.run([sys.executable, "-m", "recsys.train", *args], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)  # fmt: skip


def test_cli_unknown_model_lists_the_available_models(tmp_path):
    result = recsys_train(tmp_path, "model=nope")
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    (line,) = result.stderr.splitlines()
    assert line.startswith("error: unknown model 'nope'")
    assert ", ".join(model_names()) in line  # every file of conf/model/, in order


def test_cli_corrupt_data_is_one_line_checksum_error(tmp_path):
    folder = tmp_path / "data" / "ml-100k"
    folder.mkdir(parents=True)
    (folder / "ratings.tsv").write_text("1\t1\t5\t880000000\n")
    result = recsys_train(tmp_path, "tracking.enabled=false", "data.dir=data")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    (line,) = [x for x in result.stderr.splitlines() if x.startswith("error:")]
    assert "checksum mismatch" in line and "06416e597f82b734" in line
    # the fix names the data.dir in use, made absolute: it holds wherever it is pasted
    assert f"download --data-dir {tmp_path / 'data'} --name ml-100k --force" in line
    assert (folder / "ratings.tsv").read_text() == "1\t1\t5\t880000000\n"  # nothing deleted


def test_cli_bad_value_is_one_line_error(tmp_path):
    result = recsys_train(tmp_path, "tracking.enabled=false", "split.test_ratio=1.5",
                          "data.dir=/nonexistent/never-downloaded")  # fmt: skip
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    (line,) = [x for x in result.stderr.splitlines() if x.startswith("error:")]
    assert "split.test_ratio must be in (0, 1), got 1.5" in line


def test_torch_model_logs_each_epoch_and_uses_side_features(synthetic_data, mlflow_uri, tmp_path,
                                                            monkeypatch):  # fmt: skip
    monkeypatch.chdir(tmp_path)
    cfg = synthetic_config(synthetic_data, mlflow_uri, "model=two_tower", "model.trainer.epochs=4",
                           "model.dim=8", "model.trainer.device=cpu",
                           "model.trainer.progress=false")  # fmt: skip
    metrics = run(cfg)
    assert 1 <= metrics["train/best_epoch"] <= metrics["train/epochs_run"] <= 4
    client = MlflowClient(mlflow_uri)
    (logged,) = client.search_runs([client.get_experiment_by_name(SYNTHETIC).experiment_id])
    history = client.get_metric_history(logged.info.run_id, "epoch/val/ndcg_at_10")
    assert [m.step for m in history] == list(range(1, int(metrics["train/epochs_run"]) + 1))
    assert len(client.get_metric_history(logged.info.run_id, "epoch/loss")) == len(history)
    assert len(client.get_metric_history(logged.info.run_id, "epoch/penalty")) == len(history)
    seconds = [m.value for m in client.get_metric_history(logged.info.run_id, "epoch/seconds")]
    assert len(seconds) == len(history) and min(seconds) > 0
    assert metrics["time/epoch_seconds"] == pytest.approx(statistics.median(seconds))
    assert max(m.value for m in history) == pytest.approx(metrics["val/ndcg@10"])
    # refit (the default protocol's): the best epoch count again, on train + validation
    assert metrics["train/refit"] == 1.0
    assert metrics["refit/epochs_run"] == metrics["train/best_epoch"]
    assert logged.data.tags["protocol"] == "msr" and logged.data.params["protocol.refit"] == "True"


def test_early_stopping_needs_a_validation_part(synthetic_data, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match="val_ratio"):
        run(synthetic_config(synthetic_data, None, "model=bpr", "split.val_ratio=0",
                             "tracking.enabled=false"))  # fmt: skip


def test_refit_trains_the_chosen_settings_on_train_and_validation(synthetic_data, tmp_path,
                                                                   monkeypatch):  # fmt: skip
    monkeypatch.chdir(tmp_path)
    cfg = synthetic_config(synthetic_data, None, "model=ease", "tracking.enabled=false")
    refit = run(cfg)
    split = load_split(cfg).split
    seen = split.train.to_csr() + split.validation.to_csr()
    direct = build_model(cfg.model, cfg.seed).fit(seen)  # what refit means, written out
    assert refit["test/ndcg@10"] == evaluate(direct, split.test.to_csr(), seen, [10]).summary[
        "ndcg@10"]  # fmt: skip
    kept = run(synthetic_config(synthetic_data, None, "model=ease", "tracking.enabled=false",
                                "protocol.refit=false"))  # fmt: skip
    assert refit["train/refit"] == 1.0 and kept["train/refit"] == 0.0
    assert kept["val/ndcg@10"] == refit["val/ndcg@10"]  # selection is the same model
    assert kept["test/ndcg@10"] != refit["test/ndcg@10"]


@pytest.mark.parametrize("protocol", ["msr", "loo", "temporal"])
def test_every_protocol_runs_and_is_logged(synthetic_data, mlflow_uri, tmp_path, monkeypatch,
                                           protocol):  # fmt: skip
    monkeypatch.chdir(tmp_path)
    metrics = run(synthetic_config(synthetic_data, mlflow_uri, "model=popular",
                                   f"protocol={protocol}"))  # fmt: skip
    assert metrics["test/n_users"] > 0
    client = MlflowClient(mlflow_uri)
    (logged,) = client.search_runs([client.get_experiment_by_name(SYNTHETIC).experiment_id])
    assert logged.data.tags["protocol"] == protocol
