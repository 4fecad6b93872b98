"""Reusing a run that already measured the same thing: what must match, which run wins, which
runs never count, and a real llama.cpp run found again from its own figures."""

from __future__ import annotations

import dataclasses
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from edgeprof.decision.reuse import RunKey, describe_reuse, reusable_run, settings_key
from edgeprof.measure.device import fingerprint
from edgeprof.measure.runner import RunConfig, profile
from edgeprof.measure.workload import load_suite, suite_sha256
from edgeprof.models.files import demo_model_path, sha256_file
from edgeprof.samplers import SensorEnv
from edgeprof.store import Store
from edgeprof.store.ids import ulid
from tests.builders import add_run, device_row, request_row, write_prompts
from tests.cloudserver import CloudServer

DEVICE = device_row("pi5")
SUITE = "5e" * 32
LLAMACPP_SETTINGS = {
    "n_batch": 512,
    "n_ubatch": 512,
    "n_gpu_layers": 0,  # "auto" on a CPU build of llama.cpp, as this machine's is
    "split_mode": "layer",
    "main_gpu": 0,
    "flash_attn": False,
    "ignore_eos": False,
    "chat_template": None,
    "raw": False,
    "signals": True,
}
KEY = RunKey(
    device_id=DEVICE["id"],
    backend="llamacpp",
    model_sha256="ab" * 32,  # add_run's
    quant="Q4_1",
    threads=4,
    max_tokens=64,
    suite_sha256=SUITE,
    settings=settings_key("llamacpp"),
)


@pytest.fixture()
def store(tmp_path: Path) -> Any:
    with Store(tmp_path / "p.db") as s:
        yield s


def add(
    store: Store,
    *,
    status: str = "complete",
    params: dict[str, Any] | None = None,
    run_id: str | None = None,
    **run_fields: Any,
) -> str:
    """A run of KEY as the runner now records one; `params` and `run_fields` override."""
    base = {
        "threads": 4,
        "max_tokens": 64,
        "ctx": 4096,
        "keep_cache": False,
        "suite_sha256": SUITE,
        "settings": LLAMACPP_SETTINGS,
    }
    run_id = add_run(store, DEVICE, run_id=run_id, status=status, params={**base, **(params or {})})
    if run_fields:
        store.update_run(run_id, run_fields)
    return run_id


def test_settings_key_is_every_setting_as_the_runner_records_it() -> None:
    assert dict(settings_key("llamacpp")) == {
        "flash_attn": "false",
        "ignore_eos": "false",
        "chat_template": "null",
        "raw": "false",
        "signals": "true",
        "main_gpu": "0",
        "n_batch": "512",
        "n_gpu_layers": "0",
        "n_ubatch": "512",
        "split_mode": '"layer"',
    }
    assert dict(settings_key("llamacpp", {"n_gpu_layers": -1}))["n_gpu_layers"] == '"all"'
    assert settings_key("onnx") == (
        ("chat_template", "null"), ("providers", "null"), ("raw", "false"), ("signals", "true"),
        ("tokenizer", "null"),
    )  # fmt: skip


def test_a_run_of_the_same_measurement_is_found(store: Store) -> None:
    run_id = add(store)
    assert reusable_run(store, KEY) == run_id
    assert reusable_run(store, dataclasses.replace(KEY, settings=())) == run_id


def test_the_prompt_format_a_run_used_must_be_the_one_asked_for(store: Store) -> None:
    """How edgeprof picks a template for a GGUF without one may change: a run records the
    format it used (params.chat_template) and only that format finds it again."""
    raw = {**LLAMACPP_SETTINGS, "raw": True}
    run_id = add(store, params={"settings": raw, "chat_template": "raw"})
    key = dataclasses.replace(KEY, settings=settings_key("llamacpp", {"raw": True}))
    assert reusable_run(store, dataclasses.replace(key, prompt_format="raw")) == run_id
    assert reusable_run(store, dataclasses.replace(key, prompt_format="builtin:gemma")) is None
    assert reusable_run(store, KEY) is None  # a run with a template is not one without
    older = add(store, params={"chat_template": "chatml-fallback"})  # before the choice
    assert reusable_run(store, dataclasses.replace(KEY, prompt_format="builtin:gemma")) is None
    assert reusable_run(store, dataclasses.replace(KEY, prompt_format="chatml-fallback")) == older


