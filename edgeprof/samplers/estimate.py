"""CPU power *estimated* from load, for machines without a power sensor.

codecarbon's load model: P = TDP × (0.1 + 0.9 × load³), load = system CPU use in [0, 1].
Every figure it produces is labelled `estimated` and names the TDP it assumed and where that
came from, so an estimate is never mistaken for a reading. The TDP, first rule that applies:

1. `--tdp-w`: the user's figure, used as given.
2. The CPU model found in the bundled table (`edgeprof/data/cpu_tdp.csv`, from codecarbon),
   scaled to the share of the part this OS sees: a 2-vCPU VM on a 128-thread server part gets
   2/128 of its TDP (see `share_of_part`).
3. Otherwise an assumption of `FALLBACK_W_PER_CPU` per logical CPU visible (at least
   `FALLBACK_MIN_W`), labelled as such.
"""

from __future__ import annotations

import csv
import functools
import io
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from typing import ClassVar

from edgeprof.measure.device import cpu_model
from edgeprof.samplers.base import CpuLoad, ProbeResult, Reading, Sampler, SensorEnv

# For a CPU the table does not know. Per logical CPU so a small VM is not charged for a whole
# desktop part (codecarbon's flat 85 W, our old default). 10 W is at the high end of TDP per
# hardware thread in the table's common parts (server parts ~2-5 W, e.g. EPYC 7763 280 W / 128;
# laptops ~3-7 W, e.g. i7-1165G7 28 W / 8; small desktop parts up to ~15 W, e.g. i3 60 W / 4):
# an unknown CPU is more likely over- than under-charged. The floor covers a one-CPU machine.
FALLBACK_W_PER_CPU = 10.0
FALLBACK_MIN_W = 10.0

TABLE_SOURCE = "codecarbon's CPU table"


def format_w(watts: float) -> str:
    """`4.375` -> `4.38`, `280.0` -> `280`: two decimals at most, never an exponent."""
    return f"{round(watts, 2):g}"


def estimated_power_w(tdp_w: float, load_fraction: float) -> float:
    load = min(1.0, max(0.0, load_fraction))
    return tdp_w * (0.1 + 0.9 * load**3)


# -- the model string --------------------------------------------------------------------------

# Marketing and clock decorations that differ between /proc/cpuinfo and the table's names.
_NOISE = [
    re.compile(p, re.IGNORECASE)
    for p in (
        r"\((?:r|tm)\)|®|™",
        r"@\s*[\d.]+\s*[gm]hz",
        r"\b\d+-core\b",
        r"\b(?:processor|cpu)\b",
        r"\b\d+(?:st|nd|rd|th)\s+gen\b",  # "11th Gen Intel(R) Core(TM) i7-1165G7"
    )
]


def normalise_model(name: str) -> str:
    """`Intel(R) Core(TM) i7-1165G7 CPU @ 2.80GHz` -> `intel core i7-1165g7`."""
    s = name.lower()
    for pattern in _NOISE:
        s = pattern.sub(" ", s)
    return " ".join(s.split())


def _model_numbers(tokens: frozenset[str]) -> frozenset[str]:
    """The tokens that name the exact part (`i7-1165g7`, `7763`, `m2`, `v4`), not its family."""
    return frozenset(t for t in tokens if any(c.isdigit() for c in t))


@dataclass(frozen=True)
class TdpRow:
    name: str  # as the table spells it
    tdp_w: float


def parse_tdp_table(text: str) -> dict[str, TdpRow]:
    """CSV `name,tdp_w` -> rows keyed by normalised name. Names that normalise alike but
    disagree on TDP are dropped: an ambiguous row is no better than no row."""
    rows: dict[str, TdpRow] = {}
    ambiguous: set[str] = set()
    for rec in csv.DictReader(io.StringIO(text)):
        try:
            row = TdpRow(rec["name"].strip(), float(rec["tdp_w"]))
        except (KeyError, TypeError, ValueError):
            continue
        key = normalise_model(row.name)
        if not key or row.tdp_w <= 0:
            continue
        if key in rows and rows[key].tdp_w != row.tdp_w:
            ambiguous.add(key)
        rows.setdefault(key, row)
    return {k: v for k, v in rows.items() if k not in ambiguous}


