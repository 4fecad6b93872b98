"""Measuring: one profiling session (runner), its passes, the prompt suites, and what
the device and its power setup were while it ran."""
