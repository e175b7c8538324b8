"""The error hierarchy under its original import path (it lives in :mod:`knowledge.core.errors`).

Kept for code outside this repository that imports ``knowledge.errors``; the project imports
``knowledge.core.errors``.
"""

from knowledge.core.errors import *  # noqa: F401,F403
from knowledge.core.errors import __all__  # noqa: F401
