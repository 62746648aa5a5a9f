"""Model stage: one module per model, all behind ``recsys.models.base.Recommender``."""

from recsys.models.als import ALSRecommender
from recsys.models.base import Recommender, top_k
from recsys.models.popular import PopularRecommender
from recsys.models.random import RandomRecommender

__all__ = [
    "ALSRecommender",
    "PopularRecommender",
    "RandomRecommender",
    "Recommender",
    "top_k",
]
