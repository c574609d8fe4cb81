"""Tilt-series metadata: SerialEM mdoc."""
