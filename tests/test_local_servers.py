"""Local servers as device targets (issue 27): where a server runs, which process serves it,
and the servers' own figures (Ollama's native stream, llama-server's `timings`).

The Ollama tests run against the tests' own Ollama stand-in (tests/ollamaserver.py), a real
HTTP server on loopback; the llama.cpp server tests are in test_local_server_e2e.py.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from edgeprof.analysis.server_side import server_side
from edgeprof.backends import BackendOptions, create_backend, register_backend, unregister_backend
from edgeprof.backends.local_server import (
    find_server,
    is_loopback_host,
    placement,
    server_name,
)
from edgeprof.backends.ollama import NDJSONDecoder, OllamaBackend, ollama_timings
from edgeprof.backends.openai_compat import OpenAIBackend, llama_server_timings
from edgeprof.errors import CloudAPIError, UsageError
from edgeprof.measure.runner import RunConfig, profile
from edgeprof.store.db import Store
from tests import ollamaserver as fake
from tests.builders import cli, write_prompts
from tests.cloud_fixtures import drain, request
from tests.cloudserver import CloudServer


@pytest.fixture(scope="module")
def ollama() -> Iterator[fake.OllamaServer]:
    server = fake.OllamaServer().start()
    yield server
    server.stop()


@pytest.fixture()
def prompts(tmp_path: Path) -> Path:
    return write_prompts(tmp_path / "two.jsonl", ["Name a colour.", "Count to three."])


# -- where a server runs -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "expected"),
    [("127.0.0.1", True), ("127.3.2.1", True), ("::1", True), ("[::1]", True),
     ("localhost", True), ("api.localhost", True), ("10.0.0.7", False),
     ("192.0.2.1", False), ("::2", False)],
)  # fmt: skip
def test_loopback_by_address(host: str, expected: bool) -> None:
    def no_lookup(*_: Any) -> list[Any]:
        raise AssertionError("an address or `localhost` needs no name lookup")

    assert is_loopback_host(host, resolve=no_lookup) is expected


def test_a_name_is_loopback_only_when_every_address_is() -> None:
    def resolver(addresses: list[str]) -> Any:
        return lambda *_: [(2, 1, 6, "", (a, 0)) for a in addresses]

    assert is_loopback_host("box", resolve=resolver(["127.0.1.1"]))
    assert is_loopback_host("box", resolve=resolver(["127.0.0.1", "::1"]))
    assert not is_loopback_host("box", resolve=resolver(["127.0.0.1", "192.168.1.4"]))
    assert not is_loopback_host("box", resolve=resolver([]))

    def fails(*_: Any) -> Any:
        raise OSError("no such host")

    assert not is_loopback_host("nowhere.invalid", resolve=fails)


def test_placement_flags_win_over_the_address() -> None:
    assert placement(True, None) == "device" and placement(False, None) == "remote"
    assert placement(False, True) == "device"  # --on-device
    assert placement(True, False) == "remote"  # --remote


def test_a_loopback_url_makes_an_http_backend_a_device_target() -> None:
    local = create_backend("openai", BackendOptions(model="m", settings={
        "base_url": "http://127.0.0.1:8080/v1"}))  # fmt: skip
    assert local.kind == "device" and local.runs_locally
    # no price is looked up (the model is in no price list) and none is charged
    assert isinstance(local, OpenAIBackend) and local.price.input_usd_per_m == 0.0
    remote = create_backend("openai", BackendOptions(model="m", settings={
        "base_url": "http://127.0.0.1:8080/v1", "on_device": False,
        "price_in_usd_per_m": 1.0, "price_out_usd_per_m": 2.0}))  # fmt: skip
    assert remote.kind == "remote"
    # the class default is untouched: other instances are not changed by one
    assert OpenAIBackend.kind == "remote"
    far = create_backend("openai", BackendOptions(model="m", settings={
        "base_url": "http://192.0.2.1:8000/v1", "on_device": True}))  # fmt: skip
    assert far.kind == "device"


def test_a_device_target_records_no_credentials_in_its_settings() -> None:
    b = create_backend("openai", BackendOptions(model="m", settings={
        "base_url": "http://user:s3cret@127.0.0.1:8080/v1?key=s3cret"}))  # fmt: skip
    assert b.kind == "device"
    assert "s3cret" not in json.dumps(b.settings.__dict__) and "s3cret" not in str(b.params())


@pytest.mark.parametrize(
    ("proc_name", "cmdline", "expected"),
    [
        ("python3", ["python3", "-m", "llama_cpp.server", "--model", "x.gguf"],
         "python -m llama_cpp.server"),
        ("ollama", ["/usr/local/bin/ollama", "serve"], "ollama"),
        ("llama-server", ["./build/bin/llama-server", "-m", "m.gguf"], "llama-server"),
        ("python", ["python", "-m", "vllm.entrypoints.openai.api_server"], "vllm"),
        ("vllm", ["/venv/bin/vllm", "serve", "Qwen/Qwen2.5-1.5B"], "vllm"),
        ("lms", ["lms", "server", "start"], "lms"),
        ("LM Studio", ["/Applications/LM Studio.app/Contents/MacOS/LM Studio"], "LM Studio"),
        ("python", ["python", "-m", "mlx_lm.server"], "mlx_lm.server"),
        ("node", ["node", "server.js"], "node"),  # unknown: the process's own name
        ("helms", ["helms"], "helms"),  # "lms" only as a whole word
    ],
)  # fmt: skip
def test_servers_are_named_from_their_process(
    proc_name: str, cmdline: list[str], expected: str
) -> None:
    assert server_name(proc_name, cmdline) == expected


def test_the_listening_process_is_found_by_its_port(ollama: fake.OllamaServer) -> None:
    """The stand-in listens in this very process: psutil must find this pid on its port."""
    port = ollama.server_address[1]
    found = find_server(port)
    if found.pid is None:  # a platform that hides sockets even from their owner
        pytest.skip(found.problem or "")
    assert found.pid == os.getpid() and found.problem is None
    assert found.name == server_name(psutil.Process().name(), psutil.Process().cmdline())


def test_a_port_whose_process_cannot_be_read_says_so() -> None:
    def denied(port: int) -> int | None:
        raise psutil.AccessDenied(pid=None)

    found = find_server(11434, denied)
    assert found.pid is None and found.problem is not None
    assert "not identified" in found.problem and "AccessDenied" in found.problem
    assert "edgeprof's own" in found.problem  # what was measured instead
    hidden = find_server(11434, lambda port: None)
    assert hidden.pid is None and "another user's process or a container" in str(hidden.problem)


# -- the servers' own figures --------------------------------------------------------------


def test_ollama_final_line_in_seconds() -> None:
    t = ollama_timings({"done": True, "load_duration": 1_500_000_000, "prompt_eval_count": 26,
                        "prompt_eval_duration": 130_000_000, "eval_count": 298,
                        "eval_duration": 4_470_000_000})  # fmt: skip
    assert (t.source, t.prompt_tokens, t.output_tokens) == ("ollama", 26, 298)
    assert t.load_s == pytest.approx(1.5) and t.prompt_s == pytest.approx(0.13)
    assert t.decode_s == pytest.approx(4.47)
    bad = ollama_timings({"done": True, "eval_count": True, "eval_duration": -5})
    assert bad.output_tokens is None and bad.decode_s is None and bad.prompt_s is None


def test_llama_server_timings_in_seconds() -> None:
    t = llama_server_timings({"prompt_n": 12, "prompt_ms": 30.5, "predicted_n": 64,
                              "predicted_ms": 800.0, "predicted_per_second": 80.0})  # fmt: skip
    assert (t.source, t.prompt_tokens, t.output_tokens) == ("llama-server", 12, 64)
    assert t.prompt_s == pytest.approx(0.0305) and t.decode_s == pytest.approx(0.8)
    assert t.load_s is None
    assert llama_server_timings({"prompt_ms": "fast"}).prompt_s is None


def test_llama_server_timings_arrive_with_the_stream(cloud_server: CloudServer) -> None:
    """The canned OpenAI stream with llama-server's `timings` on its chunks (`timings=1`):
    the last chunk's figures are the request's."""
    from tests.cloud_fixtures import make_backend

    b = make_backend("openai", "chunks=4&timings=1", cloud_server.base_url)
    _, gen = drain(b, request())
    assert gen.error is None and gen.server_timings is not None
    assert gen.server_timings.output_tokens == 4  # the final chunk's predicted_n
    assert gen.server_timings.decode_s == pytest.approx(0.004)
    _, plain = drain(make_backend("openai", "chunks=4", cloud_server.base_url), request())
    assert plain.server_timings is None  # a server that sends none: client figures only


def test_ndjson_lines_split_anywhere() -> None:
    stream = b'{"a": 1}\n{"b":\n 2}\n\n{"c": 3}'
    for cut in range(len(stream) + 1):
        d = NDJSONDecoder()
        events = d.feed(stream[:cut]) + d.feed(stream[cut:]) + d.flush()
        assert [e.data for e in events] == ['{"a": 1}', '{"b":', " 2}", '{"c": 3}']


def test_server_side_figures_beside_edgeprof_s() -> None:
    def row(**kw: Any) -> dict[str, Any]:
        base = {"warmup": 0, "error": None, "server_timings_source": "ollama", "ttft_s": 0.05,
                "prefill_tps": 400.0, "decode_tps": 90.0, "server_prompt_tokens": 20,
                "server_prompt_s": 0.04, "server_output_tokens": 100, "server_decode_s": 1.0,
                "server_load_s": 0.0}  # fmt: skip
        return {**base, **kw}

    rows = [row(), row(decode_tps=70.0, server_decode_s=1.25, ttft_s=0.07),
            row(warmup=1, server_load_s=2.5, decode_tps=1.0),  # a warm-up: only its load
            row(error="broken", decode_tps=1.0)]  # fmt: skip
    s = server_side(rows)
    assert s.source == "ollama" and s.n_requests == 2
    assert s.server_prefill_tps == pytest.approx(500.0)  # 20 / 0.04
    assert s.server_decode_tps == pytest.approx(90.0)  # mean of 100 and 80
    assert s.client_decode_tps == pytest.approx(80.0)
    assert s.decode_ratio == pytest.approx(80.0 / 90.0)
    assert s.prefill_ratio == pytest.approx(0.8)
    assert s.ttft_overhead_s == pytest.approx(0.02)  # (0.01 + 0.03) / 2
    assert "model load the server reported: 2.50 s" in s.lines()[-1]
    assert s.server_load_s_max == 2.5  # the warm-up waited for the model to load
    lines = s.lines()
    assert "server 90.0 tok/s, edgeprof 80.0 tok/s (client/server 0.89)" in lines[1]
    none = server_side([row(server_timings_source=None)])
    assert none.source is None and none.to_dict()["figures"] == "client-side only"
    assert none.lines() == ["client-side figures only: the server reports no timings of its own"]


# -- Ollama's native backend ---------------------------------------------------------------


def _ollama(server: fake.OllamaServer, model: str = fake.PULLED) -> OllamaBackend:
    b = create_backend("ollama", BackendOptions(model=model, settings={
        "base_url": server.base_url}))  # fmt: skip
    assert isinstance(b, OllamaBackend)
    return b


def test_ollama_streams_and_records_the_server_s_figures(ollama: fake.OllamaServer) -> None:
    b = _ollama(ollama)
    assert b.kind == "device"  # on loopback, no key asked for
    b.check()
    info = b.load()
    assert info.quant == "Q4_1" and info.arch == "llama" and info.n_params == 134515008
    assert info.sha256 == fake.BLOB_SHA256  # the GGUF blob's: comparable with llamacpp runs
    assert info.extra["ollama_digest"] == fake.DIGEST
    assert info.extra["server"]["version"] == fake.VERSION
    req = request(max_tokens=4)
    events, gen = drain(b, req)
    b.close()
    assert gen.error is None and gen.text == " w0 w1 w2 w3"
    assert [e.n_tokens for e in events] == [1, 1, 1, 1] and gen.output_tokens == 4
    assert gen.finish_reason == "length" and gen.token_count_method == "api"
    assert gen.cost_usd is None  # a device target is priced by decide, not per token
    t = gen.server_timings
    assert t is not None and t.source == "ollama" and t.output_tokens == 4
    assert t.prompt_s == pytest.approx(fake.PROMPT_S) and t.decode_s == pytest.approx(0.015)
    assert (
        t.prompt_tokens == gen.input_tokens == fake.prompt_tokens([dict(m) for m in req.messages])
    )
    body = ollama.bodies[-1]
    assert body["stream"] is True and body["options"]["num_predict"] == 4
    assert body["options"]["temperature"] == 0.0


def test_a_model_not_pulled_names_ollama_pull(ollama: fake.OllamaServer) -> None:
    b = _ollama(ollama, "qwen2.5:7b")
    with pytest.raises(CloudAPIError) as e:
        b.check()  # before any run is recorded
    message = str(e.value)
    assert "`ollama pull qwen2.5:7b`" in message and "\n" not in message
    # and a request that gets the 404 anyway fails with Ollama's own words, in one line
    _, gen = drain(b, request())
    assert gen.error is not None and "not found, try pulling it first" in gen.error


def test_run_of_a_model_not_pulled_fails_before_recording(
    ollama: fake.OllamaServer, tmp_path: Path
) -> None:
    db = tmp_path / "p.db"
    res = cli("run", "--backend", "ollama", "--base-url", ollama.base_url, "--model", "phi4",
              "--db", db)  # fmt: skip
    assert res.exit_code != 0
    assert res.stderr.strip().endswith("run `ollama pull phi4`")
    assert not db.exists()  # one line, and no failed run left behind


def test_no_ollama_listening_says_how_to_start_it() -> None:
    from tests.cloud_fixtures import free_port

    b = create_backend("ollama", BackendOptions(model="m", settings={
        "base_url": f"http://127.0.0.1:{free_port()}", "timeout_s": 2}))  # fmt: skip
    with pytest.raises(CloudAPIError, match=r"cannot reach.*`ollama serve`"):
        b.check()


def test_cli_run_against_ollama_shows_both_sides(
    ollama: fake.OllamaServer, prompts: Path, tmp_path: Path
) -> None:
    db = tmp_path / "p.db"
    done = cli("run", "--backend", "ollama", "--base-url", ollama.base_url, "--model",
               fake.PULLED, "--prompts", prompts, "--repetitions", "2", "--warmup", "1",
               "--max-tokens", "6", "--idle-seconds", "0.2", "--db", db, "--json")  # fmt: skip
    assert done.exit_code == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["target_kind"] == "device" and summary["quant"] == "Q4_1"
    assert summary["energy_method"] in ("measured", "estimated", "estimated+measured")
    assert summary["j_per_output_token"] is not None
    report = cli("report", db, "--json")
    (run,) = json.loads(report.stdout)
    timings = run["server"]["timings"]
    assert timings["source"] == "ollama" and timings["n_requests"] == 4
    # the stand-in reports 6 tokens over 5 × 5 ms, and 20 ms of prompt evaluation
    assert timings["server_decode_tps"] == pytest.approx(6 / 0.025)
    with Store(db) as store:
        rows = [r for r in store.requests(run["run_id"]) if not r["warmup"]]
    assert timings["server_prefill_tps"] == pytest.approx(
        sum((r["server_prompt_tokens"] or 0) / 0.020 for r in rows) / 4
    )
    assert timings["decode_ratio"] == pytest.approx(
        timings["client_decode_tps"] / timings["server_decode_tps"]
    )
    assert run["server"]["process"]["version"] == fake.VERSION
    text = cli("report", db)
    assert text.exit_code == 0
    assert "local server, run" in text.stdout and "ollama" in text.stdout.lower()
    assert "decode: server 240.0 tok/s, edgeprof" in text.stdout
    page = tmp_path / "r.html"
    assert cli("report", db, "--html", page).exit_code == 0
    assert (
        "<h2>Local servers</h2>" in page.read_text() and "decode: server 240.0" in page.read_text()
    )
    # `run` itself says it too, after its table (on stderr: stdout is for --json)
    again = cli("run", "--backend", "ollama", "--base-url", ollama.base_url, "--model",
                fake.PULLED, "--prompts", prompts, "--repetitions", "1", "--warmup", "0",
                "--max-tokens", "6", "--idle-seconds", "0", "--db", db)  # fmt: skip
    assert again.exit_code == 0, again.stderr
    assert "decode: server 240.0 tok/s, edgeprof" in again.stderr


def test_a_run_whose_server_cannot_be_identified_still_works(
    cloud_server: CloudServer, prompts: Path, tmp_path: Path
) -> None:
    """The port's owner cannot be read (simulated: a finder that raises AccessDenied, given to
    the backend): the run completes as a device target and says what it measured instead."""

    class Hidden(OpenAIBackend):
        name = "openai-hidden"

        def __init__(self, *args: Any, **kw: Any) -> None:
            super().__init__(*args, **kw)

            def denied(port: int) -> int | None:
                raise psutil.AccessDenied(pid=None)

            self.find_listener = denied

    register_backend("openai_hidden", Hidden)
    try:
        run_id = profile(RunConfig(
            backend="openai_hidden", model="chunks=4", prompts=str(prompts), repetitions=1,
            warmup=0, max_tokens=4, idle_seconds=0.2, db=tmp_path / "p.db",
            settings={"base_url": cloud_server.base_url},
        ))  # fmt: skip
    finally:
        unregister_backend("openai_hidden")
    with Store(tmp_path / "p.db") as store:
        (run,) = store.runs([run_id])
        rows = store.requests(run_id)
        sensors = store.sensors(run_id)
    assert run["status"] == "complete" and run["target_kind"] == "device"
    server = run["params"]["server"]
    assert server["pid"] is None and "AccessDenied" in server["problem"]
    assert server["memory"] == "not the server's: edgeprof's own process"
    assert all(r["energy_j"] is not None and r["error"] is None for r in rows)
    (proc,) = {s["detail"] for s in sensors if s["sensor"] == "process"}
    assert f"pid {os.getpid()}" in str(proc)  # this process, as said
    report = cli("report", tmp_path / "p.db")
    assert "was not identified" in report.stderr and "client-side figures only" in report.stdout


def test_on_device_and_remote_are_for_http_backends(tmp_path: Path) -> None:
    both = cli("run", "--backend", "openai", "--model", "m", "--on-device", "--remote",
               "--db", tmp_path / "p.db")  # fmt: skip
    assert both.exit_code != 0 and "not both" in both.stderr
    local = cli("run", "--on-device", "--db", tmp_path / "p.db")
    assert local.exit_code != 0 and "HTTP backends" in local.stderr
    with pytest.raises(UsageError):
        from edgeprof.backends.local_server import check_on_device_flags

        check_on_device_flags(True, True)


def test_a_device_target_elsewhere_needs_on_device(tmp_path: Path) -> None:
    elsewhere = "openai:m@http://192.0.2.1:8000/v1"
    res = cli("decide", "--requests-per-day", "10", "--device", "rpi5-8gb", "--db",
              tmp_path / "p.db", "--device-target", elsewhere)  # fmt: skip
    assert res.exit_code != 0 and "--on-device" in res.stderr
    bad = cli("decide", "--requests-per-day", "10", "--device", "rpi5-8gb", "--db",
              tmp_path / "p.db", "--device-target", "llama3")  # fmt: skip
    assert bad.exit_code != 0 and "BACKEND:MODEL[@URL]" in bad.stderr


@pytest.mark.parametrize(
    ("ref", "expected"),
    [
        ("ollama:llama3.2:1b", ("ollama", "llama3.2:1b", "http://127.0.0.1:11434")),
        ("openai:qwen@http://127.0.0.1:1234/v1", ("openai", "qwen", "http://127.0.0.1:1234/v1")),
        ("openai:m", ("openai", "m", "http://127.0.0.1:8080/v1")),
    ],
)
def test_device_targets_are_parsed(ref: str, expected: tuple[str, str, str]) -> None:
    from edgeprof.decision.server_targets import parse_server_target

    t = parse_server_target(ref)
    assert (t.backend, t.model, t.base_url) == expected


@pytest.mark.parametrize("ref", ["llama3", "anthropic:claude", "ollama:", "openai:m@ftp://x"])
def test_bad_device_targets_name_the_format(ref: str) -> None:
    from edgeprof.decision.server_targets import parse_server_target

    with pytest.raises(UsageError, match="--device-target"):
        parse_server_target(ref)


def test_the_process_sampler_measures_a_server_and_its_children() -> None:
    """`SensorEnv.pid`: the RSS of a server and of the child it started (as Ollama's
    runner), summed; not this process's."""
    import subprocess
    import sys
    import time

    from edgeprof.samplers.base import SensorEnv
    from edgeprof.samplers.process import ProcessSampler

    hold = "b = bytearray({n} * 2**20); import time; time.sleep(60)"
    code = (f"import subprocess, sys; c = subprocess.Popen([sys.executable, '-c', "
            f"{hold.format(n=40)!r}]); {hold.format(n=80)}")  # fmt: skip
    server = subprocess.Popen([sys.executable, "-c", code])
    try:
        proc = psutil.Process(server.pid)
        deadline = time.monotonic() + 20
        while not (kids := proc.children()) or kids[0].memory_info().rss < 40 * 2**20:
            assert time.monotonic() < deadline, "the child did not start"
            time.sleep(0.05)
        while proc.memory_info().rss < 80 * 2**20:
            time.sleep(0.05)
        (sampler,) = ProcessSampler.discover(SensorEnv(pid=server.pid))
        readings = {r.metric: r.value for r in sampler.read()}
        expected = proc.memory_info().rss + kids[0].memory_info().rss
        assert readings["rss_bytes"] == pytest.approx(expected, rel=0.05)
        assert f"pid {server.pid} (" in sampler.detail and "children" in sampler.detail
        (own,) = ProcessSampler.discover(SensorEnv())
        mine = {r.metric: r.value for r in own.read()}["rss_bytes"]
        assert mine == pytest.approx(psutil.Process().memory_info().rss, rel=0.05)
    finally:
        for child in psutil.Process(server.pid).children(recursive=True):
            child.kill()
        server.kill()
        server.wait()