@pytest.mark.parametrize(
    "change",
    [
        {"device_id": device_row("laptop")["id"]},
        {"backend": "onnx"},
        {"model_sha256": "cd" * 32},
        {"quant": "Q8_0"},
        {"quant": None},
        {"threads": 2},
        {"threads": None},
        {"max_tokens": 128},
        {"suite_sha256": "00" * 32},
        {"settings": settings_key("llamacpp", {"n_gpu_layers": -1})},
        {"settings": (("ctx", "2048"),)},
        {"concurrency": 4},
        # another prompt format: a built-in template, or none at all (a base model's --raw)
        {"settings": settings_key("llamacpp", {"chat_template": "gemma"})},
        {"settings": settings_key("llamacpp", {"raw": True})},
        {"prompt_format": "raw"},
    ],
    ids=lambda change: "-".join(f"{k}={v}" for k, v in change.items())[:40],
)
def test_any_one_field_that_differs_is_another_measurement(
    store: Store, change: dict[str, Any]
) -> None:
    add(store)
    assert reusable_run(store, dataclasses.replace(KEY, **change)) is None


def test_settings_are_read_from_the_recorded_settings_then_from_params(store: Store) -> None:
    run_id = add(store, params={"settings": {**LLAMACPP_SETTINGS, "n_gpu_layers": 99}})
    assert reusable_run(store, KEY) is None
    gpu = dataclasses.replace(KEY, settings=settings_key("llamacpp", {"n_gpu_layers": 99}))
    assert reusable_run(store, gpu) == run_id
    ctx = (("ctx", "4096"), ("keep_cache", "false"), ("n_gpu_layers", "99"))
    assert reusable_run(store, dataclasses.replace(KEY, settings=ctx)) == run_id
    # a setting the run did not record at all is not assumed to have had any value
    unknown = (("cache_type_k", '"q8_0"'),)
    assert reusable_run(store, dataclasses.replace(KEY, settings=unknown)) is None


def test_the_newest_matching_run_wins_by_start_time(store: Store) -> None:
    # ids (ULIDs) in one order, start times in another: the start time decides
    t_ms = 1_800_000_000_000
    ids = [ulid(t_ms + i) for i in range(4)]
    latest = add(store, run_id=ids[0], started_at="2026-05-03T09:00:00.000+00:00")
    add(store, run_id=ids[1], started_at="2026-05-01T10:00:00Z")
    add(store, run_id=ids[2], params={"max_tokens": 32}, started_at="2026-06-01T10:00:00Z")
    add(store, run_id=ids[3], started_at="2026-05-03T08:59:59.999Z")
    assert reusable_run(store, KEY) == latest


@pytest.mark.parametrize("status", ["running", "aborted", "failed"])
def test_an_unfinished_run_is_never_reused(store: Store, status: str) -> None:
    add(store, status=status)
    assert reusable_run(store, KEY) is None


def test_a_run_with_a_failed_measured_request_is_not_reused(store: Store) -> None:
    bad = add(store, started_at="2026-05-02T10:00:00Z")
    store.insert_request(request_row(bad, 3, error="llama_decode failed (1)"))
    good = add(store, started_at="2026-05-01T10:00:00Z")
    assert reusable_run(store, KEY) == good
    # a warm-up's error is not a measurement's
    warm = add(store, started_at="2026-05-03T10:00:00Z")
    store.insert_request(request_row(warm, 3, warmup=1, error="timeout"))
    assert reusable_run(store, KEY) == warm


def test_runs_recorded_before_the_suite_hash_never_match(store: Store) -> None:
    add_run(store, DEVICE, params={"threads": 4, "max_tokens": 64})  # what older runs hold
    assert reusable_run(store, KEY) is None
    assert reusable_run(store, dataclasses.replace(KEY, settings=())) is None


