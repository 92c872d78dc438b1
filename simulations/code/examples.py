"""One (pseudocode, code) example with its test cases, and the data-format error.

Kept apart from :mod:`.data` (SANSTYPE files, detokenization) and :mod:`.spoc` (SPoC TSVs) so
that both readers import these types without importing each other.
"""
from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DataFormatError", "TestCase", "Example"]


class DataFormatError(ValueError):
    """Malformed data; the message names the file (and line)."""


@dataclass(frozen=True)
class TestCase:
    """One test: the text fed to stdin and the exact expected stdout."""
    __test__ = False  # not a pytest class
    input: str
    output: str


@dataclass(frozen=True)
class Example:
    """One program: pseudocode ``src``, tokenized code ``tgt`` and its test cases.

    ``code`` is the original (untokenized) program body when the source data has it (SPoC).
    """
    id: str
    src: str
    tgt: str
    cases: tuple[TestCase, ...] = ()
    probid: str = ""
    code: str = ""
