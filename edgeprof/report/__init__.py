"""Showing results: number formatting, charts and the self-contained HTML report."""
