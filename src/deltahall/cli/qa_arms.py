"""``deltahall qa arms``: the four-arm QA design on a real language model (being built)."""

from __future__ import annotations

import argparse


def register_arms(qsub: argparse._SubParsersAction) -> None:
    """Add the ``arms`` sub-command to ``deltahall qa`` (filled in by the four-arm experiment)."""
    return None
