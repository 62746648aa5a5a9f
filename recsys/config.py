"""From config to objects: the one place a ``_target_`` becomes an object, and the one function
that turns a config into data -> interactions -> split.

The config lives in ``conf/`` (Hydra). Each model's settings live in exactly one file,
``conf/model/<name>.yaml`` (constructors take no defaults), and the torch models' training
settings in ``conf/trainer/``. The list of models is that folder: ``model_names()``.

    from recsys.config import compose_config, create_model, load_split
    cfg = compose_config(["model=ease", "seed=1"])       # what `python -m recsys.train` runs
    prepared = load_split(cfg)                           # data, interactions, split
    model = create_model("ease", seed=1, overrides={"regularization": 100.0})
"""

from __future__ import annotations

import difflib
import numbers
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from hydra.errors import HydraException
from hydra.utils import get_class, instantiate
from omegaconf import DictConfig, ListConfig, OmegaConf, open_dict
from omegaconf.errors import ConfigKeyError

from recsys.data import Interactions, MovieLens, load_movielens, to_interactions
from recsys.data.download import DATASETS, default_data_dir
from recsys.data.features import DEMOGRAPHICS, item_features, user_features
from recsys.data.synthetic import NAME as SYNTHETIC
from recsys.data.synthetic import synthetic_movielens
from recsys.errors import ConfigError, DataError, RecsysError, first_line
from recsys.metrics import METRICS
from recsys.split import Split

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"
# ``${recsys.data_dir:}`` in conf/data/: $RECSYS_DATA_DIR, else the user's cache folder
OmegaConf.register_new_resolver("recsys.data_dir", default_data_dir, replace=True)


def compose_config(overrides: Sequence[str] = (), config_name: str = "config",
                   checked: bool = False) -> DictConfig:  # fmt: skip
    """The config ``python -m recsys.train OVERRIDES`` would run, composed in-process and
    resolved (for tests, experiments and notebooks: ``run(compose_config(["model=ease"]))``);
    ``config_name="tune"`` composes ``python -m recsys.tune``'s. An override Hydra cannot
    compose is one ``ConfigError`` line, with the nearest match where ``check_overrides`` finds
    one (``checked``: it has run, and composes through here)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.hydra_config import HydraConfig

    failed = None
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3", job_name="recsys"):
        try:
            cfg = compose(config_name, overrides=list(overrides), return_hydra_config=True)
        except HydraException as error:
            failed = error
    if failed is not None:  # outside Hydra's context: check_overrides composes on its own
        if not checked:
            check_overrides(overrides, config_name)
        raise ConfigError(f"cannot compose the config of `{' '.join(overrides)}`: "
                          f"{first_line(failed)}")
    HydraConfig.instance().set_config(cfg)  # resolves ${hydra:...} the way the app does
    with open_dict(cfg):
        del cfg["hydra"]
    OmegaConf.resolve(cfg)
    return cfg


def model_names() -> list[str]:
    """Every model recsys knows: the files of ``conf/model/``, sorted."""
    return sorted(path.stem for path in (CONF_DIR / "model").glob("*.yaml"))


def build(node: DictConfig, group: str, **kwargs):
    """Build a config group's ``_target_`` with ``kwargs`` (data-dependent inputs such as
    feature tables, which are no config values); a bad value becomes one ``ConfigError``."""
    try:
        factory = instantiate(node, _partial_=True)
        return factory(**kwargs)
    except RecsysError:
        raise
    except HydraException as error:
        cause = error.__cause__ or error
        if isinstance(cause, RecsysError):  # a nested config (model.trainer) refused a value
            raise cause from None
        raise ConfigError(f"cannot build {group} from {_plain(node)}: {cause}") from None
    except (TypeError, ValueError) as error:
        raise ConfigError(f"cannot build {group} from {_plain(node)}: {error}") from None


def model_class(model_cfg: DictConfig) -> type:
    """The class a model config's ``_target_`` names (``ConfigError`` if it cannot be imported)."""
    try:
        return get_class(model_cfg._target_)
    except Exception as error:  # noqa: BLE001 - any import failure is a config mistake
        raise ConfigError(f"model._target_ {model_cfg.get('_target_')!r} cannot be imported: "
                          f"{error}") from None  # fmt: skip