def test_describe_reuse_is_one_line_with_the_runs_figures(store: Store) -> None:
    run_id = add(store, started_at="2026-11-27T18:40:31.123+00:00")
    assert describe_reuse(store, run_id) == (
        f"run {run_id[:8]} (llamacpp, Q4_1, 4 threads, 64 tokens, 2 requests, 2026-11-27 18:40 UTC)"
    )
    other = add(store, params={"threads": 1}, quant=None, started_at="2026-05-01T10:00:00Z")
    assert describe_reuse(store, other) == (
        f"run {other[:8]} (llamacpp, 1 thread, 64 tokens, 2 requests, 2026-05-01 10:00 UTC)"
    )


def test_suite_hash_is_the_prompts_content_in_order(tmp_path: Path) -> None:
    bundled = load_suite()
    source = Path(__file__).parents[1] / "edgeprof" / "data" / "default.jsonl"
    copy = shutil.copyfile(source, tmp_path / "my-prompts.jsonl")
    assert suite_sha256(load_suite(str(copy))) == suite_sha256(bundled)
    assert suite_sha256(bundled[::-1]) != suite_sha256(bundled)
    assert suite_sha256(bundled[:-1]) != suite_sha256(bundled)
    renamed = write_prompts(tmp_path / "a.jsonl", [{"name": "x", "prompt": "hi"}])
    other = write_prompts(tmp_path / "b.jsonl", [{"name": "y", "prompt": "hi"}])
    assert suite_sha256(load_suite(str(renamed))) == suite_sha256(load_suite(str(other)))


@pytest.mark.model
def test_a_real_run_is_found_again_from_its_own_figures(tmp_path: Path) -> None:
    db = tmp_path / "p.db"
    with Store(db) as store:  # a known bandwidth: no ~1 s benchmark in this test
        store.upsert_device(
            {**fingerprint(SensorEnv.from_environ().sys_root), "mem_bandwidth_gbs": 10.0}
        )
    prompts = write_prompts(tmp_path / "two.jsonl", ["Say hello.", "Name three colours."])
    config = RunConfig(
        prompts=str(prompts), repetitions=1, warmup=0, max_tokens=4, idle_seconds=0.0,
        db=db, sensors=["estimate"], tdp_w=10.0,
    )  # fmt: skip
    run_id = profile(config)
    with Store(db) as store:
        (run,) = store.runs([run_id])
        params = run["params"]
        threads = max(1, os.cpu_count() or 1)  # what llama.cpp is given without `threads`
        assert params["threads"] == threads
        assert params["suite_sha256"] == suite_sha256(load_suite(str(prompts)))
        assert params["settings"] == LLAMACPP_SETTINGS
        key = RunKey(
            device_id=run["device_id"],
            backend="llamacpp",
            model_sha256=sha256_file(demo_model_path()),
            quant="Q4_1",
            threads=threads,
            max_tokens=4,
            suite_sha256=suite_sha256(load_suite(str(prompts))),
            settings=settings_key("llamacpp"),
        )
        assert reusable_run(store, key) == run_id
        assert reusable_run(store, dataclasses.replace(key, max_tokens=5)) is None
        assert f"llamacpp, Q4_1, {threads} threads, 4 tokens, 2 requests" in describe_reuse(
            store, run_id
        )


def test_a_remote_run_records_the_suite_but_not_its_settings(
    cloud_server: CloudServer, tmp_path: Path
) -> None:
    """A cloud backend's `base_url` may carry a key, which its own params() records only with
    the credentials removed: its settings are never copied into params."""
    prompts = write_prompts(tmp_path / "one.jsonl", ["Say hello."])
    config = RunConfig(
        backend="openai", model="echo", prompts=str(prompts), repetitions=1, warmup=0,
        max_tokens=4, idle_seconds=0, db=tmp_path / "p.db",
        settings={"base_url": cloud_server.base_url, "price_in_usd_per_m": 1.0,
                  "price_out_usd_per_m": 2.0, "on_device": False},
    )  # fmt: skip
    run_id = profile(config)
    with Store(tmp_path / "p.db") as store:
        (run,) = store.runs([run_id])
    assert run["params"]["suite_sha256"] == suite_sha256(load_suite(str(prompts)))
    assert "settings" not in run["params"]
