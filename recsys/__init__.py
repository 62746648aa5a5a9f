"""recsys: reproducible recommender-system experiments on MovieLens."""

__version__ = "0.1.0"
