"""Entry point of the ``deltahall`` command.

Each sub-command lives in its own module exposing ``register(subparsers)``;
the chosen handler returns an exit code. One error policy for every command:

- bad input: one line on stderr, exit status 2. That is a
  :class:`~deltahall._validation.BadInput` (what every ``check_*`` helper raises), a
  ``FileNotFoundError``, a :class:`UsageError`, or a ``ValueError``/``TypeError`` that a
  ``raise`` statement in deltahall's own code raised (our refusals, which name the parameter,
  the rule and the value) or in scikit-learn's input validation, which the detectors use as
  theirs (``check_array``, ``n_features_in_``, ``_parameter_constraints``). A
  ``ValueError``/``TypeError`` thrown from inside Python, numpy, torch or any other library --
  or by a wrong call in our code -- is a bug, not bad input;
- a runtime failure (any other ``OSError`` such as a read-only folder or a full disk,
  :class:`~deltahall._validation.MissingExtraError`,
  :class:`~deltahall._validation.RunFailure`, ``MemoryError``): one line, exit status 1;
- anything else (a bug): ``deltahall <cmd>: internal error: <type>: <msg> (rerun with -v for
  the traceback)``, exit status 1;
- Ctrl-C: one line, exit status 130.

No traceback reaches the user for these; ``-v`` logs it.
"""

from __future__ import annotations

import argparse
import dis
import importlib
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from types import CodeType
from typing import Any, NoReturn

from deltahall import __version__

# (module, one-line summary); modules are imported lazily so `deltahall --help` stays fast.
_SUBCOMMANDS: tuple[tuple[str, str, str], ...] = (
    (
        "theory",
        "deltahall.cli.theory",
        "Check the paper's theorems numerically (witness, bound, check, figures).",
    ),
    (
        "coinflip",
        "deltahall.cli.coinflip",
        "The coin-flip aggregation experiment (Section 7.1, Figure 3).",
    ),
    ("hcdr", "deltahall.cli.hcdr", "Fit / score the HCDR detector on your own embeddings."),
    ("t2i", "deltahall.cli.t2i", "The text-to-image experiment (Section 7.3, Figures 5-7)."),
    (
        "modes",
        "deltahall.cli.modes",
        "Known truth: a DDPM on mixtures of Gaussians, every detector scored against exact Definition 4.2.",
    ),
    ("qa", "deltahall.cli.qa", "The open-ended QA experiment (Section 7.2, Figure 4, Table 1)."),
    (
        "embed",
        "deltahall.cli.embed",
        "Embed texts or images with a registry model (.npy + JSON sidecar).",
    ),
    (
        "convert",
        "deltahall.cli.convert",
        "Convert public data sets (TruthfulQA) into deltahall measure's input formats.",
    ),
    (
        "measure",
        "deltahall.cli.measure",
        "Measure your model's δ-hallucination rate: calibrated level, Wilson CIs, selection, baselines.",
    ),
    (
        "report",
        "deltahall.cli.report",
        "The main job: run every offline default and write one HTML report.",
    ),
)


class UsageError(Exception):
    """A bad command-line value discovered after parsing."""


