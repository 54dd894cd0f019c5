"""A griffe extension for the API reference (mkdocs.yml): ``Example:`` sections read as ``Examples:``.

Google style (and Python's napoleon) accepts both titles; griffe reads only ``Examples:`` as the section whose
doctests become code blocks, and would render ``Example:`` as prose.
"""

from __future__ import annotations

import re

import griffe

_EXAMPLE = re.compile(r"^(\s*)Example:\s*$", re.MULTILINE)


class ExampleSections(griffe.Extension):
    """Rename every ``Example:`` section title to ``Examples:`` before the docstrings are parsed."""

    def on_instance(self, *, obj: griffe.Object, **kwargs) -> None:
        if obj.docstring is not None:
            obj.docstring.value = _EXAMPLE.sub(r"\1Examples:", obj.docstring.value)
