"""``Embedder.embed`` batches texts longest first over the whole input and returns them in input order."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from deltahall.models.base import Embedder


class _Recorder(Embedder):
    """A text embedder whose embedding is a function of the text alone; it records its batches."""

    modality = "text"
    name = "recorder"
    dim = 3
    fingerprint: dict[str, Any] = {}

    def __init__(self, order: bool) -> None:
        self.batch_size = 2
        self.batches: list[list[str]] = []
        self.order = order

    def _batch_order(self, items: Any) -> npt.NDArray[np.intp] | None:
        if not self.order:
            return None
        return np.argsort(-np.array([len(t) for t in items]), kind="stable")

    def _embed_batch(self, items: Sequence[str]) -> npt.NDArray[np.float32]:
        self.batches.append(list(items))
        return np.array(
            [[len(t), t.count("a"), sum(map(ord, t)) % 97] for t in items], dtype=np.float32
        )


def test_batches_are_length_sorted_and_the_order_is_restored() -> None:
    texts = ["bb", "a", "cccc", "aaa", "dd", ""]
    sorted_emb, plain = _Recorder(order=True), _Recorder(order=False)
    got = sorted_emb.embed(texts)
    assert sorted_emb.batches == [
        ["cccc", "aaa"],
        ["bb", "dd"],
        ["a", ""],
    ]  # stable: "bb" before "dd"
    assert plain.batches == [] and np.array_equal(got, plain.embed(texts))
    assert plain.batches == [["bb", "a"], ["cccc", "aaa"], ["dd", ""]]
    assert sorted_emb.embed([]).shape == (0, 3)


def test_minilm_sorted_batches_equal_per_item_embeddings(minilm) -> None:
    rng = np.random.default_rng(0)
    words = ["state", "model", "the", "answer", "a", "blue", "because", "river", "seven"]
    texts = [" ".join(rng.choice(words, size=int(rng.integers(1, 40)))) for _ in range(23)]
    order = minilm._batch_order(texts)
    lengths = np.array([len(t) for t in texts])
    assert np.all(np.diff(lengths[order]) <= 0)  # longest first, over all 23 texts
    one_by_one = np.vstack([minilm.model.encode([t], convert_to_numpy=True) for t in texts])
    got = minilm.embed(texts, batch_size=5)
    assert got.dtype == np.float32 and got.shape == (23, 384)
    np.testing.assert_allclose(got, one_by_one, atol=1e-5)
    # Each row is its own text's embedding, not a neighbour's: the order is restored.
    assert (
        np.array_equal(np.argmax(got @ one_by_one.T, axis=1), np.arange(23)) or len(set(texts)) < 23
    )
