"""The SYNTHETIC offline generators: determinism, balance, sizes and the by-construction invariants."""

from __future__ import annotations

import itertools
import re
from collections import Counter

import pytest

from labscale.data import synthetic_claims as sc
from labscale.data import synthetic_dialogues as sd
from labscale.errors import InvalidParameter


def _words(text: str) -> set[str]:
    return set(re.findall(r"[a-z]+", text.lower()))


def _mentions(text: str, fact: str) -> bool:
    """Case-insensitive phrase match; numbers must match whole (so "10" is not found in "100")."""
    return re.search(r"(?<![\w.])" + re.escape(fact.lower()) + r"(?![\w]|\.\d)", text.lower()) is not None


@pytest.fixture(scope="module")
def claims():
    return sc.generate(seed=0)


@pytest.fixture(scope="module")
def dialogues():
    return sd.generate(seed=0)


# -- claims -----------------------------------------------------------------------------------------------
def test_claims_determinism():
    assert sc.generate(seed=3) == sc.generate(seed=3)
    assert sc.generate(seed=3) != sc.generate(seed=4)
    small = sc.generate(seed=3, sizes={"train": 6, "validation": 3, "test": 3})
    assert small == sc.generate(seed=3, sizes={"train": 6, "validation": 3, "test": 3})


