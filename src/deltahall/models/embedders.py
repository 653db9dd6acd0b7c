"""Embedder families and :func:`load_embedder`.

- sentence-transformers (text): ``'@minilm'``, or a folder / hub id with ``modules.json``;
- CLIP vision (image): a folder / hub id of a ``CLIPVisionModelWithProjection`` (or a full
  CLIP model) with its ``preprocessor_config.json``; ``image_embeds`` are the embedding;
- EfficientNet-Lite0 (image): ``'@efficientnet-lite0'``, 1280-d pooled features;
- digits CNN (image): ``'@digits-cnn'`` (:mod:`deltahall.models.digits_cnn`).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from deltahall._registry import Registry
from deltahall._validation import check_int, require
from deltahall.models.base import Embedder, check_device, images_to_tensors, resize_center_crop
from deltahall.models.registry import (
    ALIASES,
    ModelUnavailableError,
    ResolvedModel,
    atomic_target,
    cache_dir,
    describe,
    hub_unavailable,
    resolve_model,
)

logger = logging.getLogger(__name__)

__all__ = [
    "EMBEDDERS",
    "CLIPVisionEmbedder",
    "EfficientNetLite0Embedder",
    "SentenceTransformerEmbedder",
    "load_embedder",
]


def _fingerprint(resolved: ResolvedModel, family: str, dim: int, **more: Any) -> dict[str, Any]:
    return {**describe(resolved), "family": family, "dim": int(dim), **more}


class SentenceTransformerEmbedder(Embedder):
    """Sentence embeddings from a sentence-transformers model (``model.encode``)."""

    modality = "text"

    def __init__(
        self, resolved: ResolvedModel, *, device: str = "cpu", batch_size: int = 64
    ) -> None:
        st = require("sentence_transformers", "text", what="sentence-transformers embedders")
        if resolved.kind == "alias":
            assert resolved.path is not None  # an alias always has its weights file
            source = str(resolved.path.parent)
        else:
            source = resolved.spec if resolved.path is None else str(resolved.path)
        try:
            self.model = st.SentenceTransformer(
                source,
                device=device,
                model_kwargs={"use_safetensors": True},
                local_files_only=resolved.kind == "hub" and _offline(),
            )
        except OSError as exc:
            if resolved.kind == "hub":
                raise hub_unavailable(resolved.spec, exc) from None
            raise ModelUnavailableError(
                f"cannot load sentence-transformers model {resolved.spec!r}: "
                f"{' '.join(str(exc).split())[:200]}; pass a folder with modules.json and "
                f"model.safetensors."
            ) from None
        self.model.eval()
        self.name = resolved.spec
        self.batch_size = batch_size
        get_dim = (
            getattr(self.model, "get_embedding_dimension", None)
            or self.model.get_sentence_embedding_dimension
        )
        self.dim = int(get_dim())
        self.fingerprint = _fingerprint(
            resolved,
            "sentence-transformers",
            self.dim,
            max_seq_length=int(self.model.max_seq_length),
        )

    def _batch_order(self, items: Any) -> npt.NDArray[np.intp]:
        """Longest text first, over all items (as ``encode`` sorts within one call): batches of
        like-length texts pad little. A stable sort, so equal lengths keep their input order."""
        return np.argsort(
            -np.fromiter(map(len, items), dtype=np.int64, count=len(items)), kind="stable"
        )

    def _embed_batch(self, items: Sequence[str]) -> npt.NDArray[np.float32]:
        return np.asarray(
            self.model.encode(
                list(items),
                batch_size=len(items) or 1,
                convert_to_numpy=True,
                show_progress_bar=False,
            ),
            dtype=np.float32,
        )


def _size(d: Any, key: str) -> int:
    """``size``/``crop_size`` of an image processor: a dict, a ``SizeDict`` or an int."""
    if isinstance(d, (int, float)):
        return int(d)
    for k in (key, "shortest_edge", "height"):
        v = d.get(k) if hasattr(d, "get") else getattr(d, k, None)
        if v is not None:
            return int(v)
    raise ValueError(f"CLIP image processor size {d!r} has no {key!r}.")


class CLIPVisionEmbedder(Embedder):
    """CLIP image embeddings (``CLIPVisionModelWithProjection.image_embeds``).

    Preprocessed in torch with the ``CLIPImageProcessor``'s size, crop, mean and std, so
    tensors ``(n, C, H, W)`` in [0, 1] (:meth:`embed_tensor`) need no PIL round trip.
    """

    modality = "image"

    def __init__(
        self, resolved: ResolvedModel, *, device: str = "cpu", batch_size: int = 64
    ) -> None:
        torch = require("torch", "t2i", what="CLIP embedders")
        transformers = require("transformers", "t2i", what="CLIP embedders")
        source = resolved.spec if resolved.path is None else str(resolved.path)
        try:
            clip: Any = transformers.CLIPVisionModelWithProjection.from_pretrained(
                source, use_safetensors=True
            )
            proc = transformers.CLIPImageProcessor.from_pretrained(source)
        except OSError as exc:
            if resolved.kind == "hub":
                raise hub_unavailable(resolved.spec, exc) from None
            raise
        self.device = torch.device(device)
        self.model = clip.to(self.device).eval()
        self.model.requires_grad_(False)
        self.resize = _size(proc.size, "shortest_edge")
        self.crop = _size(proc.crop_size, "height")
        self.mean = torch.tensor(proc.image_mean, dtype=torch.float32).view(1, -1, 1, 1)
        self.std = torch.tensor(proc.image_std, dtype=torch.float32).view(1, -1, 1, 1)
        self.name = resolved.spec
        self.batch_size = batch_size
        self.dim = int(clip.config.projection_dim)
        self.fingerprint = _fingerprint(
            resolved, "clip-vision", self.dim, resize=self.resize, crop=self.crop
        )

    def _preprocess(self, x: Any) -> Any:
        import torch.nn.functional as F

        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        h, w = x.shape[-2:]
        s = self.resize / min(h, w)
        nh, nw = max(self.resize, round(h * s)), max(self.resize, round(w * s))
        x = F.interpolate(x, size=(nh, nw), mode="bicubic", align_corners=False, antialias=True)
        top, left = (nh - self.crop) // 2, (nw - self.crop) // 2
        x = x[..., top : top + self.crop, left : left + self.crop].clamp(0.0, 1.0)
        return (x - self.mean.to(x.device)) / self.std.to(x.device)

    def embed_tensor(self, images: Any) -> list[npt.NDArray[np.float32]]:
        """``(n, C, H, W)`` float tensor in [0, 1] -> list of float32 batch embeddings."""
        import torch

        out = []
        with torch.no_grad():
            for i in range(0, images.shape[0], self.batch_size):
                x = self._preprocess(images[i : i + self.batch_size].to(self.device, torch.float32))
                out.append(self.model(pixel_values=x).image_embeds.float().cpu().numpy())
        return out

    def _embed_batch(self, items: Sequence[Any]) -> npt.NDArray[np.float32]:
        import torch

        xs = images_to_tensors(items, mode="RGB")
        x = torch.cat([self._preprocess(t[None]) for t in xs]).to(self.device)
        with torch.no_grad():
            return self.model(pixel_values=x).image_embeds.float().cpu().numpy()


class EfficientNetLite0Embedder(Embedder):
    """ImageNet EfficientNet-Lite0: globally average-pooled head features, 1280-d.

    Preprocessing: RGB, shortest side resized to 256 (bicubic, antialiased), centre crop
    224 (the upstream evaluation crop, 224 / (224 + 32) of the shorter side), pixels
    0-255 scaled ``(x - 127) / 128``.
    """

    modality = "image"
    RESIZE, CROP = 256, 224

    def __init__(
        self, resolved: ResolvedModel, *, device: str = "cpu", batch_size: int = 64
    ) -> None:
        torch = require("torch", "vision", what="EfficientNet-Lite0")
        effnet = require("efficientnet_lite_pytorch", "vision", what="EfficientNet-Lite0")
        assert resolved.path is not None and resolved.sha256 is not None  # alias, verified
        state = _efficientnet_state_dict(resolved.path, resolved.sha256)
        net = effnet.EfficientNet.from_name("efficientnet-lite0")
        net.load_state_dict(state, strict=True)
        self.device = torch.device(device)
        self.net = net.to(self.device).eval()
        self.net.requires_grad_(False)
        self.name = resolved.spec
        self.batch_size = batch_size
        self.dim = int(net._conv_head.out_channels)
        self.fingerprint = _fingerprint(
            resolved, "efficientnet-lite0", self.dim, resize=self.RESIZE, crop=self.CROP
        )

    def _embed_batch(self, items: Sequence[Any]) -> npt.NDArray[np.float32]:
        import torch

        xs = images_to_tensors(items, mode="RGB")
        x = torch.stack([resize_center_crop(t, resize=self.RESIZE, crop=self.CROP) for t in xs])
        x = (x * 255.0 - 127.0) / 128.0
        with torch.no_grad():
            feats = self.net.extract_features(x.to(self.device))
            return feats.mean(dim=(2, 3)).float().cpu().numpy()


def _efficientnet_state_dict(pth: Path, sha256: str) -> dict[str, Any]:
    """The verified ``.pth`` converted once to safetensors in the cache; loaded from there.

    The ``.pth`` (a pickle) is opened only here, after :func:`resolve_model` matched its
    SHA-256, and with ``torch.load(weights_only=True)``.
    """
    import torch
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    target = cache_dir() / "efficientnet-lite0" / f"efficientnet-lite0-{sha256[:16]}.safetensors"
    if target.is_file():
        with safe_open(str(target), framework="pt") as fh:
            meta = fh.metadata() or {}
        if meta.get("source_sha256") == sha256:
            return load_file(str(target))
        logger.info("%s was converted from other weights; converting again", target)
    state = torch.load(str(pth), map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelUnavailableError(f"{os.fspath(pth)!r} is not a state dict of tensors.")
    state = {k: v.contiguous() for k, v in state.items()}
    with atomic_target(target) as tmp:
        save_file(state, str(tmp), metadata={"source_sha256": sha256, "source": pth.name})
    logger.info("converted %s to %s", pth.name, target)
    return state


def _offline() -> bool:
    return any(
        os.environ.get(v, "").lower() in ("1", "true", "yes")
        for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    )


def _hub_file(spec: str, filename: str) -> tuple[Path | None, BaseException | None]:
    """A file of a hub repo (from the cache, or downloaded when online).

    Returns ``(path, None)``, or ``(None, None)`` when the repo has no such file, or
    ``(None, exc)`` when it is not in the local cache and cannot be fetched.
    """
    hub = require("huggingface_hub", "t2i", what="hub models")
    from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError

    try:
        return Path(hub.hf_hub_download(repo_id=spec, filename=filename)), None
    except LocalEntryNotFoundError as exc:  # not cached, and offline or unreachable
        return None, exc
    except EntryNotFoundError:
        return None, None
    except Exception as exc:  # no such repo, network, auth: one line
        raise hub_unavailable(spec, exc) from None


def _family(resolved: ResolvedModel) -> str:
    """'sentence-transformers' or 'clip-vision' for a folder / hub id."""
    if resolved.path is not None:
        has_modules = (resolved.path / "modules.json").is_file()
        config: Path | None = resolved.path / "config.json"
    else:
        modules, miss = _hub_file(resolved.spec, "modules.json")
        has_modules = modules is not None
        config, miss2 = (None, None) if has_modules else _hub_file(resolved.spec, "config.json")
        if not has_modules and config is None and (miss or miss2) is not None:
            raise hub_unavailable(resolved.spec, miss or miss2)  # type: ignore[arg-type]
    if has_modules:
        return "sentence-transformers"
    if config is not None and config.is_file():
        try:
            cfg = json.loads(config.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            cfg = {}
        archs = " ".join(cfg.get("architectures") or [])
        if str(cfg.get("model_type", "")).startswith("clip") or "CLIP" in archs:
            return "clip-vision"
    raise ValueError(
        f"cannot tell which embedder family {resolved.spec!r} is: expected modules.json "
        "(sentence-transformers) or a CLIP config.json; pass such a folder or an alias."
    )


#: How an embedder alias is built from its resolved weights: ``factory(resolved, device=, batch_size=)``.
EmbedderFactory = Callable[..., Embedder]

#: Every embedder alias (the aliases of :data:`~deltahall.models.registry.ALIASES` whose kind is
#: an embedder) and the factory that builds it.
EMBEDDERS: Registry[EmbedderFactory] = Registry("embedder alias", plural="aliases")
EMBEDDERS.register("@minilm", SentenceTransformerEmbedder)
EMBEDDERS.register("@efficientnet-lite0", EfficientNetLite0Embedder)


@EMBEDDERS.register("@digits-cnn")
def _digits_cnn(resolved: ResolvedModel, *, device: str, batch_size: int) -> Embedder:
    from deltahall.models.digits_cnn import DigitsCNNEmbedder

    return DigitsCNNEmbedder.from_cache(resolved, device=device, batch_size=batch_size)


def load_embedder(spec: str, *, device: str = "cpu", batch_size: int = 64) -> Embedder:
    """Load an embedder by alias, folder or hub id.

    Parameters
    ----------
    spec : str
        ``'@minilm'``, ``'@efficientnet-lite0'``, ``'@digits-cnn'``, a local folder
        (sentence-transformers or CLIP vision), or a hub id of one (from the local cache,
        or downloaded when online).
    device : str
    batch_size : int
        Default items per forward pass of :meth:`Embedder.embed`.

    Returns
    -------
    Embedder

    Raises
    ------
    ValueError
        Unknown alias, hash mismatch, a causal LM alias, or a folder of an unknown family.
    deltahall._validation.MissingExtraError
        The alias's package (or the family's library) is not installed.
    ModelUnavailableError
        A hub id not in the local cache while offline (the message says to pass a folder).
    """
    batch_size = check_int(batch_size, "batch_size", low=1)
    check_device(device)
    alias = ALIASES.get(spec, None) if isinstance(spec, str) else None
    if alias is not None and alias.kind not in ("text-embedder", "image-embedder"):
        raise ValueError(
            f"model {spec!r} is a {alias.kind}, not an embedder; embedders: "
            f"{', '.join(EMBEDDERS)}, or a folder / hub id."
        )
    # An unknown '@' name: an error listing the embedder aliases.
    named = isinstance(spec, str) and spec.startswith("@")
    factory: EmbedderFactory | None = EMBEDDERS.get(spec) if named else None
    resolved = resolve_model(spec)
    if factory is not None:
        return factory(resolved, device=device, batch_size=batch_size)
    family = _family(resolved)
    if family == "sentence-transformers":
        return SentenceTransformerEmbedder(resolved, device=device, batch_size=batch_size)
    return CLIPVisionEmbedder(resolved, device=device, batch_size=batch_size)
