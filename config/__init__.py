"""Typed settings for the knowledge assistant (YAML defaults + environment overrides)."""

from config.settings import Settings, get_settings, reset_settings

__all__ = ["Settings", "get_settings", "reset_settings"]
