"""Small English helpers shared by the synthetic-data generators."""

from __future__ import annotations


def article_for_number(number: int | float | str) -> str:
    """"an" when the number's spoken form starts with a vowel sound (eight, eleven, eighteen, eighty...), else "a"."""
    integer = str(number).split(".")[0]
    return "an" if integer.startswith("8") or integer in ("11", "18") else "a"


def capitalize_first(text: str) -> str:
    """The text with its first character upper-cased and the rest untouched (unlike ``str.capitalize``)."""
    return text[:1].upper() + text[1:]
