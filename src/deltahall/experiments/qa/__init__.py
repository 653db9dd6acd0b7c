"""The open-ended QA experiment (Section 7.2, Figure 4, Table 1).

Modules (torch / transformers / peft are imported inside functions, so importing
this package stays light):

- :mod:`.config`     ``QAConfig`` (frozen; ``paper`` and ``tiny`` presets)
- :mod:`.pipeline`   ``run(config) -> QAResult``
- :mod:`.dataset`    the open-ended QA JSONL schema, loader and validator
- :mod:`.truthfulqa` TruthfulQA from the original CSV or the hub
- :mod:`.finetune`   LoRA fine-tuning (answer-only loss, per-epoch adapters, resumable)
- :mod:`.generate`   batched seeded generation, answer files
- :mod:`.scoring`    the paper's difflib resemblance and friends
- :mod:`.results`    Table 1 / Figure 4 files; rescoring a run from its answers
- :mod:`.tiny`       a tiny offline Qwen2 model + tokenizer (plumbing only)
- :mod:`.report`     the section of the HTML report
"""

from deltahall.experiments.qa.config import QAConfig


def run(config: QAConfig):  # type: ignore[no-untyped-def]
    """Run the experiment; see :func:`deltahall.experiments.qa.pipeline.run`."""
    from deltahall.experiments.qa.pipeline import run as _run

    return _run(config)


__all__ = ["QAConfig", "run"]
