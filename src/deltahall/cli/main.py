"""Entry point of the ``deltahall`` command.

Each sub-command lives in its own module exposing ``register(subparsers)``;
the chosen handler returns an exit code. Every user error (``ValueError``,
``TypeError``, ``FileNotFoundError``) becomes one clear line on stderr and
exit status 2.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from deltahall import __version__

# (module, one-line summary); modules are imported lazily so `deltahall --help` stays fast.
_SUBCOMMANDS: tuple[tuple[str, str, str], ...] = (
    ("theory", "deltahall.cli.theory", "Check the paper's theorems numerically (witness, bound, check, figures)."),
    ("coinflip", "deltahall.cli.coinflip", "The coin-flip aggregation experiment (Section 7.1, Figure 3)."),
    ("hcdr", "deltahall.cli.hcdr", "Fit / score the HCDR detector on your own embeddings."),
    ("t2i", "deltahall.cli.t2i", "The text-to-image experiment (Section 7.3, Figures 5-7)."),
    ("qa", "deltahall.cli.qa", "The open-ended QA experiment (Section 7.2, Figure 4, Table 1)."),
    ("report", "deltahall.cli.report", "The main job: run every offline default and write one HTML report."),
)


class UsageError(Exception):
    """A bad command-line value discovered after parsing."""


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="deltahall",
        description=(
            "Measure δ-hallucination in generative models and reproduce "
            "'Are Hallucinations Bad Estimations?' (Liu et al., 2025)."
        ),
    )
    parser.add_argument("--version", action="version", version=f"deltahall {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)")
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
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING - 10 * min(args.verbose, 2),
        format="%(levelname)s %(name)s: %(message)s",
    )
    if not getattr(args, "handler", None):
        parser.print_help()
        return 0 if args.command is None else 2
    try:
        return int(args.handler(args) or 0)
    except (ValueError, TypeError, FileNotFoundError, UsageError) as exc:
        print(f"deltahall {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"deltahall {args.command}: interrupted; finished work is saved in the run directory.", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
