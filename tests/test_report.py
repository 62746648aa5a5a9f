import numpy as np
import pandas as pd
import pytest

from recsys.report import confidence_interval, holm, load_runs, significance, write_report
from recsys.train import compose_config, run
from tests.conftest import SYNTHETIC


def test_holm_matches_a_hand_computed_case():
    adjusted = holm({"a": 0.01, "b": 0.04, "c": 0.03, "d": 0.5})
    # sorted 0.01, 0.03, 0.04, 0.5 -> 4*0.01, max(.04, 3*.03), max(.09, 2*.04), max(.09, .5)
    assert adjusted == pytest.approx({"a": 0.04, "c": 0.09, "b": 0.09, "d": 0.5})


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


def test_report_from_a_real_mlflow_experiment(synthetic_data, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    for model in ("popular", "als", "ease"):
        for seed in (1, 2):
            run(compose_config([f"data.dir={synthetic_data}", f"data.name={SYNTHETIC}",
                                f"tracking.uri={uri}", f"model={model}", f"seed={seed}",
                                "tracking.experiment=bench"]))  # fmt: skip
    run(compose_config([f"data.dir={synthetic_data}", f"data.name={SYNTHETIC}",
                        f"tracking.uri={uri}", "model=als", "seed=1",
                        "tracking.experiment=bench"]))  # a repeated run: the newest counts
    from mlflow.tracking import MlflowClient

    runs = load_runs(MlflowClient(uri), "bench")
    assert runs.models == ["popular", "ease", "als"] and len(runs.table) == 6
    path = write_report(runs, tmp_path / "reports", [5, 10, 20], alpha=0.05, test="wilcoxon")
    markdown = path.read_text()
    assert "| model | Precision@10 | Recall@10 | MAP@10 | NDCG@10 |" in markdown
    assert markdown.count("**") >= 2 * 7 and "†" in markdown and "Holm" in markdown
    latex = (tmp_path / "reports" / "results.tex").read_text()
    assert "\\toprule" in latex and "\\bottomrule" in latex and "\\textbf{" in latex
    figures = {p.name for p in (tmp_path / "reports" / "figures").iterdir()}
    for name in ("metric_bars", "metric_vs_k", "time_vs_ndcg", "popularity_bias", "coverage",
                 "item_embeddings"):  # fmt: skip
        assert {f"{name}.png", f"{name}.pdf"} <= figures
    again = write_report(runs, tmp_path / "again", [5, 10, 20], 0.05, "wilcoxon").read_text()
    assert again == markdown  # same runs -> the same file
