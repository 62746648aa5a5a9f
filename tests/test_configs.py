"""Every config file builds, each setting lives in one place, and a model is three files."""

import dataclasses
import inspect
from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from recsys.config import (
    CONF_DIR,
    check_overrides,
    compose_config,
    create_model,
    model_class,
    model_names,
)
from recsys.docs import is_model_group
from recsys.errors import ConfigError
from recsys.models.base import Recommender
from recsys.models.torch_base import TorchRecommender, TrainerConfig
from tests.conftest import synthetic_movielens
from tests.models.contract import contract_for

SEARCHES = sorted(path.stem for path in (CONF_DIR / "search").glob("*.yaml"))
RUN_INPUTS = {"seed", "user_features", "item_features", "rated_at"}  # from the entry point


def hydra_config(*overrides):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose("config", overrides=list(overrides), return_hydra_config=True)


def test_the_model_list_is_the_model_folder():
    assert model_names() == sorted(p.stem for p in (CONF_DIR / "model").glob("*.yaml"))
    assert {"random", "popular", "als", "ease"} <= set(model_names())


@pytest.mark.parametrize("name", model_names())
def test_every_model_config_builds(name):
    model = create_model(name, seed=0, data=synthetic_movielens())
    assert isinstance(model, Recommender)
    node = compose_config([f"model={name}"]).model
    for key, value in OmegaConf.to_container(node).items():
        if key in ("_target_", "trainer"):
            continue
        if is_model_group(value):  # an ensemble's members: built from their own configs
            built = getattr(model, key)
            assert list(built) == list(value)
            for member, member_node in value.items():
                assert type(built[member]).__name__ == member_node["_target_"].rsplit(".")[-1]
            continue
        if key == "weights" and isinstance(value, dict):  # kept normalised, in member order
            given = np.array([value[member] for member in model.members])
            np.testing.assert_allclose(model.weights, given / given.sum())
            continue
        assert getattr(model, key) == value, key  # the YAML value is what the model got


@pytest.mark.parametrize("name", model_names())
def test_settings_live_only_in_the_yaml(name):
    # No constructor default can drift from the YAML: every parameter comes from the model's
    # file (or, for torch models, the trainer group), except the run's seed and data inputs.
    cls = model_class(compose_config([f"model={name}"]).model)
    parameters = inspect.signature(cls.__init__).parameters
    defaults = [p for p, v in parameters.items() if v.default is not inspect.Parameter.empty]
    assert defaults == [], f"{cls.__name__} has constructor defaults {defaults}"
    node = OmegaConf.to_container(compose_config([f"model={name}"]).model)
    from_yaml = set(node) - {"_target_"}
    assert set(parameters) - {"self"} == from_yaml | (RUN_INPUTS & set(parameters))
    if issubclass(cls, TorchRecommender):
        assert set(node["trainer"]) - {"_target_"} == {f.name for f in
                                                      dataclasses.fields(TrainerConfig)}


def test_trainer_settings_have_no_python_defaults():
    fields = dataclasses.fields(TrainerConfig)
    assert all(f.default is dataclasses.MISSING for f in fields)
    default = OmegaConf.load(CONF_DIR / "trainer" / "default.yaml")
    assert set(default) - {"_target_"} == {f.name for f in fields}


def test_trainer_group_can_be_swapped_and_overridden():
    cfg = compose_config(["model=bpr", "model.trainer.epochs=3"])
    assert cfg.model.trainer.epochs == 3 and cfg.model.trainer.patience == 15  # bpr's own


@pytest.mark.parametrize("name", model_names())
def test_every_model_is_a_module_a_yaml_and_a_test_class(name):
    # the three files of a model; everything else (benchmark, report order, integration
    # parametrisation, README table) is derived from conf/model/
    cls = model_class(compose_config([f"model={name}"]).model)
    module_file = Path(inspect.getfile(cls))
    assert module_file.parent == Path(inspect.getfile(Recommender)).parent  # recsys/models/
    assert (CONF_DIR / "model" / f"{name}.yaml").exists()
    assert contract_for(name).model_name == name


