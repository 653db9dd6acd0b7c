"""The contract every experiment keeps (one harness, parametrised over the three experiments).

1. A run killed with SIGKILL and continued with ``--resume-from-checkpoint latest`` ends with
   outputs byte-identical to an uninterrupted run's, even when it is killed again while resuming.
2. Another config is refused with the changed key named (``old -> new``), exit status 2, one
   stderr line, and the run directory untouched.
3. A missing explicit checkpoint is an error (exit 2), never a silent fresh start.

Where the kills land (events, never wall-clock instants). A run publishes every file and folder
of its run directory by a rename (``io.atomic``, checkpoint folders, built artefacts); the helper
``_kill_at_event.py`` counts these *commit events* and kills the process group at the k-th one,
either just after the rename or just before it with the temporary torn in half (a process dying
mid-write). Between two commit events nothing under a final name changes, so the files a kill at
*any* instant can leave behind are the files left at one of these points, except for one thing
this test cannot see: a file written in place, without a rename (a torn in-place write is the
I/O layer's rule to prevent, not something a kill here would reveal).

The uninterrupted run's event count ``N`` bounds the draws. Coin flip: a fresh run is killed at
a seeded random event, the resumed run at a seeded random event among those still ahead of it,
and the next resume runs to the end. Experiments that build a tiny model first: the fresh run
is killed while building it (torn, before its rename), the resumed run at one seeded random
event. Every draw is a function of the seed and the run's deterministic event sequence, so a
loaded machine changes how long the test takes, never what it checks; every kill is asserted
to have happened.
"""

from __future__ import annotations

import hashlib
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "qa" / "fixtures"

EXPERIMENTS: dict[str, dict] = {
    "coinflip": {
        "argv": [
            "coinflip",
            "run",
            "--m",
            "200",
            "--epochs",
            "4",
            "--batch-size",
            "32",
            "--n-layers",
            "1",
            "--d-model",
            "8",
            "--n-heads",
            "2",
            "--d-ff",
            "16",
            "--progress",
            "false",
        ],
        "outputs": [
            "metrics.csv",
            "predictions.csv",
            "reference.json",
            "checkpoints/checkpoint-4/model.safetensors",
        ],
        "change": ["--lr", "0.01"],
        "changed_key": "lr: 0.001 -> 0.01",
        "artefact": None,
    },
    "qa": {
        "argv": [
            "qa",
            "run",
            "--preset",
            "tiny",
            "--data",
            str(FIXTURES / "open_qa_small.jsonl"),
            "--truthfulqa",
            str(FIXTURES / "truthfulqa_small.csv"),
            "--epochs",
            "1",
            "2",
            "--batch-size",
            "4",
            "--max-new-tokens",
            "6",
            "--max-length",
            "48",
        ],
        "outputs": [
            "scores.csv",
            "answers/tiny/seed-0/epoch-0.jsonl",
            "answers/tiny/seed-0/epoch-2.jsonl",
            "train/tiny/seed-0/epoch-2/adapter_model.safetensors",
            "tiny-model/model.safetensors",
        ],
        "change": ["--temperature", "0.5"],
        "changed_key": "temperature: 0.7 -> 0.5",
        "artefact": "tiny-model",
    },
    "t2i": {
        "argv": [
            "t2i",
            "run",
            "--preset",
            "digits",
            "--train-steps",
            "4",
            "--checkpoint-every",
            "2",
            "--num-samples",
            "4",
            "--sample-batch-size",
            "4",
            "--inference-steps",
            "2",
            "--progress",
            "false",
            "--device",
            "cpu",
            "--prompts",
            "a handwritten digit one",
        ],
        "outputs": [
            "metrics.csv",
            "loss.csv",
            "checkpoint-4/model.safetensors",
            "instrument.json",
            "measure.json",
            "base_model/unet/diffusion_pytorch_model.safetensors",
        ],
        "change": ["--learning-rate", "0.01"],
        "changed_key": "learning_rate: 0.001 -> 0.01",
        "artefact": "base_model",
    },
}


def _env(cache: Path) -> dict[str, str]:
    return dict(
        os.environ,
        OMP_NUM_THREADS="1",
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        TOKENIZERS_PARALLELISM="false",
        DELTAHALL_CACHE=str(cache),
    )


def _cmd(argv: list[str], out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "deltahall.cli.main", *argv, "--out-dir", str(out), *extra]


def _run(argv: list[str], out: Path, cache: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        _cmd(argv, out, *extra), env=_env(cache), capture_output=True, text=True, timeout=600
    )


def _digest(root: Path, names: list[str]) -> dict[str, str]:
    return {n: _content_sha(root / n) for n in names}


def _content_sha(path: Path) -> str:
    """SHA-256 of a file's bytes; for safetensors, of its sorted metadata and tensors (the
    library writes the metadata map in a per-process random order, so equal files may differ
    in their header bytes)."""
    if path.suffix != ".safetensors":
        return hashlib.sha256(path.read_bytes()).hexdigest()
    import json

    from safetensors import safe_open

    h = hashlib.sha256()
    with safe_open(str(path), "np") as f:
        h.update(json.dumps(f.metadata() or {}, sort_keys=True).encode())
        for k in sorted(f.keys()):
            t = f.get_tensor(k)
            h.update(k.encode() + str(t.dtype).encode() + str(t.shape).encode() + t.tobytes())
    return h.hexdigest()


