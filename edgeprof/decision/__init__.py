"""Deciding: prices, device presets, the economics, the comparison of targets, and
`edgeprof decide` (profile or reuse each target, then the verdict)."""
