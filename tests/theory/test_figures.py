"""Figures 2 and 8 are written as PNG and SVG and show what the captions claim."""

from __future__ import annotations

from deltahall.plotting.theory import save_theory_figures


def test_figures_written(tmp_path) -> None:
    info = save_theory_figures(tmp_path)
    for name in ("figure_8", "figure_2"):
        for ext in ("png", "svg"):
            p = tmp_path / "figures" / f"{name}.{ext}"
            assert p.exists() and p.stat().st_size > 1000
    assert info["figure_8"]["hdr_mass_a"] < info["figure_8"]["hcdr_mass_a"]
    assert info["figure_2"]["optimum_hallucinates"]
    assert info["figure_2"]["catlike_f_cat"] > 10 * info["figure_2"]["optimum_f_cat"]
