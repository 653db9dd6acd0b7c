"""The QA experiment with controls: four arms on one real language model (issue 9).

Arms, on the same training questions, seeds and TruthfulQA subset:

``original``       no fine-tuning (evaluated once, as epoch 0);
``two_answer``     both answers of each question as training examples (the paper's setup);
``single_answer``  one answer per question, repeated twice, so that examples and optimiser
                   steps match ``two_answer`` (the control the paper lacks);
``exposure``       one answer per question, once: half the steps, but each answer seen as often
                   as in ``two_answer`` (separates "less practice per answer" from "averaging").

The single-answer arms train on the same answer of each question (a seeded choice).
All fine-tuned arms share the LoRA initialisation of a seed (one adapter per arm on one
base model) and train with AdamW at a constant learning rate, through the same training loop as
``qa run`` (:func:`.finetune.train_epoch`); the loss is :func:`.finetune.answer_loss` (the answer
tokens only, with the output layer applied to those positions only: the same loss as
``model(**batch).loss``, at a fraction of the cost with Gemma's 262k-token vocabulary).

After every epoch each fine-tuned arm answers the TruthfulQA subset (scored by
:mod:`.arms_tables`), and the arms in ``delta_arms`` draw ``k_samples`` answers per training
question for the text δ-measure (:mod:`.delta_measure`). Files are rewritten after every arm
and epoch, so an interrupted run leaves every finished epoch's results (``summary.json``
is recomputed from the per-item files by :func:`.arms_tables.summarise`).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from deltahall._registry import Registry
from deltahall._validation import BadInput, check_choice, check_int, check_real
from deltahall.experiments._config import ExperimentConfig, presets_for
from deltahall.experiments._run import (
    RESUME_FREE,
    Experiment,
    OpenRun,
    Outcome,
    Pending,
    RunOptions,
    execute,
)
from deltahall.experiments.qa.config import TINY_MODEL
from deltahall.models.registry import check_data_alias, check_model_alias

logger = logging.getLogger(__name__)

ARMS = ("original", "two_answer", "single_answer", "exposure")
#: Written (atomically) after each finished seed: the unit a resumed run keeps.
PROGRESS = "progress.json"
#: The run options of the first preset, ``"cpu-real"`` (2 torch threads on 2 CPU cores).
_DEFAULT_RUN = RunOptions(out_dir=Path("runs/qa-arms-cpu-real"), device="cpu", threads=2)


def _run_options(changes: dict[str, Any], base: RunOptions = _DEFAULT_RUN) -> dict[str, Any]:
    """Move run-option names out of ``changes`` into its ``run`` (``torch_threads`` is ``threads``)."""
    if "torch_threads" in changes:
        changes["threads"] = changes.pop("torch_threads")
    run = RunOptions.pop_from(changes)
    current = changes.get("run", base)
    if isinstance(current, dict):
        current = RunOptions(**current)
    if run:
        changes["run"] = dataclasses.replace(current, **run)
    return changes


@dataclass(frozen=True)
class ArmsConfig(ExperimentConfig):
    """Everything one four-arm run needs; :func:`run` executes it.

    The field defaults are the first preset, ``"cpu-real"`` (:data:`PRESETS`): Gemma 3 270M
    (base) with LoRA on 2 CPU cores, sized to finish all arms in <= 45 min. Pass ``truthfulqa=``
    the TruthfulQA CSV. Sizing (measured on the shared 2-core machine, see docs/qa.md):
    generation costs ~0.5-3 s per answer and dominates; a training step (4 examples) ~1-2 s.
    Batch 4 at learning rate 1e-3 brings the control's loss from 2.9 to 0.4 in 3 epochs, so its
    samples concentrate on its answer (needed to calibrate the text δ-measure).
    """

    model: str = field(
        default="@gemma3-270m",
        metadata={
            "help": "causal LM: '@gemma3-270m', a local folder, a hub id, or '@tiny' (random offline model, plumbing only)"
        },
    )
    data: str = field(
        default="@open-qa",
        metadata={"help": "open-ended QA JSONL file, or '@open-qa' (the packaged 300 x 2 dataset)"},
    )
    truthfulqa: str = field(
        default="@standin", metadata={"help": "TruthfulQA CSV path, 'hub' or '@standin'"}
    )
    n_train_questions: int = field(
        default=32, metadata={"help": "training questions (seeded choice from the dataset)"}
    )
    n_eval_questions: int = field(
        default=64, metadata={"help": "TruthfulQA questions (seeded subset)"}
    )
    data_seed: int = field(
        default=0,
        metadata={"help": "seeds the choice of questions and of the single-answer arms' answer"},
    )
    seeds: tuple[int, ...] = field(
        default=(0,), metadata={"help": "training/sampling seeds; every arm runs every seed"}
    )
    epochs: int = field(
        default=3, metadata={"help": "epochs per fine-tuned arm (evaluated after each)"}
    )
    arms: tuple[str, ...] = field(
        default=ARMS, metadata={"help": "arms to run (original two_answer single_answer exposure)"}
    )
    delta_arms: tuple[str, ...] = field(
        default=("two_answer", "single_answer"),
        metadata={
            "help": "arms sampled for the text δ-measure (must include single_answer: it calibrates τ)"
        },
    )
    k_samples: int = field(
        default=4, metadata={"help": "answers sampled per training question for the text δ-measure"}
    )
    delta_percentile: float = field(
        default=10.0, metadata={"help": "τ = this percentile of the control's in-state cosines"}
    )
    calibration_fraction: float = field(
        default=0.5,
        metadata={"help": "share of training questions whose control samples calibrate τ"},
    )
    lora_r: int = field(default=8, metadata={"help": "LoRA rank"})
    lora_alpha: int = field(default=16, metadata={"help": "LoRA alpha"})
    target_modules: tuple[str, ...] = field(
        default=("q_proj", "k_proj", "v_proj", "o_proj"), metadata={"help": "LoRA target modules"}
    )
    learning_rate: float = field(default=1e-3, metadata={"help": "AdamW learning rate (constant)"})
    batch_size: int = field(default=4, metadata={"help": "training batch size"})
    max_length: int = field(
        default=128, metadata={"help": "truncate training sequences to this many tokens"}
    )
    prompt_format: Literal["qa", "chat"] = field(
        default="qa",
        metadata={
            "help": "'qa' (Question:/Answer: lines, for base models) or 'chat' (chat template)"
        },
    )
    temperature: float = field(default=0.7, metadata={"help": "sampling temperature (paper: 0.7)"})
    top_p: float = field(default=0.9, metadata={"help": "nucleus top-p (paper: 0.9)"})
    max_new_tokens: int = field(default=32, metadata={"help": "maximum new tokens per answer"})
    gen_batch_size: int = field(default=32, metadata={"help": "prompts per generate() call"})
    embedder: str = field(
        default="@minilm",
        metadata={"help": "sentence embedder for the cosine scores and the text δ-measure"},
    )
    n_boot: int = field(default=2000, metadata={"help": "bootstrap resamples for the intervals"})
    n_perm: int = field(
        default=10000, metadata={"help": "random sign flips for the paired permutation tests"}
    )
    dtype: Literal["float32", "bfloat16"] = field(
        default="float32", metadata={"help": "base model dtype"}
    )
    run: RunOptions = field(default_factory=lambda: _DEFAULT_RUN, metadata=RESUME_FREE)

    def __post_init__(self) -> None:
        self._check_run()
        if self.run.out_dir is None:
            raise BadInput("`out_dir` must be a folder path; got None.")
        check_model_alias(self.model, "model")
        check_data_alias(str(self.truthfulqa), "truthfulqa", allowed=("@standin",))
        check_data_alias(str(self.data), "data", allowed=("@open-qa",))
        resume = self.run.resume_from_checkpoint
        if resume is not None and resume != "latest":
            raise ValueError(
                "`resume_from_checkpoint` must be 'latest' for qa arms (a run resumes after its "
                f"last finished seed); got {resume!r}."
            )
        for name in ("n_train_questions", "n_eval_questions"):
            check_int(getattr(self, name), name, low=2)
        for name in (
            "epochs",
            "k_samples",
            "lora_r",
            "lora_alpha",
            "batch_size",
            "max_new_tokens",
            "gen_batch_size",
            "n_boot",
            "n_perm",
        ):
            check_int(getattr(self, name), name, low=1)
        check_int(self.max_length, "max_length", low=8)
        check_int(self.data_seed, "data_seed", low=0)
        for name in ("seeds", "arms", "delta_arms", "target_modules"):
            if not isinstance(getattr(self, name), tuple):
                object.__setattr__(self, name, tuple(getattr(self, name)))
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"`seeds` must list distinct seeds; got {self.seeds}.")
        for s in self.seeds:
            check_int(s, "seeds", low=0)
        bad = [a for a in self.arms if a not in ARMS]
        if bad or not self.arms or len(set(self.arms)) != len(self.arms):
            raise ValueError(
                f"`arms` must be distinct names among {list(ARMS)}; got {list(self.arms)}."
            )
        bad = [a for a in self.delta_arms if a not in self.arms or a == "original"]
        if bad:
            raise ValueError(
                f"`delta_arms` must be fine-tuned arms among `arms` {list(self.arms)}; got {bad}."
            )
        if self.delta_arms and "single_answer" not in self.delta_arms:
            raise ValueError(
                "`delta_arms` must include 'single_answer': its samples calibrate τ; "
                f"got {list(self.delta_arms)}."
            )
        check_real(
            self.delta_percentile,
            "delta_percentile",
            low=0.0,
            high=100.0,
            low_open=True,
            high_open=True,
        )
        check_real(
            self.calibration_fraction,
            "calibration_fraction",
            low=0.0,
            high=1.0,
            low_open=True,
            high_open=True,
        )
        if self.delta_arms:
            # The text δ-measure's margin rule needs m + 1 >= 2 / alpha calibration samples; refuse a
            # design that could never flag anything before any model is trained.
            import math

            n_cal_q = min(
                self.n_train_questions - 1,
                max(1, round(self.calibration_fraction * self.n_train_questions)),
            )
            m = n_cal_q * self.k_samples
            alpha = self.delta_percentile / 100.0
            need = math.ceil(2.0 / alpha - 1.0 - 1e-9)
            if m < need:
                raise ValueError(
                    f"the text δ-measure would calibrate on {n_cal_q} question(s) x {self.k_samples} samples = {m}, "
                    f"fewer than the {need} its margin rule needs at `delta_percentile`={self.delta_percentile:g}; "
                    "raise `n_train_questions`, `k_samples` or `delta_percentile`."
                )
        check_real(self.learning_rate, "learning_rate", low=0.0, low_open=True)
        check_real(self.temperature, "temperature", low=0.0, low_open=True)
        check_real(self.top_p, "top_p", low=0.0, high=1.0, low_open=True)
        check_choice(self.prompt_format, "prompt_format", ("qa", "chat"))
        check_choice(self.dtype, "dtype", ("float32", "bfloat16"))
        if not (self.device in ("auto", "cpu") or self.device.startswith("cuda")):
            raise ValueError(f"`device` must be 'auto', 'cpu' or 'cuda[:i]'; got {self.device!r}.")
        if not self.target_modules:
            raise ValueError("`target_modules` must name at least one module; got ().")
        if not str(self.truthfulqa).strip():
            raise ValueError(
                "`truthfulqa` must be a CSV path, 'hub' or '@standin'; got an empty string."
            )

    @property
    def finetuned_arms(self) -> tuple[str, ...]:
        return tuple(a for a in self.arms if a != "original")

    @property
    def out_dir(self) -> Path:
        """The run directory (``run.out_dir``)."""
        return Path(self.run.out_dir)  # type: ignore[arg-type]

    @property
    def device(self) -> str:
        """``run.device``; ``'auto'`` is CUDA when available, else CPU."""
        if self.run.device != "auto":
            return self.run.device
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"

    @property
    def torch_threads(self) -> int | None:
        """``run.threads``."""
        return self.run.threads

    @property
    def progress(self) -> bool:
        """``run.progress``: log each phase's timing."""
        return self.run.progress

    @property
    def resume(self) -> bool:
        """Continue the run in ``out_dir`` (``run.resume_from_checkpoint == 'latest'``)."""
        return self.run.resume_from_checkpoint == "latest"

    def replace(self, **changes: Any) -> ArmsConfig:
        """A copy with ``changes`` (re-checked); run-option names (and ``torch_threads``) change ``run``."""
        return dataclasses.replace(self, **_run_options(dict(changes), self.run))

    @classmethod
    def cpu_real(cls, **changes: Any) -> ArmsConfig:
        """The preset ``"cpu-real"`` (the field defaults) with ``changes``."""
        return cls.from_preset("cpu-real", **changes)

    @classmethod
    def cpu_smollm2(cls, **changes: Any) -> ArmsConfig:
        """The preset ``"cpu-smollm2"`` with ``changes``."""
        return cls.from_preset("cpu-smollm2", **changes)

    @classmethod
    def tiny(cls, **changes: Any) -> ArmsConfig:
        """The preset ``"tiny"`` with ``changes``; its numbers are NOT findings."""
        return cls.from_preset("tiny", **changes)


