"""Typed settings for the knowledge assistant (YAML defaults + environment overrides)."""

from config.settings import Settings, SettingsError, get_settings, reset_settings

__all__ = ["Settings", "SettingsError", "get_settings", "reset_settings"]