@functools.lru_cache(maxsize=1)
def bundled_tdp_table() -> dict[str, TdpRow]:
    text = resources.files("edgeprof.data").joinpath("cpu_tdp.csv").read_text("utf-8")
    return parse_tdp_table(text)


def match_tdp(model: str, table: Mapping[str, TdpRow]) -> TdpRow | None:
    """The table row for this CPU model string, or None when unsure.

    Exact match of the normalised names first. Otherwise, like codecarbon's token-set match
    but stricter, a row qualifies when all its words appear in the model string AND its
    model-number words (those with a digit) are exactly the model string's, so the family
    alone ("AMD EPYC") never matches a part ("AMD EPYC 9455"). Of the qualifying rows the
    one with the most words wins; a tie between different TDPs is no match.
    """
    key = normalise_model(model)
    if key in table:
        return table[key]
    tokens = frozenset(key.split())
    numbers = _model_numbers(tokens)
    if not numbers:
        return None
    best: list[TdpRow] = []
    best_size = 0
    for name, row in table.items():
        cand = frozenset(name.split())
        if len(cand) < 2 or not cand <= tokens or _model_numbers(cand) != numbers:
            continue
        if len(cand) > best_size:
            best, best_size = [row], len(cand)
        elif len(cand) == best_size:
            best.append(row)
    if not best or len({r.tdp_w for r in best}) > 1:
        return None
    return best[0]


# -- how much of the part this machine sees ---------------------------------------------------


@dataclass(frozen=True)
class CpuTopology:
    """What /proc/cpuinfo says about the CPUs this OS sees."""

    visible: int  # logical CPUs this OS sees ("processor" entries)
    siblings: int | None = None  # logical CPUs per package, as this OS is told
    cores: int | None = None  # cores per package ("cpu cores"), as this OS is told
    ht: bool = False  # the `ht` flag: the part may run two threads per core
    packages: int = 1  # distinct "physical id"s


def _first_int(text: str, key: str) -> int | None:
    m = re.search(rf"^{key}\s*:\s*(\d+)\s*$", text, re.MULTILINE)
    return int(m.group(1)) if m else None


def parse_cpuinfo(text: str, default_visible: int) -> CpuTopology:
    """/proc/cpuinfo's text -> topology; `default_visible` where it lists no processors
    (macOS has no /proc/cpuinfo; some ARM kernels omit fields)."""
    visible = len(re.findall(r"^processor\s*:", text, re.MULTILINE)) or default_visible
    flags = re.search(r"^flags\s*:(.*)$", text, re.MULTILINE)
    packages = set(re.findall(r"^physical id\s*:\s*(\d+)", text, re.MULTILINE))
    return CpuTopology(
        visible=max(1, visible),
        siblings=_first_int(text, "siblings"),
        cores=_first_int(text, "cpu cores"),
        ht=bool(flags and "ht" in flags.group(1).split()),
        packages=max(1, len(packages)),
    )


@dataclass(frozen=True)
class Share:
    factor: float  # the multiplier on the part's TDP
    part_cpus: int  # logical CPUs of one part
    how: str  # where part_cpus came from, for the label


def share_of_part(model: str, topo: CpuTopology) -> Share:
    """The share of the part's TDP this OS's CPUs account for: visible / part logical CPUs.

    The part's logical CPUs: where the model string says "N-Core", N cores, times 2 threads if
    the `ht` flag is set and `siblings` is at least twice `cpu cores` (else 1 thread, which
    errs towards a larger share). Otherwise `siblings`, the package as this OS sees it; a VM
    is usually told its own vCPUs, so that means no scaling. A laptop that sees all its CPUs
    gets 1. The factor is capped at the number of packages seen (two sockets: at most 2×),
    so a wrong thread guess never charges for parts that are not there.
    """
    m = re.search(r"\b(\d+)-core\b", model, re.IGNORECASE)
    if m:
        two = topo.ht and topo.siblings and topo.cores and topo.siblings >= 2 * topo.cores
        part = int(m.group(1)) * (2 if two else 1)
        how = f"{m.group(1)}-Core × {2 if two else 1} thread{'s' if two else ''}"
    elif topo.siblings:
        part, how = topo.siblings, "siblings in /proc/cpuinfo"
    else:
        part, how = topo.visible, "all visible"
    part = max(1, part)
    return Share(min(topo.visible / part, float(topo.packages)), part, how)