#: The presets (:class:`deltahall._registry.Registry`).
#:
#: ``"cpu-real"``: the field defaults (see :class:`ArmsConfig`).
#:
#: ``"cpu-smollm2"``: the four arms on SmolLM2-135M-Instruct with its chat template, on CPU
#: (issue 15): ``cpu-real``'s recipe (3 epochs, K = 4, batch 4, learning rate 1e-3, 32 new
#: tokens) with the chat model and ``prompt_format='chat'`` (the model ends its turn with
#: ``<|im_end|>``, its eos), and the sizes a pilot on the oversubscribed 2-core machine allowed in
#: ~35 minutes: 16 training questions and 48 TruthfulQA questions (seeded, ``data_seed`` 0); one
#: torch thread, many times faster than two there (docs/qa.md). Pass ``truthfulqa=`` the CSV.
#:
#: ``"tiny"``: offline plumbing: the tiny random Qwen2, a few questions; numbers are NOT findings.
PRESETS: Registry[ArmsConfig] = presets_for(
    ArmsConfig,
    "qa arms",
    {
        "cpu-smollm2": dict(
            model="@smollm2-135m-instruct",
            prompt_format="chat",
            n_train_questions=16,
            n_eval_questions=48,
            out_dir=Path("runs/qa-arms-smollm2"),
            threads=1,
        ),
        "tiny": dict(
            model=TINY_MODEL,
            truthfulqa="@standin",
            n_train_questions=6,
            n_eval_questions=6,
            epochs=1,
            k_samples=4,
            max_new_tokens=6,
            gen_batch_size=16,
            batch_size=4,
            learning_rate=2e-2,
            lora_r=4,
            lora_alpha=8,
            max_length=64,
            n_boot=200,
            n_perm=500,
            out_dir=Path("runs/qa-arms-tiny"),
            # 3 calibration questions x 4 samples: the margin rule needs m + 1 >= 2 / alpha
            delta_percentile=20.0,
            threads=1,
            progress=False,
        ),
    },
    first="cpu-real",
)
ArmsConfig.PRESETS = PRESETS


