"""The text-to-image experiment (Section 7.3, Figures 5-7, Appendix A).

Modules (torch / diffusers / transformers are imported inside functions, so importing
this package stays light):

- :mod:`.config`           ``T2IConfig`` (frozen; presets ``digits`` and ``afhq-sd15``)
- :mod:`.pipeline`         ``run(config) -> T2IResult``
- :mod:`.data`             training images + class labels (digits, image folder, datasets id)
- :mod:`.tiny`             the tiny offline UNet / text encoder / tokenizer of ``digits``
- :mod:`.modeling`         loading the diffusers components; latents <-> images
- :mod:`.train`            accelerate training loop, checkpoints, resume
- :mod:`.sampling`         batched seeded sampling with classifier-free guidance
- :mod:`.embed`            the embedder interface; CLIP image embeddings
- :mod:`.digits_embedder`  the offline digit-CNN embedding
- :mod:`.detector`         real embeddings and the HCDR detector fitted on them
- :mod:`.evaluate`         per checkpoint x prompt: rate, mean-embedding test, grids
- :mod:`.results`          reading a run directory; ``T2IResult``
- :mod:`.report`           the section of the HTML report
"""

from deltahall.experiments.t2i.config import PRESETS, T2IConfig
from deltahall.experiments.t2i.results import T2IResult


def run(config: T2IConfig) -> T2IResult:
    """Run the experiment; see :func:`deltahall.experiments.t2i.pipeline.run`."""
    from deltahall.experiments._run import require_extra

    require_extra("t2i")
    from deltahall.experiments.t2i.pipeline import run as _run

    return _run(config)


__all__ = ["PRESETS", "T2IConfig", "T2IResult", "run"]
