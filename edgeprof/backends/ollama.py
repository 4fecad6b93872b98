"""Ollama's native chat API (`/api/chat`), streamed as newline-delimited JSON.

Native rather than Ollama's OpenAI-compatible endpoint because the last line of a native stream
carries the server's own account of the request (`load_duration`, `prompt_eval_count` and
`prompt_eval_duration`, `eval_count` and `eval_duration`, in nanoseconds), which the report
puts beside edgeprof's client-side figures. No key; default http://127.0.0.1:11434.
"""

from __future__ import annotations

import json
import re
from typing import Any, ClassVar

import httpx

from edgeprof.backends.base import ModelInfo, Request, ServerTimings
from edgeprof.backends.cloud import CloudBackend, EventDecoder
from edgeprof.backends.streaming import SSEEvent, StreamState
from edgeprof.errors import CloudAPIError

# the GGUF blob a model's Modelfile is made FROM: its file's sha256, as a llamacpp run's
_BLOB = re.compile(r"^FROM\s+\S*sha256[-:]([0-9a-f]{64})\s*$", re.MULTILINE)


class NDJSONDecoder:
    """One event per JSON line, from a byte stream fed in arbitrary pieces."""

    def __init__(self) -> None:
        self._buf = b""

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        *lines, self._buf = (self._buf + chunk).split(b"\n")
        text = (line.decode("utf-8", "replace") for line in lines if line.strip())
        return [SSEEvent("message", t) for t in text]

    def flush(self) -> list[SSEEvent]:
        rest, self._buf = self._buf, b""
        return [SSEEvent("message", rest.decode("utf-8", "replace"))] if rest.strip() else []


class OllamaBackend(CloudBackend):
    name: ClassVar[str] = "ollama"
    default_base_url: ClassVar[str] = "http://127.0.0.1:11434"
    default_key_env: ClassVar[str] = "OLLAMA_API_KEY"  # only a proxy in front of it wants one
    default_provider: ClassVar[str] = "ollama"
    server_api: ClassVar[str | None] = "ollama"

    _shown: dict[str, Any] | None = None  # /api/show's answer, asked by check()

    def stream_url(self) -> str:
        return self.endpoint("/api/chat")

    def models_url(self) -> str:
        return self.endpoint("/api/tags")

    def headers(self, key: str | None) -> dict[str, str]:
        return {"Authorization": f"Bearer {key}"} if key else {}

    def check(self) -> None:
        """Ollama answers and has the model: both said before any run is recorded."""
        try:
            super().check()
        except CloudAPIError as e:
            raise CloudAPIError(f"{e}; is Ollama running? start it with `ollama serve`") from None
        self._shown = self._show()

    def decoder(self) -> EventDecoder:
        return NDJSONDecoder()

    def body(self, request: Request) -> dict[str, Any]:
        return {
            "model": self.model,
            "messages": [dict(m) for m in request.messages],
            "stream": True,
            "options": {
                "temperature": request.temperature,
                "seed": request.seed,
                "num_predict": request.max_tokens,
            },
        }

    def load(self) -> ModelInfo:
        info = super().load()
        show = self._shown if self._shown is not None else self._show()
        details: dict[str, Any] = _mapping(show.get("details"))
        model_info: dict[str, Any] = _mapping(show.get("model_info"))
        blob = _BLOB.search(str(show.get("modelfile") or ""))
        n_params = model_info.get("general.parameter_count")
        extra = {
            **info.extra,
            "ollama_digest": self._digest(),
            "ollama_format": details.get("format"),
            "ollama_parameter_size": details.get("parameter_size"),
        }
        return ModelInfo(
            target=self.model,
            sha256=blob.group(1) if blob else None,
            quant=details.get("quantization_level"),
            arch=details.get("family"),
            n_params=int(n_params) if isinstance(n_params, int) else None,
            extra=extra,
        )

    def _show(self) -> dict[str, Any]:
        """`/api/show` for the model: a model not pulled is Ollama's 404, said in one line."""
        try:
            resp = self.client().post(self.endpoint("/api/show"), json={"model": self.model})
        except httpx.HTTPError as e:
            raise CloudAPIError(
                f"cannot reach Ollama at {self.safe_base_url()} ({type(e).__name__}); "
                "start it with `ollama serve`"
            ) from None
        if resp.status_code == 404:
            raise CloudAPIError(
                f"model {self.model!r} is not pulled on the Ollama server at "
                f"{self.safe_base_url()}; run `ollama pull {self.model}`"
            )
        if resp.status_code >= 400:
            raise CloudAPIError(
                f"Ollama at {self.safe_base_url()} answered /api/show with HTTP "
                f"{resp.status_code}; check the server's log"
            )
        try:
            obj = resp.json()
        except ValueError:
            obj = {}
        return obj if isinstance(obj, dict) else {}

    def _digest(self) -> str | None:
        """The model's digest from /api/tags (the manifest's: changes when the model does)."""
        try:
            models = self.client().get(self.models_url()).json().get("models") or []
        except (httpx.HTTPError, ValueError, AttributeError):
            return None
        names = {self.model, f"{self.model}:latest"}
        for m in models:
            if isinstance(m, dict) and (m.get("name") in names or m.get("model") in names):
                return str(m.get("digest")) if m.get("digest") else None
        return None

    def on_event(self, event: SSEEvent, t_ns: int, state: StreamState) -> None:
        try:
            obj = json.loads(event.data)
        except ValueError:
            state.error = f"malformed JSON in stream line: {event.data[:80]!r}"
            return
        if not isinstance(obj, dict):
            state.error = f"unexpected stream line: {event.data[:80]!r}"
            return
        if obj.get("error"):
            state.error = f"Ollama error in stream: {obj['error']}"
            return
        content = (obj.get("message") or {}).get("content")
        if content:
            state.chunks.append((t_ns, content))
        if obj.get("done"):
            state.done = True
            state.finish_reason = "length" if obj.get("done_reason") == "length" else "stop"
            state.server_timings = ollama_timings(obj)
            if isinstance(obj.get("prompt_eval_count"), int):
                state.input_tokens = obj["prompt_eval_count"]
            if isinstance(obj.get("eval_count"), int):
                state.output_tokens = obj["eval_count"]


def ollama_timings(final: dict[str, Any]) -> ServerTimings:
    """The last line's counts and durations (nanoseconds) as the server's own figures."""

    def seconds(key: str) -> float | None:
        value = final.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            return None
        return value / 1e9

    def count(key: str) -> int | None:
        value = final.get(key)
        return value if isinstance(value, int) and not isinstance(value, bool) else None

    return ServerTimings(
        source="ollama",
        prompt_tokens=count("prompt_eval_count"),
        prompt_s=seconds("prompt_eval_duration"),
        output_tokens=count("eval_count"),
        decode_s=seconds("eval_duration"),
        load_s=seconds("load_duration"),
    )


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}
