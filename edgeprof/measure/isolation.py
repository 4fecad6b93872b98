"""A device backend in a worker process of its own (`edgeprof.measure.worker`).

`WorkerBackend` stands in for the backend in the runner: the checks and the settings stay on a
copy built in this process (cheap: no native library is touched), while `load`, `generate` and
`serve` run in the worker. A crash there (a signal, an unexpected exit) becomes a
`WorkerCrashed` naming the phase and the signal, with the worker's faulthandler trace and the
tail of its stderr (the C side's last log lines); this process goes on.

Why a fresh interpreter (`subprocess`) and not `multiprocessing`: the worker must import the
backend's native library before numpy (see `worker._preload`), and a forked or spawned
multiprocessing child re-imports or inherits the parent's modules.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable, Generator, Iterator, Sequence
from pathlib import Path
from typing import Any

from edgeprof.backends.base import Backend, Generation, ModelInfo, Request, TokenEvent
from edgeprof.errors import WorkerCrashed

IN_PROCESS_ENV = "EDGEPROF_IN_PROCESS"  # "1": every backend in the profiler's own process
LOG_TAIL_BYTES = 8192
CLOSE_WAIT_S = 10.0


def in_process_requested() -> bool:
    return os.environ.get(IN_PROCESS_ENV, "").strip().lower() in ("1", "true", "yes")


def model_process_note() -> str:
    """Where device models will run, for `probe`."""
    if in_process_requested():
        return (
            f"in edgeprof's own process ({IN_PROCESS_ENV}=1): a crash of the model ends "
            "edgeprof too, and memory counts edgeprof's with the model's"
        )
    return (
        "llama.cpp and ONNX Runtime in a worker process of their own: a crash fails the run, "
        "not edgeprof; RSS and GPU memory are the worker's (--in-process to change)"
    )


def isolate(backend: Backend, in_process: bool = False) -> Backend:
    """`backend` in a worker process when its class opts in (`isolated`), else itself."""
    if in_process or in_process_requested() or not type(backend).isolated:
        return backend
    return WorkerBackend(backend)


def worker_pid(backend: Backend) -> int | None:
    """The pid whose memory is the model's: the worker's, or None (this process)."""
    return backend.pid if isinstance(backend, WorkerBackend) else None


def signal_name(returncode: int) -> str | None:
    """`SIGSEGV` for a child killed by signal 11 (returncode -11); None for a plain exit."""
    if returncode >= 0:
        return None
    try:
        return signal.Signals(-returncode).name
    except ValueError:
        return f"signal {-returncode}"


def crash_message(
    engine: str, returncode: int, phase: str, peak_rss_bytes: float | None = None
) -> str:
    """The run's one-line reason: "llama.cpp crashed (SIGSEGV) while loading the model"."""
    name = signal_name(returncode)
    if name == "SIGKILL":  # the kernel's OOM killer, most often: say how full memory was
        import psutil

        total_mib = psutil.virtual_memory().total / 2**20
        peak = f"{peak_rss_bytes / 2**20:,.0f}" if peak_rss_bytes else "unknown"
        return (
            f"{engine} was killed (SIGKILL) while {phase}, likely out of memory: "
            f"peak RSS {peak} of {total_mib:,.0f} MiB"
        )
    if name is not None:
        return f"{engine} crashed ({name}) while {phase}"
    return f"{engine}'s worker process exited unexpectedly (exit status {returncode}) while {phase}"


