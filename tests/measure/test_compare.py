"""Known-truth comparison: every method at the same α; the HCDR finds blends a single Gaussian cannot."""

from __future__ import annotations

import numpy as np

from deltahall.measure.compare import compare_methods, digits_known_truth, synthetic_known_truth


def test_synthetic_known_truth_table() -> None:
    d = synthetic_known_truth(0, n_per_state=200, n_eval=300)
    rows = {r["method"]: r for r in compare_methods(d)}
    assert set(rows) == {
        "HCDR (conformal)",
        "HCDR (percentile)",
        "elliptic-envelope",
        "mahalanobis",
        "knn-radius",
        "lof",
    }
    for r in rows.values():
        assert (
            r["false_flag_rate"] < 0.2
        )  # every method is calibrated at alpha = 0.1 on held-out real
    assert rows["HCDR (conformal)"]["precision"] > 0.9 and rows["HCDR (conformal)"]["recall"] > 0.85
    assert rows["elliptic-envelope"]["recall"] < 0.3  # a blend sits near the pooled mean


def test_digits_blends_and_a_custom_embedder() -> None:
    d = digits_known_truth(0)
    assert d.ref_X.shape[1] == 64 and d.truth_outside.sum() > 300 and (~d.truth_outside).sum() > 400
    assert np.unique(d.ref_y).size == 10

    class Mean4:  # any object with .embed works
        name = "mean4"

        def embed(self, images):
            a = np.asarray(images)
            return a.reshape(a.shape[0], 4, 2, 8).mean(axis=(2, 3))

    e = digits_known_truth(0, embedder=Mean4())
    assert e.ref_X.shape == (d.ref_X.shape[0], 4) and e.name == "digits (mean4)"
    np.testing.assert_array_equal(e.truth_outside, d.truth_outside)
