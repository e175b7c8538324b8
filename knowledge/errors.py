"""The error hierarchy under its original import path (it lives in :mod:`core.errors`).

Kept for code outside this repository that imports ``knowledge.errors``; the project imports
``core.errors``.
"""

from core.errors import *  # noqa: F401,F403
from core.errors import __all__  # noqa: F401
