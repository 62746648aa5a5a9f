"""Model stage: one module per model, all behind ``recsys.models.base.Recommender``.

The models recsys runs are the files of ``conf/model/`` (``recsys.config.model_names``); each
names its class by module path, so a new model needs no line here. The names below are
imported on first use, so that a run of a closed-form model never loads torch or PyG.
"""

import importlib

_EXPORTS = {
    "ALSRecommender": "recsys.models.als",
    "BPRRecommender": "recsys.models.bpr",
    "EASERecommender": "recsys.models.ease",
    "GraphSAGERecommender": "recsys.models.graphsage",
    "ItemKNNRecommender": "recsys.models.itemknn",
    "PopularRecommender": "recsys.models.popular",
    "RandomRecommender": "recsys.models.random",
    "Recommender": "recsys.models.base",
    "TorchRecommender": "recsys.models.torch_base",
    "TrainerConfig": "recsys.models.torch_base",
    "TwoTowerRecommender": "recsys.models.two_tower",
    "top_k": "recsys.models.base",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'recsys.models' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
