"""A local server's own figures beside edgeprof's client-side ones, per run.

Ollama and llama-server time each request themselves (prompt evaluation, generation); edgeprof
times it at the client, over HTTP. Both are means over the run's measured requests, rates
per request first, as `summary` does for the client's. The ratio client / server says what
the HTTP path and the client cost: 0.95 means the user sees 95 % of the speed the server
reports. `server_side` is pure (request rows in, figures out); `local_servers` reads them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from statistics import fmean
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from edgeprof.store.db import Store


@dataclass(frozen=True)
class ServerSide:
    source: str | None  # "ollama", "llama-server"; None: the server sent no timings
    n_requests: int  # measured requests that carried the server's figures
    server_prefill_tps: float | None = None
    client_prefill_tps: float | None = None
    server_decode_tps: float | None = None
    client_decode_tps: float | None = None
    # mean of (client TTFT - the server's prompt time): HTTP, queueing and the client
    ttft_overhead_s: float | None = None
    # the longest model load a request waited for, warm-ups included: the first request to a
    # server that has not loaded the model yet pays for it, and that is usually a warm-up
    server_load_s_max: float | None = None

    @property
    def prefill_ratio(self) -> float | None:
        return _ratio(self.client_prefill_tps, self.server_prefill_tps)

    @property
    def decode_ratio(self) -> float | None:
        return _ratio(self.client_decode_tps, self.server_decode_tps)

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "n_requests": self.n_requests,
            "server_prefill_tps": self.server_prefill_tps,
            "client_prefill_tps": self.client_prefill_tps,
            "prefill_ratio": self.prefill_ratio,
            "server_decode_tps": self.server_decode_tps,
            "client_decode_tps": self.client_decode_tps,
            "decode_ratio": self.decode_ratio,
            "ttft_overhead_s": self.ttft_overhead_s,
            "server_load_s_max": self.server_load_s_max,
            "figures": "server and client" if self.source else "client-side only",
        }

    def lines(self) -> list[str]:
        """What `report` prints under the runs table."""
        if self.source is None:
            return ["client-side figures only: the server reports no timings of its own"]
        out = [
            _pair("prefill", self.server_prefill_tps, self.client_prefill_tps, self.prefill_ratio),
            _pair("decode", self.server_decode_tps, self.client_decode_tps, self.decode_ratio),
        ]
        if self.ttft_overhead_s is not None:
            out.append(
                f"TTFT beyond the server's prompt time: {self.ttft_overhead_s * 1e3:.1f} ms "
                "(HTTP, queueing, client)"
            )
        if self.server_load_s_max:
            out.append(f"model load the server reported: {self.server_load_s_max:.2f} s at most")
        return out


def _ratio(client: float | None, server: float | None) -> float | None:
    return client / server if client is not None and server else None


def _pair(what: str, server: float | None, client: float | None, ratio: float | None) -> str:
    def tps(v: float | None) -> str:
        return f"{v:.1f} tok/s" if v is not None else "-"

    share = f" (client/server {ratio:.2f})" if ratio is not None else ""
    return f"{what}: server {tps(server)}, edgeprof {tps(client)}{share}"


def _rate(tokens: Any, seconds: Any) -> float | None:
    if tokens is None or not seconds or seconds <= 0:
        return None
    return float(tokens) / float(seconds)


def _mean(values: Iterable[float | None]) -> float | None:
    kept = [v for v in values if v is not None]
    return fmean(kept) if kept else None


def server_side(rows: Iterable[Mapping[str, Any]]) -> ServerSide:
    """The server's figures and edgeprof's over the same measured, successful requests."""
    answered = [r for r in rows if not r.get("error") and r.get("server_timings_source")]
    timed = [r for r in answered if not r.get("warmup")]
    if not timed:
        return ServerSide(source=None, n_requests=0)
    overheads = [
        r["ttft_s"] - r["server_prompt_s"]
        for r in timed
        if r.get("ttft_s") is not None and r.get("server_prompt_s") is not None
    ]
    loads = [r["server_load_s"] for r in answered if r.get("server_load_s") is not None]
    return ServerSide(
        source=str(timed[0]["server_timings_source"]),
        n_requests=len(timed),
        server_prefill_tps=_mean(
            _rate(r.get("server_prompt_tokens"), r.get("server_prompt_s")) for r in timed
        ),
        client_prefill_tps=_mean(r.get("prefill_tps") for r in timed),
        # every generated token over the server's generation time; edgeprof's decode rate
        # counts the tokens after the first over the time after it: close, not identical
        server_decode_tps=_mean(
            _rate(r.get("server_output_tokens"), r.get("server_decode_s")) for r in timed
        ),
        client_decode_tps=_mean(r.get("decode_tps") for r in timed),
        ttft_overhead_s=_mean(overheads),
        server_load_s_max=max(loads) if loads else None,
    )


def local_servers(store: Store, run_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Each local server's run among `run_ids`: {"process": runs.params["server"] (name, pid,
    version, or the problem that kept it unknown), "timings": its `ServerSide`}."""
    out: dict[str, dict[str, Any]] = {}
    for run in store.runs(list(run_ids)):
        params = run.get("params") or {}
        if "server" not in params or run.get("target_kind") != "device":
            continue
        run_id = str(run["id"])
        out[run_id] = {"process": params["server"], "timings": server_side(store.requests(run_id))}
    return out


def describe_process(run_id: str, process: Mapping[str, Any] | None) -> str:
    """ "local server, run 0Q3F2K1A: ollama 0.12.3, pid 4242", as report and the HTML say it."""
    p = process or {}
    name = p.get("name") or "an unidentified server"
    version = f" {p['version']}" if p.get("version") else ""
    pid = f", pid {p['pid']}" if p.get("pid") else ""
    return f"local server, run {run_id[-8:]}: {name}{version}{pid}"
