"""Device presets: common edge hardware with its price, lifetime, power and battery, every
figure carrying its source and an as-of date (bundled in edgeprof/data/devices.json).

A preset's `match` says how to recognise the hardware from `edgeprof.measure.device.fingerprint()`;
every criterion given must hold:
  label      regex, searched case-insensitively in the label (the device-tree board model)
  cpu_model  regex, searched case-insensitively in the CPU model
  arch       the machine architectures accepted, e.g. ["x86_64", "AMD64"]
  ram_gib    [min, max): the RAM the OS reports, in GiB (a little under the marketed size)
  battery    true: a system battery is required. Checked only where the fingerprint carries
             `battery_wh` (`edgeprof devices` adds it); stored fingerprints do not, so there
             the other criteria decide
  note       the rule in words, for people
"""

from __future__ import annotations

import datetime
import difflib
import functools
import json
import math
import re
from dataclasses import asdict, dataclass, field
from importlib import resources
from typing import Any

from edgeprof.errors import UsageError

BUNDLED = "edgeprof/data/devices.json"
FIGURES = ("price_usd", "lifetime_years", "idle_power_w", "busy_power_w", "battery_wh")
OPTIONAL_FIGURES = ("idle_power_w", "busy_power_w", "battery_wh")
POSITIVE_FIGURES = ("price_usd", "lifetime_years")  # zero would divide the capital cost by zero
PRESET_KEYS = {"id", "name", "match", *FIGURES}
MATCH_KEYS = {"label", "cpu_model", "arch", "ram_gib", "battery", "note"}
AS_OF = re.compile(r"^\d{4}-\d{2}(-\d{2})?$")
PRESET_ID = re.compile(r"^[a-z0-9][a-z0-9-]*$")


@dataclass(frozen=True)
class PresetFigure:
    value: float
    source: str  # a URL, or "edgeprof assumption: <why>"
    as_of: str  # YYYY-MM or YYYY-MM-DD


@dataclass(frozen=True)
class DevicePreset:
    id: str
    name: str
    price_usd: PresetFigure
    lifetime_years: PresetFigure
    idle_power_w: PresetFigure | None
    busy_power_w: PresetFigure | None  # whole-device draw while running LLM inference
    battery_wh: PresetFigure | None  # None: mains only
    match: dict[str, Any] = field(hash=False)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "name": self.name}
        for name in FIGURES:
            figure = getattr(self, name)
            out[name] = asdict(figure) if figure is not None else None
        out["match"] = dict(self.match)
        return out


def load_presets() -> list[DevicePreset]:
    """The bundled presets, validated."""
    return list(_bundled())


@functools.cache
def _bundled() -> tuple[DevicePreset, ...]:
    text = resources.files("edgeprof.data").joinpath("devices.json").read_text("utf-8")
    return tuple(parse_presets(text))


def get_preset(preset_id: str) -> DevicePreset:
    presets = {p.id: p for p in load_presets()}
    if preset_id in presets:
        return presets[preset_id]
    close = difflib.get_close_matches(preset_id.lower(), list(presets), n=1, cutoff=0.5)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise UsageError(
        f"unknown device preset {preset_id!r}; run `edgeprof devices` to list them{hint}"
    )


def matching_presets(device: dict[str, Any]) -> list[DevicePreset]:
    return [p for p in load_presets() if preset_mismatch(p, device) is None]


# -- matching ------------------------------------------------------------------------------


def preset_mismatch(preset: DevicePreset, device: dict[str, Any]) -> str | None:
    """None when the fingerprint looks like this hardware; else one sentence saying why not."""
    rules = [(key, rule) for key, rule in preset.match.items() if key != "note"]
    failed = [key for key, rule in rules if not _holds(key, rule, device)]
    if not failed:
        return None
    extra = ""  # the variant's difference, said only where the hardware is the same kind
    if set(failed) <= {"ram_gib", "battery"}:
        ram = device.get("ram_bytes")
        if "ram_gib" in failed:
            extra = f" with {ram / 2**30:.1f} GiB of RAM" if ram else " with unknown RAM"
        else:
            extra = " with no battery"
    return (
        f"this machine is {_describe(device)}{extra}, not {_article(preset.name)} {preset.name}: "
        "its price and lifetime are used, but speed and energy are this machine's"
    )


def _holds(key: str, rule: Any, device: dict[str, Any]) -> bool:
    if key in ("label", "cpu_model"):
        text = device.get(key)
        return bool(text) and re.search(rule, str(text), re.IGNORECASE) is not None
    if key == "arch":
        return str(device.get("arch", "")).lower() in {a.lower() for a in rule}
    if key == "ram_gib":
        ram = device.get("ram_bytes")
        return isinstance(ram, (int, float)) and rule[0] <= ram / 2**30 < rule[1]
    # battery: a fingerprint that does not say (no `battery_wh` key) cannot refute it
    return "battery_wh" not in device or bool(device["battery_wh"]) == bool(rule)


def _describe(device: dict[str, Any]) -> str:
    """'board' (cpu, arch), or 'cpu' (arch) where the label is just the hostname."""
    label, cpu = device.get("label"), device.get("cpu_model")
    arch = device.get("arch") or "unknown architecture"
    board = label if label and label != device.get("hostname") else None
    if board and cpu and board != cpu:
        return f"{board!r} ({cpu}, {arch})"
    name = cpu or board
    return f"{name!r} ({arch})" if name else f"an unknown machine ({arch})"


