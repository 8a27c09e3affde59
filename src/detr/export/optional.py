"""The ONNX packages are an optional extra: a missing one is a one-line error saying how to add it."""

from __future__ import annotations

import importlib
from types import ModuleType


def optional_module(name: str) -> ModuleType:
    try:
        return importlib.import_module(name)
    except ImportError:
        raise ValueError(f"ONNX export and inference need the {name} package; "
                         "install it with `pip install 'detr[onnx]'`") from None