def build_model(model_cfg: DictConfig, seed: int, data: MovieLens | None = None, **inputs):
    """The model of ``model_cfg`` with the run's ``seed``; models that use side features
    (``uses_side_features``) or the ratings' times (``uses_timestamps``) get them from ``data``
    unless given in ``inputs``."""
    side = getattr(model_class(model_cfg), "uses_side_features", False)
    if side and data is None and not {"user_features", "item_features"} <= set(inputs):
        raise ConfigError(f"model {model_cfg._target_.rsplit('.', 1)[-1]} reads the users' and "
                          f"films' features: pass the data, create_model(..., "
                          f"data=load_data(cfg.data))")  # fmt: skip
    if side and data is not None:
        if not set(DEMOGRAPHICS) <= set(data.users.columns):
            raise ConfigError(f"model {model_cfg._target_.rsplit('.', 1)[-1]} uses the users' "
                              f"demographics, which {data.name} does not have: use data=ml-100k "
                              f"or data=ml-1m, or another model")  # fmt: skip
        inputs = {"user_features": user_features(data.users),
                  "item_features": item_features(data.items)} | inputs  # fmt: skip
    if getattr(model_class(model_cfg), "uses_timestamps", False):  # None: refused at fit
        inputs = {"rated_at": None if data is None else rating_times(data)} | inputs
    return build(model_cfg, "model", seed=seed, **inputs)


def reads_times(model_cfg: DictConfig) -> bool:
    """Whether the model of ``model_cfg`` learns from when ratings were given: its class has
    ``uses_timestamps`` and is no ensemble, or (an ensemble) one of its members does."""
    members = model_cfg.get("members") or {}
    if members:
        return any(reads_times(member) for member in members.values())
    return bool(getattr(model_class(model_cfg), "uses_timestamps", False))


def rating_times(data: MovieLens):
    """When each rating of ``data`` was given, over the index space every split of it uses
    (``Interactions.rating_times``): what models that learn from time (``uses_timestamps``)
    look their training interactions up in, and nothing else."""
    return to_interactions(data.ratings, data.users["user_id"], data.items["item_id"],
                           None).rating_times()  # fmt: skip


def create_model(name: str, *, seed: int, overrides: Mapping | None = None,
                 data: MovieLens | None = None, **inputs):  # fmt: skip
    """The model ``conf/model/<name>.yaml`` describes, for the Python API and tests.

    ``overrides`` is merged into the model's config (``{"factors": 8}``, or
    ``{"trainer": {"epochs": 5}}`` for a torch model); ``data`` gives side features to the
    models that use them; ``inputs`` are other data-dependent arguments.
    """
    if name not in model_names():
        raise ConfigError(f"unknown model {name!r}: choose one of {', '.join(model_names())}")
    node = compose_config([f"model={name}"]).model
    if overrides:
        try:
            node = OmegaConf.merge(node, OmegaConf.create(dict(overrides)))
        except ConfigKeyError as error:  # a key the model does not have
            keys = settable(_all_keys(OmegaConf.to_container(node)))
            key = str(error.full_key).removeprefix("model.")
            hint = _nearest(key, keys) or f"; its settings: {', '.join(keys) or 'none'}"
            raise ConfigError(f"unknown setting {key!r} of model {name}{hint}") from None
    return build_model(node, seed, data, **inputs)


@dataclass(frozen=True)
class SplitData:
    """What a config's data and split sections produce: the release, its interactions (the
    positives under ``data.min_rating``), and their seeded train/validation/test split."""

    data: MovieLens
    interactions: Interactions
    split: Split


def load_data(data_cfg: DictConfig) -> MovieLens:
    """The release ``data_cfg`` names, verified and loaded, or ``data=synthetic``'s generated
    data of the sizes it gives."""
    if data_cfg.name == SYNTHETIC:
        keys = ("users", "items", "interactions", "seed", "popularity_exponent",
                "activity_sigma", "min_user_interactions", "taste")  # fmt: skip
        return synthetic_movielens(**{key: data_cfg[key] for key in keys})
    return load_movielens(data_cfg.dir or default_data_dir(), data_cfg.name)


def data_source(data_cfg: DictConfig) -> str:
    """Where a run's data came from, for its MLflow dataset input: a folder, or the generator's
    settings."""
    if data_cfg.name == SYNTHETIC:
        sizes = " ".join(f"{key}={data_cfg[key]}" for key in ("users", "items", "interactions",
                                                               "seed"))  # fmt: skip
        return f"synthetic: {sizes}"
    return str(Path(data_cfg.dir or default_data_dir(), data_cfg.name).absolute())


