"""Errors the engine raises for bad input.

Every message says what was wrong and what to do about it; the command line prints
the message and exits non-zero, the Slicer module shows it in a dialog.
"""


class MSIQAError(Exception):
    """Base class: an input or a setting the engine cannot work with."""


class InputError(MSIQAError):
    """A volume or image that is missing, unreadable or of the wrong shape or content."""


class GeometryError(InputError):
    """Volumes that cannot be put on one grid (for example PET and CT that do not overlap)."""


class WeightsError(MSIQAError):
    """A weights file that is missing, malformed or fails its checksum."""


class MissingDependency(MSIQAError):
    """An optional package that a feature needs is not installed; the message names the pip extra."""


class Cancelled(MSIQAError):
    """The user cancelled an assessment; no result is returned."""


class EngineError(MSIQAError):
    """The engine's child process ended without a result: a crash, a signal, lack of memory."""
