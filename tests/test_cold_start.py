"""The cold-start protocol: held-out users' revealed ratings and targets, the fold-in routes
against their formulas, and the tool end to end on the synthetic release."""

from __future__ import annotations

import json
import re
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from scipy import stats

from recsys import cold_start
from recsys.config import CONF_DIR, compose_config, create_model, load_split
from recsys.data import Interactions
from recsys.errors import ConfigError
from recsys.train import model_factory, run
from tests.conftest import SYNTHETIC, synthetic_split


def interactions(rows) -> Interactions:
    user, item, timestamp = (np.array(c, dtype=np.int64) for c in zip(*rows, strict=True))
    return Interactions(user, item, np.ones(len(user), np.float32), timestamp,
                        np.arange(1, 5), np.arange(1, 7))  # fmt: skip


def entries(matrix: sp.csr_matrix) -> list[tuple[int, int]]:
    rows, columns = matrix.nonzero()
    return sorted(zip(rows.tolist(), columns.tolist(), strict=True))


def test_revealed_are_the_first_ratings_in_time_and_targets_the_rest():
    test = interactions([  # (user, item, timestamp), in no order
        (0, 3, 30), (0, 1, 10), (0, 5, 20), (0, 0, 20), (0, 2, 40),
        (2, 4, 5), (2, 1, 6),  # two ratings: nothing beyond the largest count
        (3, 0, 1), (3, 1, 2), (3, 2, 3),
    ])  # fmt: skip
    cold = cold_start.cold_users(test, [0, 1, 2])
    np.testing.assert_array_equal(cold.users, [0, 3])
    assert cold.left_out == 1
    assert cold.revealed[0].nnz == 0
    assert entries(cold.revealed[1]) == [(0, 1), (1, 0)]
    # user 0: item 1 at t=10, then items 0 and 5 tie at t=20: the lower item first
    assert entries(cold.revealed[2]) == [(0, 0), (0, 1), (1, 0), (1, 1)]
    assert entries(cold.targets) == [(0, 2), (0, 3), (0, 5), (1, 2)]


def naive_als_fold_in(model, row: np.ndarray) -> np.ndarray:
    """Hu et al.'s user step for one user, written out: confidence alpha * r on rated items."""
    items = model.item_embeddings.astype(np.float64)
    confidence = model.alpha * row
    gram = items.T @ items + model.regularization * np.eye(items.shape[1])
    gram += sum((c - 1) * np.outer(items[i], items[i]) for i, c in enumerate(confidence) if c)
    target = np.zeros(items.shape[1]) + sum(c * items[i] for i, c in enumerate(confidence) if c)
    return np.linalg.solve(gram, target)


def test_als_fold_in_is_the_als_user_step():
    train = synthetic_split().train.to_csr()
    model = create_model("als", seed=1, overrides={"factors": 8, "iterations": 5}).fit(train)
    dense = train[:6].toarray()
    dense[5] = 0  # a user who revealed nothing gets the zero vector
    rows = sp.csr_matrix(dense)
    folded = model.fold_in(rows)
    for user in range(6):
        np.testing.assert_allclose(folded[user], naive_als_fold_in(model, rows[user].toarray()[0]),
                                   rtol=1e-4, atol=1e-6)  # fmt: skip
    # implicit's own user step, against the same item vectors, agrees
    from implicit.cpu.als import AlternatingLeastSquares

    library = AlternatingLeastSquares(factors=model.factors, regularization=model.regularization,
                                      alpha=model.alpha, random_state=1)  # fmt: skip
    library.item_factors = model.item_embeddings
    np.testing.assert_allclose(library.recalculate_user(np.arange(6), rows), folded,
                               rtol=1e-4, atol=1e-6)  # fmt: skip


@pytest.mark.parametrize("name", ["ease", "itemknn"])
def test_item_item_fold_in_of_a_training_row_is_its_score(name):
    train = synthetic_split().train.to_csr()
    model = create_model(name, seed=1).fit(train)
    np.testing.assert_allclose(model.score_fold_in(train[:7]), model.score(np.arange(7)),
                               rtol=1e-5, atol=1e-6)  # fmt: skip


def cold_config(synthetic_data, *overrides):
    return compose_config(["protocol=cold_users", f"data.dir={synthetic_data}",
                           f"data.name={SYNTHETIC}", "tracking.enabled=false", "seed=3",
                           *overrides])  # fmt: skip


def test_candidates_are_the_model_own_setting_first_then_the_protocol_grid(synthetic_data):
    cfg = cold_config(synthetic_data, "model=two_tower", "model.user_id_dropout=0.25",
                      "protocol.choose.user_id_dropout=[0.1,0.25,0.5]",
                      "+protocol.choose.temperature=[0.1]")  # fmt: skip
    assert cold_start.candidates(cfg) == [
        {"user_id_dropout": 0.25, "temperature": t} for t in (cfg.model.temperature, 0.1)] + [
        {"user_id_dropout": d, "temperature": t} for d in (0.1, 0.5)
        for t in (cfg.model.temperature, 0.1)]  # own value once, first  # fmt: skip
    assert cold_start.candidates(cold_config(synthetic_data, "model=ease")) == [{}]


