"""A run's fitted embedding model as an MLflow pyfunc model, so MLflow can serve it.

    mlflow models serve -m runs:/<run id>/model --env-manager local -p 5001
    curl -s localhost:5001/invocations -H 'Content-Type: application/json' \\
        -d '{"dataframe_records": [{"user_id": 196}], "params": {"k": 5}}'

The model is what the run logged for an embedding model (user and item vectors and their
MovieLens ids) plus each user's rated items, which are never recommended. ``predict`` takes a
frame with a ``user_id`` column and the parameter ``k`` and returns one row per
recommendation: ``user_id, rank, item_id, score`` (score: the inner product of the user's and
the item's vectors). Served from the project's environment (``--env-manager local``): the
model's class is ``recsys.pyfunc.EmbeddingRecommender``, stored as code (``recsys/pyfunc_model.py``,
MLflow's models from code), not as a pickled object.
"""

from __future__ import annotations

import contextlib
import logging
import os
import warnings
from pathlib import Path

import mlflow.pyfunc
import numpy as np
import pandas as pd
import scipy.sparse as sp

ARTIFACTS = ("user_embeddings", "item_embeddings", "user_ids", "item_ids")
PROGRESS_BAR = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"
MODEL_CODE = Path(__file__).with_name("pyfunc_model.py")  # what loading the model runs


class EmbeddingRecommender(mlflow.pyfunc.PythonModel):
    """Top-k items by inner product of user and item vectors, rated items excluded."""

    def load_context(self, context) -> None:
        arrays = {name: np.load(context.artifacts[name]) for name in ARTIFACTS}
        self.user_vectors = arrays["user_embeddings"]  # (n_users, d)
        self.item_vectors = arrays["item_embeddings"]  # (n_items, d)
        self.user_ids, self.item_ids = arrays["user_ids"], arrays["item_ids"]
        self.rated = sp.load_npz(context.artifacts["rated"]).tocsr()  # (n_users, n_items)

    def predict(self, context, model_input: pd.DataFrame, params: dict | None = None):
        k = int((params or {}).get("k", 10))
        if k < 1:
            raise ValueError(f"k must be a positive integer, got {k}")
        users = np.asarray(model_input["user_id"], dtype=np.int64)
        rows = np.searchsorted(self.user_ids, users)
        rows = np.minimum(rows, len(self.user_ids) - 1)
        unknown = users[self.user_ids[rows] != users]
        if len(unknown):
            raise ValueError(f"unknown user id(s) {unknown[:5].tolist()}: ids run from "
                             f"{self.user_ids.min()} to {self.user_ids.max()}")  # fmt: skip
        scores = self.user_vectors[rows] @ self.item_vectors.T  # (B, n_items)
        rated = self.rated[rows].tocoo()
        scores[rated.row, rated.col] = -np.inf
        k = min(k, scores.shape[1])
        top = np.argpartition(-scores, k - 1, axis=1)[:, :k]  # (B, k) unordered
        order = np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1, kind="stable")
        top = np.take_along_axis(top, order, axis=1)  # (B, k) best first
        best = np.take_along_axis(scores, top, axis=1)
        keep = np.isfinite(best)  # fewer unrated items than k
        return pd.DataFrame({
            "user_id": np.repeat(users, k)[keep.ravel()],
            "rank": np.tile(np.arange(1, k + 1), len(users))[keep.ravel()],
            "item_id": self.item_ids[top][keep],
            "score": best[keep].astype(np.float64),
        })  # fmt: skip


def save_model(folder: Path, embeddings: dict[str, np.ndarray], rated: sp.csr_matrix,
               metadata: mlflow.models.Model | None = None) -> Path:  # fmt: skip
    """Write the pyfunc model of ``embeddings`` (``ARTIFACTS``: vectors and their ids; user
    ids sorted) and ``rated`` (``(n_users, n_items)``, the items never recommended) into
    ``folder / "model"``; return that folder. ``metadata``: the MLmodel's run and model ids
    (``RunTracker.log_model`` passes them)."""
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, ParamSchema, ParamSpec, Schema

    folder = Path(folder)
    files = folder / "files"
    files.mkdir(parents=True)
    order = np.argsort(embeddings["user_ids"], kind="stable")  # predict looks users up sorted
    arrays = dict(embeddings, user_ids=embeddings["user_ids"][order],
                  user_embeddings=embeddings["user_embeddings"][order])  # fmt: skip
    paths = {}
    for name in ARTIFACTS:
        paths[name] = str(files / f"{name}.npy")
        np.save(paths[name], arrays[name])
    paths["rated"] = str(files / "rated.npz")
    sp.save_npz(paths["rated"], rated.tocsr()[order])
    signature = ModelSignature(
        inputs=Schema([ColSpec("long", "user_id")]),
        outputs=Schema([ColSpec("long", "user_id"), ColSpec("long", "rank"),
                        ColSpec("long", "item_id"), ColSpec("double", "score")]),
        params=ParamSchema([ParamSpec("k", "long", 10)]),
    )  # fmt: skip
    target = folder / "model"
    example = (pd.DataFrame({"user_id": arrays["user_ids"][:2]}), {"k": 10})
    with warnings.catch_warnings(), _quiet_mlflow():  # noise in every run's log otherwise
        warnings.filterwarnings("ignore", module="mlflow")  # its own pandas deprecations
        mlflow.pyfunc.save_model(str(target), python_model=str(MODEL_CODE),
                                 artifacts=paths, signature=signature, input_example=example,
                                 mlflow_model=metadata,
                                 pip_requirements=[f"numpy=={np.__version__}",
                                                   f"pandas=={pd.__version__}"])  # fmt: skip
    return target


@contextlib.contextmanager
def _quiet_mlflow():
    """No progress bar for each file MLflow copies while it checks the input example, and none
    of its INFO lines, while a model is saved (they went to every training run's stderr)."""
    logger = logging.getLogger("mlflow")
    level, bars = logger.level, os.environ.get(PROGRESS_BAR)
    logger.setLevel(logging.WARNING)
    os.environ[PROGRESS_BAR] = "false"
    try:
        yield
    finally:
        logger.setLevel(level)
        if bars is None:
            os.environ.pop(PROGRESS_BAR, None)
        else:
            os.environ[PROGRESS_BAR] = bars
