"""experiments/benchmark_models.py: the longest model first, devices side by side, one-line
mistakes."""

import importlib.util
import json
import subprocess
import sys

import pytest
import torch

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


def test_the_epoch_table_puts_each_device_next_to_the_other():
    benchmark = load_script()
    rows = [{"model": "bpr", "device": "cuda", "epoch_s": 0.25},
            {"model": "bpr", "device": "cpu", "epoch_s": 1.5},
            {"model": "ali", "device": "cpu", "epoch_s": 2.0},
            {"model": "ali", "device": "cuda", "epoch_s": 4.0}]  # fmt: skip
    lines = benchmark.epoch_table(rows, ["cpu", "cuda"]).splitlines()
    assert lines[2].split() == ["model", "cpu", "cuda", "cpu/cuda"]
    assert [line.split() for line in lines[3:]] == [["ali", "2.00", "4.00", "0.5x"],
                                                    ["bpr", "1.50", "0.25", "6.0x"]]  # fmt: skip
    assert "cpu/cuda" not in benchmark.epoch_table(rows[1:3], ["cpu"])


def test_only_torch_models_go_on_a_device():
    benchmark = load_script()
    assert benchmark.has_trainer("bpr") and benchmark.has_trainer("multvae")
    assert not benchmark.has_trainer("ease")


@pytest.mark.parametrize(
    ("arguments", "message"),
    [(["--devices", "cpu", "--models", "ease", "bpr"], "no trainer, so no device, in ease"),
     (["--jobs", "0"], "--jobs"),
     pytest.param(["--devices", "cuda"], "no CUDA GPU",
                  marks=pytest.mark.skipif(torch.cuda.is_available(), reason="has a CUDA GPU"))],
)  # fmt: skip
def test_a_mistake_is_one_line_before_any_training(arguments, message):
    done = subprocess.run([sys.executable, str(SCRIPT), *arguments], capture_output=True,
                          text=True, timeout=120)  # fmt: skip
    assert done.returncode == 2 and done.stdout == ""
    (line,) = done.stderr.splitlines()
    assert line.startswith("error: ") and message in line
