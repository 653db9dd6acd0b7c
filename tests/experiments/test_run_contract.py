"""The contract every experiment keeps (one harness, parametrised over the three experiments).

1. A run killed with SIGKILL at any instant -- while it builds artefacts (tiny models), trains,
   checkpoints or writes results -- and continued with ``--resume-from-checkpoint latest`` ends
   with outputs byte-identical to an uninterrupted run's.
2. Another config is refused with the changed key named (``old -> new``), exit status 2, one
   stderr line, and the run directory untouched.
3. A missing explicit checkpoint is an error (exit 2), never a silent fresh start.

Kill instants are drawn at random (seeded, so a failure can be replayed) over the span of an
uninterrupted run, plus one instant chosen while the tiny model is being built (a hidden
temporary folder beside the run's artefact exists) for the experiments that build one.
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
        "argv": ["coinflip", "run", "--m", "200", "--epochs", "4", "--batch-size", "32", "--n-layers", "1",
                 "--d-model", "8", "--n-heads", "2", "--d-ff", "16", "--progress", "false"],
        "outputs": ["metrics.csv", "predictions.csv", "reference.json", "checkpoints/checkpoint-4/model.safetensors"],
        "change": ["--lr", "0.01"], "changed_key": "lr: 0.001 -> 0.01",
        "artefact": None, "kills": 3,
    },
    "qa": {
        "argv": ["qa", "run", "--preset", "tiny", "--data", str(FIXTURES / "open_qa_small.jsonl"),
                 "--truthfulqa", str(FIXTURES / "truthfulqa_small.csv"), "--epochs", "1", "2", "--batch-size", "4",
                 "--max-new-tokens", "6", "--max-length", "48"],
        "outputs": ["scores.csv", "answers/tiny/seed-0/epoch-0.jsonl", "answers/tiny/seed-0/epoch-2.jsonl",
                    "train/tiny/seed-0/epoch-2/adapter_model.safetensors", "tiny-model/model.safetensors"],
        "change": ["--temperature", "0.5"], "changed_key": "temperature: 0.7 -> 0.5",
        "artefact": "tiny-model", "kills": 2,
    },
    "t2i": {
        "argv": ["t2i", "run", "--preset", "digits", "--train-steps", "4", "--checkpoint-every", "2",
                 "--num-samples", "4", "--sample-batch-size", "4", "--inference-steps", "2", "--progress", "false",
                 "--device", "cpu", "--prompts", "a handwritten digit one"],
        "outputs": ["metrics.csv", "loss.csv", "checkpoint-4/model.safetensors", "detector.safetensors",
                    "base_model/unet/diffusion_pytorch_model.safetensors"],
        "change": ["--learning-rate", "0.01"], "changed_key": "learning_rate: 0.001 -> 0.01",
        "artefact": "base_model", "kills": 2,
    },
}


def _env(cache: Path) -> dict[str, str]:
    return dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
                TOKENIZERS_PARALLELISM="false", DELTAHALL_CACHE=str(cache))


def _cmd(argv: list[str], out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "deltahall.cli.main", *argv, "--out-dir", str(out), *extra]


def _run(argv: list[str], out: Path, cache: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(_cmd(argv, out, *extra), env=_env(cache), capture_output=True, text=True, timeout=600)


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
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _kill_at(argv: list[str], out: Path, cache: Path, *, after: float | None, artefact: str | None) -> str:
    """Start a run and SIGKILL it ``after`` seconds in, or while ``artefact`` is being built."""
    proc = subprocess.Popen(_cmd(argv, out), env=_env(cache), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    t0 = time.perf_counter()
    how = "finished first"
    while proc.poll() is None:
        elapsed = time.perf_counter() - t0
        building = artefact is not None and out.is_dir() and any(
            p.name.startswith(f".{artefact}.") for p in out.iterdir())
        if (after is not None and elapsed >= after) or (after is None and building):
            os.killpg(proc.pid, signal.SIGKILL)
            how = f"killed at {elapsed:.2f} s" + (" while building " + artefact if building else "")
            break
        time.sleep(0.005)
    proc.wait()
    return how


@pytest.mark.parametrize("name", list(EXPERIMENTS))
def test_run_contract(name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = EXPERIMENTS[name]
    cache = tmp_path / "cache"
    ref = tmp_path / "reference"
    t0 = time.perf_counter()
    done = _run(spec["argv"], ref, cache)
    span = time.perf_counter() - t0
    assert done.returncode == 0, done.stderr[-2000:]
    want = _digest(ref, spec["outputs"])

    rng = random.Random(f"{name}-kills")
    instants: list[float | None] = [rng.uniform(0.5, span) for _ in range(spec["kills"])]
    if spec["artefact"] is not None:
        instants.append(None)  # while the artefact is being built
    hows = []
    for i, after in enumerate(instants):
        out = tmp_path / f"killed-{i}"
        how = _kill_at(spec["argv"], out, cache, after=after, artefact=spec["artefact"])
        hows.append(how)
        resumed = _run(spec["argv"], out, cache, "--resume-from-checkpoint", "latest")
        assert resumed.returncode == 0, f"{how}: {resumed.stderr[-2000:]}"
        assert "Traceback" not in resumed.stderr
        assert _digest(out, spec["outputs"]) == want, how
    with capsys.disabled():  # shown with -s: what each instant interrupted
        print(f"\n{name}: uninterrupted {span:.1f} s; " + "; ".join(hows))
    assert sum(h.startswith("killed") for h in hows) >= 2, hows  # most instants really interrupted a run

    # Another config: refused with the key named, one line, nothing changed (in-process: fast).
    from deltahall.cli.main import main

    def cli(out: Path, *extra: str) -> tuple[int, str]:
        capsys.readouterr()
        rc = main([*spec["argv"], "--out-dir", str(out), *extra])
        return rc, capsys.readouterr().err

    before = _snapshot(ref)
    rc, err = cli(ref, "--resume-from-checkpoint", "latest", *spec["change"])
    lines = err.strip().splitlines()
    assert rc == 2 and len(lines) == 1 and spec["changed_key"] in lines[0] and "Traceback" not in err
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