def protocol_split(protocol: str) -> str | None:
    """The ``conf/split/`` option that ``conf/protocol/<protocol>.yaml`` picks, or ``None`` for
    a protocol no file describes (a name the user gave)."""
    path = CONF_DIR / "protocol" / f"{protocol}.yaml"
    if not path.is_file():
        return None
    for entry in OmegaConf.load(path).get("defaults", []):
        if isinstance(entry, Mapping) and "override /split" in entry:
            return entry["override /split"]
    return None


def check_protocol_split(cfg: DictConfig) -> None:
    """``ConfigError`` where ``split=`` chose another split than the protocol's: the run would
    be labelled with the protocol, and carry its values (``test_ratio``...) to a split they are
    not for. Another split is another protocol: one file in ``conf/protocol/``."""
    name = OmegaConf.select(cfg, "protocol.name")
    own = None if name is None else protocol_split(name)
    if own is None or "_target_" not in cfg.split:
        return
    if OmegaConf.load(CONF_DIR / "split" / f"{own}.yaml")._target_ != cfg.split._target_:
        chosen = next((path.stem for path in sorted((CONF_DIR / "split").glob("*.yaml"))
                       if OmegaConf.load(path)._target_ == cfg.split._target_),
                      cfg.split._target_)  # fmt: skip
        using = [path.stem for path in sorted((CONF_DIR / "protocol").glob("*.yaml"))
                 if protocol_split(path.stem) == chosen]  # fmt: skip
        instead = (f"run protocol={'|'.join(using)}, which uses it" if using else
                   "no protocol uses it: add one, conf/protocol/NAME.yaml as loo.yaml is, and "
                   "run protocol=NAME")  # fmt: skip
        raise ConfigError(f"split={chosen} is not protocol {name}'s split ({own}): a protocol "
                          f"names its split and gives its values; {instead}")  # fmt: skip


def load_split(cfg: DictConfig) -> SplitData:
    """Data -> interactions -> split, as ``cfg`` says (used by train, export and experiments).

    The splitter is built first, so a bad split value fails before any download. Data that
    filters to nothing, and a split that leaves a part empty, are ``DataError``s.
    """
    splitter = build(cfg.split, "split")
    data = load_data(cfg.data)
    interactions = to_interactions(data.ratings, data.users["user_id"], data.items["item_id"],
                                   cfg.data.min_rating)  # fmt: skip
    if len(interactions) == 0:
        ratings = data.ratings["rating"]
        raise DataError(f"data.min_rating={cfg.data.min_rating} leaves no interactions in "
                        f"{cfg.data.name} (its ratings run from {ratings.min():g} to "
                        f"{ratings.max():g}): lower it, or set data.min_rating=null")  # fmt: skip
    split = splitter(interactions, seed=cfg.seed)
    for part in ("train", "test"):
        if len(getattr(split, part)) == 0:
            raise DataError(f"the split leaves no {part} interactions ({split.sizes()}) with "
                            f"data.min_rating={cfg.data.min_rating} and split "
                            f"{_plain(cfg.split)}: keep more ratings or change the "
                            f"split")  # fmt: skip
    return SplitData(data, interactions, split)


# -- checking a config before any work ---------------------------------------------------------
def check_config(cfg: DictConfig) -> None:
    """Check the run-wide values of a composed config (types and ranges), before any work.

    Every problem is one line of the ``ConfigError`` (key, value, what is allowed); then the
    split is checked to be the protocol's (``check_protocol_split``). Model and split values are
    checked by their constructors, which run before training. (A logged config that ``export``
    rebuilds a split from is not checked again: it ran.)
    """
    problems = check_values(cfg, _RULES)
    if not problems and int(cfg.objective.rpartition("@")[2]) not in cfg.ks:
        problems.append(f"objective={cfg.objective}: its K is not one of ks={_shown(cfg.ks)} "
                        f"(the metrics a run computes): add it to ks, or choose another K")
    if problems:
        raise ConfigError("\n".join(problems))
    check_protocol_split(cfg)