def test_settings_are_chosen_on_training_users_held_out_never_on_test_users(
        synthetic_data, monkeypatch):  # fmt: skip
    cfg = cold_config(synthetic_data, "model=two_tower",
                      "protocol.choose.user_id_dropout=[0.1,0.25,0.5]")  # fmt: skip
    prepared = load_split(cfg)
    test_users = set(prepared.split.test.user.tolist())
    seen, judged_on = [], []

    def fit_selected(model, split, *args, **kwargs):  # records what each candidate sees
        seen.append((model.user_id_dropout, split))
        return SimpleNamespace(model=model)

    objective = {None: 0.31, 0.1: 0.30, 0.25: 0.32, 0.5: 0.32}  # None: the model's own

    def cold_objective(model, cold, *args):  # records whom each candidate is judged on
        judged_on.append(cold.users)
        return objective[model.user_id_dropout]

    monkeypatch.setattr(cold_start, "fit_selected", fit_selected)
    monkeypatch.setattr(cold_start, "cold_objective", cold_objective)
    choice = cold_start.choose_settings(cfg, prepared, model_factory(cfg, prepared.data))
    assert choice["chosen"] == {"user_id_dropout": 0.25}  # the best; on a tie the earlier one
    assert [c["user_id_dropout"] for c in choice["candidates"]] == [None, 0.1, 0.25, 0.5]
    assert [c["objective"] for c in choice["candidates"]] == [0.31, 0.30, 0.32, 0.32]
    inner = seen[0][1]
    assert all(split is inner for _, split in seen)  # one inner split for every candidate
    inner_users = [set(part.user.tolist()) for part in (inner.train, inner.validation, inner.test)]
    assert not set().union(*inner_users) & test_users  # the test users are never seen
    assert inner_users[2] and not inner_users[2] & (inner_users[0] | inner_users[1])
    judged = cold_start.cold_users(inner.test, list(cfg.protocol.revealed)).users
    assert len(judged) and all(np.array_equal(users, judged) for users in judged_on)
    others = prepared.split.train.to_csr() + prepared.split.validation.to_csr()
    assert (inner.train.to_csr() + inner.validation.to_csr() + inner.test.to_csr()
            != others).nnz == 0  # every rating of the other users, split again  # fmt: skip
    seen.clear()
    cold_start.choose_settings(cfg, prepared, model_factory(cfg, prepared.data))
    assert seen[0][1].fingerprint == inner.fingerprint  # the inner split is seeded by the run's
    other = cold_config(synthetic_data, "model=two_tower", "seed=4",
                        "protocol.choose.user_id_dropout=[0.1,0.25,0.5]")  # fmt: skip
    cold_start.choose_settings(other, load_split(other), model_factory(other, prepared.data))
    assert seen[-1][1].fingerprint != inner.fingerprint
    ease = cold_config(synthetic_data, "model=ease")
    assert cold_start.choose_settings(ease, prepared, model_factory(ease, prepared.data)) == {}


def test_the_chosen_settings_are_what_the_model_and_its_refit_train_with(
        synthetic_data, monkeypatch):  # fmt: skip
    monkeypatch.setattr(cold_start, "choose_settings",
                        lambda *a: {"chosen": {"user_id_dropout": 0.5}, "candidates": []})
    trained = []
    fit_selected = cold_start.fit_selected

    def recorded(model, split, *args, refit=None, **kwargs):
        trained.append(model.user_id_dropout)
        return fit_selected(model, split, *args, refit=lambda o: record(refit(o)), **kwargs)

    def record(model):
        trained.append(model.user_id_dropout)
        return model

    monkeypatch.setattr(cold_start, "fit_selected", recorded)
    frame, choice = cold_start.evaluate_seed(
        "two_tower", 1, [f"data.dir={synthetic_data}", f"data.name={SYNTHETIC}",
                         "tracking.enabled=false", "model.trainer.epochs=2",
                         "model.trainer.min_epochs=0", "model.trainer.progress=false"], [10])
    assert trained == [0.5, 0.5]  # the fit, then the refit
    assert choice["chosen"] == {"user_id_dropout": 0.5} and len(frame) == 4


def test_train_refuses_the_cold_users_protocol(synthetic_data):
    cfg = compose_config(["protocol=cold_users", f"data.dir={synthetic_data}",
                          f"data.name={SYNTHETIC}", "tracking.enabled=false"])  # fmt: skip
    with pytest.raises(ConfigError, match="recsys.cold_start"):
        run(cfg)


