r"""The instrument as a streaming metric (the torchmetrics ``update`` / ``compute`` style).

Build it once from the reference, feed generated samples batch by batch (during sampling, or
from a data loader), and compute the :class:`~deltahall.measure.calibration.Measurement` at
the end::

    metric = StreamingMeasure(ref_embeddings, ref_labels)            # fits once
    for batch, prompts in loader:
        metric.update(embed(batch), prompts)
    m = metric.compute()                                              # == measure_embeddings(...)

Under ``torchrun`` / ``accelerate launch`` (``torch.distributed`` initialised) each process
updates with its own shard (:func:`shard` splits any sequence of inputs by rank) and
:meth:`StreamingMeasure.compute` gathers every process's samples, restoring the original order
from the indices passed to :meth:`~StreamingMeasure.update`, so every process returns the same
measurement as the one-shot call on all the data. Embedders can be given by spec
(``embedder="@minilm"``): :meth:`update` then takes raw texts or images.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from deltahall.measure.calibration import (
    DetectorSettings,
    Measurement,
    fit_global,
    mean_embedding_check,
    measure_scores,
    plan_global,
)

__all__ = ["StreamingMeasure", "shard", "world"]


def world() -> tuple[int, int]:
    """``(rank, world_size)`` of the initialised ``torch.distributed`` group, else ``(0, 1)``."""
    try:
        import torch.distributed as dist
    except ImportError:  # torch is optional for the instrument
        return 0, 1
    if dist.is_available() and dist.is_initialized():
        return int(dist.get_rank()), int(dist.get_world_size())
    return 0, 1


def shard(
    items: Sequence[Any], rank: int | None = None, size: int | None = None
) -> tuple[list[int], list[Any]]:
    """This process's share of ``items`` (every ``size``-th from ``rank``) and their indices.

    Examples
    --------
    >>> shard(list("abcde"), 1, 2)
    ([1, 3], ['b', 'd'])
    """
    r, w = world() if rank is None or size is None else (rank, size)
    idx = list(range(r, len(items), w))
    return idx, [items[i] for i in idx]


class StreamingMeasure:
    """Accumulate generated samples, then measure them against a reference fitted once.

    Parameters
    ----------
    reference : array-like (n_ref, d)
        Real embeddings (or raw items with ``embedder``).
    labels : array-like (n_ref,)
        Their latent states.
    settings : DetectorSettings
    embedder : str or Embedder, optional
        Embed raw ``reference`` and ``update`` items with it (a registry alias, hub id or folder).
    """

    def __init__(
        self,
        reference: Any,
        labels: Any,
        *,
        settings: DetectorSettings | None = None,
        embedder: Any = None,
    ) -> None:
        self.settings = settings or DetectorSettings()
        self._embedder = None
        if embedder is not None:
            if isinstance(embedder, str):
                from deltahall.models import load_embedder

                embedder = load_embedder(embedder)
            self._embedder = embedder
            reference = embedder.embed(reference)
        X = np.asarray(reference)
        if X.ndim != 2:
            raise ValueError(f"`reference` embeddings must be (n, d); got shape {X.shape}.")
        self.plan = plan_global(labels, X.shape[0], self.settings)
        self.scorer, self.calibrator, self.test_scores = fit_global(X, self.plan, self.settings)
        self.dim = X.shape[1]
        self.reset()

    def reset(self) -> None:
        """Forget every sample given to :meth:`update` (the fitted reference stays)."""
        self._index: list[npt.NDArray[np.int64]] = []
        self._emb: list[npt.NDArray[np.float64]] = []
        self._prompts: list[str] = []
        self._next = 0

    def update(
        self,
        samples: Any,
        prompts: Sequence[str] | None = None,
        *,
        index: Sequence[int] | None = None,
    ) -> StreamingMeasure:
        """Add generated samples (embeddings, or raw items with an embedder) and their prompts.

        ``index``: the samples' positions in the whole generated set (e.g. from :func:`shard`),
        so the gathered measurement keeps the one-shot order; default: consecutive, per process.
        """
        if self._embedder is not None:
            samples = self._embedder.embed(samples)
        G = np.asarray(samples, dtype=np.float64)
        if G.ndim != 2 or G.shape[1] != self.dim:
            raise ValueError(
                f"generated embeddings must have shape (n, {self.dim}); got {G.shape}."
            )
        n = G.shape[0]
        pr = [""] * n if prompts is None else [str(p) for p in prompts]
        if len(pr) != n:
            raise ValueError(f"`prompts` must have one entry per sample; got {len(pr)} for {n}.")
        if index is None:
            idx = np.arange(self._next, self._next + n, dtype=np.int64)
        else:
            idx = np.asarray(index, dtype=np.int64).ravel()
            if idx.size != n:
                raise ValueError(f"`index` must have one entry per sample; got {idx.size} for {n}.")
        self._next = int(idx.max()) + 1 if idx.size else self._next
        self._index.append(idx)
        self._emb.append(G)
        self._prompts += pr
        return self

    def _gathered(self) -> tuple[npt.NDArray[np.float64], list[str]]:
        idx = np.concatenate(self._index) if self._index else np.zeros(0, np.int64)
        G = np.vstack(self._emb) if self._emb else np.zeros((0, self.dim))
        prompts = list(self._prompts)
        rank, size = world()
        if size > 1:
            import torch.distributed as dist

            parts: list[Any] = [None] * size
            dist.all_gather_object(parts, (idx, G, prompts))
            idx = np.concatenate([p[0] for p in parts])
            G = np.vstack([p[1] for p in parts])
            prompts = [q for p in parts for q in p[2]]
        if np.unique(idx).size != idx.size:
            raise ValueError(
                "two updates gave the same sample index; pass distinct `index` values per process."
            )
        order = np.argsort(idx, kind="stable")
        return G[order], [prompts[i] for i in order]

    def compute(self) -> Measurement:
        """The measurement of every sample seen (gathered across processes)."""
        G, prompts = self._gathered()
        if G.shape[0] == 0:
            raise ValueError("no generated samples: call update() before compute().")
        scorer, cal = self.scorer, self.calibrator
        mean_inside = mean_embedding_check(scorer, cal, G)

        plan = self.plan
        return measure_scores(
            settings=self.settings,
            scorer=scorer,
            calibrator=cal,
            states=plan["states"],
            state_sizes=plan["sizes"],
            gen_scores=scorer.score(G),
            gen_allowed=None,
            prompts=prompts,
            test_scores=self.test_scores,
            test_allowed=None,
            test_labels=plan["y_idx"][plan["parts"]["test"]].astype(np.int64),
            mean_inside=mean_inside,
            parts=plan["parts"],
            density_models=scorer.summary(),
        )
