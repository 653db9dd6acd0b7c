import math

import numpy as np
import pytest

from deltahall._validation import (
    BadInput,
    BadType,
    MissingExtraError,
    RunFailure,
    check_choice,
    check_delta,
    check_finite_array,
    check_int,
    check_probability_vector,
    check_real,
    check_spd,
)


@pytest.mark.parametrize("bad", [0.0, -0.1, 1.5, math.nan, math.inf])
def test_check_delta_rejects_out_of_range(bad):
    with pytest.raises(ValueError, match="`delta` must"):
        check_delta(bad)


def test_check_delta_accepts_edges():
    assert check_delta(1.0) == 1.0
    assert check_delta(1e-300) == 1e-300


def test_check_real_type_errors():
    with pytest.raises(TypeError, match="`x` must be a real number; got str"):
        check_real("1", "x")
    with pytest.raises(TypeError, match="got bool"):
        check_real(True, "x")


def test_check_int():
    assert check_int(np.int64(3), "n", low=2) == 3
    with pytest.raises(ValueError, match="`n` must be >= 2; got 1"):
        check_int(1, "n", low=2)
    with pytest.raises(TypeError, match="`n` must be an integer"):
        check_int(2.0, "n")


def test_check_choice():
    with pytest.raises(ValueError, match="`objective` must be one of 'mse', 'ce'; got 'mae'"):
        check_choice("mae", "objective", ("mse", "ce"))


def test_check_finite_array_names_row():
    x = np.zeros((5, 3))
    x[3, 1] = np.nan
    with pytest.raises(ValueError, match="row 3"):
        check_finite_array(x, "X", ndim=2)
    with pytest.raises(ValueError, match="must be 1-dimensional"):
        check_finite_array(x, "X", ndim=1)


def test_check_probability_vector():
    assert check_probability_vector([0.25, 0.75]).sum() == 1.0
    with pytest.raises(ValueError, match="must sum to 1"):
        check_probability_vector([0.5, 0.6])
    with pytest.raises(ValueError, match="non-negative"):
        check_probability_vector([1.5, -0.5])


def test_check_spd():
    check_spd(np.eye(3))
    with pytest.raises(ValueError, match="positive definite; got smallest eigenvalue -1"):
        check_spd(np.diag([1.0, -1.0]))
    with pytest.raises(ValueError, match="symmetric"):
        check_spd(np.array([[1.0, 0.5], [0.0, 1.0]]))
    with pytest.raises(ValueError, match="square"):
        check_spd(np.ones((2, 3)))


def test_checks_raise_badinput_which_stays_a_valueerror_or_typeerror():
    with pytest.raises(BadInput) as exc:
        check_delta(1.5)
    assert isinstance(exc.value, ValueError) and not isinstance(exc.value, TypeError)
    with pytest.raises(BadType) as exc2:
        check_int(1.5, "n")
    assert isinstance(exc2.value, TypeError) and isinstance(exc2.value, BadInput)
    with pytest.raises(BadInput, match="`x` must be an array of float64 numbers"):
        check_finite_array(["a"], "x")
    assert issubclass(MissingExtraError, ImportError) and issubclass(RunFailure, RuntimeError)


def test_the_cli_tells_our_refusals_from_library_errors(tmp_path):
    from deltahall.cli.main import raised_by_deltahall
    from deltahall.io.rundir import read_csv

    try:
        check_int(0, "n", low=1)  # a raise statement of deltahall: a refusal
    except ValueError as exc:
        assert raised_by_deltahall(exc)
    (tmp_path / "x.csv").write_bytes(b"a\n\xe9\n")
    try:
        read_csv(tmp_path / "x.csv")  # UnicodeDecodeError from inside the codec: not ours
    except ValueError as exc:
        assert not raised_by_deltahall(exc)
    try:
        np.asarray("x", dtype=float)  # not deltahall's code at all
    except ValueError as exc:
        assert not raised_by_deltahall(exc)
