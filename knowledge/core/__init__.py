"""The floor of the project: errors, shared records, the registry and small pure helpers.

``knowledge.core`` imports no other project package, so every layer may import it (see
``ARCHITECTURE.md``): :mod:`knowledge.core.errors` (the error hierarchy), :mod:`knowledge.core.types` (the data
records that cross layers), :mod:`knowledge.core.registry` (one registry for every pluggable part),
:mod:`knowledge.core.files` (atomic writes, hashing, JSONL, version folders and pointers) and
:mod:`knowledge.core.numeric` (softmax, percentiles).
"""