def test_tool_writes_table_figure_and_readme_section(synthetic_data, tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("# x\n<!-- generated:cold-start -->\nold\n<!-- /generated:cold-start -->\n")
    out = tmp_path / "reports"
    code = cold_start.main(["--models", "popular", "ease", "two_tower", "first_ratings",
                            "--seeds", "1", "2",
                            "--data-dir", str(synthetic_data), "--out", str(out), "--readme",
                            str(readme), f"data.name={SYNTHETIC}", "model.trainer.epochs=2",
                            "model.trainer.min_epochs=0", "model.trainer.progress=false"])
    assert code == 0
    table = (out / "cold_start.md").read_text()
    assert "| popular | popular |" in table and "| ease | fold-in | — |" in table
    assert "| two_tower | demographics |" in table
    assert table.split("\n\n![")[0].split("# Cold start\n\n")[1] in readme.read_text()
    rows = json.loads((out / "cold_start.json").read_text())["rows"]
    assert {(r["model"], r["route"]) for r in rows} == {
        ("popular", "popular"), ("ease", "fold-in"), ("ease", cold_start.PRIOR),
        ("two_tower", "demographics"), ("first_ratings", cold_start.LATER),
        ("first_ratings", cold_start.REGRESSION)}  # fmt: skip
    assert "| first_ratings | regression | — |" in table
    assert ("| two_tower demographics, 0 revealed − first_ratings later popular, 0 revealed |"
            in table)  # fmt: skip
    assert "| first_ratings regression, 5 revealed − two_tower demographics, 5 revealed |" in table
    assert "| ease | fold-in + popular | — |" in table
    assert "| ease fold-in + popular, 5 revealed − two_tower demographics, 5 revealed |" in table
    assert {r["seed"] for r in rows} == {1, 2} and all(0 <= r["ndcg@10"] <= 1 for r in rows)
    assert all(len(r[cold_start.PER_USER]) == r["users"]
               and np.isclose(np.mean(r[cold_start.PER_USER]), r["ndcg@10"]) for r in rows)
    assert "| two_tower demographics, 0 revealed − popular, 0 revealed |" in table
    assert re.search(r'"per_user/ndcg@10": \[[0-9][^\n]*\]', (out / "cold_start.json").read_text())
    assert (out / "figures" / "cold_start.png").stat().st_size > 10_000
    choices = json.loads((out / "cold_start.json").read_text())["choices"]
    assert [(c["model"], c["seed"]) for c in choices] == [
        ("ease", 1), ("ease", 2), ("two_tower", 1), ("two_tower", 2), ("first_ratings", 1),
        ("first_ratings", 2)]  # fmt: skip
    assert all(choice["regularization"]["chosen"] for choice in choices[4:])
    protocol = compose_config(["protocol=cold_users"]).protocol
    grid = protocol.choose.user_id_dropout
    assert all([c["user_id_dropout"] for c in choice["candidates"]] == [None, *grid]
               and choice["chosen"]["user_id_dropout"] in (None, *grid)
               for choice in choices[2:4])  # fmt: skip
    for choice in choices[:2]:  # every weight judged, per count, the best chosen
        prior = choice["prior"]
        assert choice["chosen"] == {} and choice["candidates"] == []
        assert [(c["revealed"], c["value"]) for c in prior["candidates"]] == [
            (r, w) for r in (1, 3, 5) for w in protocol.prior_weights]  # fmt: skip
        assert prior["chosen"] == [{"revealed": r, "value": max(
            (c for c in prior["candidates"] if c["revealed"] == r),
            key=lambda c: c["objective"])["value"]} for r in (1, 3, 5)]  # fmt: skip
    assert "Chosen per seed (1, 2) on users held out of that seed's training part" in table
    assert re.search(r"ease: popular weight at 1 \([0-9.]+, [0-9.]+\)", table)
    assert re.search(r"two_tower: user_id_dropout \([0-9.]+, [0-9.]+\)", table)
    assert re.search(r"first_ratings: regularization at 1 \([0-9.]+, [0-9.]+\)", table)
    code = cold_start.main(["--models", "popular", "--seeds", "1", "2", "--update",
                            "--data-dir", str(synthetic_data), "--out", str(out),
                            f"data.name={SYNTHETIC}", "model.trainer.epochs=2",
                            "model.trainer.min_epochs=0"])  # the kept two-tower's  # fmt: skip
    assert code == 0
    record = json.loads((out / "cold_start.json").read_text())
    assert record["rows"] == rows and record["choices"] == choices  # other models' choices kept
    code = cold_start.main(["--models", "two_tower", "--seeds", "1", "2", "--update",
                            "--data-dir", str(synthetic_data), "--out", str(out),
                            f"data.name={SYNTHETIC}", "model.trainer.epochs=2",
                            "model.trainer.min_epochs=0", "model.trainer.progress=false",
                            "~protocol.choose"])  # fmt: skip
    assert code == 0  # rerun choosing nothing: its old choices go
    assert json.loads((out / "cold_start.json").read_text())["choices"] == [
        c for c in choices if c["model"] != "two_tower"]  # fmt: skip


def test_runs_in_processes_give_the_rows_and_choices_of_one_process(tmp_path):
    # spawned processes see no monkeypatch: data generated in memory from the config
    models = ["--models", "popular", "ease", "--seeds", "1", "2"]
    overrides = ["data=synthetic", "data.users=300", "data.items=200", "data.interactions=12000",
                 "+protocol.choose.regularization=[50.0]"]  # fmt: skip
    assert cold_start.main([*models, "--out", str(tmp_path / "one"), *overrides]) == 0
    assert cold_start.main([*models, "--out", str(tmp_path / "two"), "--jobs", "2",
                            *overrides]) == 0  # fmt: skip
    one = json.loads((tmp_path / "one" / "cold_start.json").read_text())
    assert [(c["model"], c["seed"]) for c in one["choices"]] == [("ease", 1), ("ease", 2)]
    assert (tmp_path / "one" / "cold_start.json").read_text() == (
        tmp_path / "two" / "cold_start.json").read_text()  # fmt: skip


def test_update_retrains_only_the_models_named(synthetic_data, tmp_path, capsys, monkeypatch):
    out = tmp_path / "reports"
    common = ["--data-dir", str(synthetic_data), "--out", str(out), f"data.name={SYNTHETIC}"]
    assert cold_start.main(["--models", "ease", "popular", "--seeds", "1", "2", *common]) == 0
    before = json.loads((out / "cold_start.json").read_text())["rows"]
    code = cold_start.main(["--models", "ease", "--seeds", "1", "2", "--update", *common,
                            "model.regularization=5000"])  # fmt: skip
    assert code == 0
    after = json.loads((out / "cold_start.json").read_text())["rows"]
    assert [r for r in after if r["model"] == "popular"] == [
        r for r in before if r["model"] == "popular"]  # kept as they were
    assert [r["model"] for r in after] == [r["model"] for r in before]  # in their places
    ease = [(r["ndcg@10"], r["fingerprint"]) for r in after if r["model"] == "ease"]
    assert ease != [(r["ndcg@10"], r["fingerprint"]) for r in before if r["model"] == "ease"]
    capsys.readouterr()
    files = {f: f.read_bytes() for f in out.rglob("*") if f.is_file()}
    code = cold_start.main(["--models", "ease", "--seeds", "1", "--update", *common])
    assert code == 1
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and "not this run's [1]" in error[0] and "without --update" in error[0]
    assert {f: f.read_bytes() for f in out.rglob("*") if f.is_file()} == files
    monkeypatch.setattr(cold_start, "evaluated", None)  # refused before any training
    code = cold_start.main(["--models", "ease", "--seeds", "1", "2", "--update", *common,
                            "split.user_ratio=0.2"])  # fmt: skip
    assert code == 1 and "other splits" in capsys.readouterr().err
    assert {f: f.read_bytes() for f in out.rglob("*") if f.is_file()} == files


def test_update_refuses_rows_made_with_other_settings_before_training(synthetic_data, tmp_path,
                                                                    capsys, monkeypatch):
    out = tmp_path / "reports"
    common = ["--data-dir", str(synthetic_data), "--out", str(out), f"data.name={SYNTHETIC}"]
    assert cold_start.main(["--models", "popular", "ease", "first_ratings", "--seeds", "1",
                            *common]) == 0  # fmt: skip
    protocol = compose_config(["protocol=cold_users"]).protocol
    settings = json.loads((out / "cold_start.json").read_text())["settings"]
    assert list(settings) == ["popular", "ease", "first_ratings"]
    assert settings["ease"]["model"] == dict(compose_config(["model=ease"]).model)
    assert settings["ease"]["prior_weights"] == list(protocol.prior_weights)
    assert settings["first_ratings"] == {
        "refit": True, "objective": "val/ndcg@10",
        "first_ratings_regularization": list(protocol.first_ratings_regularization)}
    assert "prior_weights" not in settings["popular"]  # not a fold-in: the grid is not its
    files = {f: f.read_bytes() for f in out.rglob("*") if f.is_file()}
    capsys.readouterr()
    with monkeypatch.context() as patch:
        patch.setattr(cold_start, "evaluated", None)  # any training fails loudly
        for overrides, says in (
                (["model.regularization=5000"],
                 "kept rows of ease (model.regularization: 196.0 -> 5000)"),
                (["protocol.prior_weights=[0.0,1.0]"], "ease (prior_weights: [0.0, 0.5, "),
                (["protocol.first_ratings_regularization=[10.0]", "protocol.refit=false"],
                 "ease (refit: True -> False); first_ratings (refit: True -> False, "
                 "first_ratings_regularization: [3.0, 10.0, 30.0, 100.0, 300.0] -> [10.0])"),
                (["model.regularizaton=5"], "none of popular, ease, first_ratings has the key "
                 "'regularizaton'"),  # a typo, not a change
        ):
            assert cold_start.main(["--models", "popular", "--seeds", "1", "--update", *common,
                                    *overrides]) == 1  # fmt: skip
            error = capsys.readouterr().err.strip().splitlines()
            assert len(error) == 1 and says in error[0], error
            assert "to --models" in error[0]
            assert {f: f.read_bytes() for f in out.rglob("*") if f.is_file()} == files
        record = json.loads((out / "cold_start.json").read_text())
        for row in record["rows"]:  # ease's rows as if the model had left conf/model
            row["model"] = "gone" if row["model"] == "ease" else row["model"]
        record["settings"]["gone"] = record["settings"].pop("ease")
        (out / "cold_start.json").write_text(json.dumps(record))
        assert cold_start.main(["--models", "popular", "--seeds", "1", "--update",
                                *common]) == 1  # fmt: skip
        error = capsys.readouterr().err.strip().splitlines()
        assert len(error) == 1 and "keeps rows of gone, no longer in conf/model" in error[0]
        for path, content in files.items():
            path.write_bytes(content)  # the table as it was
    # an override that reaches only the model retrained keeps the others' rows
    assert cold_start.main(["--models", "ease", "--seeds", "1", "--update", *common,
                            "model.regularization=300"]) == 0  # fmt: skip
    record = json.loads((out / "cold_start.json").read_text())
    assert record["settings"]["ease"]["model"]["regularization"] == 300
    assert {k: v for k, v in record["settings"].items() if k != "ease"} == {
        k: v for k, v in settings.items() if k != "ease"}  # fmt: skip
    del record["settings"]  # as written before they were recorded
    (out / "cold_start.json").write_text(json.dumps(record))
    monkeypatch.setattr(cold_start, "evaluated", None)
    assert cold_start.main(["--models", "popular", "--seeds", "1", "--update", *common]) == 1
    assert "records no settings" in capsys.readouterr().err


def test_settings_hold_the_grids_a_model_chooses_from_and_differences_name_them():
    two_tower = cold_start.row_settings("two_tower", ["protocol.choose.user_id_dropout=[0.0]"])
    assert two_tower["choose"] == {"user_id_dropout": [0.0]} and "prior_weights" not in two_tower
    ease = cold_start.row_settings("ease", ["protocol.choose.user_id_dropout=[0.0]"])
    assert ease["choose"] == {} and "prior_weights" in ease  # not its key; a fold-in's grid
    assert "num_threads" not in cold_start.row_settings("als", [])["model"]  # same result
    assert cold_start.differences({"a": {"b": 1, "c": 2}, "d": [1]},
                                  {"a": {"b": 1.0, "e": 3}, "d": [1]}) == [
        "a.c: 2 -> (none)", "a.e: (none) -> 3"]  # 1 == 1.0: JSON's ints  # fmt: skip
    assert cold_start.differences({"a": 1}, {"a": 1}) == []


@pytest.mark.parametrize(("argv", "message"), [
    (["--seeds", "1", "-1"], "--seeds -1: a seed is an integer from 0 to 2**32 - 1"),
    (["--", "seed=5"], "`seed=5`: seed is the tool's to set: give the seeds with --seeds"),
    (["--", "protocol=msr"], "the tool runs protocol cold_users alone"),
    (["--", "protocol.revealed=[3,1]"], "protocol.revealed=[3, 1]: expected distinct whole "
                                        "numbers >= 0 in increasing order"),
    (["--ks", "10", "5000"], "a cut-off of 5000 exceeds the 200 items of the catalogue"),
    (["--", "protocol.revealed=[0,5000]"], "no held-out user of seed 1 rated more than 5000 "
                                           "films"),
])  # fmt: skip
def test_a_mistake_is_one_line_before_any_training(synthetic_data, tmp_path, capsys, argv,
                                                   message):  # fmt: skip
    out = tmp_path / "out"
    arguments = ["--models", "popular", "--seeds", "1", "--out", str(out),
                 "--data-dir", str(synthetic_data)]  # fmt: skip
    tail = argv[argv.index("--") + 1:] if "--" in argv else []
    head = argv[: argv.index("--")] if "--" in argv else argv
    assert cold_start.main([*arguments, *head, "--", f"data.name={SYNTHETIC}", *tail]) == 1
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("error: ") and message in line, line
    assert not out.exists()


def test_the_committed_table_was_made_with_what_the_configs_give_now():
    # a fresh clone's `cold_start --update` keeps every other model's rows: they must match
    path = CONF_DIR.parent / "reports" / "cold_start.json"
    models = list(json.loads(path.read_text())["settings"])
    assert set(models) == set(cold_start.check_settings(path, models, []))


def test_a_table_recording_als_threads_is_still_kept(tmp_path):
    path = tmp_path / "cold_start.json"
    settings = cold_start.row_settings("als", [])
    settings["model"]["num_threads"] = 4  # as written before threads were left out
    path.write_text(json.dumps({"settings": {"als": settings}}))
    kept = cold_start.check_settings(path, ["als"], [])  # written back as row_settings gives
    assert kept == {"als": cold_start.row_settings("als", [])}


def table_rows(per_user: dict[tuple[str, str, int], list[list[float]]]) -> pd.DataFrame:
    """Result rows as the tool records them, from per-user values of each seed (1, 2, ...)."""
    return pd.DataFrame([
        {"model": model, "route": route, "revealed": r, "seed": seed, "users": len(values),
         "left_out": 0, "ndcg@10": float(np.mean(values)), cold_start.PER_USER: values}
        for (model, route, r), seeds in per_user.items()
        for seed, values in enumerate(seeds, start=1)])  # fmt: skip


def seed_rows(means: dict[tuple[str, str, int], list[float]]) -> pd.DataFrame:
    """Rows whose 4 users all score the seed's mean."""
    return table_rows({key: [[m] * 4 for m in seeds] for key, seeds in means.items()})


def test_marks_bold_the_best_and_dagger_what_it_is_above_beyond_the_seeds():
    best = [0.50, 0.52, 0.51]
    below = [0.40, 0.41, 0.43]  # 0.10, 0.11, 0.08 under the best: p = 0.006
    close = [b - d for b, d in zip(best, [0.05, 0.035, 0.065], strict=True)]  # p = 0.029
    assert stats.ttest_rel(best, below).pvalue * 3 < 0.05
    assert 0.025 < stats.ttest_rel(best, close).pvalue < 0.05  # significant alone, not x 2
    rows = seed_rows({("popular", "popular", 0): below, ("two_tower", "demographics", 0): best,
                      ("a", "fold-in", 0): close, ("b", "fold-in", 0): close,
                      ("popular", "popular", 1): [0.1, 0.2, 0.3],
                      ("a", "fold-in", 1): [0.3, 0.2, 0.1],  # ties as printed, not in floats
                      ("a", "fold-in", 3): [0.2, 0.2, 0.3]})  # alone in its column
    assert cold_start.marks(rows) == {
        ("two_tower", "demographics", 0): (True, False),
        ("popular", "popular", 0): (False, True),  # Holm: 3 x 0.006 is below 0.05
        ("popular", "popular", 1): (True, False), ("a", "fold-in", 1): (True, False)}
    text = cold_start.markdown(rows, [])
    assert "| popular | popular | 0.4133 ± 0.0379 † | **0.2000 ± 0.2484** | — |" in text
    assert "| a | fold-in | 0.4600 ± 0.0541 | **0.2000 ± 0.2484** | 0.2333 ± 0.1434 |" in text


def test_one_seed_has_no_dagger():
    rows = table_rows({("popular", "popular", 0): [[0.1, 0.2, 0.0, 0.1]],
                       ("two_tower", "demographics", 0): [[0.9, 0.8, 1.0, 0.7]]})  # fmt: skip
    assert cold_start.marks(rows) == {("two_tower", "demographics", 0): (True, False)}
    assert "| two_tower demographics, 0 revealed − popular, 0 revealed | +0.7500 | n/a | n/a" in (
        cold_start.markdown(rows, []))  # fmt: skip


def test_comparisons_pair_each_seed_users_and_the_seeds_means():
    rng = np.random.default_rng(0)
    users = [9, 12, 7]  # per seed
    keys = [("popular", "popular", 0), ("two_tower", "demographics", 0), ("ease", "fold-in", 5),
            ("popular", "popular", 5), ("two_tower", "demographics", 5)]  # fmt: skip
    values = {key: [rng.random(n).tolist() for n in users] for key in keys}
    rows = table_rows(values).sample(frac=1, random_state=1)  # in no particular order
    lines = [line for line in cold_start.markdown(rows, []).splitlines() if " − " in line]
    assert [line.split(" | ")[0] for line in lines] == [
        "| two_tower demographics, 0 revealed − popular, 0 revealed",
        "| ease fold-in, 5 revealed − two_tower demographics, 5 revealed"]
    for line, (key, base) in zip(lines, [(keys[1], keys[0]), (keys[2], keys[4])], strict=True):
        seeds = np.array([np.mean(a) - np.mean(b) for a, b in zip(values[key], values[base],
                                                                  strict=True)])  # fmt: skip
        pairs = np.concatenate(values[key]) - np.concatenate(values[base])
        half_seeds = 4.302653 * seeds.std(ddof=1) / np.sqrt(3)  # Student t, 2 freedoms
        half_pairs = 2.051831 * pairs.std(ddof=1) / np.sqrt(28)  # 27 freedoms
        p_seeds = stats.ttest_1samp(seeds, 0).pvalue
        p_pairs = stats.ttest_1samp(pairs, 0).pvalue
        assert line.split(" | ")[1:] == [
            f"{seeds.mean():+.4f}", f"{half_seeds:.4f}", f"{p_seeds:.3f}", f"{half_pairs:.4f}",
            f"{p_pairs:.3f}", f"{(pairs > 0).sum()} / {(pairs < 0).sum()} |"]  # fmt: skip


@pytest.mark.parametrize(("change", "says"), [
    ("revealed", "revealed counts [0, 1, 3, 5], not this run's [0, 1, 3]"),
    ("per-user", "without per-user values"),
    ("choices", "choices recorded in")])  # fmt: skip
def test_update_refuses_rows_it_cannot_pair_before_training(
        synthetic_data, tmp_path, capsys, monkeypatch, change, says):  # fmt: skip
    out = tmp_path / "reports"
    common = ["--data-dir", str(synthetic_data), "--out", str(out), f"data.name={SYNTHETIC}"]
    assert cold_start.main(["--models", "popular", "--seeds", "1", *common]) == 0
    overrides = ["protocol.revealed=[0,1,3]"] if change == "revealed" else []
    if change == "per-user":
        record = json.loads((out / "cold_start.json").read_text())
        for row in record["rows"]:
            del row[cold_start.PER_USER]  # as written before they were recorded
        (out / "cold_start.json").write_text(json.dumps(record))
    if change == "choices":  # a per-count record as written before "value" (it said "weight")
        record = json.loads((out / "cold_start.json").read_text())
        record["choices"] = [{"model": "ease", "seed": 1, "chosen": {},
                              "prior": {"chosen": [{"revealed": 1, "weight": 2.0}]}}]
        (out / "cold_start.json").write_text(json.dumps(record))
    files = {f: f.read_bytes() for f in out.rglob("*") if f.is_file()}
    capsys.readouterr()

    def trains(*args):
        raise AssertionError("trained before refusing")

    monkeypatch.setattr(cold_start, "evaluated", trains)
    assert cold_start.main(["--models", "popular", "--seeds", "1", "--update", *common,
                            *overrides]) == 1  # fmt: skip
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and says in error[0] and "without --update" in error[0]
    assert {f: f.read_bytes() for f in out.rglob("*") if f.is_file()} == files


@pytest.mark.parametrize(("arguments", "says"), [
    (["--seeds", "1", "1"], "--seeds names [1, 1], with repeats"),
    (["--models", "ease", "ease"], "--models names ['ease', 'ease'], with repeats"),
    (["split.user_ration=0.2"], "split.user_ratio")])  # fmt: skip
def test_repeats_and_typos_are_one_line_before_training(tmp_path, capsys, monkeypatch,
                                                        arguments, says):  # fmt: skip
    monkeypatch.setattr(cold_start, "evaluated", None)  # any training fails loudly
    assert cold_start.main(["--out", str(tmp_path / "out"), *arguments]) == 1
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and says in error[0]
    assert not (tmp_path / "out").exists()


def test_number_lists_go_on_one_line_and_the_json_is_unchanged():
    record = {"rows": [{"values": [0.5, -1e-07, 3, 2.5e+20], "names": ["a b", "[", "c"],
                        "nested": [[1, 2], [3]], "odd": [float("nan"), True, None],
                        "text": "[\n 1\n]"}]}  # fmt: skip
    text = cold_start._one_line_lists(json.dumps(record, indent=1))
    assert '"values": [0.5, -1e-07, 3, 2.5e+20]' in text
    assert '"nested": [\n' in text and "[1, 2]" in text  # the outer list stays open
    assert '"names": [\n' in text and '"odd": [\n' in text  # only lists of numbers
    again = json.loads(text)
    assert np.isnan(again["rows"][0]["odd"][0])
    again["rows"][0]["odd"][0] = record["rows"][0]["odd"][0] = 0
    assert again == record


def test_per_user_values_must_be_one_per_user():
    rows = table_rows({("popular", "popular", 0): [[0.1, 0.2]]})
    rows.loc[0, "users"] = 3
    with pytest.raises(ValueError, match="2 per-user values for 3 users"):
        cold_start.per_user(rows)


def test_a_model_without_a_cold_route_is_one_line(synthetic_data, tmp_path, capsys):
    code = cold_start.main(["--models", "ease", "bpr", "--seeds", "1", "--data-dir",
                            str(synthetic_data), "--out", str(tmp_path / "out"),
                            f"data.name={SYNTHETIC}"])  # fmt: skip
    assert code == 1
    assert capsys.readouterr().err.strip().splitlines() == [
        "error: model bpr has no way to score an unseen user (no score_new_users or "
        "score_fold_in): leave it out of --models"]
    assert not (tmp_path / "out").exists()  # refused before any training


def test_with_prior_is_each_user_standardised_fold_in_plus_the_weighted_popularity():
    rng = np.random.default_rng(0)
    scores = rng.normal(size=(3, 6)).astype(np.float32)
    scores[2] = 1.0  # no spread: standardises to 0, the prior alone ranks
    revealed = sp.csr_matrix(np.array([[1, 0, 0, 0, 0, 1], [0, 0, 1, 0, 0, 0],
                                       [0, 1, 0, 0, 0, 0]], dtype=np.float32))  # fmt: skip
    popularity = np.array([9, 1, 4, 0, 7, 2])
    expected = np.zeros((3, 6))
    for u in range(3):  # naive: each user's mean and spread over the items not revealed
        counted = revealed[u].toarray().ravel() == 0
        for values, weight in ((scores[u].astype(float), 1.0), (popularity.astype(float), 2.5)):
            mean, spread = values[counted].mean(), values[counted].std()
            expected[u] += weight * ((values - mean) / spread if spread > 0 else 0)
    blended = cold_start.with_prior(scores, revealed, popularity, 2.5)
    np.testing.assert_allclose(blended, expected, rtol=1e-5, atol=1e-6)
    alone = cold_start.with_prior(scores, revealed, popularity, 0.0)
    assert np.array_equal(np.argsort(-alone[:2], axis=1, kind="stable"),
                          np.argsort(-scores[:2], axis=1, kind="stable"))  # fmt: skip


def test_prior_weights_are_chosen_per_count_on_training_users_held_out(synthetic_data,
                                                                        monkeypatch):  # fmt: skip
    cfg = cold_config(synthetic_data, "model=ease", "protocol.prior_weights=[0,1,8]")
    prepared = load_split(cfg)
    test_users = set(prepared.split.test.user.tolist())
    fitted_on, judged_on = [], []
    fit_selected, ranked_metrics = cold_start.fit_selected, cold_start.ranked_metrics

    def recorded_fit(model, split, *args, **kwargs):
        fitted_on.append(split)
        return fit_selected(model, split, *args, **kwargs)

    def recorded_metrics(scores, cold, *args):
        judged_on.append(cold.users)
        return ranked_metrics(scores, cold, *args)

    counted = []
    popularity = cold_start.popularity
    monkeypatch.setattr(cold_start, "fit_selected", recorded_fit)
    monkeypatch.setattr(cold_start, "ranked_metrics", recorded_metrics)
    monkeypatch.setattr(cold_start, "popularity", lambda m: counted.append(m) or popularity(m))
    choice = cold_start.choose_prior_weights(cfg, prepared, model_factory(cfg, prepared.data))
    [inner] = fitted_on  # one fit for every count and weight
    [matrix] = counted  # the prior: the popular list of what the model was fitted on
    assert (matrix != inner.train.to_csr()).nnz == 0
    inner_users = set(np.concatenate([inner.train.user, inner.validation.user,
                                      inner.test.user]).tolist())  # fmt: skip
    assert not inner_users & test_users
    assert len(judged_on) == 9 and all(np.array_equal(users, cold_start.cold_users(
        inner.test, [0, 1, 3, 5]).users) for users in judged_on)  # fmt: skip
    assert [(c["revealed"], c["value"]) for c in choice["candidates"]] == [
        (r, w) for r in (1, 3, 5) for w in (0.0, 1.0, 8.0)]  # fmt: skip
    for r, chosen in zip((1, 3, 5), choice["chosen"], strict=True):
        objectives = [c["objective"] for c in choice["candidates"] if c["revealed"] == r]
        assert chosen == {"revealed": r, "value": (0.0, 1.0, 8.0)[int(np.argmax(objectives))]}
    none = cold_config(synthetic_data, "model=ease", "protocol.prior_weights=[]")
    assert cold_start.choose_prior_weights(none, prepared, None) == {}


def test_weight_zero_is_the_fold_in_and_the_route_records_its_choice(synthetic_data):
    frame, choice = cold_start.evaluate_seed(
        "itemknn", 1, [f"data.dir={synthetic_data}", f"data.name={SYNTHETIC}",
                       "tracking.enabled=false", "protocol.prior_weights=[0.0]"], [10])
    fold_in = frame[frame["route"] == "fold-in"].drop(columns="route").reset_index(drop=True)
    prior = frame[frame["route"] == cold_start.PRIOR].drop(columns="route").reset_index(drop=True)
    assert list(prior["revealed"]) == [1, 3, 5]
    pd.testing.assert_frame_equal(prior, fold_in)
    assert choice["model"] == "itemknn" and choice["chosen"] == {}
    assert choice["prior"]["chosen"] == [{"revealed": r, "value": 0.0} for r in (1, 3, 5)]


def test_each_count_gets_its_weight_and_the_prior_is_of_what_the_final_model_fitted(
        synthetic_data, monkeypatch):  # fmt: skip
    chosen = [{"revealed": 1, "value": 0.0}, {"revealed": 3, "value": 32.0},
              {"revealed": 5, "value": 0.5}]  # fmt: skip
    monkeypatch.setattr(cold_start, "choose_prior_weights",
                        lambda *a: {"chosen": chosen, "candidates": []})
    counted, blended = [], []
    popularity, with_prior = cold_start.popularity, cold_start.with_prior
    monkeypatch.setattr(cold_start, "popularity", lambda m: counted.append(m) or popularity(m))

    def recorded(scores, revealed, prior, weight):
        blended.append((set(np.diff(revealed.indptr).tolist()), weight, prior))
        return with_prior(scores, revealed, prior, weight)

    monkeypatch.setattr(cold_start, "with_prior", recorded)
    overrides = [f"data.dir={synthetic_data}", f"data.name={SYNTHETIC}", "tracking.enabled=false"]
    frame, choice = cold_start.evaluate_seed("itemknn", 1, overrides, [10])
    assert [(r, w) for r, w, _ in blended] == [({1}, 0.0), ({3}, 32.0), ({5}, 0.5)]
    split = load_split(compose_config(["protocol=cold_users", "model=itemknn", "seed=1",
                                       *overrides])).split  # fmt: skip
    [matrix] = counted  # refit on train + validation: the popular list of both
    assert (matrix != split.train.to_csr() + split.validation.to_csr()).nnz == 0
    assert all(np.array_equal(prior, popularity(matrix)) for _, _, prior in blended)
    assert choice["prior"]["chosen"] == chosen


@pytest.mark.parametrize("weights", ["[-1.0]", "[a]", "true"])
def test_bad_prior_weights_are_one_line_before_training(tmp_path, capsys, monkeypatch, weights):
    monkeypatch.setattr(cold_start, "evaluated", None)  # any training fails loudly
    code = cold_start.main(["--out", str(tmp_path / "out"), f"protocol.prior_weights={weights}"])
    assert code == 1
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and "protocol.prior_weights=" in error[0] and ">= 0" in error[0]
    assert not (tmp_path / "out").exists()


def test_first_ratings_is_the_ridge_regression_of_later_ratings_on_the_first():
    rng = np.random.default_rng(3)
    rows = [(u, i, rng.integers(0, 3)) for u in range(4) for i in rng.choice(6, 5, replace=False)]
    rows += [(3, 0, 9)] if (3, 0) not in {(u, i) for u, i, _ in rows} else []
    history = interactions(rows)  # 4 users, 6 items, timestamps with ties (broken by item)
    fitted = cold_start.FirstRatings.fit(history, {1: 0.5, 2: 2.0}, largest=2)
    # naive: every user's ratings in time order (ties by item), first r and after the 2nd
    ordered = sorted(zip(history.user, history.timestamp, history.item, strict=True))
    per_user = {u: [i for v, _, i in ordered if v == u] for u in range(4)}
    users = [u for u in range(4) if len(per_user[u]) > 2]
    Y = np.zeros((len(users), 6))
    for row, u in enumerate(users):
        Y[row, per_user[u][2:]] = 1
    later = Y.mean(axis=0)
    np.testing.assert_allclose(fitted.later, later)
    for r, lam in ((1, 0.5), (2, 2.0)):
        X = np.zeros((len(users), 6))
        for row, u in enumerate(users):
            X[row, per_user[u][:r]] = 1
        B = np.linalg.inv(X.T @ X + lam * np.eye(6)) @ X.T @ (Y - later)
        np.testing.assert_allclose(fitted.weights[r], B, atol=1e-10)
        new = sp.csr_matrix(np.array([[0, 1, 0, 0, 1, 0]], dtype=np.float32))
        np.testing.assert_allclose(fitted.score(new, r), later + new.toarray() @ B, atol=1e-10)
    np.testing.assert_allclose(fitted.score(new, 0), [later])


def test_first_ratings_learns_from_training_users_only_and_chooses_on_held_out_ones(
        synthetic_data, monkeypatch):  # fmt: skip
    cfg = cold_config(synthetic_data, "model=popular",
                      "protocol.first_ratings_regularization=[100.0,1.0]")  # fmt: skip
    prepared = load_split(cfg)
    test_users = set(prepared.split.test.user.tolist())
    fitted_on, fits, judged_on = [], [], []
    fit = cold_start.FirstRatings.fit.__func__
    ranked_metrics = cold_start.ranked_metrics

    def recorded(cls, history, regularization, largest):
        fitted_on.append((set(history.user.tolist()), dict(regularization)))
        fits.append(fit(cls, history, regularization, largest))
        return fits[-1]

    def recorded_metrics(scores, cold, r, ks):
        judged_on.append(cold.users)
        return ranked_metrics(scores, cold, r, ks)

    monkeypatch.setattr(cold_start.FirstRatings, "fit", classmethod(recorded))
    monkeypatch.setattr(cold_start, "ranked_metrics", recorded_metrics)
    measured, cold, choice = cold_start.evaluate_first_ratings(cfg, prepared, [10])
    assert all(not users & test_users for users, _ in fitted_on)  # never a test user's row
    inner, inner_cold = cold_start.inner_users(cfg, prepared, "")
    assert len(judged_on) == 6 + 7  # 3 counts x 2 lambdas on the inner held-out users, then 7 rows
    assert all(np.array_equal(users, inner_cold.users) for users in judged_on[:6])
    assert all(np.array_equal(users, cold.users) for users in judged_on[6:])
    assert [users for users, _ in fitted_on[:2]] == [set(inner.train.user.tolist())
                                                     | set(inner.validation.user.tolist())] * 2
    assert [lam for _, lam in fitted_on[:2]] == [dict.fromkeys((1, 3, 5), 100.0),
                                                 dict.fromkeys((1, 3, 5), 1.0)]  # fmt: skip
    chosen = choice["regularization"]
    for r, pick in zip((1, 3, 5), chosen["chosen"], strict=True):
        objectives = [c["objective"] for c in chosen["candidates"] if c["revealed"] == r]
        assert pick == {"revealed": r, "value": (100.0, 1.0)[int(np.argmax(objectives))]}
    assert any(p["value"] != 100.0 for p in chosen["chosen"])  # not merely the first listed
    assert fitted_on[-1] == (set(prepared.split.train.user.tolist())
                             | set(prepared.split.validation.user.tolist()),
                             {p["revealed"]: p["value"] for p in chosen["chosen"]})  # fmt: skip
    assert [(r, way) for r, way, _ in measured] == [
        (0, cold_start.LATER), (1, cold_start.LATER), (1, cold_start.REGRESSION),
        (3, cold_start.LATER), (3, cold_start.REGRESSION), (5, cold_start.LATER),
        (5, cold_start.REGRESSION)]  # fmt: skip
    assert np.array_equal(cold.users, cold_start.cold_users(prepared.split.test,
                                                            [0, 1, 3, 5]).users)  # fmt: skip
    for r, way, metrics in measured:  # each row ranks the final fit's scores of its route
        expected = ranked_metrics(fits[-1].score(cold.revealed[r], r if way == "regression"
                                                 else 0), cold, r, [10])  # fmt: skip
        np.testing.assert_array_equal(metrics["ndcg@10"], expected["ndcg@10"])
    empty = cold_config(synthetic_data, "model=popular", "protocol.first_ratings_regularization=[]")
    with pytest.raises(ConfigError, match="needs protocol.first_ratings_regularization"):
        cold_start.evaluate_first_ratings(empty, prepared, [10])
    zero = cold_config(synthetic_data, "model=popular", "protocol.first_ratings_regularization=[0]")
    with pytest.raises(ConfigError, match="must be a list of numbers > 0"):
        cold_start.evaluate_first_ratings(zero, prepared, [10])
