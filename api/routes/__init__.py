"""Thin route modules; each exposes ``router``."""
