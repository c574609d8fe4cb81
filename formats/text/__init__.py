"""STAR files and fast text tables (the container syntax of many formats)."""
