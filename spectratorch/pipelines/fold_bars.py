"""Progress bars inside one fold's training, kept quiet while several processes share a cv's folds.

A bar redraws its line with carriage returns; two processes drawing bars on one terminal overwrite each other's
line. While folds are shared (:mod:`~spectratorch.pipelines.shared_folds`, in this process and in its helpers) the
bars of a fold stay off, and the per-fold log lines say how far the cv is.
"""

from __future__ import annotations

from contextlib import contextmanager

__all__ = ["bars_drawn", "fold_bar", "folds_shared"]

_shared = False


@contextmanager
def folds_shared():
    """Inside this block, :func:`fold_bar` gives bars that draw nothing.

    Example:
        >>> with folds_shared():
        ...     fold_bar(total=3).disable, fold_bar(total=3, disable=False).disable
        (True, True)
        >>> bar = fold_bar(total=3, leave=False)
        >>> bar.disable
        False
        >>> bar.close()
    """
    global _shared
    before, _shared = _shared, True
    try:
        yield
    finally:
        _shared = before


def bars_drawn() -> bool:
    """Whether a fold's bars draw here now (not while folds are shared); a Lightning trainer's bar follows it."""
    return not _shared


def fold_bar(**options):
    """``tqdm.auto.tqdm(**options)``, drawing nothing while folds are shared (:func:`folds_shared`)."""
    from tqdm.auto import tqdm

    disable = options.pop("disable", False)
    return tqdm(disable=_shared or disable, **options)