def check_values(cfg: DictConfig, rules: list[_Rule]) -> list[str]:
    """One line for each ``(key, what is allowed, test)`` of ``rules`` whose value in ``cfg``
    fails its test: ``key=value: expected ...``."""
    problems = []
    for key, allowed, is_valid in rules:
        value = OmegaConf.select(cfg, key, default=None)
        if not is_valid(value):
            problems.append(f"{key}={_shown(value)}: expected {allowed}")
    return problems


def is_int(value, low: int = 0, high: int | None = None) -> bool:
    """An integer (not a bool) in ``[low, high)``."""
    return (isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= low
            and (high is None or value < high))  # fmt: skip


def is_seed(value) -> bool:
    """A seed numpy takes: an integer from 0 to 2**32 - 1."""
    return is_int(value, 0, 2**32)


def _is_objective(value) -> bool:
    part, _, name = str(value).partition("/")
    metric, _, k = name.partition("@")
    return part == "val" and metric in METRICS and k.isdigit() and int(k) > 0


_Rule = tuple[str, str, Callable[[object], bool]]
_RULES: list[_Rule] = [
    ("seed", "an integer from 0 to 2**32 - 1", is_seed),
    ("ks", "a list of positive integers, e.g. [5,10,20]",
     lambda v: isinstance(v, ListConfig | list) and len(v) > 0 and all(is_int(k, 1) for k in v)),
    ("eval_batch_size", "a positive integer", lambda v: is_int(v, 1)),
    ("memory_gb", "null (the memory available) or a positive number of GiB, e.g. 16",
     lambda v: v is None or isinstance(v, numbers.Real) and not isinstance(v, bool) and v > 0),
    ("objective", f"val/METRIC@K with METRIC one of {', '.join(METRICS)}", _is_objective),
    ("data.name", f"one of {', '.join(sorted([*DATASETS, SYNTHETIC]))}",
     lambda v: v in DATASETS or v == SYNTHETIC),
    ("data.dir", "a folder path", lambda v: v is None or isinstance(v, str) and v != ""),
    ("data.min_rating", "null (every rating is a positive) or a number, e.g. 4",
     lambda v: v is None or isinstance(v, numbers.Real) and not isinstance(v, bool)),
    ("protocol.name", "a name, e.g. msr", lambda v: isinstance(v, str) and v != ""),
    ("protocol.refit", "true or false", lambda v: isinstance(v, bool)),
    ("tracking.enabled", "true or false", lambda v: isinstance(v, bool)),
    ("tracking.uri", "null or a URI, e.g. sqlite:///mlflow.db or http://127.0.0.1:5000",
     lambda v: v is None or isinstance(v, str) and ("://" in v or v.startswith("databricks"))),
    ("tracking.experiment", "a name", lambda v: isinstance(v, str) and v != ""),
    ("tracking.log_embeddings", "true or false", lambda v: isinstance(v, bool)),
    ("tracking.log_model", "true or false", lambda v: isinstance(v, bool)),
    ("cache.enabled", "true or false", lambda v: isinstance(v, bool)),
    ("cache.dir", "null (the user's cache folder) or a folder path",
     lambda v: v is None or isinstance(v, str) and v != ""),
    ("cache.max_gb", "a positive number of GiB, e.g. 2",
     lambda v: isinstance(v, numbers.Real) and not isinstance(v, bool) and v > 0),
]  # fmt: skip


def _shown(value) -> str:
    if isinstance(value, DictConfig | ListConfig):
        value = OmegaConf.to_container(value)
    return "null" if value is None else str(value)


def check_ks(ks: Sequence[int], n_items: int) -> None:
    """Cut-offs must not exceed the ranked catalogue."""
    too_large = [k for k in ks if k > n_items]
    if too_large:
        raise ConfigError(f"ks={list(ks)}: a cut-off of {too_large[0]} exceeds the {n_items} "
                          f"items of the catalogue: use cut-offs up to {n_items}")  # fmt: skip


