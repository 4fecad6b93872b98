"""`decide --device-target`: a model server on this machine (Ollama, llama-server, LM Studio,
vLLM) profiled as the device side, beside or instead of llama.cpp and ONNX Runtime.

A target is `BACKEND:MODEL[@URL]`: `ollama:llama3.2:1b` (Ollama's default address),
`openai:qwen2.5-1.5b@http://127.0.0.1:8080/v1` (any OpenAI-compatible server). Never reused:
what a server runs (its version, its settings, what else it has loaded) is not in a key.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from edgeprof.decision.config import DecideConfig, StepFn, TargetRun
from edgeprof.errors import UsageError

if TYPE_CHECKING:
    from edgeprof.decision.targets import Probe

# Where each backend's server listens unless the target says: Ollama's and llama-server's
# defaults (LM Studio's is :1234, vLLM's :8000: give them with @URL).
DEFAULT_URLS = {"ollama": "http://127.0.0.1:11434", "openai": "http://127.0.0.1:8080/v1"}
FORMAT = "BACKEND:MODEL[@URL], e.g. ollama:llama3.2:1b or openai:qwen@http://127.0.0.1:1234/v1"


@dataclass(frozen=True)
class ServerTarget:
    backend: str  # "ollama" | "openai"
    model: str
    base_url: str

    @property
    def name(self) -> str:
        return f"{self.backend} {self.model} at {self.base_url}"


def parse_server_target(ref: str) -> ServerTarget:
    """`ollama:MODEL`, `openai:MODEL@URL`: the backend before the first colon (an Ollama model
    name has its own), the URL after the last @."""
    backend, sep, rest = ref.strip().partition(":")
    model, at, url = rest.rpartition("@") if "@" in rest else (rest, "", "")
    if not sep or backend not in DEFAULT_URLS or not model.strip():
        raise UsageError(f"--device-target takes {FORMAT} (got {ref!r})")
    if at and not url.startswith(("http://", "https://")):
        raise UsageError(f"--device-target {ref!r}: the part after @ must be an http(s) URL")
    return ServerTarget(backend, model.strip(), url or DEFAULT_URLS[backend])


def check_server_targets(refs: Sequence[str], on_device: bool) -> list[ServerTarget]:
    """Every target parsed, and each on this machine (or `on_device` said so): before any
    profiling starts."""
    import httpx

    from edgeprof.backends.local_server import is_loopback_host

    targets = [parse_server_target(r) for r in refs]
    for t in targets:
        if not on_device and not is_loopback_host(httpx.URL(t.base_url).host):
            raise UsageError(
                f"--device-target {t.name}: that address is not this machine's; add "
                "--on-device if the server runs here, or compare it as a cloud with --base-url"
            )
    return targets


def profile_servers(
    config: DecideConfig, probe: Probe, db_path: Path, step: StepFn
) -> list[TargetRun]:
    """Each server, profiled live with this device's sensors, as a device target."""
    from edgeprof.decision.targets import _profile
    from edgeprof.measure.runner import RunConfig

    runs = []
    measure = {**config.measure_options(), "tdp_w": probe.tdp_w}
    for target in check_server_targets(config.device_targets, config.on_device):
        settings = {"base_url": target.base_url, "on_device": True}
        run = RunConfig(backend=target.backend, model=target.model, db=db_path, label="decide",
                        settings=settings, **measure)  # fmt: skip
        run_id = _profile(run, target.name, step)
        name = _named(db_path, run_id, target)
        runs.append(TargetRun(name, target.backend, run_id, False, f"new run {run_id}"))
    return runs


def _named(db_path: Path, run_id: str, target: ServerTarget) -> str:
    """The target as the verdict names it: by the server that answered, where it was
    identified ("llama-server qwen at http://127.0.0.1:8080/v1"), else by its API."""
    from edgeprof.store.db import Store

    with Store(db_path) as store:
        (run,) = store.runs([run_id])
    server = (run.get("params") or {}).get("server") or {}
    if not server.get("name"):
        return target.name
    return f"{server['name']} {target.model} at {target.base_url}"
