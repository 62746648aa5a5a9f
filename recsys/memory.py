"""What a fit needs in memory, checked before it starts: a model that cannot fit refuses up front.

Each model states its own large allocations for a training matrix's shape and size
(``Recommender.memory_needed``: EASE's ``n_items x n_items`` matrices, a torch model's
parameters and optimiser state, a graph's adjacency); to those come the training matrix and
the block of scores ranked at once during evaluation. The total is compared with the run's
``memory_gb`` (by default the memory available when the run starts), and a run that would not
fit stops with the need, its parts and the fix, instead of swapping or being killed an hour in.

The estimates are of the largest arrays, not every byte: ``experiments/benchmark_scale.py``
prints each stage's measured peak next to them.
"""

from __future__ import annotations

from dataclasses import dataclass

import psutil
import scipy.sparse as sp

from recsys.errors import ConfigError

GIB = 2**30
FLOAT32 = 4
FLOAT64 = 8
INT64 = 8


@dataclass(frozen=True)
class MemoryNeed:
    """Bytes a fit needs, by what needs them (``{"Gram matrix": ..., ...}``)."""

    parts: dict[str, int]

    @property
    def total(self) -> int:
        return sum(self.parts.values())

    def describe(self) -> str:
        """``"Gram matrix 57.2 GiB + ..."``, the largest part first."""
        ranked = sorted(self.parts.items(), key=lambda part: -part[1])
        return " + ".join(f"{what} {size_text(size)}" for what, size in ranked)


def size_text(size: float) -> str:
    """``"57.2 GiB"``, or ``"310 MiB"`` below a GiB."""
    return f"{size / GIB:.1f} GiB" if size >= GIB else f"{size / 2**20:.0f} MiB"


def available_bytes() -> int:
    """Memory the system can give this process now without swapping."""
    return int(psutil.virtual_memory().available)


def memory_limit(memory_gb: float | None) -> int:
    """``memory_gb`` in bytes; ``None``: the memory available now."""
    return available_bytes() if memory_gb is None else int(memory_gb * GIB)


def csr_bytes(matrix: sp.csr_matrix) -> int:
    return matrix.data.nbytes + matrix.indices.nbytes + matrix.indptr.nbytes


def ranking_need(batch_size: int, n_items: int) -> int:
    """Ranking a block of users: its ``(batch, n_items)`` float32 scores and what masking and
    ``top_k`` take beside them (under one more block's worth)."""
    return 2 * batch_size * n_items * FLOAT32


def fit_need(model, train: sp.csr_matrix, batch_size: int) -> MemoryNeed:
    """What fitting ``model`` on ``train`` and ranking in blocks of ``batch_size`` users need."""
    n_users, n_items = train.shape
    parts = {"training matrix": csr_bytes(train),
             f"ranking {batch_size} users at once": ranking_need(batch_size, n_items)}  # fmt: skip
    parts |= model.memory_needed(n_users, n_items, train.nnz)
    return MemoryNeed(parts)


def check_fits(model, name: str, train: sp.csr_matrix, batch_size: int,
               memory_gb: float | None = None) -> MemoryNeed:  # fmt: skip
    """``fit_need``, or a ``ConfigError`` naming the need, its parts and the fixes when it
    exceeds ``memory_gb`` (``None``: the memory available now)."""
    need = fit_need(model, train, batch_size)
    limit = memory_limit(memory_gb)
    if need.total > limit:
        allowed = (f"the {size_text(limit)} available now" if memory_gb is None
                   else f"memory_gb={memory_gb:g}")  # fmt: skip
        raise ConfigError(
            f"model {name} on {train.shape[0]:,} users x {train.shape[1]:,} items "
            f"({train.nnz:,} interactions) needs about {size_text(need.total)} "
            f"({need.describe()}), more than {allowed}: choose a model that scales with the "
            f"interactions (als, bpr), lower eval_batch_size if ranking is the large part, or "
            f"run on a machine with more memory (memory_gb=N to state what it has)")  # fmt: skip
    return need
