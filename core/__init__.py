"""The floor of the project: errors, shared records, the registry and small pure helpers.

``core`` imports no other project package, so every layer may import it (see
``ARCHITECTURE.md``): :mod:`core.errors` (the error hierarchy), :mod:`core.types` (the data
records that cross layers), :mod:`core.registry` (one registry for every pluggable part),
:mod:`core.files` (atomic writes, hashing, JSONL, version folders and pointers) and
:mod:`core.numeric` (softmax, percentiles).
"""
