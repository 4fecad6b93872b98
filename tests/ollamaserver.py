"""A small Ollama stand-in for the native backend's tests: a real HTTP server on loopback that
speaks Ollama's documented API (docs/api.md in ollama/ollama) with canned text, no model.

    GET  /api/version   {"version": ...}
    GET  /api/tags      the pulled models, with their digests
    POST /api/show      a pulled model's details and Modelfile; 404 for any other
    POST /api/chat      newline-delimited JSON: one line per chunk, then the final line with
                        done, done_reason and the durations in nanoseconds; 404 as Ollama sends
                        it for a model that is not pulled

The server's own figures are chosen, not measured: it sleeps `PROMPT_S` before the first chunk
and `CHUNK_S` before each other, and reports those as prompt_eval_duration and eval_duration,
so a test knows exactly what the server said.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

PULLED = "smollm2:135m"
BLOB_SHA256 = "5a" * 32  # the GGUF layer's sha256, named in the Modelfile's FROM line
DIGEST = "f0" * 32  # the manifest's digest, as /api/tags lists it
VERSION = "0.12.3"
CHUNKS = 6
PROMPT_S = 0.020
CHUNK_S = 0.005
LOAD_NS = 1_250_000_000  # the first request waits for the model to load


def prompt_tokens(messages: list[dict[str, Any]]) -> int:
    return sum(len(str(m.get("content", "")).split()) + 3 for m in messages)


class OllamaServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, port: int = 0) -> None:
        super().__init__(("127.0.0.1", port), _Handler)
        self.bodies: list[dict[str, Any]] = []
        self.loaded = False
        self.lock = threading.Lock()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def start(self) -> OllamaServer:
        threading.Thread(target=self.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server: OllamaServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _json(self, status: int, obj: Any) -> None:
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        if self.path == "/api/version":
            self._json(200, {"version": VERSION})
        elif self.path == "/api/tags":
            details = {"format": "gguf", "family": "llama", "parameter_size": "134.52M",
                       "quantization_level": "Q4_1"}  # fmt: skip
            model = {"name": PULLED, "model": PULLED, "digest": DIGEST, "size": 98_000_000,
                     "details": details}  # fmt: skip
            self._json(200, {"models": [model]})
        else:
            self._json(404, {"error": "404 page not found"})

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))))
        model = str(body.get("model", ""))
        if model not in (PULLED, PULLED.split(":")[0]):
            self._json(404, {"error": f'model "{model}" not found, try pulling it first'})
            return
        if self.path == "/api/show":
            self._json(200, _show())
        elif self.path == "/api/chat":
            with self.server.lock:
                self.server.bodies.append(body)
            self._chat(body)
        else:
            self._json(404, {"error": "404 page not found"})

    def _line(self, obj: dict[str, Any]) -> None:
        data = json.dumps(obj).encode() + b"\n"
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def _chat(self, body: dict[str, Any]) -> None:
        with self.server.lock:
            load_ns = 0 if self.server.loaded else LOAD_NS
            self.server.loaded = True
        n = min(CHUNKS, int((body.get("options") or {}).get("num_predict") or CHUNKS))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-ndjson")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        base = {"model": body["model"], "created_at": "2026-12-04T18:00:00Z"}
        for i in range(n):
            time.sleep(PROMPT_S if i == 0 else CHUNK_S)
            msg = {"role": "assistant", "content": f" w{i}"}
            self._line({**base, "message": msg, "done": False})
        p = prompt_tokens(body.get("messages", []))
        self._line({
            **base, "message": {"role": "assistant", "content": ""}, "done": True,
            "done_reason": "length" if n < CHUNKS else "stop",
            "total_duration": load_ns + int((PROMPT_S + (n - 1) * CHUNK_S) * 1e9),
            "load_duration": load_ns, "prompt_eval_count": p,
            "prompt_eval_duration": int(PROMPT_S * 1e9), "eval_count": n,
            "eval_duration": int((n - 1) * CHUNK_S * 1e9),
        })  # fmt: skip
        self.wfile.write(b"0\r\n\r\n")


def _show() -> dict[str, Any]:
    return {
        "modelfile": f"# Modelfile\nFROM /root/.ollama/models/blobs/sha256-{BLOB_SHA256}\n"
        'TEMPLATE "{{ .Prompt }}"\n',
        "parameters": "",
        "template": "{{ .Prompt }}",
        "details": {
            "parent_model": "",
            "format": "gguf",
            "family": "llama",
            "families": ["llama"],
            "parameter_size": "134.52M",
            "quantization_level": "Q4_1",
        },
        "model_info": {"general.architecture": "llama", "general.parameter_count": 134515008},
    }


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser(description="the tests' Ollama stand-in, alone")
    ap.add_argument("--port", type=int, default=11434)
    args = ap.parse_args()
    server = OllamaServer(args.port)
    print(f"serving on {server.base_url}", flush=True)
    server.serve_forever()
