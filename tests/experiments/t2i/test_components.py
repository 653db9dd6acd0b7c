"""Building blocks: tokenizer, tiny model, sampling in batches, embedders, detector, grids."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from deltahall.experiments.t2i import T2IConfig


def test_word_tokenizer_adds_bos_eos_pads_and_maps_unknown_words() -> None:
    from deltahall.experiments.t2i.tiny import build_tokenizer, words_of

    tok = build_tokenizer(words_of(["a handwritten digit zero", "a handwritten digit one"]), 8)
    ids = tok(
        ["A handwritten digit ZERO", "a purple digit"], padding="max_length", max_length=8
    ).input_ids
    vocab = tok.get_vocab()
    assert ids[0] == [
        vocab["<bos>"],
        vocab["a"],
        vocab["handwritten"],
        vocab["digit"],
        vocab["zero"],
        vocab["<eos>"],
        vocab["<pad>"],
        vocab["<pad>"],
    ]
    assert ids[1][2] == vocab["<unk>"]
    assert tok.model_max_length == 8


def test_tiny_model_is_reused_only_when_its_spec_matches(tmp_path: Path) -> None:
    from deltahall.experiments.t2i.modeling import load_components
    from deltahall.experiments.t2i.tiny import ensure_tiny_model

    f = ensure_tiny_model(tmp_path / "m", ["a b", "a c"], resolution=8, seed=0)
    stamp = (f / "unet" / "diffusion_pytorch_model.safetensors").stat().st_mtime_ns
    ensure_tiny_model(tmp_path / "m", ["a b", "a c"], resolution=8, seed=0)
    assert (f / "unet" / "diffusion_pytorch_model.safetensors").stat().st_mtime_ns == stamp
    ensure_tiny_model(tmp_path / "m", ["a b", "a c"], resolution=8, seed=1)  # other seed -> rebuilt
    c = load_components(str(f), use_vae=False)
    assert c.vae is None and c.latent_shape(8) == (1, 8, 8) and c.image_channels == 1
    assert not any(p.requires_grad for p in c.text_encoder.parameters())
    assert all(p.requires_grad for p in c.unet.parameters())


def _counting(unet: torch.nn.Module) -> list[int]:
    sizes: list[int] = []
    unet.register_forward_pre_hook(
        lambda m, args, kwargs: sizes.append(int(args[0].shape[0])), with_kwargs=True
    )
    return sizes


def test_sampling_is_batched_seeded_and_guided(tmp_path: Path) -> None:
    from deltahall.experiments.t2i.modeling import encode_text, load_components, make_sampler
    from deltahall.experiments.t2i.sampling import sample_images
    from deltahall.experiments.t2i.tiny import ensure_tiny_model

    c = load_components(
        str(ensure_tiny_model(tmp_path / "m", ["a b", "a c"], resolution=8, seed=0)), use_vae=False
    )
    c.unet.eval()
    states = encode_text(c, ["a b", ""], "cpu")
    sizes = _counting(c.unet)

    def draw(seed: int, guided: bool = True) -> torch.Tensor:
        return sample_images(
            c,
            make_sampler(c.noise_scheduler, "dpm"),
            states[:1],
            states[1:],
            n=5,
            batch_size=2,
            resolution=8,
            steps=3,
            guidance_scale=2.0,
            generator=torch.Generator().manual_seed(seed),
            device="cpu",
            use_guidance=guided,
        )

    a = draw(0)
    assert a.shape == (5, 1, 8, 8) and float(a.min()) >= 0.0 and float(a.max()) <= 1.0
    assert (
        sizes == [4] * 3 + [4] * 3 + [2] * 3
    )  # 3 batches (2, 2, 1) x 3 steps, doubled for guidance
    assert torch.equal(a, draw(0))
    assert not torch.equal(a, draw(1))
    sizes.clear()
    draw(0, guided=False)
    assert sizes == [2] * 3 + [2] * 3 + [1] * 3


def test_digits_embedder_is_accurate_on_digits_it_never_saw(digits_embedder_dir: Path) -> None:
    import json

    from deltahall.experiments.t2i.data import load_digits_arrays
    from deltahall.experiments.t2i.digits_embedder import embedder_split, ensure_digits_embedder

    info = json.loads((digits_embedder_dir / "embedder.json").read_text())
    assert info["heldout_accuracy"] > 0.9
    x, y = load_digits_arrays(8)
    mask = embedder_split(y, 0)
    assert abs(mask.mean() - 0.3) < 0.01
    for c in range(10):  # stratified
        assert abs(mask[y == c].mean() - 0.3) < 0.02
    emb = ensure_digits_embedder(digits_embedder_dir, T2IConfig(), "cpu")  # reused, not retrained
    assert emb.info == info
    e = emb.embed(x[:7])
    assert e.shape == (7, 32) and e.dtype == np.float64


def test_detector_images_for_digits_exclude_the_embedder_split() -> None:
    from deltahall.experiments.t2i.data import load_digits_arrays
    from deltahall.experiments.t2i.detector import detector_images
    from deltahall.experiments.t2i.digits_embedder import embedder_split

    cfg = T2IConfig()
    data = detector_images(cfg, None)
    x, y = load_digits_arrays(8)
    held = (~embedder_split(y, 0)) & np.isin(y, [0, 1])
    assert len(data) == held.sum()
    assert torch.equal(data.images, x[torch.from_numpy(held)])
    assert np.array_equal(data.labels, y[held])


def _two_clusters(
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    a, b = np.zeros(16), np.zeros(16)
    a[0], b[1] = 1.0, 1.0  # orthogonal directions, so L2-normalisation keeps them apart
    X = np.vstack([a + 0.05 * rng.normal(size=(200, 16)), b + 0.05 * rng.normal(size=(200, 16))])
    return X, np.repeat([0, 1], 200), a, b


def test_instrument_flags_the_mean_of_two_far_clusters() -> None:
    from deltahall.experiments.t2i.instrument import Instrument

    rng = np.random.default_rng(0)
    X, y, a, b = _two_clusters(rng)
    inst = Instrument(T2IConfig(pca_dim=4, n_components=1), X, y)
    near = np.vstack([a + 0.01 * rng.normal(size=(20, 16)), b + 0.01 * rng.normal(size=(20, 16))])
    for rule in ("conformal", "percentile"):
        assert inst.inside(near, rule).all()
        assert not inst.inside(X.mean(axis=0, keepdims=True), rule)[
            0
        ]  # the expectation A*(X) hallucinates
        # the decision value's sign is the rule's flag
        mixed = np.vstack([near, X.mean(axis=0, keepdims=True), rng.normal(size=(30, 16))])
        np.testing.assert_array_equal(inst.decision(mixed, rule) >= 0, inst.inside(mixed, rule))


def test_instrument_is_the_one_instrument() -> None:
    """The same numbers as ``measure_embeddings`` on the same reference and samples, for both rules;
    the config's percentile is the level (alpha = percentile / 100), its holdout split 3:2."""
    from deltahall.experiments.t2i.instrument import Instrument, settings
    from deltahall.measure import measure_embeddings

    rng = np.random.default_rng(1)
    X, y, a, b = _two_clusters(rng)
    G = np.vstack(
        [a + 0.05 * rng.normal(size=(30, 16)), 0.5 * (a + b) + 0.05 * rng.normal(size=(30, 16))]
    )
    cfg = T2IConfig(pca_dim=4, n_components=1, percentile=20.0)
    inst = Instrument(cfg, X, y)
    assert inst.rules == ("conformal", "percentile") and inst.alpha == 0.2
    s = settings(cfg, "conformal")
    assert (s.fit_fraction, s.calibration_fraction, s.test_fraction) == pytest.approx(
        (0.5, 0.3, 0.2)
    )
    for rule in inst.rules:
        got = inst.measure(G, ["p"] * 60, rule)
        want = measure_embeddings(
            X, np.asarray(["0", "1"])[y], G, prompts=["p"] * 60, settings=settings(cfg, rule)
        )
        assert (got.rate, got.floor, got.excess_p_value) == (
            want.rate,
            want.floor,
            want.excess_p_value,
        )
        assert got.per_prompt == want.per_prompt
    assert Instrument(cfg.replace(calibration="percentile"), X, y).rules == (
        "percentile",
        "conformal",
    )


