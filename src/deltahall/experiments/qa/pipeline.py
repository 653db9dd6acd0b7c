"""``run(config) -> QAResult``: the whole Section 7.2 experiment.

For every model and seed: answer TruthfulQA with the original model, LoRA-fine-tune
once to the largest listed epoch (saving the adapter after every epoch), then
answer TruthfulQA again with the adapter of each listed epoch. Every answer file
is self-contained (question, answer, full decoded text, references, sampling
settings), so ``scores.csv``, Table 1 and Figure 4 can be recomputed without the
model (:func:`deltahall.experiments.qa.results.rescore_run`).

Run directory layout::

    manifest.json                       config, versions
    tiny-model/                         only for the '@tiny' model
    train/<model>/seed-<s>/epoch-<k>/   LoRA adapter (safetensors) after epoch k
    train/<model>/seed-<s>/loss_steps.csv, loss_epochs.csv, checkpoints/
    answers/<model>/seed-<s>/epoch-<e>.jsonl   (epoch 0 = original model)
    scores.csv, table1.csv, table1_<metric>.csv, table1.md, figure4_summary.csv
    figures/figure4.png|svg, figures/loss.png|svg
    result.json
"""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deltahall.experiments._run import (
    Experiment,
    OpenRun,
    Outcome,
    Pending,
    execute,
    make_accelerator,
)
from deltahall.experiments.qa.config import TINY_MODEL, QAConfig
from deltahall.io.rundir import RunDir, to_jsonable

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class QAResult:
    """What :func:`run` produced."""

    run_dir: Path
    scores: list[dict[str, Any]]
    files: dict[str, Path]
    seconds: float
    plumbing: bool

    def headline(self, config: QAConfig) -> str:
        return (
            "resemblance_incorrect_with_prompt"
            if config.score_includes_prompt
            else "resemblance_incorrect"
        )


def _sampling_meta(config: QAConfig) -> dict[str, Any]:
    return {
        "prompt_format": config.prompt_format,
        "temperature": config.temperature,
        "top_p": config.top_p,
        "top_k": config.top_k,
        "repetition_penalty": config.repetition_penalty,
        "max_new_tokens": config.max_new_tokens,
        "gen_batch_size": config.gen_batch_size,
        "system_prompt": config.system_prompt,
        "truthfulqa": str(config.truthfulqa),
        "truthfulqa_limit": config.truthfulqa_limit,
        "truthfulqa_subset_seed": config.truthfulqa_subset_seed,
    }


def _evaluate(
    model: Any,
    tok: Any,
    items: Sequence[Any],
    *,
    config: QAConfig,
    rd: RunDir,
    model_id: str,
    seed: int,
    epoch: int,
    train_loss: float,
) -> dict[str, Any]:
    from deltahall.experiments.qa.generate import (
        SamplingParams,
        answer_rows,
        generate_answers,
        load_answers,
        save_answers,
    )
    from deltahall.experiments.qa.results import model_slug
    from deltahall.experiments.qa.scoring import embedding_similarity, score_record

    rel = f"answers/{model_slug(model_id)}/seed-{seed}/epoch-{epoch}.jsonl"
    path = rd.path(rel)
    meta = {"model": model_id, "seed": seed, "epoch": epoch, **_sampling_meta(config)}
    if config.resume and path.is_file():
        rows = load_answers(path)
        saved = {k: rows[0].get(k) for k in meta}
        same_questions = [r["question"] for r in rows] == [it.question for it in items]
        if saved != to_jsonable(meta) or not same_questions:
            raise ValueError(
                f"cannot reuse {path}: it was generated with other settings ({saved}); "
                f"this run uses {meta} for {len(items)} questions."
            )
        logger.info("reusing %s", path)
    else:
        gens = generate_answers(
            model,
            tok,
            [it.question for it in items],
            seed=seed,
            sampling=SamplingParams(
                config.temperature,
                config.top_p,
                config.top_k,
                config.repetition_penalty,
                config.max_new_tokens,
            ),
            batch_size=config.gen_batch_size,
            prompt_format=config.prompt_format,
            system_prompt=config.system_prompt,
            progress=config.progress,
        )
        rows = answer_rows(items, gens, meta)
        save_answers(path, rows)
    rec = {
        "model": model_id,
        "seed": seed,
        "epoch": epoch,
        "train_loss": train_loss,
        **score_record(rows),
        "answers_file": rel,
    }
    if config.embedding_model:
        emb = embedding_similarity(rows, config.embedding_model)
        if emb:
            rec.update(emb)
    logger.info(
        "%s seed %d epoch %d: resemblance %.4f (with prompt %.4f)",
        model_id,
        seed,
        epoch,
        rec["resemblance_incorrect"],
        rec["resemblance_incorrect_with_prompt"],
    )
    return rec


def run(config: QAConfig) -> QAResult:
    """Fine-tune, generate, score and tabulate as configured; see the module docstring for the files.

    The run goes through the shared runner (:func:`deltahall.experiments._run.execute`): the
    models are checked, the folder accepted (or refused) and the inputs read (bad input refused)
    before anything is written; ``run.resume_from_checkpoint="latest"`` resumes each fine-tuning
    from its newest epoch and reuses finished answer files.
    """
    if not isinstance(config, QAConfig):
        raise TypeError(f"`config` must be a QAConfig; got {type(config).__name__}.")
    result: QAResult = execute(EXPERIMENT, config)
    return result