def check_overrides(arguments: Sequence[str], config_name: str = "config") -> None:
    """Check a command line's overrides before Hydra runs: an unknown config-group option or
    key is one ``ConfigError`` line that names the nearest match (``model.factor=64``: did you
    mean ``model.factors``?). Sweeps (``a,b``, ``range``, ``glob``) are checked value by value."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import OverrideType, ValueType
    from hydra.errors import OverrideParseException

    texts = [a for a in arguments if "=" in a and not a.startswith("-")]
    try:
        overrides = OverridesParser.create().parse_overrides(texts)
    except OverrideParseException as error:
        raise ConfigError(f"cannot read the command line: {str(error).splitlines()[0]}") from None
    _check_sweep_syntax(arguments, overrides)
    groups = {path.name for path in CONF_DIR.iterdir() if path.is_dir()}
    choices = []
    for override in overrides:
        group = override.key_or_group
        if group.startswith("hydra/") and override.package is None:
            _check_hydra_choice(override)
            continue
        if group not in groups or override.value_type == ValueType.GLOB_CHOICE_SWEEP:
            continue
        values = (list(override.sweep_string_iterator()) if override.is_sweep_override()
                  else [override.value()])  # fmt: skip
        options = sorted(path.stem for path in (CONF_DIR / group).glob("*.yaml"))
        for value in values:
            if value is not None and str(value) not in options:
                shown = [o for o in options if not _is_alias(CONF_DIR / group / f"{o}.yaml")]
                hint = _nearest(str(value), shown)
                raise ConfigError(f"unknown {group} {value!r} in `{override.input_line}`: choose "
                                  f"one of {', '.join(shown)}{hint}")  # fmt: skip
        if values and values[0] is not None and override.package is None:
            choices.append(f"{group}={values[0]}")  # trainer@model.trainer=X: checked, not composed
    cfg = compose_config(choices, config_name=config_name, checked=True)
    keys = _all_keys(OmegaConf.to_container(cfg))
    for override in overrides:
        key = override.key_or_group
        if (override.type != OverrideType.CHANGE or key in groups
                or key.startswith(("hydra.", "hydra/"))):  # fmt: skip
            continue
        # a mapping merges into a mapping (model.weights={ease: 0.5}): each of its keys must be one
        value = None if override.is_sweep_override() else override.value()
        merged = ([f"{key}.{name}" for name in value]
                  if isinstance(value, dict) and isinstance(OmegaConf.select(cfg, key), DictConfig)
                  else [])  # fmt: skip
        for unknown in [k for k in [key, *merged] if k not in keys][:1]:
            raise ConfigError(f"unknown key {unknown!r} in `{override.input_line}`"
                              f"{_key_hint(unknown, keys, override.input_line)}")  # fmt: skip
    _check_swept_values(overrides, choices, config_name)
    for override in overrides:  # joblib's "n_jobs == 0 has no meaning", as a traceback
        if override.key_or_group == "hydra.launcher.n_jobs" and not override.is_sweep_override():
            jobs = override.value()
            if "${" not in str(jobs) and (not is_int(jobs, -(2**31)) or jobs == 0):
                raise ConfigError(f"`{override.input_line}`: expected a number of processes, "
                                  f"e.g. 2 (-1: one per core)")  # fmt: skip


def _check_sweep_syntax(arguments: Sequence[str], overrides) -> None:
    """Several values only in a multirun (``-m``, ``hydra.mode``, an experiment file), and
    only as lists or ranges (the basic sweeper samples no ``interval``): one line each, not
    Hydra's five-line "Ambiguous value" or a traceback."""
    from hydra.core.override_parser.types import ValueType

    multirun = any(a in ("-m", "--multirun") for a in arguments) or any(
        o.key_or_group in ("hydra.mode", "experiment") for o in overrides)  # a mode of its own
    for override in overrides:
        if override.value_type == ValueType.INTERVAL_SWEEP:
            raise ConfigError(f"`{override.input_line}`: a sweep here lists its values, "
                              f"a,b,c or range(start,stop,step); an interval needs a sampler: "
                              f"python -m recsys.tune")  # fmt: skip
    for override in overrides:
        if override.is_sweep_override() and not multirun and not override.is_hydra_override():
            raise ConfigError(f"`{override.input_line}` lists several values: a sweep runs with "
                              f"-m (python -m recsys.train -m {override.input_line})")  # fmt: skip


