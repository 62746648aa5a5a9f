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

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from hydra.errors import HydraException
from hydra.utils import get_class, instantiate
from omegaconf import DictConfig, OmegaConf, open_dict

from recsys.data import Interactions, MovieLens, load_movielens, to_interactions
from recsys.data.features import item_features, user_features
from recsys.errors import ConfigError, RecsysError
from recsys.split import Split

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"


def compose_config(overrides: Sequence[str] = (), config_name: str = "config") -> DictConfig:
    """The config ``python -m recsys.train OVERRIDES`` would run, composed in-process and
    resolved (for tests, experiments and notebooks: ``run(compose_config(["model=ease"]))``);
    ``config_name="tune"`` composes ``python -m recsys.tune``'s."""
    from hydra import compose, initialize_config_dir
    from hydra.core.hydra_config import HydraConfig

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3", job_name="recsys"):
        cfg = compose(config_name, overrides=list(overrides), return_hydra_config=True)
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
    (``uses_side_features``) get them from ``data`` unless given in ``inputs``."""
    if getattr(model_class(model_cfg), "uses_side_features", False) and data is not None:
        inputs = {"user_features": user_features(data.users),
                  "item_features": item_features(data.items)} | inputs  # fmt: skip
    return build(model_cfg, "model", seed=seed, **inputs)


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
        node = OmegaConf.merge(node, OmegaConf.create(dict(overrides)))
    return build_model(node, seed, data, **inputs)


@dataclass(frozen=True)
class SplitData:
    """What a config's data and split sections produce: the release, its interactions (the
    positives under ``data.min_rating``), and their seeded train/validation/test split."""

    data: MovieLens
    interactions: Interactions
    split: Split


def load_split(cfg: DictConfig) -> SplitData:
    """Data -> interactions -> split, as ``cfg`` says (used by train, export and experiments).

    The splitter is built first, so a bad split value fails before any download.
    """
    splitter = build(cfg.split, "split")
    data = load_movielens(cfg.data.dir, cfg.data.name)
    interactions = to_interactions(data.ratings, data.users["user_id"], data.items["item_id"],
                                   cfg.data.min_rating)  # fmt: skip
    return SplitData(data, interactions, splitter(interactions, seed=cfg.seed))


def _plain(node) -> dict:
    return OmegaConf.to_container(node) if isinstance(node, DictConfig) else dict(node)
