"""Building objects from config groups: the one place a ``_target_`` becomes an object."""

from __future__ import annotations

from hydra.errors import HydraException
from hydra.utils import instantiate
from omegaconf import DictConfig

from recsys.errors import ConfigError, RecsysError


def build(node: DictConfig, group: str, **kwargs):
    """Build a config group's ``_target_`` with ``kwargs`` (data-dependent inputs such as
    feature tables, which are no config values); a bad value becomes one ``ConfigError``."""
    try:
        factory = instantiate(node, _partial_=True)
        return factory(**kwargs)
    except RecsysError:
        raise
    except HydraException as error:
        raise ConfigError(f"cannot build {group} from {dict(node)}: "
                          f"{error.__cause__ or error}") from None  # fmt: skip
    except (TypeError, ValueError) as error:
        raise ConfigError(f"cannot build {group} from {dict(node)}: {error}") from None
