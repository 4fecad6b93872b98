"""Test backends that run in the worker process (`isolated`) and crash there on purpose: built
by the worker from their `module:Class` path (tests.crashy:...), as a plugin's would be."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Generator, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any, ClassVar

from edgeprof.backends import Generation, ModelInfo, Request, TokenEvent
from edgeprof.backends.llamacpp import LlamaCppBackend
from tests.fakes import FakeBackend, FakeSettings

MIB = 2**20


def die(how: str) -> None:
    """End this process the way native code does: abort(), a segfault, the OOM killer, exit."""
    if how == "abort":
        os.abort()
    if how == "exit":
        os._exit(3)
    os.kill(os.getpid(), {"segv": signal.SIGSEGV, "kill": signal.SIGKILL}[how])
    time.sleep(10)  # the signal lands before this returns


@dataclass(frozen=True)
class CrashSettings(FakeSettings):
    # "load"; "request": the `crash_at`-th generate call; "close": close() raises, not dies
    crash_in: str = "never"
    crash_at: int = 1
    crash_how: str = "segv"  # abort | segv | kill | exit
    alloc_mib: int = 0  # memory the model "holds" from load on, touched so that it is resident


class CrashBackend(FakeBackend):
    """The fake's timing, in the worker process, ending that process where told."""

    name: ClassVar[str] = "crashy"
    Settings: ClassVar[type[Any]] = CrashSettings
    isolated: ClassVar[bool] = True
    engine: ClassVar[str] = "crashy engine"

    @property
    def crash_settings(self) -> CrashSettings:
        assert isinstance(self.settings, CrashSettings)
        return self.settings

    def load(self) -> ModelInfo:
        s = self.crash_settings
        self.held = bytearray(b"\1" * (s.alloc_mib * MIB))
        print(f"crashy: loading, pid {os.getpid()}", file=__import__("sys").stderr, flush=True)
        if s.crash_in == "load":
            die(s.crash_how)
        info = super().load()
        # the process that loaded the model, in the run's params, for the tests to check
        return replace(info, extra={**info.extra, "model_pid": os.getpid()})

    def params(self) -> dict[str, Any]:
        return {**super().params(), "params_pid": os.getpid()}  # where params() last ran

    def generate(self, request: Request) -> Generator[TokenEvent, None, Generation]:
        s = self.crash_settings
        gen = super().generate(request)
        first = next(gen)  # counts this call
        if s.crash_in == "request" and self.calls == s.crash_at:
            die(s.crash_how)
        yield first
        return (yield from gen)

    def close(self) -> None:
        if self.crash_settings.crash_in == "close":
            raise RuntimeError("crashy: closing failed")
        super().close()


class ServeCrashLlama(LlamaCppBackend):
    """The real llama.cpp backend, whose batched decoding segfaults: `decide` with
    `--concurrency 1,2` gets a real one-at-a-time run and a crashed batched one."""

    def serve(self, requests: Sequence[Request], concurrency: int) -> Iterator[Any]:
        die("segv")
        yield from ()


class ImportCrashBackend(CrashBackend):
    """Its native library segfaults on import, in the worker, before the backend exists."""

    native_modules: ClassVar[tuple[str, ...]] = ("tests.segv_on_import",)
