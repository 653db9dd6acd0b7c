import pytest

from deltahall.experiments.coinflip.model import build_model

torch = pytest.importorskip("torch")


def test_token_model_is_permutation_invariant_and_shaped(tiny):
    m = build_model(tiny(n=3, dropout=0.0), init_seed=0).eval()
    x = torch.tensor([[0, 2, 5], [1, 3, 4]])
    with torch.no_grad():
        a, b = m(x), m(x[:, [2, 0, 1]])
    assert a.shape == (2,)
    torch.testing.assert_close(a, b, atol=1e-5, rtol=0)


def test_ce_head_has_n_plus_one_classes_and_init_is_seeded(tiny):
    m1 = build_model(tiny(n=3, objective="ce"), init_seed=7)
    m2 = build_model(tiny(n=3, objective="ce"), init_seed=7)
    before = torch.get_rng_state()
    m3 = build_model(tiny(n=3, objective="ce"), init_seed=8)
    assert torch.equal(before, torch.get_rng_state())  # global RNG untouched
    x = torch.tensor([[0, 1, 2]])
    with torch.no_grad():
        assert m1.eval()(x).shape == (1, 4)
        assert torch.equal(m1(x), m2.eval()(x))
        assert not torch.equal(m1(x), m3.eval()(x))


def test_authors_float_input_is_a_length_one_sequence(tiny):
    m = build_model(tiny(n=2, authors_bugs=("float_input",)), init_seed=0).eval()
    seen = {}
    m.encoder.register_forward_hook(
        lambda mod, inp, out: seen.__setitem__("shape", tuple(inp[0].shape))
    )
    with torch.no_grad():
        a, b = m(torch.tensor([[0, 3]])), m(torch.tensor([[3, 0]]))
    assert seen["shape"] == (1, 1, 16)
    assert not torch.equal(a, b)  # the authors' input is not permutation-invariant
