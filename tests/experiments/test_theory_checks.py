"""The theory commands' JSON payloads: strict JSON through deltahall.io, nulls with reasons."""

from __future__ import annotations

import json

import numpy as np

from deltahall.experiments.theory_checks import (
    BoundConfig,
    bound_payload,
    run_bound,
    witness_payload,
)
from deltahall.theory import as_written as AW
from deltahall.theory import witnesses as W


def test_tiny_scale_log_density_underflow_is_strict_json() -> None:
    res = W.theorem_c_1(0.01, 3, scale=1e-200)
    assert res.hallucinates and np.all(np.isneginf(res.log_densities))
    d = witness_payload(res)
    text = json.dumps(d, allow_nan=False)  # raises on NaN/inf
    assert (
        d["states"][0]["log_density"] is None and "underflows" in d["states"][0]["log_density_note"]
    )
    assert d["log_margin"] is None and "log_margin_note" in d
    assert json.loads(text)["details"]["n_classes"] == 3


def test_details_are_the_fields_a_theorem_adds() -> None:
    d = witness_payload(W.theorem_5_3(0.1, 3, lipschitz=2.0, hint_bound=0.5))
    assert d["details"]["lipschitz"] == 2.0 and d["details"]["example_hallucinates"] is True
    assert np.shape(d["details"]["example_log_densities"]) == (3, 3)
    big = witness_payload(W.theorem_5_3(0.1, 40), max_matrix_states=32)
    assert "example_log_densities" not in big["details"]
    assert len(big["details"]["example_max_log_density"]) == 40
    assert witness_payload(W.theorem_5_1(0.1, 2)).get("details") is None
    c1 = witness_payload(AW.theorem_c_1_as_written(1.0, 2, variance=0.5))
    assert c1["as_written"] and c1["details"]["variance_bound"] is None  # inf -> null


def test_bound_payload_not_applicable_says_why() -> None:
    # r = max_i r_i = sqrt(2 (log peak - log 0.01)) ≈ 2.7 > sqrt(σ_i) - d: the theorem does not apply
    rep = run_bound(BoundConfig(delta=0.01, mc_samples=100, within_scale=(1.0,)))
    assert not rep.bound.applicable
    d = bound_payload(rep)
    json.dumps(d, allow_nan=False)
    assert d["bound"] is None and "no alpha > 1" in d["null_fields"]["bound"]
    assert d["states"][0]["alpha_i"] is None and d["holds"] is None
    assert d["mc_samples"] == 100 and len(d["states"]) == 2