@dataclass(frozen=True)
class ArmsResult:
    """Where a run went and its summary (see :func:`.arms_tables.summarise`)."""

    run_dir: Path
    summary: dict[str, Any]
    seconds: float
    plumbing: bool


def derive_seed(*parts: int) -> int:
    """A 63-bit seed derived from integers (no salted ``hash``)."""
    return int(
        np.random.SeedSequence([int(p) for p in parts]).generate_state(1, dtype=np.uint64)[0] >> 1
    )


def arm_examples(
    arm: str, pairs: Sequence[tuple[str, str, str]], control: Sequence[int]
) -> list[tuple[str, str]]:
    """The (question, answer) training examples of one arm.

    Parameters
    ----------
    arm : str
        ``two_answer``, ``single_answer`` or ``exposure``.
    pairs : sequence of (question, a1, a2)
    control : sequence of {0, 1}
        Which answer the single-answer arms train on, per question.

    Examples
    --------
    >>> arm_examples("single_answer", [("q", "x", "y")], [1])
    [('q', 'y'), ('q', 'y')]
    """
    if len(control) != len(pairs):
        raise ValueError(
            f"`control` must give one answer index per question; got {len(control)} for {len(pairs)}."
        )
    if arm == "two_answer":
        return [(q, a) for q, a1, a2 in pairs for a in (a1, a2)]
    chosen = [(q, (a1, a2)[int(c)]) for (q, a1, a2), c in zip(pairs, control, strict=True)]
    if arm == "single_answer":
        return [ex for ex in chosen for _ in range(2)]
    if arm == "exposure":
        return chosen
    raise ValueError(f"`arm` must be one of {list(ARMS[1:])}; got {arm!r}.")