def test_claims_sizes_and_balance(claims):
    assert {k: len(v) for k, v in claims.items()} == {"train": 600, "validation": 150, "test": 150}
    for rows in claims.values():
        assert Counter(r["label"] for r in rows) == {label: len(rows) // 3 for label in sc.LABELS}
    odd = sc.generate(seed=1, sizes={"train": 10, "test": 7})
    assert set(odd) == {"train", "test"}
    for rows in odd.values():
        counts = Counter(r["label"] for r in rows).values()
        assert max(counts) - min(counts) <= 1 and sum(counts) == len(rows)


def test_claims_unique_and_fictional(claims):
    texts = [r["claim"] for rows in claims.values() for r in rows]
    assert len(texts) == len(set(texts))
    ids = [r["id"] for rows in claims.values() for r in rows]
    assert len(ids) == len(set(ids))
    for r in claims["train"][:100]:
        name = re.search(r"(" + "|".join(sc._PREFIXES) + r")(" + "|".join(sc._SUFFIXES) + r")\b", r["claim"])
        assert name, r["claim"]  # every place name is built from the invented syllables
    assert "SYNTHETIC" in sc.ORIGIN and sc.VERSION in sc.ORIGIN


def test_claims_by_construction(claims):
    modes = Counter()
    for rows in claims.values():
        for r in rows:
            q = sc.quantity(r["meta"]["quantity"])
            value, direction = r["meta"]["value"], r["meta"]["direction"]
            opposite = "down" if direction == "up" else "up"
            claim_numbers, evidence_numbers = sc.numbers_in(r["claim"]), sc.numbers_in(r["evidence"])
            evidence_words = _words(r["evidence"])
            assert value in claim_numbers
            assert _words(r["claim"]) & q.direction_words(direction)
            assert not _words(r["claim"]) & q.direction_words(opposite)
            modes[(r["label"], r["meta"]["mode"])] += 1
            if r["label"] == "SUPPORTS":  # same value, same direction, same years
                assert value in evidence_numbers
                assert evidence_words & q.direction_words(direction)
                assert not evidence_words & q.direction_words(opposite)
                assert all(str(y) in evidence_numbers for y in r["meta"]["years"])
            elif r["label"] == "REFUTES":  # a different value, or the opposite direction
                if r["meta"]["mode"] == "different_value":
                    assert value not in evidence_numbers
                    assert r["meta"]["evidence_value"] in evidence_numbers
                    ratio = float(r["meta"]["evidence_value"]) / float(value)
                    assert ratio <= 0.5 or ratio >= 1.8  # clearly different, not a rounding difference
                    assert evidence_words & q.direction_words(direction)
                else:
                    assert r["meta"]["mode"] == "opposite_direction"
                    assert evidence_words & q.direction_words(opposite)
                    assert not evidence_words & q.direction_words(direction)
                assert all(str(y) in evidence_numbers for y in r["meta"]["years"])
            else:  # on topic, silent on the claim
                assert r["label"] == "NOT_ENOUGH_INFO"
                assert value not in evidence_numbers
                place = r["meta"]["place"]
                if r["meta"]["mode"] == "other_place":
                    assert place not in r["evidence"]
                else:
                    assert place.lower() in r["evidence"].lower()
                if r["meta"]["mode"] == "earlier_period":
                    years = [int(n) for n in evidence_numbers if len(n) == 4]
                    assert max(years) < r["meta"]["years"][0]
    for mode in ("different_value", "opposite_direction"):
        assert modes[("REFUTES", mode)] > 100
    for mode in ("description", "other_place", "earlier_period"):
        assert modes[("NOT_ENOUGH_INFO", mode)] > 50


def test_claims_bad_sizes():
    with pytest.raises(InvalidParameter, match="unknown split"):
        sc.generate(sizes={"dev": 10})
    with pytest.raises(InvalidParameter):
        sc.generate(sizes={"train": -1})
    with pytest.raises(InvalidParameter):
        sc.generate(seed=-1)


# -- dialogues --------------------------------------------------------------------------------------------
def test_dialogues_determinism():
    assert sd.generate(seed=5) == sd.generate(seed=5)
    assert sd.generate(seed=5) != sd.generate(seed=6)


def test_dialogues_sizes_and_headers(dialogues):
    assert {k: len(v) for k, v in dialogues.items()} == {"train": 300, "validation": 40, "test": 60}
    for rows in dialogues.values():
        counts = Counter(r["section_header"] for r in rows)
        assert set(counts) == set(sd.HEADERS)
        assert max(counts.values()) - min(counts.values()) <= 1
    assert {k: len(v) for k, v in sd.generate(sizes={"test": 9}).items()} == {"test": 9}
    with pytest.raises(InvalidParameter, match="unknown split"):
        sd.generate(sizes={"dev": 1})


def test_dialogues_format(dialogues):
    lengths = []
    for rows in dialogues.values():
        for r in rows:
            turns = r["dialogue"].split("\n")
            assert all(t.startswith(("Doctor: ", "Patient: ")) for t in turns)
            assert turns[0].startswith("Doctor: ")
            # turns alternate speakers
            assert all(a.split(":")[0] != b.split(":")[0] for a, b in itertools.pairwise(turns))
            lengths.append(len(r["dialogue"].split()))
            assert r["section_text"].strip() and r["section_text"][0].isupper()
    assert 30 <= min(lengths) and max(lengths) <= 160
    assert 60 <= sum(lengths) / len(lengths) <= 110
    assert "SYNTHETIC" in sd.ORIGIN


def test_dialogue_summaries_carry_the_key_facts(dialogues):
    for rows in dialogues.values():
        for r in rows:
            assert r["meta"]["facts"], r
            for fact in r["meta"]["facts"]:
                assert _mentions(r["dialogue"], fact), (fact, r["dialogue"])
                assert _mentions(r["section_text"], fact), (fact, r["section_text"])


def test_medication_names_and_doses(dialogues):
    """Independent of meta: every drug named in a MEDICATIONS dialogue is in the summary with the same dose."""
    names = [m[0] for m in sd._MEDICATIONS]
    checked = 0
    for rows in dialogues.values():
        for r in rows:
            if r["section_header"] != "MEDICATIONS":
                continue
            said = re.findall(r"(" + "|".join(names) + r"), (\d+) (milligrams|micrograms)", r["dialogue"])
            assert said
            for name, dose, unit in said:
                unit = "mg" if unit == "milligrams" else "mcg"
                assert re.search(rf"\b{name} {dose} {unit}\b", r["section_text"], re.I), (name, r["section_text"])
                checked += 1
            mentioned = {n for n in names if n in r["dialogue"].lower()}
            assert mentioned == {n for n in names if n in r["section_text"].lower()}
    assert checked > 50


def test_allergy_and_history_consistency(dialogues):
    allergens = [a for a, _ in sd._ALLERGENS]
    conditions = [c for c, _ in sd._CONDITIONS]
    for rows in dialogues.values():
        for r in rows:
            if r["section_header"] == "ALLERGY":
                in_dialogue = {
                    a
                    for a in allergens
                    if f"allergic to {a}" in r["dialogue"].lower() or f"{a} too" in r["dialogue"].lower()
                }
                in_summary = {a for a in allergens if a in r["section_text"].lower()}
                assert in_dialogue == in_summary
                if not in_dialogue:
                    assert r["section_text"] == "No known allergies."
            if r["section_header"] == "PASTMEDICALHX":
                in_summary = {c for c in conditions if c.lower() in r["section_text"].lower()}
                assert in_summary and all(c.lower() in r["dialogue"].lower() for c in in_summary)
            if r["section_header"] == "GENHX":
                assert re.search(rf"\b{r['meta']['age']}-year-old {r['meta']['sex']}\b", r["section_text"])
                assert f"I'm {r['meta']['age']}." in r["dialogue"]
