"""Package errors and warnings.

Every error the user can cause subclasses a builtin, so ``except ValueError`` keeps working, and the CLI
prints its message on one line and exits non-zero without a traceback.
"""

__all__ = [
    "SpectratorchError",
    "SchemaError",
    "DataFormatError",
    "UnsafePickleError",
    "TargetError",
    "SplitError",
    "ConfigError",
    "CheckpointError",
    "no_file",
]


class SpectratorchError(Exception):
    """Base class of every error that spectratorch raises on purpose."""


class SchemaError(SpectratorchError, ValueError):
    """A dataset does not follow the documented schema (columns, channels, ids, values)."""


class DataFormatError(SpectratorchError, ValueError):
    """A file cannot be read: wrong type, truncated, ragged or empty."""


class UnsafePickleError(DataFormatError):
    """A pickle asks for something a DataFrame does not need (it could run code)."""


class TargetError(SpectratorchError, ValueError):
    """A target code or class value that the data does not have."""


class SplitError(SpectratorchError, ValueError):
    """A split that cannot be made (too few members in a class, fold out of range)."""


class ConfigError(SpectratorchError, ValueError):
    """An invalid option value or combination."""


class CheckpointError(SpectratorchError, ValueError):
    """A checkpoint that cannot be used as asked (missing, other configuration)."""


def no_file(path, kind: str, suffix: str) -> str:
    """Why ``path`` is not the file a command needs: a folder, or nothing at all.

    Example:
        >>> no_file("runs", "model file", ".onnx")  # a path that does not exist
        'runs: no such model file.'
    """
    import os

    if os.path.isdir(path):
        return f"{path}: a folder; expected a {kind} ({suffix})."
    return f"{path}: no such {kind}."