def _load(config: ArmsConfig, rd_root: Path, texts: list[str]) -> tuple[Any, Any, bool]:
    """The base model and tokenizer, through ``qa run``'s loader (the tiny model built first)."""
    from deltahall.experiments.qa.modeling import load_model_and_tokenizer

    spec, plumbing = config.model, config.model == TINY_MODEL
    if plumbing:
        from deltahall.experiments.qa.tiny import build_tiny_model

        folder = rd_root / "tiny-model"
        if not folder.is_dir():  # built atomically: an existing folder is whole (a resumed run's)
            build_tiny_model(folder, texts, seed=0)
        spec = str(folder)
    model, tok = load_model_and_tokenizer(spec, device=config.device, dtype=config.dtype)
    return model, tok, plumbing


def run(config: ArmsConfig) -> ArmsResult:
    """Run every arm, seed and epoch of ``config``; write per-item files and the summary.

    The run goes through the shared runner (:func:`deltahall.experiments._run.execute`): a
    folder that holds a run is refused unless ``run.resume_from_checkpoint`` is ``'latest'``, a
    resumed run with other settings (or another embedder) is refused with each changed key named,
    and nothing is written before the inputs are read and the run accepted. The unit of resume
    is a seed: ``progress.json`` lists the finished seeds (written atomically after a seed's
    last rows), a resumed run keeps their rows and reruns the others from their start (every
    seed's results depend only on the seed, so the files equal an uninterrupted run's; only
    ``timings.csv`` records the sessions' wall time). ``result.json`` is the summary.

    Raises
    ------
    ValueError
        If ``out_dir`` already holds a run (and no resume was asked for), the run in it has other
        settings, or the data are too small for the config.
    FileNotFoundError
        If the TruthfulQA or dataset file is missing.
    """
    if not isinstance(config, ArmsConfig):
        raise TypeError(f"`config` must be an ArmsConfig; got {type(config).__name__}.")
    result: ArmsResult = execute(EXPERIMENT, config)
    return result


