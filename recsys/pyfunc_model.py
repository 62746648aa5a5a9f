"""The code an MLflow pyfunc model of recsys is loaded from (MLflow's *models from code*): the
model's folder keeps a copy of this file, and loading runs it. No pickled object is stored, so
loading runs no code but this (``recsys.pyfunc`` must be importable, as the model's class).
"""

from mlflow.models import set_model

from recsys.pyfunc import EmbeddingRecommender

set_model(EmbeddingRecommender())
