"""The synthetic coin-flip experiment (paper Section 7.1, Figure 3; Theorem 5.1).

``run(CoinFlipConfig(..., run=RunOptions(out_dir=...)))`` trains one model; :mod:`.sweep` runs the Figure 3 grid.
Torch is imported only when a run starts.
"""

from deltahall.experiments.coinflip.config import AUTHORS_BUGS, OBJECTIVES, CoinFlipConfig

__all__ = ["AUTHORS_BUGS", "OBJECTIVES", "CoinFlipConfig", "run"]


def __getattr__(name: str):  # noqa: ANN202 - lazy import keeps torch out of package import
    if name == "run":
        from deltahall.experiments.coinflip.train import run

        return run
    raise AttributeError(name)
