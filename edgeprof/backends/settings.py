"""Backend settings: one typed dataclass per backend, checked here and only here.

A backend declares `Settings = SomeFrozenDataclass`; the CLI and the Python API pass settings
as a plain mapping of names to values (`BackendOptions.settings`), and `parse_settings` turns
that into the dataclass: unknown names and values of the wrong type are refused with the
names a user can give, and the dataclass's own `__post_init__` checks value ranges.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from edgeprof.errors import UsageError

T = TypeVar("T")


def parse_settings(cls: type[T], given: Mapping[str, Any], *, owner: str) -> T:
    """`cls(**given)` with every name and type checked; None values mean "not given"."""
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{owner}'s Settings must be a dataclass, got {cls!r}")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    values = {k: v for k, v in given.items() if v is not None}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        takes = ", ".join(sorted(fields)) or "no settings"
        raise UsageError(f"{owner} does not take {', '.join(unknown)}; it takes {takes}")
    hints = typing.get_type_hints(cls)
    kwargs = {name: _coerce(name, value, hints[name], owner) for name, value in values.items()}
    return cls(**kwargs)


def settings_from_strings(cls: type[Any], pairs: Sequence[str], *, owner: str) -> dict[str, Any]:
    """`["n_batch=256", "flash_attn=true"]` (the command line's `--set`) as typed values, by
    the field types of `cls`; `parse_settings` then checks them like any other settings."""
    hints = typing.get_type_hints(cls) if dataclasses.is_dataclass(cls) else {}
    out: dict[str, Any] = {}
    for pair in pairs:
        name, sep, text = pair.partition("=")
        name = name.strip().replace("-", "_")
        if not sep or not name:
            raise UsageError(f"`set` takes NAME=VALUE, got {pair!r}")
        out[name] = _from_string(name, text.strip(), hints.get(name), owner)
    return out


def _from_string(name: str, text: str, hint: Any, owner: str) -> Any:
    allowed = _allowed(hint) if hint is not None else {str}
    if text.lower() in ("", "none", "null") and type(None) in allowed:
        return None
    if bool in allowed:
        if text.lower() in ("1", "true", "yes", "on"):
            return True
        if text.lower() in ("0", "false", "no", "off"):
            return False
    for kind in (int, float):
        if kind in allowed:
            try:
                return kind(text)
            except ValueError:
                continue
    if str in allowed or Path in allowed or object in allowed:
        return text
    want = " or ".join(sorted(t.__name__ for t in allowed if t is not type(None)))
    raise UsageError(f"{owner}: `{name}` must be {want}, got {text!r}")


def settings_dict(settings: Any) -> dict[str, Any]:
    """A settings dataclass as JSON-ready values (Paths as strings), for runs.params."""
    out = dataclasses.asdict(settings)
    return {k: str(v) if isinstance(v, Path) else v for k, v in out.items()}


def _coerce(name: str, value: Any, hint: Any, owner: str) -> Any:
    allowed = _allowed(hint)
    if isinstance(value, bool):  # bool is an int in Python; only a bool field takes one
        ok = bool in allowed
    elif isinstance(value, int) and int not in allowed and float in allowed:
        return float(value)
    elif isinstance(value, str) and Path in allowed and str not in allowed:
        return Path(value)
    else:
        ok = isinstance(value, tuple(t for t in allowed if t is not type(None)))
    if not ok:
        want = " or ".join(sorted(t.__name__ for t in allowed if t is not type(None)))
        raise UsageError(f"{owner}: `{name}` must be {want}, got {value!r}")
    return value


def _allowed(hint: Any) -> set[type]:
    """The runtime types a hint like `float | None` or `Path` accepts."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return {t for arg in typing.get_args(hint) for t in _allowed(arg)}
    if hint is type(None):
        return {type(None)}
    if origin is not None:
        return {origin}
    if isinstance(hint, type):
        return {hint}
    return {object}
