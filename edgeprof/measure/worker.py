"""The model's own process: `python -m edgeprof.measure.worker` (started by
`edgeprof.measure.isolation`, never by hand).

It imports the backend's native library before anything else (see `main`), builds the backend
from its `module:Class` path, then answers the parent's commands over a pipe: load, generate,
serve, close. Token timestamps are `time.perf_counter_ns()` here, the system-wide monotonic
clock the parent's samplers use too, so the parent attributes energy exactly as it did when
the model ran in its own process.

Messages are pickled tuples over `multiprocessing.connection.Connection` (a length prefix and
a pickle: no JSON parse per token); token events travel in batches (see `Events`) so the pipe
costs about a microsecond per token, not a system call.
"""

from __future__ import annotations

import faulthandler
import importlib
import signal
import sys
import time
from typing import Any

# Token events are sent when this many are waiting, or when the oldest is this old: the parent
# needs them only when the request ends, the batching keeps a long request's memory bounded
# and lets the parent see progress.
EVENTS_PER_MESSAGE = 256
EVENTS_MAX_AGE_NS = 100_000_000


def _preload(modules: list[str]) -> None:
    """Import the backend's native library first, before numpy or anything that pulls it in:
    two native runtimes (llama.cpp's OpenMP, numpy's OpenBLAS) loaded the other way round made
    llama.cpp's model load crash on a real machine (issue 24). A failure is left for the
    backend's own import to report with its fix."""
    for name in modules:
        try:
            importlib.import_module(name)
        except Exception:  # the backend's load reports it, with the fix
            continue


class Events:
    """Token events waiting to be sent: (t_ns, n_tokens, text) tuples."""

    def __init__(self, send: Any) -> None:
        self.send, self.first_ns = send, 0
        self.items: list[tuple[int, int, str]] = []

    def add(self, t_ns: int, n_tokens: int, text: str) -> None:
        if not self.items:
            self.first_ns = t_ns
        self.items.append((t_ns, n_tokens, text))
        if len(self.items) >= EVENTS_PER_MESSAGE or t_ns - self.first_ns >= EVENTS_MAX_AGE_NS:
            self.flush()

    def flush(self) -> None:
        if self.items:
            self.send(("ev", self.items))
            self.items = []


class Worker:
    """One backend, driven by the parent's commands."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self.backend: Any = None

    def run(self) -> None:
        while True:
            try:
                cmd, payload = self.conn.recv()
            except EOFError:  # the parent is gone: nothing to answer
                return
            try:
                if getattr(self, f"do_{cmd}")(payload) is False:
                    return
            except BaseException as e:  # every failure goes back to the parent
                self.conn.send(("error", _portable(e)))

    def do_create(self, payload: tuple[str, Any]) -> None:
        spec, options = payload
        module_name, _, class_name = spec.partition(":")
        cls = getattr(importlib.import_module(module_name), class_name)
        from edgeprof.backends.settings import parse_settings

        settings = parse_settings(cls.Settings, options.settings, owner=f"the {cls.name} backend")
        self.backend = cls(options, settings)
        self.conn.send(("created", None))

    def do_load(self, _payload: None) -> None:
        info = self.backend.load()
        # params() after the load, as the runner reads it in-process (some depend on the load)
        self.conn.send(("loaded", (info, self.backend.params())))

    def do_generate(self, request: Any) -> None:
        events = Events(self.conn.send)
        gen = self.backend.generate(request)
        try:
            while True:
                ev = next(gen)
                events.add(ev.t_ns, ev.n_tokens, ev.text)
        except StopIteration as stop:
            events.flush()
            self.conn.send(("gen", stop.value))

    def do_serve(self, payload: tuple[list[Any], int]) -> None:
        requests, concurrency = payload
        index = {id(r): i for i, r in enumerate(requests)}
        for request, result in self.backend.serve(requests, concurrency):
            result.key = None  # the parent knows its requests by their index
            self.conn.send(("served", (index[id(request)], result)))
        self.conn.send(("served_all", None))

    def do_close(self, _payload: None) -> bool:
        """Close the backend and end this process, even when closing fails: the parent waits
        for the exit, not for an answer."""
        try:
            if self.backend is not None:
                self.backend.close()
        except BaseException as e:
            self.conn.send(("error", _portable(e)))
            return False
        self.conn.send(("closed", None))
        return False


def _portable(e: BaseException) -> BaseException:
    """The exception itself when it survives pickling (edgeprof's own errors do), else a
    RuntimeError with its type and message: what the runner would have shown in-process."""
    import pickle

    if isinstance(e, KeyboardInterrupt):
        return e
    try:
        pickle.loads(pickle.dumps(e))
    except Exception:  # unpicklable: its words travel instead
        return RuntimeError(f"{type(e).__name__}: {e}")
    return e


def main(argv: list[str]) -> None:
    # argv: READ_FD WRITE_FD TRACE_PATH [MODULE ...]
    read_fd, write_fd, trace_path, *preload = argv
    # Ctrl-C reaches the whole process group: the parent decides, and stops this process.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    trace = open(trace_path, "w")  # noqa: SIM115 - open for the process's life
    faulthandler.enable(trace, all_threads=True)
    _preload(preload)
    from multiprocessing.connection import Connection

    conn_in = Connection(int(read_fd), writable=False)
    conn_out = Connection(int(write_fd), readable=False)

    class Duplex:
        recv = conn_in.recv
        send = conn_out.send

    # the parent checks that token times here and its samples there share one clock
    conn_out.send(("ready", time.get_clock_info("perf_counter").implementation))
    Worker(Duplex()).run()


if __name__ == "__main__":
    main(sys.argv[1:])
