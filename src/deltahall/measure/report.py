"""The HTML report of one measurement, and the reusable tables of its sections."""

from __future__ import annotations

import html
import logging
from pathlib import Path
from typing import Any

import numpy as np

from deltahall.io import Report, RunDir, Section

logger = logging.getLogger(__name__)

__all__ = ["baselines_rows", "measurement_section", "selection_rows", "write_report"]

_MAX_LIST = 20


def _ci(ci: Any) -> str:
    return f"[{float(ci[0]):.3f}, {float(ci[1]):.3f}]"


def headline(summary: dict[str, Any]) -> str:
    """One sentence: rate, interval, floor and the excess test."""
    return (
        f"δ-hallucination rate {summary['rate']:.4f} (95% Wilson {_ci(summary['rate_ci'])}, "
        f"{summary['n_flagged']}/{summary['n_generated']} generated samples flagged at α = {summary['alpha']:g}, "
        f"{summary['calibration']} calibration) against a real-data floor of {summary['floor']:.4f} "
        f"({_ci(summary['floor_ci'])}, {summary['n_test_flagged']}/{summary['n_test']} held-out real samples); "
        f"one-sided p-value that the generated rate exceeds the floor of its own states: "
        f"{summary['excess_p_value']:.3g} (pooled Fisher: {summary['excess_p_value_pooled']:.3g})."
    )


def selection_rows(sel: dict[str, Any]) -> list[dict[str, Any]]:
    """Per state: share among reference, all generated and kept samples."""
    return [
        {
            "state": s,
            "reference share": sel["shares"]["reference"][i],
            "generated share": sel["shares"]["generated"][i],
            "kept share": sel["shares"]["kept"][i],
        }
        for i, s in enumerate(sel["states"])
    ]


def selection_text(sel: dict[str, Any]) -> str:
    mode = (
        "inside the HCDR"
        if sel["mode"] == "hcdr"
        else f"the {sel['k']} highest p-values per prompt"
    )
    return (
        f"Selection (keep {mode}): kept {sel['n_kept']}/{sel['n']} (acceptance {sel['acceptance_rate']:.3f}); "
        f"flagged rate {sel['rate_before']:.4f} before -> {sel['rate_after']:.4f} after ({sel['rate_after_note']}). "
        f"Cost: total variation distance of state shares to the reference {sel['tv_generated_vs_reference']:.3f} "
        f"for all generated -> {sel['tv_kept_vs_reference']:.3f} for the kept samples; states surviving "
        f"{sel['states_surviving']} of {sel['states_generated']} present among the generated."
    )


def baselines_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {
            "method": r["method"],
            "rate": r["rate"],
            "rate CI": _ci(r["rate_ci"]),
            "floor": r["floor"],
            "floor CI": _ci(r["floor_ci"]),
        }
        for r in rows
    ]


def _figures(
    summary: dict[str, Any], test_p: Any, rd: RunDir, prefix: str
) -> list[tuple[Path, str]]:
    from deltahall.plotting import pyplot
    from deltahall.plotting.measure import p_value_histogram, per_prompt_rates, rate_vs_alpha

    plt = pyplot()
    out = []
    c = summary["curve"]
    for name, fig, cap in (
        (
            "rate_vs_alpha",
            rate_vs_alpha(c["alphas"], c["rate"], c["floor"], alpha=summary["alpha"]),
            "Flagged fraction of generated and held-out real samples as the level α varies; on real data its "
            "expectation is at most the dotted line y = α (the conformal guarantee; the held-out curve is one noisy draw).",
        ),
        (
            "per_prompt",
            per_prompt_rates(
                summary["per_prompt"], floor=summary["floor"], floor_ci=summary["floor_ci"]
            ),
            "Rate per prompt with its Wilson 95% interval; shaded: the real floor's interval.",
        ),
        (
            "p_values_real",
            p_value_histogram(test_p, alpha=summary["alpha"]),
            "Conformal p-values of the held-out real samples: near uniform if each state's calibration holds "
            "(mass piled near 1 means states overlap, which makes the rule conservative).",
        ),
    ):
        paths = rd.save_figure(fig, f"{prefix}{name}", formats=("png",))
        plt.close(fig)
        out.append((paths[0], cap))
    return out