def _article(name: str) -> str:
    return "an" if name[:1].lower() in "aeiou" else "a"


# -- the data file -------------------------------------------------------------------------


def parse_presets(text: str, origin: str = BUNDLED) -> list[DevicePreset]:
    """Presets from the JSON text of a devices file; a broken file raises UsageError naming
    the preset and field at fault."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise UsageError(f"{origin} is not valid JSON (line {e.lineno}: {e.msg}); fix it") from e
    raw = data.get("presets") if isinstance(data, dict) else None
    if not isinstance(raw, list) or not raw:
        raise UsageError(f'{origin} needs a non-empty "presets" list at the top level')
    presets = [_preset(item, origin, i) for i, item in enumerate(raw)]
    ids = [p.id for p in presets]
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    if dupes:
        raise UsageError(f"{origin}: preset id {dupes[0]!r} appears twice; give each its own id")
    return presets


def _preset(item: Any, origin: str, index: int) -> DevicePreset:
    where = f"{origin}: preset #{index + 1}"
    if not isinstance(item, dict):
        raise UsageError(f'{where} is not a JSON object; write it as {{"id": ..., ...}}')
    pid = item.get("id")
    if not isinstance(pid, str) or not PRESET_ID.match(pid):
        raise UsageError(f'{where} needs an "id" of lowercase letters, digits and dashes')
    where = f"{origin}: preset {pid!r}"
    missing, unknown = PRESET_KEYS - set(item), set(item) - PRESET_KEYS
    if missing or unknown:
        what = f"lacks {sorted(missing)}" if missing else f"has unknown keys {sorted(unknown)}"
        raise UsageError(f"{where} {what}; a preset has exactly {sorted(PRESET_KEYS)}")
    if not isinstance(item["name"], str) or not item["name"].strip():
        raise UsageError(f'{where} needs a non-empty "name"')
    figures = {name: _figure(item[name], f"{where}: {name}", name) for name in FIGURES}
    return DevicePreset(id=pid, name=item["name"], match=_match(item["match"], where), **figures)


def _figure(raw: Any, where: str, name: str) -> Any:
    """A PresetFigure, or None where the file says null and the figure may be absent."""
    if raw is None and name in OPTIONAL_FIGURES:
        return None
    fix = 'write {"value": N, "source": "URL or edgeprof assumption: why", "as_of": "YYYY-MM"}'
    if not isinstance(raw, dict) or set(raw) != {"value", "source", "as_of"}:
        raise UsageError(f"{where} is not a figure; {fix}")
    value = raw["value"]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise UsageError(f"{where}: value {value!r} is not a finite number; {fix}")
    if value < 0 or (value == 0 and name in POSITIVE_FIGURES):
        bound = "above zero" if name in POSITIVE_FIGURES else "zero or more"
        raise UsageError(f"{where}: value {value!r} must be {bound}")
    if not isinstance(raw["source"], str) or not raw["source"].strip():
        raise UsageError(f"{where} has no source; {fix}")
    if not _valid_as_of(raw["as_of"]):
        raise UsageError(
            f"{where}: as_of {raw['as_of']!r} is not a date; write YYYY-MM or YYYY-MM-DD"
        )
    return PresetFigure(value=float(value), source=raw["source"], as_of=raw["as_of"])


def _valid_as_of(as_of: Any) -> bool:
    if not isinstance(as_of, str) or not AS_OF.match(as_of):
        return False
    try:
        datetime.date.fromisoformat(as_of if len(as_of) == 10 else f"{as_of}-01")
    except ValueError:
        return False
    return True


def _match(raw: Any, where: str) -> dict[str, Any]:
    where = f"{where}: match"
    if not isinstance(raw, dict) or not (set(raw) - {"note"}):
        raise UsageError(f"{where} needs at least one of label, cpu_model, arch, ram_gib, battery")
    unknown = set(raw) - MATCH_KEYS
    if unknown:
        raise UsageError(f"{where} has unknown keys {sorted(unknown)}; use {sorted(MATCH_KEYS)}")
    for key, rule in raw.items():
        problem = _match_problem(key, rule)
        if problem:
            raise UsageError(f"{where}: {key} {problem}")
    return dict(raw)


def _match_problem(key: str, rule: Any) -> str | None:
    if key in ("label", "cpu_model"):
        if not isinstance(rule, str) or not rule:
            return "must be a regular expression"
        try:
            re.compile(rule)
        except re.error as e:
            return f"is not a valid regular expression ({e})"
    elif key == "arch":
        if not isinstance(rule, list) or not rule or not all(isinstance(a, str) for a in rule):
            return 'must be a list of architectures, e.g. ["x86_64"]'
    elif key == "ram_gib":
        ok = (
            isinstance(rule, list)
            and len(rule) == 2
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in rule)
        )
        if not ok or not 0 <= rule[0] < rule[1]:
            return "must be [min, max] in GiB with 0 <= min < max"
    elif key in ("battery", "note") and not isinstance(rule, bool if key == "battery" else str):
        return "must be true or false" if key == "battery" else "must be text"
    return None
