"""Export the best run's embeddings to a FAISS bundle for the demo.

    python -m recsys.export [--experiment ml-100k] [--metric val/ndcg@10] [--run-id ID]
                            [--index exact|ivf|hnsw] [--out data/bundles/ml-100k] [--replace]

Picks the best finished MLflow run of an experiment by a validation metric (or the given run),
among runs that logged embeddings; rebuilds its split from the logged config and checks the
split fingerprint, so the "seen" items are exactly those of the run; stores every rating of each
user besides (test ratings and those below ``data.min_rating`` too: the demo never recommends a
film the user rated) and, where the run logged it, what scores a user never seen (the two-tower
user tower with its feature vocabularies, Mult-VAE's encoder); builds a FAISS inner-product
index over the item vectors (exact by default; IVF or HNSW measured against the exact index by
recall@10 over all users); and writes a bundle directory atomically: built in a temporary
directory, renamed into place, an existing bundle replaced only with ``--replace``.

What a bundle holds and how it is written and read: ``recsys.bundle``. ``--replace`` replaces
only a folder that is a bundle itself.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np
import pandas as pd
import scipy.sparse as sp
from mlflow.tracking import MlflowClient
from omegaconf import OmegaConf

from recsys import bundle
from recsys.artifacts import RunArtifacts
from recsys.cli import ArgumentParser, positive_int
from recsys.config import load_split
from recsys.data import to_interactions
from recsys.errors import ConfigError, RecsysError
from recsys.tracking import mlflow_key, open_client, package_versions

log = logging.getLogger(__name__)

INDEX_TYPES = ("exact", "ivf", "hnsw")


@dataclass(frozen=True)
class IndexSettings:
    """``kind``: exact, ivf or hnsw; ``nlist``/``nprobe`` for IVF; ``hnsw_m``/``ef_search``
    for HNSW."""

    kind: str = "exact"
    nlist: int = 32
    nprobe: int = 8
    hnsw_m: int = 32
    ef_search: int = 64

    def __post_init__(self):
        if self.kind not in INDEX_TYPES:
            raise ConfigError(f"index must be one of {', '.join(INDEX_TYPES)}, got {self.kind!r}")
        for name in ("nlist", "nprobe", "hnsw_m", "ef_search"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be a positive whole number, got {value!r}")


def build_index(items: np.ndarray, settings: IndexSettings) -> faiss.Index:
    """A FAISS maximum-inner-product index over ``(n_items, d)`` float32 vectors."""
    items = np.ascontiguousarray(items, dtype=np.float32)
    dim = items.shape[1]
    if settings.kind == "exact":
        index = faiss.IndexFlatIP(dim)
    elif settings.kind == "ivf":
        nlist = max(1, min(settings.nlist, len(items) // 39))  # FAISS wants ~39 points a list
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, nlist,
                                   faiss.METRIC_INNER_PRODUCT)  # fmt: skip
        index.train(items)
        index.nprobe = min(settings.nprobe, nlist)
    else:
        index = faiss.IndexHNSWFlat(dim, settings.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efSearch = settings.ef_search
    index.add(items)
    return index


def recall_against_exact(index: faiss.Index, users: np.ndarray, items: np.ndarray,
                         k: int = 10) -> float:  # fmt: skip
    """Mean share of the exact top-``k`` items (by inner product) that ``index`` returns."""
    users = np.ascontiguousarray(users, dtype=np.float32)
    _, exact = build_index(items, IndexSettings("exact")).search(users, k)
    _, approximate = index.search(users, k)
    hits = (approximate[:, :, None] == exact[:, None, :]).any(axis=2)  # (U, k)
    return float(hits.mean())


def select_run(client: MlflowClient, experiment: str, metric: str, run_id: str | None):
    """The given run, or the experiment's best finished run with embeddings by ``metric``."""
    if run_id is not None:
        try:
            run = client.get_run(run_id)
        except Exception:  # noqa: BLE001 - MLflow raises several types for a bad id
            raise ConfigError(f"no MLflow run {run_id!r} in {client.tracking_uri}") from None
        if run.data.tags.get("has_embeddings") != "true":
            raise ConfigError(f"run {run_id} logged no embeddings (model "
                              f"{run.data.tags.get('model')!r}): pick an embedding model's run")
        return run
    found = client.get_experiment_by_name(experiment)
    if found is None:
        raise ConfigError(f"no MLflow experiment {experiment!r} in {client.tracking_uri}: "
                          f"train first, e.g. `python -m recsys.train model=als`")
    key = mlflow_key(metric)
    runs = client.search_runs(
        [found.experiment_id],
        filter_string="tags.has_embeddings = 'true' and attributes.status = 'FINISHED'",
        order_by=[f"metrics.`{key}` DESC"],
        max_results=1,
    )
    if not runs:
        raise ConfigError(f"no finished run with embeddings in experiment {experiment!r}: "
                          f"train e.g. `python -m recsys.train model=als`")  # fmt: skip
    if key not in runs[0].data.metrics:  # ordered by a metric no run logged
        logged = [re.fullmatch(r"val/(\w+)_at_0*(\d+)", name) for name in runs[0].data.metrics]
        names = sorted({m.group(1) for m in logged if m})
        ks = sorted({int(m.group(2)) for m in logged if m})
        logged = (f"they logged val/METRIC@K, METRIC one of {', '.join(names)}, K one of "
                  f"{', '.join(map(str, ks))}" if names else "they logged no validation metric")
        raise ConfigError(f"--metric {metric}: no run with embeddings in experiment "
                          f"{experiment!r} logged it; {logged}")  # fmt: skip
    return runs[0]