def measurement_section(
    summary: dict[str, Any],
    test_p: Any,
    rd: RunDir,
    *,
    title: str,
    prefix: str = "",
    intro: str | None = None,
) -> Section:
    """A report section from a measurement's summary (``measure.json``) and its real-test p-values."""
    sec = Section(title)
    if intro:
        sec.text(intro)
    sec.text(headline(summary))
    sec.table(
        [
            {
                "state": s["name"],
                "reference": s["size"],
                "fit": s["fit"],
                "calibration": s["calibration"],
                "test": s["test"],
            }
            for s in summary["states"]
        ],
        caption="Latent states and the seeded, stratified split of the reference set.",
    )
    if "discovered_states" in summary:
        ds = summary["discovered_states"]
        sec.note(ds["note"] + f" BIC chose {ds['n_states']} states: sizes {ds['sizes']}.")
    sec.table(
        [
            {
                "prompt": r["prompt"] or "(none)",
                "n": r["n"],
                "rate": r["rate"],
                "rate CI": _ci(r["rate_ci"]),
                "mean embedding inside": r["mean_embedding_inside"],
            }
            for r in summary["per_prompt"]
        ],
        caption="Per prompt; 'mean embedding inside': is the mean of the prompt's embeddings (the loss-minimising "
        "estimate A*(X)) inside the HCDR?",
    )
    for path, cap in _figures(summary, test_p, rd, prefix):
        sec.figure(path, cap)
    if "selection" in summary:
        sel = summary["selection"]
        sec.text(selection_text(sel))
        sec.table(
            selection_rows(sel), caption="State shares (nearest state) before and after selection."
        )
    if "baselines" in summary:
        sec.table(
            baselines_rows(summary["baselines"]),
            caption="The same split, every method thresholded on the calibration part at the same α.",
        )
    return sec


def _samples_list(result: Any, rows: np.ndarray, what: str) -> str:
    gen = result.generated
    items = []
    for i in rows[:_MAX_LIST].tolist():
        label = gen.texts[i] if gen.texts is not None else gen.ids[i]
        items.append(
            f"<li><code>p={result.measurement.gen_p[i]:.3g}</code> "
            f"[{html.escape(gen.prompts[i] if gen.prompts else '')}] {html.escape(label[:300])}</li>"
        )
    return f"<p>{html.escape(what)} ({rows.size} in all, first {min(rows.size, _MAX_LIST)}):</p><ol>{''.join(items)}</ol>"


def _image_grid(result: Any, rows: np.ndarray, rd: RunDir, name: str, title: str) -> Path | None:
    from deltahall.plotting import pyplot
    from deltahall.plotting.measure import image_grid

    paths = result.generated.image_paths
    if paths is None or rows.size == 0:
        return None
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - images were read with PIL already
        return None
    ims = []
    for i in rows[:32].tolist():
        with Image.open(paths[i]) as im:
            ims.append(np.asarray(im.convert("RGB")))
    fig = image_grid(
        ims,
        titles=[f"p={result.measurement.gen_p[i]:.2g}" for i in rows[:32].tolist()],
        title=title,
    )
    p = rd.save_figure(fig, name, formats=("png",))[0]
    pyplot().close(fig)
    return p


def write_report(result: Any, rd: RunDir) -> Path:
    """``report.html`` of a :class:`~deltahall.measure.pipeline.MeasureResult`."""
    m = result.measurement
    report = Report("deltahall measure: calibrated δ-hallucination rate")
    sec = measurement_section(result.summary, m.test_p, rd, title="Measurement")
    flagged = np.flatnonzero(m.gen_flagged)
    flagged = flagged[np.argsort(m.gen_p[flagged], kind="stable")]
    accepted = np.flatnonzero(~m.gen_flagged)
    accepted = accepted[np.argsort(-m.gen_p[accepted], kind="stable")]
    if result.generated.image_paths is not None:
        for rows, name, title in (
            (flagged, "flagged", "flagged (least plausible first)"),
            (accepted, "accepted", "accepted (most plausible first)"),
        ):
            g = _image_grid(result, rows, rd, f"grid_{name}", title)
            if g is not None:
                sec.figure(g, f"Generated samples {title}.")
    else:
        sec.raw(_samples_list(result, flagged, "Flagged samples, least plausible first"))
        if result.generated.texts is not None:
            sec.raw(_samples_list(result, accepted, "Accepted samples, most plausible first"))
    report.add(sec)
    how = report.section("How to read this")
    how.text(
        "Each reference state's log-density is a Gaussian mixture fitted on the fit part; its calibration part gives "
        "each sample a conformal p-value p(z) = max_i (1 + #{calibration scores of state i <= log f_i(z)}) / (m_i + 1). "
        "A sample is flagged (outside every state's high-density region: a δ-hallucination, Remark 6.1) when "
        "p(z) <= α; a fresh real sample is then flagged with probability at most α. The floor is what real samples "
        "score; a generator is worse than real data where its interval lies above the floor's."
    )
    return report.write(rd.path("report.html"))
