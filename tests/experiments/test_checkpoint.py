import numpy as np
import pytest

torch = pytest.importorskip("torch")

from deltahall.experiments._checkpoint import (  # noqa: E402
    list_checkpoints,
    load_checkpoint,
    save_checkpoint,
)


def _model_and_opt():
    g = torch.Generator().manual_seed(0)
    m = torch.nn.Linear(3, 2)
    with torch.no_grad():
        for p in m.parameters():
            p.copy_(torch.randn(p.shape, generator=g))
    opt = torch.optim.AdamW(m.parameters(), lr=1e-2)
    return m, opt


def _step(m, opt, g):
    x = torch.randn(8, 3, generator=g)
    loss = m(x).pow(2).mean()
    opt.zero_grad()
    loss.backward()
    opt.step()


def test_resume_reproduces_uninterrupted_training(tmp_path):
    m1, o1 = _model_and_opt()
    g1 = torch.Generator().manual_seed(1)
    rng1 = np.random.default_rng(5)
    for _ in range(3):
        _step(m1, o1, g1)
    save_checkpoint(
        tmp_path,
        3,
        model_state=m1.state_dict(),
        optimizer=o1,
        generator=g1,
        numpy_rng=rng1,
        extra={"epoch": 3},
    )
    for _ in range(3):
        _step(m1, o1, g1)
    next_draw = rng1.random()

    m2, o2 = _model_and_opt()
    g2 = torch.Generator()
    rng2 = np.random.default_rng(0)
    state = load_checkpoint(
        list_checkpoints(tmp_path)[-1], model=m2, optimizer=o2, generator=g2, numpy_rng=rng2
    )
    assert state["extra"] == {"epoch": 3} and state["step"] == 3
    for _ in range(3):
        _step(m2, o2, g2)
    for a, b in zip(m1.parameters(), m2.parameters(), strict=True):
        assert torch.equal(a, b)
    assert rng2.random() == next_draw  # numpy RNG state restored exactly


def test_total_limit_and_latest(tmp_path):
    m, o = _model_and_opt()
    for step in (1, 2, 3):
        save_checkpoint(tmp_path, step, model_state=m.state_dict(), total_limit=2)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["checkpoint-2", "checkpoint-3"]
    assert list_checkpoints(tmp_path)[-1].name == "checkpoint-3"
    assert list_checkpoints(tmp_path / "empty") == []


def test_half_written_checkpoint_is_ignored(tmp_path):
    (tmp_path / ".tmp-checkpoint-5").mkdir()
    (tmp_path / "checkpoint-6").mkdir()  # no state.json: not finished
    assert list_checkpoints(tmp_path) == []


def test_disk_full_names_the_checkpoint_file_and_leaves_no_folder(tmp_path, monkeypatch):
    from safetensors import SafetensorError

    def full(*a, **k):
        raise SafetensorError(
            "Error while serializing: I/O error: No space left on device (os error 28)"
        )

    monkeypatch.setattr("safetensors.torch.save_file", full)
    m, opt = _model_and_opt()
    with pytest.raises(OSError, match="No space left on device") as exc:
        save_checkpoint(tmp_path, 3, model_state=m.state_dict(), optimizer=opt)
    assert exc.value.errno == 28 and exc.value.filename.endswith("checkpoint-3/model.safetensors")
    assert list(tmp_path.iterdir()) == []


def test_damaged_checkpoints_are_named_on_load(tmp_path):
    from deltahall._validation import BadInput
    from deltahall.experiments._checkpoint import verify_checkpoint

    m, opt = _model_and_opt()
    path = save_checkpoint(tmp_path, 1, model_state=m.state_dict(), optimizer=opt)
    assert verify_checkpoint(path)["step"] == 1
    data = (path / "model.safetensors").read_bytes()
    (path / "model.safetensors").write_bytes(data[: len(data) // 2])
    for call in (lambda: verify_checkpoint(path), lambda: load_checkpoint(path, model=m)):
        with pytest.raises(
            BadInput, match=r"model\.safetensors' is not a readable safetensors file"
        ):
            call()
    (path / "state.json").write_text("{nope")
    with pytest.raises(BadInput, match=r"state\.json' is not valid JSON \(line 1"):
        load_checkpoint(path)
