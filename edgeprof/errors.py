"""The errors edgeprof raises on purpose.

EdgeprofError                 every message names the fix; the CLI prints it as one line
├── UsageError                bad option values, malformed prompt files
├── ModelLoadError            missing, unreadable or wrong-format model files
├── SensorError               a power or resource sensor that cannot be read
├── ProfileDBError            a database that is not a profile, too new, or corrupted
├── PricingError              an unknown cloud model or a bad price
└── CloudAPIError             an endpoint that cannot be reached or refuses the key
"""

from __future__ import annotations


class EdgeprofError(Exception):
    """Base class: the message is shown to the user as `edgeprof: error: <message>`."""


class UsageError(EdgeprofError):
    pass


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
