"""Summarizing stored runs: pure metrics, energy attribution, a run's headline figures,
soak windows, pooled fleets, and what differs between runs set side by side."""
