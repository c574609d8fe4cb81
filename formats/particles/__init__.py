"""Particle sets: the canonical table, the format registry and one module per tool."""