def export_bundle(client: MlflowClient, run, out: str | Path, settings: IndexSettings,
                  replace: bool = False) -> dict:  # fmt: skip
    """Write the bundle of ``run`` to ``out`` atomically; return its manifest."""
    out = Path(out)
    if out.exists() and not replace:  # before any work; write_bundle checks again
        raise ConfigError(f"bundle {out} exists: pass --replace to overwrite it, or --out")
    if out.exists():
        bundle.check_replaceable(out)
    with RunArtifacts(client, run.info.run_id) as logged:
        cfg = logged.config()
        vectors = logged.embeddings()
        new_users = logged.new_user_parts()  # the two-tower user tower, Mult-VAE's encoder
    data, split = _split(cfg, run.data.tags.get("split.fingerprint"))
    seen = (split.train.to_csr() + split.validation.to_csr()).astype(np.float32).tocsr()
    index = build_index(vectors["item_embeddings"], settings)
    recall = recall_against_exact(index, vectors["user_embeddings"], vectors["item_embeddings"])
    log.info("%s index: recall@10 against exact search %.4f", settings.kind, recall)
    items = data.items.set_index("item_id").loc[vectors["item_ids"]].reset_index()
    ratings = rating_matrix(data.ratings, split.train.user_ids, split.train.item_ids)
    manifest = _manifest(run, cfg, settings, recall)
    if new_users is not None:  # other models' manifests stay as they were
        manifest["new_users"] = new_users.kind
    contents = bundle.Bundle(index=index, items=items, seen=seen, ratings=ratings,
                             manifest=manifest, new_users=new_users, **vectors)  # fmt: skip
    return bundle.write_bundle(out, contents, replace=replace)


def _split(cfg, fingerprint: str | None):
    """The run's data and split, rebuilt from its logged config and checked against the
    fingerprint it logged."""
    prepared = load_split(cfg)
    split = prepared.split
    if fingerprint is not None and split.fingerprint != fingerprint:
        raise RecsysError(f"the split rebuilt from the run's config has fingerprint "
                          f"{split.fingerprint[:12]}, the run logged {fingerprint[:12]}: the data "
                          f"or the split code changed since; retrain and export again")
    return prepared.data, split


def rating_matrix(ratings: pd.DataFrame, user_ids: np.ndarray,
                  item_ids: np.ndarray) -> sp.csr_matrix:  # fmt: skip
    """Every rating as a ``(n_users, n_items)`` float32 CSR matrix of stars.

    Parameters
    ----------
    ratings
        ``user_id, item_id, rating, timestamp``: all of a release's ratings, whatever the
        run's ``data.min_rating`` kept as interactions and whichever part of the split they
        fell in. A pair rated twice keeps its latest rating.
    user_ids, item_ids
        The row and column order (MovieLens ids; ``Interactions.user_ids`` / ``item_ids``).

    Returns
    -------
    scipy.sparse.csr_matrix
        ``ratings[u, i]``: the stars user ``user_ids[u]`` gave movie ``item_ids[i]``.
    """
    latest = ratings.sort_values("timestamp", kind="stable").drop_duplicates(
        ["user_id", "item_id"], keep="last")
    frame = to_interactions(latest, user_ids, item_ids)
    return sp.csr_matrix((frame.rating, (frame.user, frame.item)),
                         shape=(frame.n_users, frame.n_items), dtype=np.float32)  # fmt: skip


def _manifest(run, cfg, settings: IndexSettings, recall: float) -> dict:
    tags = run.data.tags
    return {
        "run_id": run.info.run_id,
        "experiment_id": run.info.experiment_id,
        "model": tags.get("model"),
        "model_config": OmegaConf.to_container(cfg.model),
        "metrics": dict(sorted(run.data.metrics.items())),
        "data_sha256": tags.get("data.sha256"),
        "split_fingerprint": tags.get("split.fingerprint"),
        "git_commit": tags.get("git.commit"),
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "versions": package_versions(),
        "index": {**settings.__dict__, "recall_at_10_vs_exact": recall},
    }


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m recsys.export", description=__doc__)
    parser.add_argument("--experiment", default="ml-100k")
    parser.add_argument("--metric", default="val/ndcg@10", help="validation metric to maximise")
    parser.add_argument("--run-id", default=None, help="export this run instead of the best")
    parser.add_argument("--tracking-uri", default=None, help="default: MLflow's (mlflow.db)")
    parser.add_argument("--index", default="exact", choices=INDEX_TYPES)
    parser.add_argument("--nlist", type=positive_int, default=32, help="IVF lists")
    parser.add_argument("--nprobe", type=positive_int, default=8, help="IVF lists searched")
    parser.add_argument("--hnsw-m", type=positive_int, default=32,
                        help="HNSW neighbours per node")  # fmt: skip
    parser.add_argument("--ef-search", type=positive_int, default=64, help="HNSW search breadth")
    parser.add_argument("--out", default=None, help="default: data/bundles/EXPERIMENT")
    parser.add_argument("--replace", action="store_true", help="replace an existing bundle")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # a CLI: one line
    try:
        settings = IndexSettings(args.index, args.nlist, args.nprobe, args.hnsw_m, args.ef_search)
        client = open_client(args.tracking_uri, option="--tracking-uri")
        run = select_run(client, args.experiment, args.metric, args.run_id)
        out = args.out or f"data/bundles/{args.experiment}"
        manifest = export_bundle(client, run, out, settings, replace=args.replace)
    except RecsysError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    metric = manifest["metrics"].get(mlflow_key(args.metric), float("nan"))
    carried = f"; new users: {manifest['new_users']}" if "new_users" in manifest else ""
    print(f"exported run {manifest['run_id']} ({manifest['model']}, {args.metric} "
          f"{metric:.4f}) to {out}; {args.index} index recall@10 vs exact "
          f"{manifest['index']['recall_at_10_vs_exact']:.4f}{carried}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
