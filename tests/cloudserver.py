"""A small streaming chat server for the cloud backends' error paths and the client benchmark.

It speaks OpenAI's /v1/chat/completions and Anthropic's /v1/messages SSE formats with canned
text, no model. The request's model name chooses the behaviour, as a query string:

    chunks=8          content chunks to send            tpc=1        tokens each chunk carries
    delay_ms=0        pause between chunks              usage=1      send usage (if asked for)
    fail=429          fail the first `fail_times` (1) attempts with this status
    retry_after=1     ...and send this Retry-After      cut_after=N  drop the connection after N
    bad_json_at=N     send a malformed chunk as chunk N cached=0     cached prompt tokens
    id=anything       a fresh attempt counter (attempts are counted per model string)
    timings=1         llama-server's `timings` on each OpenAI chunk (1 ms per token)
    logprobs=1        OpenAI's `logprobs` on each chunk, when asked for (`canned_logprobs`)
    refuse_logprobs=400  refuse a request that asks for `logprobs` with this status
    refusal_padding=0    ...naming this many characters of other fields' errors first

Run it alone with `python tests/cloudserver.py --port 8123`.
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


def prompt_tokens(messages: list[dict[str, Any]]) -> int:
    """The server's token count for a prompt: words plus three per message."""
    return sum(len(str(m.get("content", "")).split()) + 3 for m in messages)


def chunk_text(i: int) -> str:
    return f" w{i}"


def canned_logprobs(i: int, k: int) -> tuple[float, list[float]]:
    """Token i's log-probability and the k best at its step (itself first): -0.1 (i + 1), then
    -2, -3, ... for the alternatives."""
    chosen = -0.1 * (i + 1)
    return chosen, [chosen, *(-2.0 - j for j in range(k - 1))]


def scenario(model: str) -> dict[str, int]:
    defaults = {"chunks": 8, "tpc": 1, "delay_ms": 0, "usage": 1, "fail": 0, "fail_times": 1,
                "retry_after": -1, "cut_after": -1, "bad_json_at": -1, "cached": 0,
                "timings": 0, "logprobs": 0, "refuse_logprobs": 0,
                "refusal_padding": 0}  # fmt: skip
    opts = dict(defaults)
    for key, values in parse_qs(model).items():
        if key in defaults:
            opts[key] = int(values[-1])
    return opts


class CloudServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128

    def __init__(self, port: int = 0, api_key: str | None = None) -> None:
        super().__init__(("127.0.0.1", port), _Handler)
        self.api_key = api_key
        self.lock = threading.Lock()
        self.attempts: dict[str, int] = {}
        self.attempt_times: dict[str, list[float]] = {}
        self.bodies: list[dict[str, Any]] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.props: dict[str, Any] | None = None  # llama-server's GET /props, when set
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def start(self) -> CloudServer:
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()

    def handle_error(self, request: Any, client_address: Any) -> None:
        import sys

        if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            super().handle_error(request, client_address)  # a client hanging up is expected

    def reset_stats(self) -> None:
        with self.lock:
            self.max_in_flight = self.in_flight


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # as real servers do; else small chunks wait for ACKs
    server: CloudServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    # -- plumbing ------------------------------------------------------------------------
    def _json(self, status: int, obj: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))

    def _authorized(self) -> bool:
        want = self.server.api_key
        if want is None:
            return True
        got = self.headers.get("x-api-key") or self.headers.get("authorization", "")
        if got in (want, f"Bearer {want}"):
            return True
        self._json(401, {"error": {"message": "invalid api key", "type": "auth"}})
        return False

    def do_GET(self) -> None:
        if not self._authorized():
            return
        path = urlsplit(self.path).path
        if path in ("/v1/models", "/models"):
            self._json(200, {"object": "list", "data": [{"id": "canned", "object": "model"}]})
        elif path == "/props" and self.server.props is not None:
            self._json(200, self.server.props)
        elif path == "/stats":
            with self.server.lock:
                stats = {
                    "max_in_flight": self.server.max_in_flight,
                    "attempts": self.server.attempts,
                }
            self._json(200, stats)
        else:
            self._json(404, {"error": {"message": "not found"}})

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))))
        if not self._authorized():
            return
        srv = self.server
        model = str(body.get("model", ""))
        opts = scenario(model)
        with srv.lock:
            srv.bodies.append(body)
            n = srv.attempts[model] = srv.attempts.get(model, 0) + 1
            srv.attempt_times.setdefault(model, []).append(time.monotonic())
        if opts["refuse_logprobs"] and "logprobs" in body:
            message = "x" * opts["refusal_padding"] + "logprobs is not supported with this model"
            self._json(opts["refuse_logprobs"], {"error": {"message": message}})
            return
        if opts["fail"] and n <= opts["fail_times"]:
            headers = {"Retry-After": str(opts["retry_after"])} if opts["retry_after"] >= 0 else {}
            self._json(opts["fail"], {"error": {"message": f"canned {opts['fail']}"}}, headers)
            return
        anthropic = urlsplit(self.path).path.rstrip("/").endswith("/messages")
        with srv.lock:
            srv.in_flight += 1
            srv.max_in_flight = max(srv.max_in_flight, srv.in_flight)
        try:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            events = (_anthropic_events if anthropic else _openai_events)(body, opts)
            delay = opts["delay_ms"] / 1000.0
            for kind, payload in events:
                if kind == "cut":
                    self.wfile.flush()
                    self.close_connection = True
                    return  # no terminating chunk: the client sees a broken body
                if kind == "sleep":
                    if delay:
                        time.sleep(delay)
                    continue
                self._chunk(payload)
            self.wfile.write(b"0\r\n\r\n")
        finally:
            with srv.lock:
                srv.in_flight -= 1


