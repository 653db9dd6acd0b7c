"""The known-truth section of the HTML report (``deltahall report``; ``deltahall modes report``).

:func:`main_job_section` runs the ``tiny`` preset into the step's folder (well under a minute on
2 CPU cores); :func:`build_section` describes any finished ``modes run`` directory.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from deltahall.io import Section

TINY_NOTE = (
    "This is the tiny preset: a few hundred training steps of a small MLP denoiser, far from the peer's "
    "100,000 steps. It checks that the pipeline (training, checkpoints, seeded sampling, the exact truth, every "
    "detector, recursive training, resume) runs end to end; its rates describe an undertrained model, not the "
    "peer's. The measured cpu preset is in docs/modes.md."
)


def build_section(run_dir: str | Path, *, title: str | None = None) -> Section:
    """A report section from a finished ``modes run`` directory (figures must exist).

    Raises
    ------
    FileNotFoundError
        If ``run_dir`` has no ``result.json``.
    """
    from deltahall.experiments.modes.results import read_result

    root = Path(run_dir)
    res = read_result(root)
    cfg, truth = res["config"], res["truth"]
    sec = Section(
        title
        or f"Known truth: DDPM on a mixture of Gaussians ({cfg['data']}, preset {cfg['preset']})"
    )
    if cfg["preset"] == "tiny":
        sec.note(TINY_NOTE)
    n_comp = len(truth["means"])
    sec.text(
        f"The target is the peer's mixture (Aithal et al. 2024): {n_comp} isotropic Gaussian components of std "
        f"{truth['stds'][0]:g}. The latent states of Definition 4.2 are the components, so a sample δ-hallucinates "
        f"exactly when every component's density at it is <= δ = {truth['delta']:.4g}, the density at "
        f"{truth['delta_sigmas']:g} standard deviations from a mode (a real sample is that far from its own mode with "
        f"probability {'3.4e-4' if cfg['data'] == '2d' else '6.3e-5'}). A DDPM with an MLP denoiser ({cfg['width']} wide, "
        f"{cfg['n_blocks']} blocks, T = {cfg['timesteps']}) is trained for {cfg['train_steps']} steps of batch "
        f"{cfg['batch_size']} on {cfg['n_train']} points; at every checkpoint K = {cfg['num_samples']} samples (the same "
        "noise each time) are scored against the truth and by every detector."
    )
    rows = [
        {
            "step": m["step"],
            "val loss": m["val_loss"],
            "true rate": m["true_rate"],
            "95% CI": f"[{m['true_lo']:.4f}, {m['true_hi']:.4f}]",
            "HCDR rate (conformal)": m["hcdr_rate"],
            "AUROC hcdr p": m["hcdr_auroc"],
            "AUROC hcdr density": m["hcdr_density_auroc"],
            "AUROC variance": m["variance_auroc"],
            "AUROC knn": m["knn_auroc"],
        }
        for m in res["metrics"]
    ]
    sec.table(
        rows,
        caption="Per checkpoint: the true δ-hallucination rate (Wilson 95%), the instrument's rate at "
        f"α = {cfg['alpha']}, and each detector's AUROC against the truth.",
    )
    sens = [
        {"distance (sd)": k.removeprefix("true_rate_").removesuffix("sd"), "true rate": v}
        for k, v in res["final"].items()
        if k.startswith("true_rate_") and k.endswith("sd")
    ]
    sec.table(
        sens,
        caption="Sensitivity of the final true rate to δ (δ = density at this many sd from a mode).",
    )
    head = res["headline_final"]
    hrows: list[dict[str, Any]] = [
        {
            "detector": "peer: trajectory variance (published)",
            "hallucinations removed": head["peer_variance"]["removed"],
            "in-support kept": head["peer_variance"]["kept"],
        }
    ]
    for d in ("variance", "hcdr", "hcdr_density", "knn"):
        hrows.append(
            {
                "detector": f"ours: {d}",
                "hallucinations removed": head[d]["removed_at_keep"],
                "in-support kept": head["keep_in_support"],
            }
        )
        hrows.append(
            {
                "detector": f"ours: {d}",
                "hallucinations removed": 0.95,
                "in-support kept": head[d]["kept_at_remove95"],
            }
        )
    sec.table(
        hrows,
        caption="The peer's headline and ours at the final checkpoint, at a fixed share kept or removed.",
    )
    if res["recursive"]:
        sec.table(
            [
                {
                    k: r[k]
                    for k in (
                        "strategy",
                        "generation",
                        "true_rate",
                        "true_lo",
                        "true_hi",
                        "covered",
                        "tv_from_uniform",
                        "train_true_rate",
                    )
                }
                for r in res["recursive"]
            ],
            caption=f"Recursive training: covered = components holding >= {cfg['coverage_share']} of their "
            "true share of the in-support samples; TV from uniform over in-support samples.",
        )
    for k, v in res["verdicts"].items():
        sec.text(f"Verdict {k}: {v}")
    figs = root / "figures"
    for f in sorted(figs.glob("samples_step-*.png")) + [
        figs / "rate_vs_steps.png",
        figs / "recursive.png",
    ]:
        if f.is_file():
            sec.figure(f, f.stem.replace("_", " "))
    return sec


def main_job_config(run_dir: Path, seed: int) -> Any:
    """The main job's ``tiny`` config writing into ``run_dir`` (a rerun continues or re-reports it)."""
    from deltahall.experiments._run import RunOptions
    from deltahall.experiments.modes.config import PRESETS

    resume = "latest" if (Path(run_dir) / "manifest.json").is_file() else None
    return PRESETS["tiny"].replace(
        seed=seed,
        run=RunOptions(
            out_dir=Path(run_dir),
            resume_from_checkpoint=resume,
            device="cpu",
            progress=False,
            threads=1,
        ),
    )


def main_job_section(run_dir: Path, seed: int) -> Section:
    """Run the tiny preset into ``run_dir`` and describe it."""
    from deltahall.experiments.modes import run

    res = run(main_job_config(run_dir, seed))
    sec = build_section(
        res.out_dir or run_dir,
        title="Known truth: DDPM on the peer's 25-Gaussian grid (tiny preset)",
    )
    sec.code(
        f"reproduce: deltahall modes run --preset tiny --out-dir DIR --seed {seed}\n"
        "measured preset: deltahall modes run --preset cpu --out-dir runs/modes_cpu"
    )
    return sec
