"""Data stage: obtain and verify MovieLens, load it, turn ratings into interactions."""

from recsys.data.download import DATASETS, ensure_dataset
from recsys.data.interactions import Interactions, to_interactions
from recsys.data.movielens import MovieLens, load_movielens

__all__ = [
    "DATASETS",
    "Interactions",
    "MovieLens",
    "ensure_dataset",
    "load_movielens",
    "to_interactions",
]