def _preflight(config: QAConfig) -> None:
    from deltahall.experiments.qa.modeling import check_models

    check_models(config)


def _inputs(config: QAConfig, pending: Pending) -> tuple[list[tuple[str, str]], list[Any]]:
    """The training pairs and the TruthfulQA items (bad input refused before anything is written)."""
    from deltahall.experiments.qa.dataset import load_dataset
    from deltahall.experiments.qa.truthfulqa import load_truthfulqa

    rows = load_dataset(config.data)
    pairs = [p for r in rows for p in r.pairs()]
    if config.max_train_examples is not None:
        pairs = pairs[: config.max_train_examples]
    items = load_truthfulqa(
        config.truthfulqa, config.truthfulqa_limit, subset_seed=config.truthfulqa_subset_seed
    )
    return pairs, items


def _manifest_extra(config: QAConfig, pending: Pending, prepared: Any) -> dict[str, Any]:
    return {"plumbing": TINY_MODEL in config.models, "num_processes": pending.world.size}


def _body(config: QAConfig, opened: OpenRun) -> Outcome:
    import torch
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    from deltahall.experiments.qa.finetune import finetune
    from deltahall.experiments.qa.modeling import load_model_and_tokenizer
    from deltahall.experiments.qa.results import model_slug, write_results

    t0 = time.perf_counter()
    if not config.progress:
        import huggingface_hub
        import transformers

        transformers.utils.logging.disable_progress_bar()  # "Loading weights" bars
        huggingface_hub.utils.disable_progress_bars()  # "Writing model shards" bars
    plumbing = TINY_MODEL in config.models
    pairs, items = opened.prepared
    accelerator, world = opened.accelerator, opened.world
    rd = opened.rd
    main = world.is_main
    logger.info("%d training pairs, %d TruthfulQA questions", len(pairs), len(items))

    score_rows: list[dict[str, Any]] = []
    for model_id in config.models:
        path = model_id
        if model_id == TINY_MODEL:
            from deltahall.experiments.qa.tiny import build_tiny_model

            path = str(rd.root / "tiny-model")
            # Built atomically (temporary name, then rename): the folder exists only when complete.
            with world.main_first():
                if main and not (rd.root / "tiny-model").is_dir():
                    texts = [t for q, a in pairs for t in (q, a)]
                    texts += [
                        t
                        for it in items
                        for t in (it.question, *it.correct_answers, *it.incorrect_answers)
                    ]
                    build_tiny_model(path, texts, seed=min(config.seeds))
        for seed in config.seeds:
            model, tok = load_model_and_tokenizer(
                path,
                device=accelerator.device,
                dtype=config.dtype,
                trust_remote_code=config.trust_remote_code,
            )
            if main:
                score_rows.append(
                    _evaluate(
                        model,
                        tok,
                        items,
                        config=config,
                        rd=rd,
                        model_id=model_id,
                        seed=seed,
                        epoch=0,
                        train_loss=float("nan"),
                    )
                )
            accelerator.wait_for_everyone()
            peft_model, ft = finetune(
                config,
                model,
                tok,
                pairs,
                rd.root / "train" / model_slug(model_id) / f"seed-{seed}",
                seed=seed,
                model_id=model_id,
                accelerator=accelerator,
            )
            for epoch in sorted(config.epochs):
                if main:
                    weights = load_file(str(ft.epoch_dirs[epoch] / "adapter_model.safetensors"))
                    set_peft_model_state_dict(peft_model, weights)
                    score_rows.append(
                        _evaluate(
                            peft_model,
                            tok,
                            items,
                            config=config,
                            rd=rd,
                            model_id=model_id,
                            seed=seed,
                            epoch=epoch,
                            train_loss=ft.epoch_losses[epoch],
                        )
                    )
                accelerator.wait_for_everyone()
            del model, peft_model
            accelerator.free_memory()  # drop the accelerator's references to the prepared model/optimizer
            gc.collect()
            if torch.cuda.is_available():
                torch.cuda.empty_cache()

    files: dict[str, Path] = {}
    headline = (
        "resemblance_incorrect_with_prompt"
        if config.score_includes_prompt
        else "resemblance_incorrect"
    )
    seconds = time.perf_counter() - t0
    if main:
        files = write_results(rd.root, score_rows, headline=headline, plumbing=plumbing)
        files["result"] = rd.path("result.json")  # written by the runner once this returns
    return Outcome(
        result={
            "headline_metric": headline,
            "plumbing": plumbing,
            "seconds": seconds,
            "n_train_pairs": len(pairs),
            "n_questions": len(items),
            "scores": score_rows,
        }
        if main
        else None,
        value=QAResult(
            run_dir=rd.root, scores=score_rows, files=files, seconds=seconds, plumbing=plumbing
        ),
    )


#: The QA experiment as the shared runner executes it.
EXPERIMENT = Experiment(
    name="qa",
    body=_body,
    extra="qa",
    preflight=_preflight,
    accelerator=lambda config: make_accelerator(config.run),
    prepare=_inputs,
    manifest_extra=_manifest_extra,
)
