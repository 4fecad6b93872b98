"""The estimator's TDP: table lookup, scaling to the share of the part, the fallback, --tdp-w."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from edgeprof.samplers.estimate import (
    CpuTopology,
    EstimatedCpuSampler,
    assumed_tdp,
    bundled_tdp_table,
    choose_tdp,
    match_tdp,
    normalise_model,
    parse_cpuinfo,
    share_of_part,
)
from tests.fakesys import FakeSys, make_fakesys


@pytest.fixture
def fs() -> Iterator[FakeSys]:
    yield from make_fakesys()


def cpuinfo(model: str, visible: int, siblings: int, cores: int, ht: bool = True) -> str:
    """/proc/cpuinfo as an x86 Linux kernel writes it, one block per visible logical CPU."""
    flags = "fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov" + (" ht" if ht else "")
    block = (
        "processor\t: {i}\nvendor_id\t: GenuineIntel\nmodel name\t: {model}\n"
        "physical id\t: 0\nsiblings\t: {siblings}\ncore id\t\t: {i}\ncpu cores\t: {cores}\n"
        "flags\t\t: {flags}\n\n"
    )
    return "".join(
        block.format(i=i, model=model, siblings=siblings, cores=cores, flags=flags)
        for i in range(visible)
    )


# -- lookup -------------------------------------------------------------------------------------


def test_normalise_strips_decorations() -> None:
    assert normalise_model("11th Gen Intel(R) Core(TM) i7-1165G7 @ 2.80GHz") == (
        "intel core i7-1165g7"
    )
    assert normalise_model("AMD EPYC 7763 64-Core Processor") == "amd epyc 7763"
    assert normalise_model("Intel(R) Xeon(R) CPU E5-2686 v4 @ 2.30GHz") == "intel xeon e5-2686 v4"


@pytest.mark.parametrize(
    ("model", "name", "tdp_w"),
    [
        ("Intel(R) Core(TM) i7-1165G7 @ 2.80GHz", "Intel Core i7-1165G7", 28.0),
        ("AMD EPYC 7763 64-Core Processor", "AMD EPYC 7763", 280.0),
        ("Intel(R) Xeon(R) Platinum 8375C CPU @ 2.90GHz", "Intel Xeon Platinum 8375C", 300.0),
        ("Apple M2", "Apple M2", 22.0),
    ],
)
def test_exact_match(model: str, name: str, tdp_w: float) -> None:
    row = match_tdp(model, bundled_tdp_table())
    assert row is not None and (row.name, row.tdp_w) == (name, tdp_w)


@pytest.mark.parametrize(
    ("model", "name"),
    [
        ("AMD Ryzen 7 PRO 5850U with Radeon Graphics", "AMD Ryzen 7 PRO 5850U"),
        # The most specific row wins: not "Apple M2", whose words are also all there.
        ("Apple M2 Pro (Virtual)", "Apple M2 Pro"),
    ],
)
def test_fuzzy_match_by_token_set(model: str, name: str) -> None:
    row = match_tdp(model, bundled_tdp_table())
    assert row is not None and row.name == name


@pytest.mark.parametrize(
    "model",
    [
        "AMD EPYC 9B45 64-Core Processor",  # a cloud-only part: "AMD EPYC 9455" is not it
        "AMD EPYC",  # a family, no part (what some VMs report)
        "Neoverse-N1",
        "x86_64",
        "",
    ],
)
def test_refuses_when_unsure(model: str) -> None:
    assert match_tdp(model, bundled_tdp_table()) is None


# -- scaling -------------------------------------------------------------------------------------


EPYC = "AMD EPYC 7763 64-Core Processor"
LAPTOP = "11th Gen Intel(R) Core(TM) i7-1165G7 @ 2.80GHz"


def test_parse_cpuinfo() -> None:
    topo = parse_cpuinfo(cpuinfo(EPYC, visible=2, siblings=2, cores=1), default_visible=99)
    assert topo == CpuTopology(visible=2, siblings=2, cores=1, ht=True, packages=1)
    assert parse_cpuinfo("", default_visible=8) == CpuTopology(visible=8)


def test_vm_slice_of_a_server_part_is_scaled(fs: FakeSys) -> None:
    # A 2-vCPU VM: one core's two hyperthreads of a 64-core / 128-thread EPYC.
    fs.write("/proc/cpuinfo", cpuinfo(EPYC, visible=2, siblings=2, cores=1))
    choice = assumed_tdp(fs.env())
    assert choice.tdp_w == pytest.approx(280.0 * 2 / 128)
    assert '"AMD EPYC 7763" 280 W × 2/128 logical CPUs visible (64-Core × 2 threads)' in (
        choice.origin
    )


def test_without_smt_evidence_one_thread_per_core() -> None:
    # Told 2 cores of 1 thread each: the part counts as 64 logical CPUs, a larger share.
    topo = parse_cpuinfo(cpuinfo(EPYC, visible=2, siblings=2, cores=2), default_visible=1)
    assert share_of_part(EPYC, topo).factor == pytest.approx(2 / 64)


def test_laptop_seeing_all_its_cpus_is_not_scaled(fs: FakeSys) -> None:
    fs.write("/proc/cpuinfo", cpuinfo(LAPTOP, visible=8, siblings=8, cores=4))
    choice = assumed_tdp(fs.env())
    assert choice.tdp_w == 28.0
    assert "all 8 logical CPUs visible" in choice.origin


def test_two_sockets_count_twice_at_most() -> None:
    topo = CpuTopology(visible=256, siblings=128, cores=64, ht=True, packages=2)
    assert share_of_part(EPYC, topo).factor == 2.0
    # A wrong thread guess never charges for more packages than are there.
    assert share_of_part(EPYC, CpuTopology(visible=256, packages=1)).factor == 1.0


# -- fallback and --tdp-w ------------------------------------------------------------------------


def test_unknown_cpu_falls_back_to_a_labelled_per_cpu_assumption(fs: FakeSys) -> None:
    fs.write("/proc/cpuinfo", cpuinfo("AMD EPYC", visible=2, siblings=2, cores=2))
    s = EstimatedCpuSampler.discover(fs.env())[0]
    assert s.method == "estimated"
    assert s.detail.startswith(
        'estimated: TDP 20 W (unknown CPU "AMD EPYC": 10 W × 2 logical CPUs, min 10 W, '
        "an assumption; pass --tdp-w) × (0.1 + 0.9 × load³)"
    )
    one = choose_tdp("mystery", CpuTopology(visible=1))
    assert one.tdp_w == 10.0 and "1 logical CPU," in one.origin


def test_tdp_flag_wins_over_a_table_match(fs: FakeSys) -> None:
    fs.write("/proc/cpuinfo", cpuinfo(LAPTOP, visible=8, siblings=8, cores=4))
    s = EstimatedCpuSampler.discover(fs.env(tdp_w=15.0))[0]
    assert s.detail.startswith("estimated: TDP 15 W (--tdp-w) × (0.1 + 0.9 × load³)")
    assert choose_tdp(LAPTOP, CpuTopology(visible=8), tdp_w=12.5).tdp_w == 12.5


def test_probe_names_the_table_figure(fs: FakeSys) -> None:
    fs.write("/proc/cpuinfo", cpuinfo(EPYC, visible=2, siblings=2, cores=1))
    (res,) = EstimatedCpuSampler.probe(fs.env())
    assert res.available and res.method == "estimated"
    assert res.reason.startswith("estimated: TDP 4.38 W (codecarbon's CPU table:")


@pytest.mark.parametrize(
    "origin",
    ["--tdp-w", 'codecarbon CPU table: "Xeon (x)" 205 W × 2/56 logical CPUs visible (a VM)'],
)
def test_the_stored_detail_gives_back_its_assumption(origin: str) -> None:
    from edgeprof.samplers.estimate import TdpChoice, assumption_of, estimate_detail

    detail = estimate_detail(TdpChoice(14.6, origin))
    assert detail.startswith("estimated: TDP 14.6 W (")
    assert assumption_of(detail) == f"TDP 14.6 W ({origin})"
    assert assumption_of("measured by rapl") == "measured by rapl"  # not the estimator's