def tail(path: Path, limit: int = LOG_TAIL_BYTES) -> str:
    """The last `limit` bytes of a text file, from a line start; "" when it is absent."""
    try:
        with path.open("rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - limit))
            data = f.read()
    except OSError:
        return ""
    if size > limit and b"\n" in data:
        data = data.split(b"\n", 1)[1]
    return data.decode("utf-8", "replace").strip()


# perf_counter's source on each OS, all system-wide: one count for every process, so a token
# time taken in the worker and a sample time taken here are on one axis (docs/design.md).
GLOBAL_CLOCKS = (
    "clock_gettime(CLOCK_MONOTONIC)",  # Linux, the BSDs
    "mach_absolute_time()",  # macOS
    "QueryPerformanceCounter()",  # Windows
)


def check_clock(worker_clock: str) -> None:
    """The worker's perf_counter must be this process's, and a system-wide one."""
    import time

    from edgeprof.errors import UsageError

    here = time.get_clock_info("perf_counter").implementation
    if worker_clock != here or here not in GLOBAL_CLOCKS:
        raise UsageError(
            f"the model's worker process times tokens with {worker_clock}, this process its "
            f"samples with {here}: not one system-wide clock, so energy cannot be attributed "
            "to requests; run with --in-process (EDGEPROF_IN_PROCESS=1)"
        )


class WorkerBackend(Backend):
    """The runner's handle on a backend that runs in a worker process."""

    def __init__(self, local: Backend) -> None:
        super().__init__(local.options, local.settings)
        self.local = local
        self.name = local.name  # type: ignore[misc]
        self.kind = local.kind
        self.batches = local.batches  # type: ignore[misc]
        self.engine = local.engine or local.name  # type: ignore[misc]
        self.dir = Path(tempfile.mkdtemp(prefix="edgeprof-worker-"))
        self.proc: subprocess.Popen[bytes] | None = None
        self.conn: Any = None
        self.crashed: WorkerCrashed | None = None
        self.loaded_params: dict[str, Any] | None = None
        self.busy = False  # a command sent, its last answer not yet received
        # The worker's peak RSS so far (the runner's recorder), for a SIGKILL's message.
        self.peak_rss_bytes: Callable[[], float | None] = lambda: None

    # -- the parts that stay here --------------------------------------------------------

    @property
    def path(self) -> Any:  # the model file, for the runner's page-cache reading
        return getattr(self.local, "path", None)

    def check(self) -> None:
        self.local.check()

    def check_concurrency(self, requests: Sequence[Request], concurrency: int) -> dict[str, Any]:
        return self.local.check_concurrency(requests, concurrency)

    def params(self) -> dict[str, Any]:
        """The worker's backend's, once loaded; before that this process's copy's."""
        return self.loaded_params if self.loaded_params is not None else self.local.params()

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    # -- the worker ----------------------------------------------------------------------

    def start(self) -> None:
        """Start the worker and build the backend there; before the run's samplers, so that
        they measure its pid."""
        from multiprocessing.connection import Connection

        to_child_r, to_child_w = os.pipe()
        from_child_r, from_child_w = os.pipe()
        cls = type(self.local)
        trace = str(self.dir / "faulthandler.txt")
        args = [sys.executable, "-m", "edgeprof.measure.worker", str(to_child_r),
                str(from_child_w), trace, *cls.native_modules]  # fmt: skip
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
        with (self.dir / "stderr.txt").open("wb") as stderr:
            self.proc = subprocess.Popen(  # our own interpreter and module
                args, stdin=subprocess.DEVNULL, stdout=stderr, stderr=stderr,
                pass_fds=(to_child_r, from_child_w), env=env, close_fds=True,
            )  # fmt: skip
        os.close(to_child_r)
        os.close(from_child_w)
        self.conn = _Duplex(Connection(from_child_r, writable=False),
                            Connection(to_child_w, readable=False))  # fmt: skip
        mods = ", ".join(cls.native_modules)
        phase = f"starting (importing {mods})" if mods else "starting"
        try:
            check_clock(self._expect("ready", phase))
            self._call("create", (f"{cls.__module__}:{cls.__qualname__}", self.options), "starting")
        except WorkerCrashed as e:  # before the run is recorded: the message says where to look
            e.args = (f"{e.args[0]}; its trace and last log lines are in {e.files}",)
            raise

    def load(self) -> ModelInfo:
        if self.proc is None:
            self.start()
        info: ModelInfo
        info, self.loaded_params = self._call("load", None, "loading the model")
        return info

    def generate(self, request: Request) -> Generator[TokenEvent, None, Generation]:
        phase = f"answering a request (prompt {request.prompt_id[:8]})"
        self._send("generate", request, phase)
        while True:
            kind, payload = self._recv(phase)
            if kind == "ev":
                for t_ns, n_tokens, text in payload:
                    yield TokenEvent(t_ns, text, n_tokens)
            elif kind == "gen":
                generation: Generation = payload
                return generation
            else:
                self._unexpected(kind, payload)

    def serve(self, requests: Sequence[Request], concurrency: int) -> Iterator[Any]:
        phase = f"serving {len(requests)} requests {concurrency} at a time"
        requests = list(requests)
        self._send("serve", (requests, concurrency), phase)
        while True:
            kind, payload = self._recv(phase)
            if kind == "served":
                i, result = payload
                result.key = requests[i]
                yield requests[i], result
            elif kind == "served_all":
                return
            else:
                self._unexpected(kind, payload)

    def close(self) -> None:
        """Ask the worker to close the backend and exit; stop it when it will not. The folder
        with its trace and log is removed unless it crashed (the run's row points there)."""
        proc = self.proc
        # A command still in flight (Ctrl-C between two tokens): the worker would finish it,
        # blocked on a pipe nobody reads, before it saw `close`; it is stopped instead.
        if self.busy:
            self.kill()
        if proc is not None and proc.poll() is None and self.crashed is None:
            with contextlib.suppress(Exception):
                self.conn.send(("close", None))
            try:
                proc.wait(CLOSE_WAIT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        elif proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
        if self.conn is not None:
            self.conn.close()
        if self.crashed is None:
            shutil.rmtree(self.dir, ignore_errors=True)

    def kill(self) -> None:
        """Stop the worker at once (Ctrl-C: a decode step cannot be interrupted politely)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    # -- the pipe ------------------------------------------------------------------------

    def _call(self, cmd: str, payload: Any, phase: str) -> Any:
        self._send(cmd, payload, phase)
        return self._expect({"create": "created", "load": "loaded"}[cmd], phase)

    def _expect(self, kind_wanted: str, phase: str) -> Any:
        kind, payload = self._recv(phase)
        if kind != kind_wanted:
            self._unexpected(kind, payload)
        return payload

    def _send(self, cmd: str, payload: Any, phase: str) -> None:
        try:
            self.conn.send((cmd, payload))
        except OSError:  # a broken pipe: the worker is gone
            raise self._crash(phase) from None
        self.busy = True

    def _recv(self, phase: str) -> tuple[str, Any]:
        try:
            kind, payload = self.conn.recv()
        except KeyboardInterrupt:
            self.kill()
            raise
        except (EOFError, OSError):
            raise self._crash(phase) from None
        if kind in ("error", "created", "loaded", "gen", "served_all"):
            self.busy = False  # the command's last answer
        if kind == "error":
            raise payload
        return kind, payload

    def _unexpected(self, kind: str, payload: Any) -> None:
        raise RuntimeError(f"the worker answered {kind!r} out of turn ({payload!r:.200})")

    def _crash(self, phase: str) -> WorkerCrashed:
        assert self.proc is not None
        try:
            returncode = self.proc.wait(CLOSE_WAIT_S)
        except subprocess.TimeoutExpired:  # the pipe broke, the process lives: stop it
            self.proc.kill()
            returncode = self.proc.wait()
        self.crashed = WorkerCrashed(
            crash_message(self.engine, returncode, phase, self.peak_rss_bytes()),
            signal_name=signal_name(returncode),
            phase=phase,
            trace=tail(self.dir / "faulthandler.txt"),
            log=tail(self.dir / "stderr.txt"),
            files=str(self.dir),
        )
        return self.crashed


class _Duplex:
    """Two one-way connections (a pipe each way) as one."""

    def __init__(self, rx: Any, tx: Any) -> None:
        self.rx, self.tx = rx, tx

    def recv(self) -> Any:
        return self.rx.recv()

    def send(self, obj: Any) -> None:
        self.tx.send(obj)

    def close(self) -> None:
        self.rx.close()
        self.tx.close()
