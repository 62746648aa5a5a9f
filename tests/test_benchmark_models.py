"""experiments/benchmark_models.py's schedule: the longest model first."""

import importlib.util
import json

from recsys.config import CONF_DIR

SCRIPT = CONF_DIR.parent / "experiments" / "benchmark_models.py"


def load_script():
    spec = importlib.util.spec_from_file_location("benchmark_models", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_longest_model_starts_first_and_an_untimed_one_before_it(tmp_path):
    benchmark = load_script()
    report = tmp_path / "report.json"
    report.write_text(json.dumps({"fit_seconds": {"ease": 0.5, "bpr": 120.0, "lightgcn": 40.0}}))
    models = ["ease", "lightgcn", "new_model", "bpr"]
    assert benchmark.longest_first(models, report) == ["new_model", "bpr", "lightgcn", "ease"]
    report.write_text(json.dumps({"models": ["ease"]}))  # a report from before the timings
    assert benchmark.longest_first(models, report) == models
    assert benchmark.longest_first(models, tmp_path / "missing.json") == models
