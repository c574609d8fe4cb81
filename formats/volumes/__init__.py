"""Volumes: MRC, EM and TIFF read into and written from ``Volume``."""
