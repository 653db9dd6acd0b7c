import pytest

from deltahall.experiments.coinflip.config import CoinFlipConfig


def test_defaults_follow_the_paper():
    c = CoinFlipConfig()
    assert (c.n_layers, c.d_model, c.d_ff, c.m) == (8, 64, 256, 20000)
    assert (c.n_train, c.n_val) == (16000, 4000)


@pytest.mark.parametrize(
    "kw,exc,msg",
    [
        ({"n": 0}, ValueError, r"`n` must be >= 1; got 0"),
        ({"m": 3, "val_fraction": 0.1}, ValueError, r"`m` must be large enough for the split"),
        ({"m": 2, "val_fraction": 0.9}, ValueError, r"`m` must be large enough for the split"),
        ({"objective": "mae"}, ValueError, r"`objective` must be one of 'mse', 'ce'; got 'mae'"),
        ({"deltas": (0.1, 1.5)}, ValueError, r"`deltas` must be in \(0, 1\]; got 1.5"),
        ({"deltas": ()}, ValueError, r"`deltas` must be a non-empty tuple"),
        ({"authors_bugs": ("typo",)}, ValueError, r"`authors_bugs` must be one of"),
        (
            {"authors_bugs": ("ceil",), "objective": "ce"},
            ValueError,
            r"'ceil' applies to the regression",
        ),
        ({"d_model": 10, "n_heads": 4}, ValueError, r"divisible by `n_heads`"),
        ({"n": 2.5}, TypeError, r"`n` must be an integer"),
    ],
)
def test_bad_configs_give_clear_errors(kw, exc, msg):
    with pytest.raises(exc, match=msg):
        CoinFlipConfig(**kw)


def test_dict_round_trip_and_unknown_keys():
    c = CoinFlipConfig(n=3, deltas=(0.2,), authors_bugs=("scoring",))
    assert CoinFlipConfig.from_dict(c.to_dict()) == c
    with pytest.raises(ValueError, match="unknown keys"):
        CoinFlipConfig.from_dict({"n": 2, "N": 3})
