"""Small helpers shared by the synthetic-data generators: English wording and split sizes."""

from __future__ import annotations

from collections.abc import Mapping

from ..errors import InvalidParameter, check_range


def article_for_number(number: int | float | str) -> str:
    """ "an" when the number's spoken form starts with a vowel sound (eight, eleven, eighteen, eighty...), else "a"."""
    integer = str(number).split(".")[0]
    return "an" if integer.startswith("8") or integer in ("11", "18") else "a"


def capitalize_first(text: str) -> str:
    """The text with its first character upper-cased and the rest untouched (unlike ``str.capitalize``)."""
    return text[:1].upper() + text[1:]


def split_sizes(sizes: Mapping[str, int] | None, defaults: Mapping[str, int], maximum: int) -> dict[str, int]:
    """The requested split sizes (``defaults`` when None), each checked: a known split name, 0..``maximum`` items."""
    resolved = dict(defaults if sizes is None else sizes)
    for name, size in resolved.items():
        if name not in defaults:
            raise InvalidParameter(f"unknown split {name!r} in sizes; valid splits: {', '.join(defaults)}")
        check_range(f"size of split {name!r}", size, 0, maximum, integer=True)
    return resolved
