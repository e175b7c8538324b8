"""Disambiguation backends: which meaning of a glossary term does its context support?

Importing this package registers the built-in backends (``"embedding"``); none of them loads
a model until an instance is created.
"""

from .base import (
    Disambiguator,
    TermResolution,
    available_disambiguators,
    create_disambiguator,
    decide,
    is_neutral_context,
    register_disambiguator,
    softmax,
)
from .embedding import EmbeddingDisambiguator

register_disambiguator("embedding", EmbeddingDisambiguator)

__all__ = [
    "Disambiguator",
    "EmbeddingDisambiguator",
    "TermResolution",
    "available_disambiguators",
    "create_disambiguator",
    "decide",
    "is_neutral_context",
    "register_disambiguator",
    "softmax",
]