class _Parser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line (and exit status 2), like every other error.

    Abbreviated options are refused (``--m 3`` is not read as ``--ms 3``): a typo must not
    silently set another option. Sub-command parsers are of this class too.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {' '.join(message.split())} (see {self.prog} --help)\n")


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    parser = _Parser(
        prog="deltahall",
        description=(
            "Measure δ-hallucination in generative models and reproduce "
            "'Are Hallucinations Bad Estimations?' (Liu et al., 2025)."
        ),
    )
    parser.add_argument("--version", action="version", version=f"deltahall {__version__}")
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module, summary in _SUBCOMMANDS:
        if name != only:
            sub.add_parser(name, help=summary, add_help=False)
            continue
        mod = importlib.import_module(module)
        mod.register(sub, name, summary)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # Only import the chosen sub-command's module (heavy stacks stay unloaded).
    chosen = next((a for a in argv if not a.startswith("-")), None)
    known = {n for n, _, _ in _SUBCOMMANDS}
    parser = build_parser(only=chosen if chosen in known else None)
    try:
        args = parser.parse_args(argv)
    except (
        SystemExit
    ) as exc:  # --help / --version (0) or a usage error already printed as one line (2)
        return exc.code if isinstance(exc.code, int) else 2
    logging.basicConfig(
        level=logging.WARNING - 10 * min(args.verbose, 2),
        format="%(levelname)s %(name)s: %(message)s",
    )
    if not getattr(args, "handler", None):
        parser.print_help()
        return 0 if args.command is None else 2
    from deltahall._validation import BadInput, MissingExtraError, RunFailure

    try:
        return int(args.handler(args) or 0)
    except (BadInput, FileNotFoundError, UsageError) as exc:
        return _fail(args.command, exc, 2)
    except (ValueError, TypeError) as exc:
        if raised_by_deltahall(exc):
            return _fail(args.command, exc, 2)
        return _internal(args.command, exc)
    except (OSError, MissingExtraError, RunFailure, MemoryError) as exc:
        return _fail(args.command, exc, 1)
    except KeyboardInterrupt:
        print(
            f"deltahall {args.command}: interrupted; finished work is saved in the run directory.",
            file=sys.stderr,
        )
        return 130
    except Exception as exc:  # a bug: one line, the traceback with -v
        return _internal(args.command, exc)


_PACKAGE = Path(__file__).resolve().parents[1]
#: scikit-learn modules whose ``raise`` statements validate the detectors' input.
_SKLEARN_VALIDATION = ("utils/validation.py", "utils/_param_validation.py", "base.py")


def raised_by_deltahall(exc: BaseException) -> bool:
    """Whether ``exc`` was raised by a ``raise`` statement of deltahall's input validation.

    The innermost frame of its traceback must be in a module of this package (or one of
    scikit-learn's validation modules, :data:`_SKLEARN_VALIDATION`), and the instruction that
    raised it must be a ``raise`` statement's: a deliberate refusal. An exception thrown anywhere else in a library,
    or by Python itself on a line of ours that is not a ``raise`` (``int("x")``, a wrong call),
    is not.
    """
    tb = exc.__traceback__
    if tb is None:
        return False
    while tb.tb_next is not None:
        tb = tb.tb_next
    try:
        path = Path(tb.tb_frame.f_code.co_filename).resolve()
    except OSError:  # pragma: no cover
        return False
    ours = _PACKAGE in path.parents
    sklearn = (
        "sklearn" in path.parts and path.as_posix().split("/sklearn/")[-1] in _SKLEARN_VALIDATION
    )
    if not (ours or sklearn):
        return False
    return _is_raise(tb.tb_frame.f_code, tb.tb_lasti)


def _is_raise(code: CodeType, lasti: int) -> bool:
    """Whether the instruction at ``lasti`` of ``code`` is a ``raise`` statement's.

    Read from the bytecode that ran, not from the source on disk (which may have changed
    since the module was imported).
    """
    return any(
        ins.offset == lasti and ins.opname == "RAISE_VARARGS" for ins in dis.get_instructions(code)
    )


def _one_line(exc: BaseException) -> str:
    """The error as one line: an OS error names its file and the OS reason."""
    if isinstance(exc, OSError) and exc.strerror and not isinstance(exc, ImportError):
        where = f"{exc.filename}: " if exc.filename else ""
        also = f" -> {exc.filename2}" if exc.filename2 else ""
        msg = f"{where[:-2]}{also}: {exc.strerror}" if where else exc.strerror
    elif isinstance(exc, MemoryError):
        msg = f"out of memory ({exc})" if str(exc) else "out of memory"
    else:
        msg = str(exc) or type(exc).__name__
    return " ".join(msg.split())


def _fail(command: str, exc: BaseException, code: int) -> int:
    logging.getLogger("deltahall.cli").debug("error in %s", command, exc_info=exc)
    print(f"deltahall {command}: error: {_one_line(exc)}", file=sys.stderr)
    return code


def _internal(command: str, exc: BaseException) -> int:
    logging.getLogger("deltahall.cli").info("internal error in %s", command, exc_info=exc)
    msg = " ".join(str(exc).split()) or "(no message)"
    print(
        f"deltahall {command}: internal error: {type(exc).__name__}: {msg} (rerun with -v for the traceback)",
        file=sys.stderr,
    )
    return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