def _snapshot(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


HOOK = Path(__file__).with_name("_kill_at_event.py")


def _killed_run(argv: list[str], out: Path, cache: Path, log: Path, *extra: str, kill: str) -> int:
    """Run under the event hook, SIGKILLed at event ``kill`` (``"k:before"``/``"k:after"``; ``"0:after"``:
    never); returns the exit status (``-SIGKILL`` when killed). Events go to ``log``."""
    env = dict(
        _env(cache),
        DELTAHALL_EVENT_SCOPE=str(out),
        DELTAHALL_EVENT_LOG=str(log),
        DELTAHALL_KILL_AT=kill,
    )
    proc = subprocess.run(
        [sys.executable, str(HOOK), *argv, "--out-dir", str(out), *extra],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        timeout=600,
        start_new_session=True,
    )
    if proc.returncode not in (0, -signal.SIGKILL):
        raise AssertionError(
            f"{argv[0]} under the hook failed ({proc.returncode}): {proc.stderr[-2000:]}"
        )
    return proc.returncode


def _events(log: Path) -> list[str]:
    return log.read_text(encoding="utf-8").splitlines() if log.is_file() else []


@pytest.mark.parametrize("name", list(EXPERIMENTS))
def test_run_contract(name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = EXPERIMENTS[name]
    cache = tmp_path / "cache"
    ref = tmp_path / "reference"
    t0 = time.perf_counter()
    assert _killed_run(spec["argv"], ref, cache, tmp_path / "reference.log", kill="0:after") == 0
    span = time.perf_counter() - t0
    events = _events(tmp_path / "reference.log")
    n = len(events)
    assert n >= 4, events
    want = _digest(ref, spec["outputs"])

    rng = random.Random(f"{name}-kills")
    phase = lambda: rng.choice(("before", "after"))  # noqa: E731
    # A run resumed after its k-th event still has at least (its events) - k ahead of it: it
    # redoes every commit the killed run had not made. ``ahead`` bounds each next draw.
    plan: list[str] = []
    ahead = n
    if spec["artefact"] is not None:  # the tiny model's build, torn before its rename
        k_art = next(i for i, e in enumerate(events, 1) if e.split(" ", 1)[1] == spec["artefact"])
        plan.append(f"{k_art}:before")
        ahead -= k_art
    k1 = rng.randint(1, ahead - 1)
    plan.append(f"{k1}:{phase()}")
    if spec["artefact"] is None:  # two kills at random events (else: the build, then one)
        plan.append(f"{rng.randint(1, ahead - k1)}:{phase()}")
    out = tmp_path / "killed"
    hows = []
    for i, kill in enumerate(plan):
        log = tmp_path / f"killed-{i}.log"
        resume = ("--resume-from-checkpoint", "latest") if i else ()
        rc = _killed_run(spec["argv"], out, cache, log, *resume, kill=kill)
        seen = _events(log)
        hows.append(f"{kill.replace(':', ' ')} {seen[-1].split(' ', 1)[1] if seen else '?'}")
        assert rc == -signal.SIGKILL, f"not killed at {kill}: the run made only {len(seen)} events"
    resumed = _run(spec["argv"], out, cache, "--resume-from-checkpoint", "latest")
    assert resumed.returncode == 0, f"{hows}: {resumed.stderr[-2000:]}"
    assert "Traceback" not in resumed.stderr
    assert _digest(out, spec["outputs"]) == want, hows
    with capsys.disabled():  # shown with -s: what each kill interrupted
        print(f"\n{name}: uninterrupted {span:.1f} s, {n} events; killed at: " + "; ".join(hows))

    # Another config: refused with the key named, one line, nothing changed (in-process: fast).
    from deltahall.cli.main import main

    def cli(out: Path, *extra: str) -> tuple[int, str]:
        capsys.readouterr()
        rc = main([*spec["argv"], "--out-dir", str(out), *extra])
        return rc, capsys.readouterr().err

    before = _snapshot(ref)
    rc, err = cli(ref, "--resume-from-checkpoint", "latest", *spec["change"])
    lines = err.strip().splitlines()
    assert (
        rc == 2 and len(lines) == 1 and spec["changed_key"] in lines[0] and "Traceback" not in err
    )
    assert _snapshot(ref) == before
    # The same config without resume: refused, nothing changed.
    rc, err = cli(ref)
    assert rc == 2 and "already holds a run" in err
    assert _snapshot(ref) == before
    # A missing explicit checkpoint: an error, never a fresh start.
    missing = tmp_path / "nowhere" / "checkpoint-9"
    rc, err = cli(tmp_path / "fresh", "--resume-from-checkpoint", str(missing))
    expected = "must be 'latest' for qa" if name == "qa" else "no such folder"
    assert rc == 2 and expected in err, err
    assert not (tmp_path / "fresh").exists()