@dataclass(frozen=True)
class _Prepared:
    """What :func:`_prepare` read and loaded before the run was accepted."""

    pairs: list[tuple[str, str, str]]
    evals: list[Any]
    control: list[int]
    model: Any
    tok: Any
    embedder: Any
    plumbing: bool
    manifest: dict[str, Any]
    t_start: float


def _prepare(config: ArmsConfig, pending: Pending) -> _Prepared:
    """Read the inputs, draw the questions, load the model and the embedder (after the folder
    check, before acceptance); a resumed run with another embedder is refused here."""
    from deltahall.experiments.qa import arms_tables as tables
    from deltahall.experiments.qa.dataset import load_dataset
    from deltahall.experiments.qa.truthfulqa import load_truthfulqa
    from deltahall.io.rundir import to_jsonable
    from deltahall.models import load_embedder

    t_start = time.perf_counter()
    rows = load_dataset(config.data)
    items = load_truthfulqa(config.truthfulqa)
    for name, have, want in (
        ("n_train_questions", len(rows), config.n_train_questions),
        ("n_eval_questions", len(items), config.n_eval_questions),
    ):
        if want > have:
            raise ValueError(f"`{name}` must be <= the {have} questions available; got {want}.")
    g = np.random.default_rng(config.data_seed)
    train_idx = sorted(g.choice(len(rows), size=config.n_train_questions, replace=False).tolist())
    eval_idx = sorted(g.choice(len(items), size=config.n_eval_questions, replace=False).tolist())
    control = g.integers(0, 2, size=config.n_train_questions).tolist()
    calib = tables.calibration_mask(config)
    pairs = [(rows[i].question, rows[i].answers[0], rows[i].answers[1]) for i in train_idx]
    evals = [items[i] for i in eval_idx]
    texts = [t for p in pairs for t in p] + [
        t for it in evals for t in (it.question, *it.correct_answers, *it.incorrect_answers)
    ]
    model, tok, plumbing = _load(config, config.out_dir, texts)
    embedder = load_embedder(config.embedder, device=config.device)
    manifest = {
        "plumbing": plumbing,
        "train_questions": [rows[i].id for i in train_idx],
        "truthfulqa_indices": eval_idx,
        "control_answer": control,
        "calibration_questions": calib.tolist(),
        "embedder": getattr(embedder, "fingerprint", {"spec": config.embedder}),
    }
    old = pending.previous or {}
    if pending.decision.resumed and old.get("embedder") not in (
        None,
        to_jsonable(manifest["embedder"]),
    ):
        raise ValueError(
            f"cannot resume the run in {config.out_dir}: its embedder was {old.get('embedder')}, "
            f"this one is {manifest['embedder']}."
        )
    return _Prepared(pairs, evals, control, model, tok, embedder, plumbing, manifest, t_start)


