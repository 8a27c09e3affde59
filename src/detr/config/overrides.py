"""Settings from text: `--set section.field=value` overrides, and configs rebuilt from plain values
(a checkpoint's or a JSON file's), refusing unknown fields."""

from __future__ import annotations

import ast
import dataclasses
from typing import Any

from detr.config.older_versions import REMOVED_FIELDS, translate_older_fields


def setting_name(item: str) -> str:
    """The dotted field name of a `section.field=value` setting."""
    return item.partition("=")[0].strip()


def apply_settings(config: Any, settings: list[str]) -> Any:
    """Override fields by dotted name, e.g. ["model.query_groups=1", "data.train_scales=(96, 128)"].

    Values are read as Python literals (numbers, booleans, None, tuples) or,
    failing that, as strings; an unknown field is an error naming it.
    """
    for item in settings:
        key, separator, text = item.partition("=")
        if not separator:
            raise ValueError(f"a setting looks like section.field=value, not {item!r}")
        *path, name = key.strip().split(".")
        target = config
        for part in path:
            if not dataclasses.is_dataclass(target) or not hasattr(target, part):
                raise ValueError(f"unknown setting {key!r}")
            target = getattr(target, part)
        if not dataclasses.is_dataclass(target) or name not in {f.name for f in dataclasses.fields(target)}:
            raise ValueError(f"unknown setting {key!r}")
        try:
            value = ast.literal_eval(text.strip())
        except (ValueError, SyntaxError):
            value = text.strip()
        current = getattr(target, name)
        if dataclasses.is_dataclass(current):
            raise ValueError(f"{key!r} is a section; set its fields, e.g. {key}.name=...")
        if isinstance(current, bool) and not isinstance(value, bool):
            if str(value).lower() not in ("true", "false"):
                raise ValueError(f"{key} is True or False, not {text.strip()!r}")
            value = str(value).lower() == "true"
        if isinstance(current, tuple) and isinstance(value, list):
            value = tuple(value)
        if isinstance(current, float) and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        setattr(target, name, value)
    return config


def build_dataclass(kind: type, values: dict[str, Any]) -> Any:
    """Rebuild a (nested) dataclass from plain values, refusing unknown keys."""
    values = translate_older_fields(kind.__name__, values)
    for name, off in REMOVED_FIELDS.get(kind.__name__, {}).items():
        if name in values and (value := values.pop(name)) != off:
            raise ValueError(f"{kind.__name__}.{name}={value!r} is a removed setting (only its off value, {off!r}, "
                             "is read now): this config or checkpoint needs an older version of detr")
    known = {f.name: f for f in dataclasses.fields(kind)}
    unknown = set(values) - set(known)
    if unknown:
        raise ValueError(f"unknown {kind.__name__} fields: {sorted(unknown)}")
    kwargs = {}
    for name, value in values.items():
        default = getattr(kind(), name)
        if dataclasses.is_dataclass(default):
            value = build_dataclass(type(default), value)
        elif isinstance(default, tuple):
            value = tuple(value)
        kwargs[name] = value
    return kind(**kwargs)