# -- the choice ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class TdpChoice:
    tdp_w: float
    origin: str  # where the figure came from, in words, for `detail`


def choose_tdp(
    model: str,
    topo: CpuTopology,
    tdp_w: float | None = None,
    table: Mapping[str, TdpRow] | None = None,
) -> TdpChoice:
    """The TDP the estimator assumes, and why (see the module docstring for the rules)."""
    if tdp_w is not None:
        return TdpChoice(tdp_w, "--tdp-w")
    row = match_tdp(model, bundled_tdp_table() if table is None else table)
    if row is not None:
        share = share_of_part(model, topo)
        found = f'{TABLE_SOURCE}: "{row.name}" {format_w(row.tdp_w)} W'
        if share.factor == 1.0:
            return TdpChoice(row.tdp_w, f"{found}; all {topo.visible} logical CPUs visible")
        scaled = row.tdp_w * share.factor
        return TdpChoice(
            scaled,
            f"{found} × {topo.visible}/{share.part_cpus} logical CPUs visible "
            f"({share.how}); pass --tdp-w to override",
        )
    tdp = max(FALLBACK_MIN_W, FALLBACK_W_PER_CPU * topo.visible)
    return TdpChoice(
        tdp,
        f'unknown CPU "{model}": {format_w(FALLBACK_W_PER_CPU)} W × {topo.visible} logical CPU'
        f"{'s' if topo.visible != 1 else ''}, min {format_w(FALLBACK_MIN_W)} W, an assumption; "
        "pass --tdp-w",
    )


def assumed_tdp(env: SensorEnv) -> TdpChoice:
    """`choose_tdp` for the machine under `env` (reads /proc/cpuinfo there)."""
    if env.tdp_w is not None:
        return choose_tdp("", CpuTopology(visible=1), env.tdp_w)
    try:
        text = env.path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        text = ""
    topo = parse_cpuinfo(text, default_visible=os.cpu_count() or 1)
    return choose_tdp(cpu_model(env.sys_root), topo)


LOAD_MODEL = "× (0.1 + 0.9 × load³), codecarbon's load model"
DETAIL_PREFIX = "estimated: "


def estimate_detail(tdp: TdpChoice) -> str:
    """The sensor's `detail`, stored with each run: the TDP, where it came from, the model."""
    return f"{DETAIL_PREFIX}TDP {format_w(tdp.tdp_w)} W ({tdp.origin}) {LOAD_MODEL}"


def assumption_of(detail: str) -> str:
    """The assumption a stored `estimate_detail` rests on, "TDP 20 W (its source)": what a
    verdict names. The inverse of `estimate_detail` (tested both ways), kept beside it so the
    format and its reader change together."""
    return detail.removeprefix(DETAIL_PREFIX).split(" " + LOAD_MODEL)[0]


class EstimatedCpuSampler(Sampler):
    source: ClassVar[str] = "estimate"

    def __init__(self, tdp: TdpChoice) -> None:
        self.tdp_w = tdp.tdp_w
        super().__init__(
            sensor="estimate:cpu",
            domain="package",
            method="estimated",
            detail=estimate_detail(tdp),
            metrics=("power_w",),
        )
        self._load = CpuLoad()

    @classmethod
    def discover(cls, env: SensorEnv) -> list[Sampler]:
        return [cls(assumed_tdp(env))]

    @classmethod
    def probe(cls, env: SensorEnv) -> list[ProbeResult]:
        s = cls(assumed_tdp(env))
        return [ProbeResult(cls.source, s.sensor, True, s.domain, "estimated", reason=s.detail)]

    def read(self) -> list[Reading]:
        return [
            Reading(self.sensor, "power_w", estimated_power_w(self.tdp_w, self._load.fraction()))
        ]