def _check_swept_values(overrides, choices: list[str], config_name: str) -> None:
    """Each value of a swept run-wide key (``seed=1,-1``, ``ks=[5,10],[0]``) checked by its own
    rule (``_RULES``), beside the command line's other settings, before the sweep starts its
    first job (rules across keys, an objective's K in ks, are each job's: the values of two
    swept keys combine)."""
    from hydra.core.override_parser.types import OverrideType, ValueType

    rules = {key: (key, allowed, test) for key, allowed, test in _RULES}
    swept = [o for o in overrides if o.is_sweep_override()]
    fixed = [o.input_line for o in overrides
             if not o.is_sweep_override() and not o.key_or_group.startswith("hydra")]  # fmt: skip
    groups = {o.key_or_group for o in swept}
    # a swept group at its first value (choices holds it), every other setting as given
    base = [*fixed, *(c for c in choices if c.partition("=")[0] in groups)]
    for override in swept:
        key = override.key_or_group
        if (override.type != OverrideType.CHANGE or key not in rules
                or override.value_type == ValueType.GLOB_CHOICE_SWEEP):
            continue  # fmt: skip
        try:
            values = list(override.sweep_string_iterator())
        except Exception:  # noqa: BLE001 - interval(...): the sweeper's to expand, or refuse
            continue
        for value in values:
            cfg = compose_config([*base, f"{key}={value}"], config_name, checked=True)
            problems = check_values(cfg, [rules[key]])
            if problems:
                raise ConfigError(f"{problems[0]} (a value of the sweep "
                                  f"`{override.input_line}`)")  # fmt: skip


def _is_alias(path: Path) -> bool:
    """A config file that is another's former name: nothing but ``defaults: [OTHER@_here_]``
    (``conf/data/ml100k.yaml``); it still runs, but is neither listed nor suggested."""
    node = OmegaConf.load(path)
    defaults = node.get("defaults", [])
    return set(node) == {"defaults"} and any(str(d).endswith("@_here_") for d in defaults)


# Hydra's launchers that pip install -e '.[cluster]' adds (hydra-joblib-launcher, -submitit-)
CLUSTER_LAUNCHERS = ("joblib", "submitit_local", "submitit_slurm")


def _check_hydra_choice(override) -> None:
    """A choice of one of Hydra's own groups (``hydra/launcher=joblib``) must be a config Hydra
    knows: one of its own, an installed plugin's, or a file under ``conf/hydra/``."""
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    group = override.key_or_group
    values = (list(override.sweep_string_iterator()) if override.is_sweep_override()
              else [override.value()])  # fmt: skip
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3", job_name="recsys"):
        options = GlobalHydra.instance().config_loader().get_group_options(group)
    for value in values:
        if value is None or str(value) in options:
            continue
        extra = ""
        if group == "hydra/launcher" and str(value) in CLUSTER_LAUNCHERS:
            extra = f"; launcher {value} comes with pip install -e '.[cluster]'"
        hint = extra or _nearest(str(value), options)
        raise ConfigError(f"unknown {group} {value!r} in `{override.input_line}`: choose one "
                          f"of {', '.join(sorted(options))}{hint}")  # fmt: skip


def settable(keys) -> list[str]:
    """``keys`` (dotted) less Hydra's own (``_target_``, ``_partial_``), sorted."""
    return sorted(k for k in keys if not k.rpartition(".")[2].startswith("_"))


def _key_hint(key: str, keys: set[str], line: str) -> str:
    """The nearest key beside ``key`` (or anywhere), else the keys of its parent node."""
    parent, _, leaf = key.rpartition(".")
    siblings = [k for k in settable(keys) if k.rpartition(".")[0] == parent]
    others = [k for k in settable(keys) if not key.startswith(f"{k}.")]  # not its own parents
    hint = _nearest(key, siblings) or _nearest(key, others)
    if hint:
        return hint
    if siblings and parent:
        shown = ", ".join(k.rpartition(".")[2] for k in siblings)
        return f"; {parent} has {shown}"
    if parent in keys:
        return f"; {parent} has no settings to change"
    return f"; a new key is added with +{line}"


def _nearest(word: str, candidates: Sequence[str]) -> str:
    match = difflib.get_close_matches(word, candidates, n=1, cutoff=0.6)
    return f"; did you mean {match[0]}?" if match else ""


def _all_keys(tree: Mapping, prefix: str = "") -> set[str]:
    """Every dotted key of a nested mapping, inner nodes included."""
    keys = set()
    for key, value in tree.items():
        keys.add(f"{prefix}{key}")
        if isinstance(value, Mapping):
            keys |= _all_keys(value, f"{prefix}{key}.")
    return keys


def _plain(node) -> dict:
    return OmegaConf.to_container(node) if isinstance(node, DictConfig) else dict(node)