def test_clip_embedder_preprocesses_any_size_in_torch(sd_assets: dict[str, Path]) -> None:
    from deltahall.experiments.t2i.embed import CLIPEmbedder

    emb = CLIPEmbedder(str(sd_assets["clip"]), "cpu", batch_size=3)
    x = torch.rand(5, 3, 40, 24)
    e = emb.embed(x)
    assert e.shape == (5, 16)
    assert emb._preprocess(x).shape == (5, 3, 32, 32)
    np.testing.assert_allclose(
        emb.embed(x[:2]), e[:2], rtol=1e-5, atol=1e-6
    )  # batching does not matter


def test_grid_tiles_and_enlarges_small_images(tmp_path: Path) -> None:
    from PIL import Image

    from deltahall.experiments.t2i.grids import grid_array, save_grid

    imgs = torch.zeros(5, 1, 8, 8)
    imgs[2] = 1.0
    g = grid_array(imgs, ncol=3, pad=2)
    assert g.shape == (2 * 50 + 2, 3 * 50 + 2, 3)
    assert g[2 + 10, 2 + 2 * 50 + 10].tolist() == [255, 255, 255]  # third tile is white
    assert g[2 + 10, 2 + 10].tolist() == [0, 0, 0]
    save_grid(imgs, tmp_path / "g.png")
    assert Image.open(tmp_path / "g.png").size[0] > 0


@pytest.mark.parametrize("missing", ["dog", None])
def test_image_folder_errors(tmp_path: Path, missing: str | None) -> None:
    from PIL import Image

    from deltahall.experiments.t2i.data import load_training_images

    (tmp_path / "cat").mkdir()
    Image.new("RGB", (4, 4)).save(tmp_path / "cat" / "a.png")
    if missing is None:
        (tmp_path / "dog").mkdir()
        with pytest.raises(ValueError, match="holds no images"):
            load_training_images(T2IConfig.from_preset("afhq-sd15", data=str(tmp_path)))
    else:
        with pytest.raises(FileNotFoundError, match="'dog' is missing"):
            load_training_images(T2IConfig.from_preset("afhq-sd15", data=str(tmp_path)))
    with pytest.raises(FileNotFoundError, match="`data` folder not found"):
        load_training_images(T2IConfig.from_preset("afhq-sd15", data=str(tmp_path / "nope")))
