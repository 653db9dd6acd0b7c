"""Test-wide settings: never reach a model hub, keep torch to the machine's cores."""

from __future__ import annotations

import os

# Set before transformers / diffusers / datasets are imported by any test.
for _var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE", "DIFFUSERS_OFFLINE"):
    os.environ[_var] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("MPLBACKEND", "Agg")

# Property tests: random in development, reproducible on CI (CI=true), never a stale local database there.
from hypothesis import settings as _hyp_settings  # noqa: E402

_hyp_settings.register_profile("ci", derandomize=True, database=None, print_blob=True)
if os.environ.get("CI"):
    _hyp_settings.load_profile("ci")