def test_llama_server_names_its_model_file_and_build(
    cloud_server: CloudServer, tmp_path: Path
) -> None:
    """llama-server's /props: the model file it serves (hashed by the runner, as a llamacpp
    run's, when readable here) and its build as the version."""
    from dataclasses import replace

    gguf = tmp_path / "model.gguf"
    gguf.write_bytes(b"GGUF" + bytes(60))
    cloud_server.props = {"model_path": str(gguf), "build_info": "b6500-abc1234"}
    try:
        b = create_backend("openai", BackendOptions(model="m", settings={
            "base_url": cloud_server.base_url}))  # fmt: skip
        assert isinstance(b, OpenAIBackend)
        b.check()
        assert b.server is not None
        # the stand-in runs in this (python) process: say it is llama-server, as psutil would
        b.server = replace(b.server, name="llama-server")
        info = b.load()
        assert info.path == str(gguf) and info.size_bytes == 64
        assert info.extra["server_model_path"] == str(gguf)
        found = b.identify_server()  # the version lookup follows the process's name
        assert found.version is None  # "python ...": no /props asked
        cloud_server.props["model_path"] = str(tmp_path / "elsewhere.gguf")  # not readable here
        info = b.load()
        assert info.path is None and info.extra["server_model_path"].endswith("elsewhere.gguf")
        from edgeprof.backends.local_server import server_version

        version, _ = server_version(b.client(), b.server_root(), "llama-server")
        assert version == "b6500-abc1234"
        b.close()
    finally:
        cloud_server.props = None


