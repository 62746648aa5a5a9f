"""Golden results: committed top-10 lists and metrics on a small fixed split, so that a change in
any number is seen, and so that another machine is checked against this one.

Closed-form models (every model without a trainer and ALS excepted) must give exactly the
committed top-10 lists of all users, on any machine: their arithmetic has no order that depends
on the CPU (ItemKNN's neighbour choice did, through numpy's SIMD partition kernel, until its
ties were broken by index). Iterative models are compared within ``TOLERANCE`` (absolute, on
each metric at K = 10): ALS solves with BLAS, whose kernels sum in a CPU-specific order
(measured: its top-10 lists change with ``OPENBLAS_CORETYPE``), and so do the torch models.

After a change that is meant to move these numbers, regenerate the file and commit it with the
change:  python -m tests.test_golden
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

from recsys.config import compose_config, create_model, model_names
from recsys.metrics import evaluate
from tests.conftest import synthetic_movielens, synthetic_split
from tests.models.contract import fitted_model

GOLDEN = Path(__file__).parent / "golden" / "synthetic_top10.json"
TOLERANCE = 0.02  # iterative models: |metric - golden| at K = 10
# closed-form by configuration, but BLAS-dependent (see the docstring): by class, so an
# ensemble's member counts whatever it is named
ITERATIVE = {"recsys.models.als.ALSRecommender"}


def closed_form(name: str) -> bool:
    return _closed_form(compose_config([f"model={name}"]).model)


def _closed_form(node) -> bool:
    """No trainer, not BLAS-iterative, and (an ensemble) every member closed-form too."""
    members = node.get("members") or {}
    return ("trainer" not in node and node["_target_"] not in ITERATIVE
            and all(_closed_form(member) for member in members.values()))  # fmt: skip


# closed-form settings for the synthetic data: its times are spread over months, so one-minute
# sessions would hold one rating each and Session EASE's weights would all be 0
SMALL_DATA = {"session_ease": {"gap_seconds": 10**6}}  # about three sessions a user


def results(names: list[str] | None = None) -> dict:
    """Top-10 lists and metrics of the models ``names`` (default: all) on the synthetic split:
    closed-form models at their default config (seed 0; ``SMALL_DATA`` where the synthetic
    data needs it), iterative ones as their test class
    configures them for small data (seed 1, fitted once for the contract tests too)."""
    split = synthetic_split()
    train, validation, test = (split.train.to_csr(), split.validation.to_csr(),
                               split.test.to_csr())  # fmt: skip
    found = {"split_fingerprint": split.fingerprint, "models": {}}
    for name in names or model_names():
        if closed_form(name):
            model = create_model(name, seed=0, overrides=SMALL_DATA.get(name),
                                 data=synthetic_movielens()).fit(train)  # fmt: skip
        else:
            model = fitted_model(name)
        result = evaluate(model, test, train + validation, ks=[10])
        entry = {"metrics": {k: v for k, v in result.summary.items() if k.endswith("@10")}}
        if closed_form(name):  # one line per user: "item item ...", rows as the users
            entry["top10"] = [" ".join(map(str, row)) for row in result.top_items.tolist()]
        found["models"][name] = entry
    return found


REGENERATE = f"run `python -m tests.test_golden` and commit {GOLDEN.name} with the change"


@pytest.fixture(scope="module")
def golden():
    return json.loads(GOLDEN.read_text())


def entry(golden: dict, name: str) -> dict:
    if name not in golden["models"]:
        pytest.fail(f"no golden entry for model {name!r}: {REGENERATE}")
    return golden["models"][name]


@pytest.fixture(scope="module")
def computed():
    return results()


def test_the_split_is_the_committed_one(golden, computed):
    assert computed["split_fingerprint"] == golden["split_fingerprint"]


def test_every_golden_entry_is_a_model(golden):
    assert set(golden["models"]) <= set(model_names()), REGENERATE


@pytest.mark.parametrize("name", [n for n in model_names() if closed_form(n)])
def test_closed_form_models_are_exact(golden, computed, name):
    expected, found = entry(golden, name), computed["models"][name]
    assert found["top10"] == expected["top10"], REGENERATE + " if the change is meant"
    assert found["metrics"] == expected["metrics"]


@pytest.mark.parametrize("name", [n for n in model_names() if not closed_form(n)])
def test_iterative_models_are_within_the_tolerance(golden, computed, name):
    expected, found = entry(golden, name)["metrics"], computed["models"][name]["metrics"]
    assert set(found) == set(expected)
    for metric, value in expected.items():
        assert found[metric] == pytest.approx(value, abs=TOLERANCE), metric


def numpy_simd_features() -> list[str]:
    """numpy's dispatched SIMD targets that this CPU has (empty if numpy does not say)."""
    try:
        from numpy._core._multiarray_umath import __cpu_dispatch__, __cpu_features__
    except ImportError:
        return []
    return [name for name in __cpu_dispatch__ if __cpu_features__.get(name)]


@pytest.mark.skipif(platform.machine() != "x86_64", reason="OpenBLAS core types are x86 names")
def test_closed_form_lists_do_not_depend_on_the_cpu_kernels(computed):
    # another machine, emulated: numpy without its SIMD kernels, OpenBLAS on an old core type
    env = os.environ | {"OPENBLAS_CORETYPE": "Sandybridge",
                        "NPY_DISABLE_CPU_FEATURES": " ".join(numpy_simd_features())}  # fmt: skip
    names = [name for name in computed["models"] if closed_form(name)]
    code = ("import json; from tests.test_golden import results; "
            f"print(json.dumps(results({names!r})))")
    output = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                            text=True, timeout=300, check=True).stdout  # fmt: skip
    other = json.loads(output.strip().splitlines()[-1])
    for name, entry in computed["models"].items():
        if "top10" in entry:
            assert other["models"][name]["top10"] == entry["top10"], name


def main() -> None:
    GOLDEN.parent.mkdir(exist_ok=True)
    found = results()
    GOLDEN.write_text(json.dumps(found, indent=1) + "\n")
    print(f"wrote {GOLDEN}: " + ", ".join(
        f"{n} NDCG@10 {e['metrics']['ndcg@10']:.4f}" for n, e in found["models"].items()))


if __name__ == "__main__":
    main()