def _body(config: ArmsConfig, opened: OpenRun) -> Outcome:
    from deltahall.experiments.qa import arms_tables as tables

    p: _Prepared = opened.prepared
    scorer = tables.ItemScorer(p.embedder, p.evals)
    state = _RunState(config, opened.rd, p.model, p.tok, scorer, p.pairs, p.control, p.t_start)
    done = state.restore() if opened.resumed else []
    for seed in config.seeds:
        if seed in done:
            logger.info("seed %d finished in an earlier session: kept", seed)
            continue
        state.run_seed(seed)
        done.append(seed)
        state.finish_seed(done)
    summary = tables.summarise(opened.root)
    return Outcome(
        result=summary,
        value=ArmsResult(opened.root, summary, time.perf_counter() - p.t_start, p.plumbing),
    )


class _RunState:
    """The loop over arms and epochs of one run (kept out of :func:`run` for readability)."""

    def __init__(
        self,
        config: ArmsConfig,
        rd: Any,
        model: Any,
        tok: Any,
        scorer: Any,
        pairs: list[tuple[str, str, str]],
        control: list[int],
        t_start: float,
    ) -> None:
        self.c, self.rd, self.model, self.tok, self.scorer = config, rd, model, tok, scorer
        self.pairs, self.control, self.t_start = pairs, control, t_start
        self.tqa_rows: list[dict[str, Any]] = []
        self.delta_rows: list[dict[str, Any]] = []
        self.loss_rows: list[dict[str, Any]] = []
        self.timing_rows: list[dict[str, Any]] = []

    def restore(self) -> list[int]:
        """Reload the rows of the seeds an earlier session finished; returns those seeds."""
        import json

        from deltahall.experiments.qa import arms_tables as tables
        from deltahall.io.rundir import read_csv

        root = self.rd.root
        progress = root / PROGRESS
        done = (
            [int(s) for s in json.loads(progress.read_text(encoding="utf-8"))["finished_seeds"]]
            if progress.is_file()
            else []
        )
        keep = set(done)

        def kept(name: str, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
            return [r for r in rows if int(r["seed"]) in keep] if (root / name).is_file() else []

        self.tqa_rows = kept(
            "items_truthfulqa.jsonl",
            tables.read_jsonl(root / "items_truthfulqa.jsonl")
            if (root / "items_truthfulqa.jsonl").is_file()
            else [],
        )
        self.delta_rows = kept(
            "delta_samples.jsonl",
            tables.read_jsonl(root / "delta_samples.jsonl")
            if (root / "delta_samples.jsonl").is_file()
            else [],
        )
        # CSV cells stay the strings they were written as, so rewriting them changes no byte
        self.loss_rows = kept(
            "loss.csv", read_csv(root / "loss.csv") if (root / "loss.csv").is_file() else []
        )
        self.timing_rows = (
            read_csv(root / "timings.csv") if (root / "timings.csv").is_file() else []
        )
        return done

    def finish_seed(self, done: list[int]) -> None:
        """Mark the seeds in ``done`` finished (atomically, after their rows are on disk)."""
        self._flush()
        self.rd.write_json(PROGRESS, {"finished_seeds": list(done)})

    def _sampling(self) -> Any:
        from deltahall.experiments.qa.generate import SamplingParams

        return SamplingParams(
            temperature=self.c.temperature,
            top_p=self.c.top_p,
            top_k=0,
            max_new_tokens=self.c.max_new_tokens,
        )

    def _timed(self, arm: str, seed: int, epoch: int, phase: str, t0: float, n: int) -> None:
        dt = time.perf_counter() - t0
        self.timing_rows.append(
            {
                "arm": arm,
                "seed": seed,
                "epoch": epoch,
                "phase": phase,
                "seconds": round(dt, 3),
                "items": n,
                "elapsed_s": round(time.perf_counter() - self.t_start, 1),
            }
        )
        if self.c.progress:
            logger.info(
                "%s seed %d epoch %d %s: %d items in %.1f s (%.0f s elapsed)",
                arm,
                seed,
                epoch,
                phase,
                n,
                dt,
                time.perf_counter() - self.t_start,
            )

    def _flush(self) -> None:
        from deltahall.experiments.qa import arms_tables as tables

        self.rd.write_text("items_truthfulqa.jsonl", tables.jsonl(self.tqa_rows))
        self.rd.write_text("delta_samples.jsonl", tables.jsonl(self.delta_rows))
        self.rd.write_csv(
            "loss.csv", self.loss_rows, ["arm", "seed", "epoch", "loss", "steps", "examples"]
        )
        self.rd.write_csv(
            "timings.csv",
            self.timing_rows,
            ["arm", "seed", "epoch", "phase", "seconds", "items", "elapsed_s"],
        )
        tables.summarise(self.rd.root)

    def _evaluate(self, model: Any, arm: str, seed: int, epoch: int) -> None:
        from deltahall.experiments.qa.generate import generate_answers

        t0 = time.perf_counter()
        qs = [it.question for it in self.scorer.items]
        gens = generate_answers(
            model,
            self.tok,
            qs,
            seed=derive_seed(seed, epoch, 1),
            sampling=self._sampling(),
            batch_size=self.c.gen_batch_size,
            prompt_format=self.c.prompt_format,
        )
        self._timed(arm, seed, epoch, "generate_truthfulqa", t0, len(qs))
        for j, (g, sc) in enumerate(
            zip(gens, self.scorer.score([g["answer"] for g in gens]), strict=True)
        ):
            it = self.scorer.items[j]
            self.tqa_rows.append(
                {
                    "arm": arm,
                    "seed": seed,
                    "epoch": epoch,
                    "question_index": j,
                    "question": qs[j],
                    "prompt": g["prompt"],
                    "answer": g["answer"],
                    "correct_answers": list(it.correct_answers),
                    "incorrect_answers": list(it.incorrect_answers),
                    **sc,
                }
            )
        if arm in self.c.delta_arms:
            t0 = time.perf_counter()
            k = self.c.k_samples
            prompts = [q for q, _, _ in self.pairs for _ in range(k)]
            gens = generate_answers(
                model,
                self.tok,
                prompts,
                seed=derive_seed(seed, epoch, 2),
                sampling=self._sampling(),
                batch_size=self.c.gen_batch_size,
                prompt_format=self.c.prompt_format,
            )
            self._timed(arm, seed, epoch, "generate_delta_samples", t0, len(prompts))
            sims = self.scorer.state_sims(
                [g["answer"] for g in gens], [p for p in self.pairs for _ in range(k)]
            )
            for n, (g, s) in enumerate(zip(gens, sims, strict=True)):
                j = n // k
                q, a1, a2 = self.pairs[j]
                self.delta_rows.append(
                    {
                        "arm": arm,
                        "seed": seed,
                        "epoch": epoch,
                        "question_index": j,
                        "sample": n % k,
                        "question": q,
                        "prompt": g["prompt"],
                        "answer": g["answer"],
                        "a1": a1,
                        "a2": a2,
                        "s1": float(s[0]),
                        "s2": float(s[1]),
                        "control_answer": int(self.control[j]),
                    }
                )
        self._flush()

    def run_seed(self, seed: int) -> None:
        import torch
        from peft import LoraConfig, get_peft_model

        from deltahall.experiments.qa.finetune import encode_pair

        c = self.c
        if "original" in c.arms:
            self._evaluate(self.model, "original", seed, 0)
        arms = c.finetuned_arms
        if not arms:
            return
        lora = LoraConfig(
            r=c.lora_r,
            lora_alpha=c.lora_alpha,
            lora_dropout=0.0,
            target_modules=list(c.target_modules),
            task_type="CAUSAL_LM",
        )
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            init = get_peft_model(self.model, lora, adapter_name=arms[0])
        peft_model = init
        for arm in arms[1:]:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)  # the same LoRA initialisation in every arm
                peft_model.add_adapter(arm, lora)
        examples = {}
        optims = {}
        for arm in arms:
            enc = [
                encode_pair(self.tok, q, a, c.max_length, prompt_format=c.prompt_format)
                for q, a in arm_examples(arm, self.pairs, self.control)
            ]
            examples[arm] = enc
            params = [
                p for n, p in peft_model.named_parameters() if f".{arm}." in n and "lora_" in n
            ]
            for p in params:
                p.requires_grad_(True)
            optims[arm] = torch.optim.AdamW(params, lr=c.learning_rate, weight_decay=0.0)
        pad_id = (
            self.tok.pad_token_id if self.tok.pad_token_id is not None else self.tok.eos_token_id
        )
        device = next(self.model.parameters()).device
        try:
            for epoch in range(1, c.epochs + 1):
                for arm in arms:
                    peft_model.set_adapter(arm)
                    t0 = time.perf_counter()
                    loss, steps = self._train_epoch(
                        peft_model,
                        examples[arm],
                        optims[arm],
                        pad_id,
                        device,
                        derive_seed(seed, epoch, ARMS.index(arm)),
                    )
                    self.loss_rows.append(
                        {
                            "arm": arm,
                            "seed": seed,
                            "epoch": epoch,
                            "loss": loss,
                            "steps": steps,
                            "examples": len(examples[arm]),
                        }
                    )
                    self._timed(arm, seed, epoch, "train", t0, len(examples[arm]))
                    self._evaluate(peft_model, arm, seed, epoch)
        finally:
            self.model = peft_model.unload()  # the bare base model again, for the next seed

    def _train_epoch(
        self,
        peft_model: Any,
        examples: list[dict[str, list[int]]],
        optimizer: Any,
        pad_id: int,
        device: Any,
        order_seed: int,
    ) -> tuple[float, int]:
        from deltahall.experiments.qa.finetune import answer_loss, train_epoch

        order = np.random.default_rng(order_seed).permutation(len(examples)).tolist()
        steps = train_epoch(
            peft_model,
            examples,
            order,
            optimizer,
            batch_size=self.c.batch_size,
            pad_id=pad_id,
            loss_fn=answer_loss,
            device=device,
        )
        peft_model.eval()
        return float(np.mean([loss for loss, _ in steps])), len(steps)


def replace(config: ArmsConfig, **changes: Any) -> ArmsConfig:
    """A copy of ``config`` with ``changes`` (re-checked); run-option names change ``run``."""
    return dataclasses.replace(config, **_run_options(dict(changes), config.run))


#: ``qa arms`` as the shared runner executes it (the model and embedder load before acceptance).
EXPERIMENT = Experiment(
    name="qa-arms",
    body=_body,
    extra="qa",
    prepare=_prepare,
    manifest_extra=lambda config, pending, prepared: prepared.manifest,
)