@pytest.mark.parametrize("search", SEARCHES)
def test_every_search_space_builds_at_its_bounds(search):
    # every key of conf/search/<model>.yaml is a setting of the model, and the model accepts
    # the lowest and highest value (or every choice) of each
    from recsys.tune import search_space, with_params

    node = compose_config([f"model={search}"]).model
    for parameter in search_space(search):
        values = parameter.choices or (parameter.low, parameter.high)
        for value in values:
            value = int(value) if parameter.kind == "int" else value
            overrides = OmegaConf.to_container(with_params(node, {parameter.key: value}))
            create_model(search, seed=0, overrides=overrides, data=synthetic_movielens())


@pytest.mark.parametrize("search", SEARCHES)
def test_every_tuned_default_names_its_study(search):
    # a model with a search space has its default from a study on the default protocol
    from recsys.tune import PROVENANCE

    text = (CONF_DIR / "model" / f"{search}.yaml").read_text()
    cfg = compose_config(["model=" + search], config_name="tune")
    assert f"{PROVENANCE} model={search}` (study {cfg.tune.study})" in text, (
        f"run `python -m recsys.tune model={search}` (make tune)")
    assert (CONF_DIR.parent / "reports" / "tuning" / f"{cfg.tune.study}.md").exists()


def test_benchmark_sweeps_every_model_over_five_seeds():
    cfg = hydra_config("experiment=benchmark")
    assert cfg.hydra.sweeper.params.model == "glob(*)"  # every file of conf/model/
    assert cfg.hydra.sweeper.params.seed == "1,2,3,4,5"


def test_the_protocols_experiment_sweeps_every_protocol_that_train_runs():
    # recsys.train refuses a protocol with revealed counts (cold_users: recsys.cold_start's)
    swept = hydra_config("experiment=protocols").hydra.sweeper.params.protocol.split(",")
    presets = sorted(p.stem for p in (CONF_DIR / "protocol").glob("*.yaml"))
    trainable = [p for p in presets if compose_config([f"protocol={p}"]).protocol.get("revealed")
                 is None]  # fmt: skip
    assert sorted(swept) == trainable and "cold_users" in presets


def test_reads_times_names_the_models_that_learn_from_when_ratings_were_given():
    from recsys.config import reads_times

    timed = {name for name in model_names()
             if reads_times(compose_config([f"model={name}"]).model)}  # fmt: skip
    assert timed == {"session_ease", "ensemble"}  # the ensemble through its member
    plain = compose_config(["model=ensemble", "~model.members.session_ease"]).model
    assert not reads_times(plain)


def test_every_protocol_names_its_split_and_a_named_one_may_choose_any():
    from recsys.config import check_protocol_split, protocol_split

    for path in sorted((CONF_DIR / "protocol").glob("*.yaml")):
        cfg = compose_config([f"protocol={path.stem}"])
        assert (CONF_DIR / "split" / f"{protocol_split(path.stem)}.yaml").is_file()
        check_protocol_split(cfg)  # each protocol's own split passes
    assert protocol_split("mine") is None  # no file: the user's own protocol, any split
    check_protocol_split(compose_config(["protocol.name=mine", "split=leave_one_out"]))


def test_a_mistyped_setting_in_the_python_api_is_one_line_with_the_nearest():
    with pytest.raises(ConfigError, match="unknown setting 'regularisation' of model ease; did "
                                          "you mean regularization\\?"):  # fmt: skip
        create_model("ease", seed=1, overrides={"regularisation": 1.0})
    with pytest.raises(ConfigError, match="'trainer.epoch' of model bpr; did you mean "
                                          "trainer.epochs\\?"):  # fmt: skip
        create_model("bpr", seed=1, overrides={"trainer": {"epoch": 3}})
    with pytest.raises(ConfigError, match="reads the users' and films' features: pass the data"):
        create_model("two_tower", seed=1)  # no data=: its side features have no source
    settings = "dropout, regularization, user_weight, zero_diagonal$"
    with pytest.raises(ConfigError, match=f"'zzz' of model ease; its settings: {settings}"):
        create_model("ease", seed=1, overrides={"zzz": 1})


@pytest.mark.parametrize("arguments", [
    ["-m", "ks=[20,50]", "objective=val/ndcg@20,val/ndcg@50"],  # each value beside ks=[20,50]
    ["-m", "ks=[20,50],[50,100]", "objective=val/ndcg@50"],
    ["hydra.mode=MULTIRUN", "seed=1,2"],  # a multirun without -m
    ["-m", "model=popular,ease", "seed=range(1,4)"],
])  # fmt: skip
def test_a_valid_sweep_passes_the_check_before_its_first_job(arguments):
    check_overrides(arguments)
