"""The errors edgeprof raises on purpose.

EdgeprofError                 every message names the fix; the CLI prints it as one line
├── UsageError                bad option values, malformed prompt files
├── ModelLoadError            missing, unreadable or wrong-format model files
├── SensorError               a power or resource sensor that cannot be read
├── ProfileDBError            a database that is not a profile, too new, or corrupted
├── PricingError              an unknown cloud model or a bad price
├── CloudAPIError             an endpoint that cannot be reached or refuses the key
└── WorkerCrashed             the model's worker process died (a signal, an unexpected exit)
"""

from __future__ import annotations

from typing import TypeVar

_C = TypeVar("_C", bound=str)


class EdgeprofError(Exception):
    """Base class: the message is shown to the user as `edgeprof: error: <message>`."""


class UsageError(EdgeprofError):
    pass


def one_of(value: str, choices: tuple[_C, ...], setting: str) -> _C:
    """`value` as the choice it names (a Literal's member), or a UsageError listing them."""
    for choice in choices:
        if value == choice:
            return choice
    raise UsageError(f"`{setting}` must be one of {', '.join(choices)} (got {value!r})")


class ModelLoadError(EdgeprofError):
    pass


class SensorError(EdgeprofError):
    pass


class ProfileDBError(EdgeprofError):
    pass


class PricingError(EdgeprofError):
    pass


class CloudAPIError(EdgeprofError):
    pass


class WorkerCrashed(EdgeprofError):
    """The process that ran the model died (a signal, an unexpected exit): the run is `failed`
    with this one-line reason; `trace` (faulthandler's) and `log` (the worker's stderr tail, the
    C side's last lines) go with it into the run's row, `files` is the folder that keeps both."""

    def __init__(
        self,
        message: str,
        *,
        signal_name: str | None = None,
        phase: str = "",
        trace: str = "",
        log: str = "",
        files: str | None = None,
    ) -> None:
        super().__init__(message)
        self.signal_name, self.phase = signal_name, phase
        self.trace, self.log, self.files = trace, log, files
