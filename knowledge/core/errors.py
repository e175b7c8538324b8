"""The project's error hierarchy, in one module. HTTP status codes live only in ``api/``.

Every layer raises these (``knowledge.core`` imports nothing of the project, so everyone may import it).
``config`` alone raises its own :class:`config.settings.SettingsError` (a ``ValueError``),
because ``config`` imports no project package either; the CLI reports both the same way.
"""

from __future__ import annotations

__all__ = [
    "KBError",
    "ConfigError",
    "IngestError",
    "GlossaryError",
    "UnknownComponentError",
    "MissingExtraError",
    "IndexMismatchError",
    "IndexNotFoundError",
    "IndexDamagedError",
    "GenerationError",
    "ValidationError",
    "ConflictError",
    "OverloadedError",
]


class KBError(Exception):
    """Base of every error this project raises on purpose."""


class ConfigError(KBError):
    """A setting has a value that cannot work (the message names the setting and value)."""


class IngestError(KBError):
    """A document could not be read (the message names the file and the reason)."""

    def __init__(self, path: object, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class GlossaryError(KBError):
    """A glossary file could not be imported."""


class UnknownComponentError(KBError):
    """A registry lookup named a component that is not registered."""

    def __init__(self, kind: str, name: str, known: list[str]):
        self.kind, self.name, self.known = kind, name, known
        super().__init__(f"unknown {kind} {name!r}; known: {', '.join(sorted(known)) or 'none'}")


class MissingExtraError(KBError):
    """An optional dependency is not installed; the message names the extra to install."""

    def __init__(self, package: str, extra: str):
        super().__init__(f"{package} is not installed: pip install 'kb-assistant[{extra}]'")


class IndexMismatchError(KBError):
    """An index was built with another embedder (or dimension) than the one configured."""


class IndexNotFoundError(KBError):
    """No published index exists yet."""


class IndexDamagedError(KBError):
    """A version's files do not match its manifest (truncated, missing, other content) or do not
    load: a power cut or a disk error hit it. Readers serve the previous version instead."""


class GenerationError(KBError):
    """An LLM backend failed to produce an answer."""


class ValidationError(KBError):
    """Input to a public function is malformed (empty question, bad batch line, ...)."""


class ConflictError(KBError):
    """A change was based on a state that has changed since (someone else saved first)."""


class OverloadedError(KBError):
    """A bounded queue is full: the work was refused, try again after ``retry_after`` seconds."""

    def __init__(self, message: str, retry_after: float):
        self.retry_after = max(1.0, float(retry_after))
        super().__init__(message)