def test_decide_with_ollama_as_the_device_side(
    ollama: fake.OllamaServer, prompts: Path, tmp_path: Path
) -> None:
    res = cli("decide", "--requests-per-day", "2000", "--device", "rpi5-8gb", "--db",
              tmp_path / "p.db", "--prompts", prompts, "--max-tokens", "6", "--repetitions",
              "2", "--warmup", "0", "--idle-seconds", "0.2", "--cloud", "openai:gpt-4o-mini",
              "--device-target", f"ollama:{fake.PULLED}@{ollama.base_url}", "--json")  # fmt: skip
    assert res.exit_code == 0, res.stderr
    d = json.loads(res.stdout)
    (run,) = d["runs"]
    assert run["backend"] == "ollama" and run["target"].endswith(
        f"{fake.PULLED} at {ollama.base_url}"
    )
    assert run["target"] in d["verdict"]  # the verdict names the server as the device side
    (device,) = d["comparison"]["devices"]
    (cloud,) = d["comparison"]["clouds"]
    assert device["run_id"] == run["run_id"] and "gpt-4o-mini" in cloud["name"]
    with Store(tmp_path / "p.db") as store:
        (row,) = store.runs()
    assert row["target_kind"] == "device" and row["quant"] == "Q4_1"
    assert row["model_sha256"] == fake.BLOB_SHA256


def test_the_fallback_asks_this_user_s_processes_one_by_one() -> None:
    """Where listing every socket is refused (macOS without privileges), each of this user's
    processes is asked for its own: a socket listening here is found, a free port is not."""
    import socket

    from edgeprof.backends.local_server import own_listening_pid
    from tests.cloud_fixtures import free_port

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        assert own_listening_pid(s.getsockname()[1]) == os.getpid()
    assert own_listening_pid(free_port()) is None