def _sse(obj: Any, event: str | None = None) -> bytes:
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {json.dumps(obj, separators=(',', ':'))}\n\n".encode()


def _openai_events(body: dict[str, Any], o: dict[str, int]) -> list[tuple[str, bytes]]:
    base = {"id": "chatcmpl-canned", "object": "chat.completion.chunk", "created": 0,
            "model": body.get("model")}  # fmt: skip
    out: list[tuple[str, bytes]] = [
        ("data", _sse({**base, "choices": [{"index": 0, "delta": {"role": "assistant"}}]}))
    ]
    for i in range(o["chunks"]):
        if i == o["cut_after"]:
            return [*out, ("cut", b"")]
        if i:
            out.append(("sleep", b""))
        if i == o["bad_json_at"]:
            out.append(("data", b'data: {"choices": [{"delta": {"content": "oops"\n\n'))
            continue
        delta = {"index": 0, "delta": {"content": chunk_text(i)}, "finish_reason": None,
                 **_logprobs(body, o, i)}  # fmt: skip
        out.append(("data", _sse({**base, "choices": [delta], **_timings(body, o, i + 1)})))
    out.append(("data", _sse({**base, "choices": [{"index": 0, "delta": {},
                                                     "finish_reason": "length"}],
                              **_timings(body, o, o["chunks"])})))  # fmt: skip
    want_usage = (body.get("stream_options") or {}).get("include_usage")
    if o["usage"] and want_usage:
        p = prompt_tokens(body.get("messages", []))
        usage = {"prompt_tokens": p, "completion_tokens": o["chunks"] * o["tpc"],
                 "total_tokens": p + o["chunks"] * o["tpc"],
                 "prompt_tokens_details": {"cached_tokens": o["cached"]}}  # fmt: skip
        out.append(("data", _sse({**base, "choices": [], "usage": usage})))
    out.append(("data", b"data: [DONE]\n\n"))
    return out


def _logprobs(body: dict[str, Any], o: dict[str, int], i: int) -> dict[str, Any]:
    """Chunk i's `logprobs`: one entry per token it carries (`canned_logprobs`)."""
    if not (o["logprobs"] and body.get("logprobs")):
        return {}
    entries = []
    for j in range(i * o["tpc"], (i + 1) * o["tpc"]):
        chosen, top = canned_logprobs(j, int(body.get("top_logprobs") or 0))
        entries.append({"token": f"t{j}", "logprob": chosen, "bytes": None,
                        "top_logprobs": [{"token": f"a{a}", "logprob": x, "bytes": None}
                                         for a, x in enumerate(top)]})  # fmt: skip
    return {"logprobs": {"content": entries, "refusal": None}}


def _timings(body: dict[str, Any], o: dict[str, int], n: int) -> dict[str, Any]:
    """llama-server's figures so far: the prompt in 2 ms, each token in 1 ms."""
    if not o["timings"]:
        return {}
    p = prompt_tokens(body.get("messages", []))
    return {"timings": {"prompt_n": p, "prompt_ms": 2.0, "predicted_n": n,
                        "predicted_ms": float(n)}}  # fmt: skip


def _anthropic_events(body: dict[str, Any], o: dict[str, int]) -> list[tuple[str, bytes]]:
    messages = list(body.get("messages", []))
    if body.get("system"):
        messages.append({"role": "system", "content": body["system"]})
    start = {"type": "message_start", "message": {
        "id": "msg_canned", "type": "message", "role": "assistant", "model": body.get("model"),
        "content": [], "stop_reason": None,
        "usage": {"input_tokens": prompt_tokens(messages), "output_tokens": 1,
                  "cache_read_input_tokens": o["cached"]}}}  # fmt: skip
    out: list[tuple[str, bytes]] = [
        ("data", _sse(start, "message_start")),
        ("data", _sse({"type": "content_block_start", "index": 0,
                       "content_block": {"type": "text", "text": ""}}, "content_block_start")),
        ("data", _sse({"type": "ping"}, "ping")),
    ]  # fmt: skip
    for i in range(o["chunks"]):
        if i == o["cut_after"]:
            return [*out, ("cut", b"")]
        if i:
            out.append(("sleep", b""))
        if i == o["bad_json_at"]:
            out.append(("data", b'event: content_block_delta\ndata: {"type": "content_\n\n'))
            continue
        delta = {"type": "content_block_delta", "index": 0,
                 "delta": {"type": "text_delta", "text": chunk_text(i)}}  # fmt: skip
        out.append(("data", _sse(delta, "content_block_delta")))
    out.append(("data", _sse({"type": "content_block_stop", "index": 0}, "content_block_stop")))
    msg_delta = {"type": "message_delta", "delta": {"stop_reason": "max_tokens"},
                 "usage": {"output_tokens": o["chunks"] * o["tpc"]}}  # fmt: skip
    if not o["usage"]:
        msg_delta.pop("usage")
    out.append(("data", _sse(msg_delta, "message_delta")))
    out.append(("data", _sse({"type": "message_stop"}, "message_stop")))
    return out


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=8123)
    ap.add_argument("--api-key")
    args = ap.parse_args()
    server = CloudServer(args.port, args.api_key)
    print(f"serving on {server.base_url}", flush=True)
    server.serve_forever()
