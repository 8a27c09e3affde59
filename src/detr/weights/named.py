"""The published DETR models by name, fetched once into torch.hub's cache.

Files are checked the way torch.hub checks them: the hex digits after the last
'-' of the file name are a prefix of the file's SHA-256. A file already in the
cache is used without the network (and checked again, so a damaged cache
file is refused rather than half-read).
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import torch.hub

from detr.weights.base import WeightsError

# torch.hub's own pattern for the hash prefix in a file name.
_HASH_IN_NAME = re.compile(r"-([a-f0-9]*)\.")


@dataclass(frozen=True)
class NamedModel:
    url: str
    dilation: bool  # the official files may lack `args`, and dilation is not in the weights


NAMED_MODELS: dict[str, NamedModel] = {
    "detr_r50": NamedModel("https://dl.fbaipublicfiles.com/detr/detr-r50-e632da11.pth", dilation=False),
    "detr_r50_dc5": NamedModel("https://dl.fbaipublicfiles.com/detr/detr-r50-dc5-f0fb7ef5.pth", dilation=True),
    "detr_r101": NamedModel("https://dl.fbaipublicfiles.com/detr/detr-r101-2c7b67e5.pth", dilation=False),
    "detr_r101_dc5": NamedModel("https://dl.fbaipublicfiles.com/detr/detr-r101-dc5-a2e86def.pth", dilation=True),
}


def default_cache_dir() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints"


def _file_name(url: str) -> str:
    return os.path.basename(urlparse(url).path)


def named_for_file(path: str | Path) -> NamedModel | None:
    """The named model whose published file name `path` carries, if any."""
    name = Path(path).name
    return next((m for m in NAMED_MODELS.values() if _file_name(m.url) == name), None)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def resolve_named(name: str, cache_dir: str | Path | None = None, url: str | None = None,
                  progress: bool = True) -> Path:
    """The local file of a named model, downloaded into `cache_dir` on first use.

    `cache_dir` defaults to torch.hub's (`torch.hub.get_dir()/checkpoints`);
    `url` replaces the published address (any URL urllib opens, file:// too).
    """
    if name not in NAMED_MODELS:
        raise WeightsError(f"unknown model {name!r}; named models are {', '.join(NAMED_MODELS)}")
    url = url or NAMED_MODELS[name].url
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    file_name = _file_name(url)
    match = _HASH_IN_NAME.search(file_name)
    hash_prefix = match.group(1) if match else None
    path = cache / file_name
    if path.is_file():
        if hash_prefix and not _sha256(path).startswith(hash_prefix):
            raise WeightsError(f"cached {path} does not match its hash prefix {hash_prefix}; "
                               "delete it to download again")
        return path
    cache.mkdir(parents=True, exist_ok=True)
    try:
        torch.hub.download_url_to_file(url, str(path), hash_prefix=hash_prefix, progress=progress)
    except RuntimeError as error:
        if "invalid hash value" in str(error):
            raise WeightsError(f"{url} does not match its expected SHA-256 prefix {hash_prefix}; "
                               "refusing the download") from None
        raise
    except OSError as error:
        raise WeightsError(f"cannot download {name} from {url} ({error}); to work offline, put "
                           f"{file_name} in {cache}") from None
    return path
