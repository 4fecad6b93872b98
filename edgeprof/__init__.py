"""edgeprof: should this AI feature run on the device or in the cloud? Measure it."""

__version__ = "0.1.0"
