"""Fixtures for the cloud backend tests: the canned server, and a real llama.cpp server.

tests/conftest.py loads this module as a plugin, so the fixtures reach every test by name;
test modules import only the helpers (`make_backend`, `request`, `drain`, `FAKE_KEY`).
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from edgeprof.backends import Backend, BackendOptions, Generation, Request, TokenEvent
from tests.cloudserver import CloudServer

FAKE_KEY = "sk-edgeprof-FAKE-KEY-7f3a9c1e5b"  # distinctive, to search for in files


@pytest.fixture(scope="session")
def cloud_server() -> Iterator[CloudServer]:
    server = CloudServer().start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def keyed_server() -> Iterator[CloudServer]:
    """A server that accepts only FAKE_KEY."""
    server = CloudServer(api_key=FAKE_KEY).start()
    yield server
    server.stop()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def llama_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """llama-cpp-python's OpenAI-compatible server on the demo model; yields its base URL."""
    pytest.importorskip("llama_cpp.server", reason="needs llama-cpp-python[server]")
    from edgeprof.models.files import demo_model_path

    log = tmp_path_factory.mktemp("llama-server") / "server.log"
    with serve_gguf(demo_model_path(), log) as url:
        yield url


@pytest.fixture(scope="session")
def q8_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The demo model at Q8_0 (edgeprof quantize) behind llama-cpp-python's server on
    loopback: the task-quality and routing tests' "cloud"; its /v1 URL."""
    pytest.importorskip("llama_cpp.server", reason="needs llama-cpp-python[server]")
    from edgeprof.models.files import demo_model_path
    from edgeprof.quality.quantize import quantize_model

    out = tmp_path_factory.mktemp("q8")
    result = quantize_model(demo_model_path(), ["q8_0"], out, threads=2)
    (q8,) = [f.path for f in result.files if f.type == "Q8_0"]
    with serve_gguf(q8, out / "server.log") as url:
        yield url + "/v1"


@contextlib.contextmanager
def serve_gguf(model: Path, log: Path, n_ctx: int = 1024) -> Iterator[str]:
    """llama-cpp-python's OpenAI-compatible server on `model`, on loopback; its base URL."""
    port = free_port()
    with open(log, "wb") as log_file:
        proc = subprocess.Popen(
            [sys.executable, "-m", "llama_cpp.server", "--model", str(model),
             "--host", "127.0.0.1", "--port", str(port), "--n_ctx", str(n_ctx),
             "--n_threads", "1", "--seed", "0"],
            stdout=log_file, stderr=subprocess.STDOUT, env={**os.environ},
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"llama_cpp.server exited: {log.read_text()[-2000:]}")
            try:
                if httpx.get(url + "/v1/models", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"llama_cpp.server not ready in 60 s: {log.read_text()[-2000:]}")
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def make_backend(name: str, model: str, base_url: str, **extra: Any) -> Backend:
    from edgeprof.backends import create_backend

    # the canned server (and llama.cpp's) stand in for a cloud API here, though on loopback
    extra.setdefault("on_device", False)
    extra.setdefault("price_in_usd_per_m", 5.0)
    extra.setdefault("price_out_usd_per_m", 15.0)
    return create_backend(
        name, BackendOptions(model=model, settings={"base_url": base_url, **extra})
    )


def request(content: str = "Say hello in five words.", max_tokens: int = 16) -> Request:
    messages = ({"role": "system", "content": "Be brief."}, {"role": "user", "content": content})
    return Request(prompt_id="p1", messages=messages, max_tokens=max_tokens)


def drain(backend: Backend, req: Request) -> tuple[list[TokenEvent], Generation]:
    """All events and the final Generation, as the runner consumes them."""
    events: list[TokenEvent] = []
    gen = backend.generate(req)
    while True:
        try:
            events.append(next(gen))
        except StopIteration as stop:
            return events, stop.value
