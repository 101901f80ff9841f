"""Errors a user can act on. Each message says what was wrong, where, and what to do."""


class VlmfaceError(Exception):
    """Base class: the CLI prints these without a traceback."""


class SpecError(VlmfaceError):
    """A task spec, prompt template or registry entry is invalid."""


class DataError(VlmfaceError):
    """A dataset cannot be loaded (missing files, offline hub, empty set...)."""


class SampleError(VlmfaceError):
    """One sample cannot be used (corrupt image, unparseable label). Recorded, never fatal."""


class BackendError(VlmfaceError):
    """A model cannot be loaded or cannot answer what was asked."""


class PredictionsError(VlmfaceError):
    """A predictions.jsonl file breaks the contract (bad line, unknown status, no truth)."""
