"""Experiments: each is a frozen config dataclass plus ``run(config) -> Result``.

Heavy imports (torch, transformers, diffusers) happen inside the experiment
modules, never at package import time.
"""
