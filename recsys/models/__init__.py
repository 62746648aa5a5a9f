"""Model stage: one module per model, all behind ``recsys.models.base.Recommender``."""

from recsys.models.als import ALSRecommender
from recsys.models.base import Recommender, top_k
from recsys.models.bpr import BPRRecommender
from recsys.models.ease import EASERecommender
from recsys.models.graphsage import GraphSAGERecommender
from recsys.models.itemknn import ItemKNNRecommender
from recsys.models.popular import PopularRecommender
from recsys.models.random import RandomRecommender
from recsys.models.torch_base import TorchRecommender
from recsys.models.two_tower import TwoTowerRecommender

__all__ = [
    "ALSRecommender",
    "BPRRecommender",
    "EASERecommender",
    "GraphSAGERecommender",
    "ItemKNNRecommender",
    "PopularRecommender",
    "RandomRecommender",
    "Recommender",
    "TorchRecommender",
    "TwoTowerRecommender",
    "top_k",
]
