"""SYNTHETIC climate claims with evidence, for running the fact-checking task with no download.

Everything here is **synthetic**: procedurally generated claims about measurable climate quantities at
**fictional** places (weather stations, glaciers, lakes, tide gauges, valleys, observatories, bays, mountain
passes). Place names are built from invented syllables; any resemblance to a real place is coincidental.
The data has the schema of Climate-FEVER claim-evidence pairs (``claim``, ``evidence``, ``label``) and is a
stand-in for exercising the pipeline, not a substitute for the study's data: scores on it say nothing about
real climate fact-checking.

Every claim states one fact: a quantity at a place changed in one direction by a value between two years,
e.g. "Average winter temperature at Vellmar Station rose by 1.4 °C between 1990 and 2020." The label of each
evidence sentence holds by construction:

* ``SUPPORTS``: the same fact restated in other words (same value, same direction, same period).
* ``REFUTES``: the same template family with a clearly different value (same direction), or the same value
  with the opposite direction.
* ``NOT_ENOUGH_INFO``: on topic (the same place or the same quantity) but silent on the claim: a descriptive
  fact about the place, the same quantity at another fictional place, or the same quantity at the same place
  over an earlier, non-overlapping period. It never mentions the claim's value.

Labels are balanced within each split (counts differ by at most one), every claim text is unique across
the splits, and the output is a pure function of ``seed`` and the split sizes.
"""

from __future__ import annotations

import random
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import check_range
from .text import article_for_number, capitalize_first, split_sizes

#: bump when the generated text changes for a given seed
VERSION = "1"
GENERATOR = "labscale.data.synthetic_claims"
ORIGIN = f"{GENERATOR} v{VERSION} (SYNTHETIC: procedurally generated claims about fictional places)"

LABELS = ("SUPPORTS", "REFUTES", "NOT_ENOUGH_INFO")
DEFAULT_SIZES = {"train": 600, "validation": 150, "test": 150}

_PREFIXES = (
    "Vell",
    "Oster",
    "Kald",
    "Brann",
    "Thal",
    "Morv",
    "Ister",
    "Quen",
    "Sarn",
    "Dorr",
    "Elv",
    "Harr",
    "Pell",
    "Rav",
    "Wend",
    "Yarr",
    "Zel",
    "Grimm",
    "Fenn",
    "Ubr",
    "Cald",
    "Nyr",
    "Tresk",
    "Ombr",
)
_SUFFIXES = (
    "mar",
    "heim",
    "dal",
    "vik",
    "ford",
    "stead",
    "wick",
    "holm",
    "ness",
    "moor",
    "garth",
    "reach",
    "fell",
    "mere",
    "tun",
    "skar",
)

_NUMBER = re.compile(r"\d+(?:\.\d+)?")


def numbers_in(text: str) -> list[str]:
    """The numbers written in ``text`` as strings ("1.4", "350", "2020"), in order."""
    return _NUMBER.findall(text)


@dataclass(frozen=True)
class Quantity:
    """One measurable quantity: how claims about it read, and the words that carry its direction."""

    key: str
    place: str  # how the place is named, from a bare fictional name
    unit: str
    low: float
    high: float
    decimals: int
    #: direction -> words; templates carry the direction only through {verb}, {verb2}, {noun}, {adj}, {more}
    words: Mapping[str, Mapping[str, str]]
    claims: tuple[str, ...]
    restatements: tuple[str, ...]
    descriptions: tuple[str, ...]  # NEI facts about the place; {n} is a number that is never the claim value
    extras: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def direction_words(self, direction: str) -> set[str]:
        return {w.lower() for w in self.words[direction].values()}


_UP_DOWN = {
    "up": {"verb": "rose", "verb2": "increased", "noun": "increase", "adj": "higher", "more": "more"},
    "down": {"verb": "fell", "verb2": "decreased", "noun": "decrease", "adj": "lower", "more": "fewer"},
}
_UP_DOWN_MASS = {"up": {**_UP_DOWN["up"]}, "down": {**_UP_DOWN["down"], "more": "less"}}

QUANTITIES: tuple[Quantity, ...] = (
    Quantity(
        key="seasonal_temperature",
        place="{name} Station",
        unit="°C",
        low=0.3,
        high=2.6,
        decimals=1,
        words={
            "up": {"verb": "rose", "verb2": "increased", "noun": "warming", "adj": "warmer", "more": "more"},
            "down": {"verb": "fell", "verb2": "decreased", "noun": "cooling", "adj": "colder", "more": "less"},
        },
        claims=(
            "Average {season} temperature at {place} {verb} by {v} {u} between {y1} and {y2}.",
            "Mean {season} temperatures recorded at {place} {verb2} by {v} {u} from {y1} to {y2}.",
        ),
        restatements=(
            "Between {y1} and {y2}, {season}s at {place} became {v} {u} {adj} on average.",
            "Station records show a {noun} of {v} {u} in mean {season} temperature at {place} from {y1} to {y2}.",
            "From {y1} to {y2}, the {season} temperature measured at {place} {verb2} by {v} {u} on average.",
        ),
        descriptions=(
            "{place} stands at an elevation of {n} metres and has recorded temperatures since {yr}.",
            "The thermometers at {place} were moved to a new enclosure in {yr}.",
            "{place} also records wind speed, humidity and sunshine hours for the regional weather service.",
            "{place} is staffed by {n} technicians who check the instruments every week.",
        ),
        extras={"season": ("winter", "summer", "spring", "autumn")},
    ),
    Quantity(
        key="glacier_length",
        place="{name} Glacier",
        unit="metres",
        low=40,
        high=900,
        decimals=0,
        words={
            "up": {"verb": "advanced", "verb2": "grew", "noun": "advance", "adj": "longer", "more": "more"},
            "down": {"verb": "retreated", "verb2": "shrank", "noun": "retreat", "adj": "shorter", "more": "less"},
        },
        claims=(
            "The terminus of {place} {verb} by {v} {u} between {y1} and {y2}.",
            "{place} {verb2} in length by {v} {u} from {y1} to {y2}.",
        ),
        restatements=(
            "Surveys from {y1} and {y2} show that {place} became {v} {u} {adj} over that period.",
            "Between {y1} and {y2}, field measurements recorded a {noun} of {v} {u} at the terminus of {place}.",
            "Over the years {y1} to {y2}, the front of {place} {verb} a total of {v} {u}.",
        ),
        descriptions=(
            "{place} covers an area of about {n} square kilometres.",
            "{place} was first mapped by a survey team in {yr}.",
            "Meltwater from {place} feeds a river that supplies {n} mountain villages.",
            "{place} flows north from a plateau that is covered in snow for most of the year.",
        ),
    ),
    Quantity(
        key="lake_ice_days",
        place="Lake {name}",
        unit="days",
        low=5,
        high=48,
        decimals=0,
        words=_UP_DOWN,
        claims=(
            "The number of ice-covered days per year on {place} {verb} by {v} {u} between {y1} and {y2}.",
            "Annual ice cover on {place} {verb2} by {v} {u} from {y1} to {y2}.",
        ),
        restatements=(
            "From {y1} to {y2}, {place} stayed frozen for {v} {u} {more} each year than before.",
            "Ice records for {place} show an {noun} of {v} {u} in yearly ice cover between {y1} and {y2}.",
            "Between {y1} and {y2}, the yearly count of ice-covered days on {place} {verb2} by {v}.",
        ),
        descriptions=(
            "{place} has a maximum depth of {n} metres.",
            "{place} is a popular site for winter fishing among nearby villages.",
            "Volunteers have measured the ice thickness on {place} since {yr}.",
            "{place} is fed by {n} small streams that drain the surrounding hills.",
        ),
    ),
    Quantity(
        key="sea_level",
        place="the {name} tide gauge",
        unit="millimetres",
        low=20,
        high=260,
        decimals=0,
        words=_UP_DOWN,
        claims=(
            "Mean sea level at {place} {verb} by {v} {u} between {y1} and {y2}.",
            "Sea level measured at {place} {verb2} by {v} {u} from {y1} to {y2}.",
        ),
        restatements=(
            "Records from {place} show a {v} {u} {noun} in mean sea level over the years {y1} to {y2}.",
            "Between {y1} and {y2}, the average water level recorded at {place} {verb2} by {v} {u}.",
            "From {y1} to {y2}, mean sea level at {place} ended up {v} {u} {adj} than it began.",
        ),
        descriptions=(
            "{place_cap} was installed on the harbour wall in {yr}.",
            "{place_cap} records the water level every {n} minutes.",
            "{place_cap} sits beside a fishing harbour that has about {n} moorings.",
            "Data from {place} are shared with the national tide tables.",
        ),
    ),
    Quantity(
        key="valley_precipitation",
        place="the {name} Valley",
        unit="percent",
        low=3,
        high=38,
        decimals=0,
        words=_UP_DOWN_MASS,
        claims=(
            "Annual precipitation in {place} {verb2} by {v} {u} between {y1} and {y2}.",
            "Yearly rainfall in {place} {verb} by {v} {u} from {y1} to {y2}.",
        ),
        restatements=(
            "Between {y1} and {y2}, {place} received {v} {u} {more} rain and snow per year.",
            "Rain gauges in {place} recorded a {v} {u} {noun} in yearly precipitation from {y1} to {y2}.",
            "From {y1} to {y2}, total annual precipitation in {place} {verb} by {v} {u}.",
        ),
        descriptions=(
            "{place_cap} is home to about {n} farms that grow barley and potatoes.",
            "Precipitation in {place} has been measured at a network of gauges since {yr}.",
            "{place_cap} is drained by a river that floods most springs.",
            "{place_cap} lies at about {n} metres above sea level.",
        ),
    ),
    Quantity(
        key="observatory_co2",
        place="{name} Observatory",
        unit="ppm",
        low=12,
        high=85,
        decimals=0,
        words=_UP_DOWN,
        claims=(
            "Atmospheric carbon dioxide measured at {place} {verb} by {v} {u} between {y1} and {y2}.",
            "The CO2 concentration recorded at {place} {verb2} by {v} {u} from {y1} to {y2}.",
        ),
        restatements=(
            "From {y1} to {y2}, air samples at {place} showed a carbon dioxide {noun} of {v} {u}.",
            "Between {y1} and {y2}, the carbon dioxide level at {place} {verb2} by {v} {u}.",
            "Measurements at {place} put the CO2 concentration {v} {u} {adj} in {y2} than in {y1}.",
        ),
        descriptions=(
            "{place} sits at {n} metres above sea level on an isolated ridge.",
            "{place} began sampling air in {yr}.",
            "{place} also monitors methane and ozone.",
            "{place} is run by a team of {n} scientists and technicians.",
        ),
    ),
    Quantity(
        key="bay_sea_ice",
        place="{name} Bay",
        unit="percent",
        low=4,
        high=45,
        decimals=0,
        words={
            "up": {"verb": "grew", "verb2": "expanded", "noun": "expansion", "adj": "larger", "more": "more"},
            "down": {"verb": "shrank", "verb2": "contracted", "noun": "contraction", "adj": "smaller", "more": "less"},
        },
        claims=(
            "Late-summer sea-ice extent in {place} {verb} by {v} {u} between {y1} and {y2}.",
            "The area of summer sea ice in {place} {verb2} by {v} {u} from {y1} to {y2}.",
        ),
        restatements=(
            "Satellite images show that summer sea ice in {place} was {v} {u} {adj} in {y2} than in {y1}.",
            "Between {y1} and {y2}, late-summer ice cover in {place} {verb2} by {v} {u}.",
            "From {y1} to {y2}, sea-ice extent in {place} saw a {v} {u} {noun} at the end of summer.",
        ),
        descriptions=(
            "{place} is bordered by steep cliffs on its northern shore.",
            "{place} was charted by a naval expedition in {yr}.",
            "{place} is about {n} kilometres wide at its mouth.",
            "Seals and seabirds breed along the shores of {place}.",
        ),
    ),
    Quantity(
        key="pass_snow_days",
        place="{name} Pass",
        unit="days",
        low=4,
        high=52,
        decimals=0,
        words=_UP_DOWN,
        claims=(
            "The number of days with snow cover at {place} {verb} by {v} {u} between {y1} and {y2}.",
            "Annual snow-cover duration at {place} {verb2} by {v} {u} from {y1} to {y2}.",
        ),
        restatements=(
            "From {y1} to {y2}, snow lay on the ground at {place} for {v} {u} {more} each year.",
            "Snow surveys at {place} show an {noun} of {v} {u} in yearly snow cover between {y1} and {y2}.",
            "Between {y1} and {y2}, the yearly count of snow-covered days at {place} {verb2} by {v}.",
        ),
        descriptions=(
            "{place} crosses the range at an altitude of {n} metres.",
            "The road over {place} was paved in {yr}.",
            "{place} is closed to traffic for several weeks most winters.",
            "A weather mast at {place} has reported conditions to drivers since {yr}.",
        ),
    ),
)

_QUANTITY_BY_KEY = {q.key: q for q in QUANTITIES}

_REFUTE_FACTORS = (0.25, 0.4, 2.0, 2.5, 3.0)


def quantity(key: str) -> Quantity:
    return _QUANTITY_BY_KEY[key]


def _fmt(value: float, decimals: int) -> str:
    return f"{value:.{decimals}f}" if decimals else str(int(round(value)))


def _article_fix(text: str) -> str:
    """'a increase' -> 'an increase' (templates use 'a'/'an' before a direction noun or a number)."""
    text = re.sub(r"\ba (?=[aeiouAEIOU])", "an ", text)
    text = re.sub(r"\ban (?=[^aeiouAEIOU\W])", "a ", text)
    # "an 8 days" / "a 11 days": articles before numbers read by their spoken form
    return re.sub(r"\b(a|an) (\d+(?:\.\d+)?)", lambda m: f"{article_for_number(m.group(2))} {m.group(2)}", text)


@dataclass
class _Fact:
    quantity: Quantity
    name: str
    direction: str
    value: str
    y1: int
    y2: int
    extras: dict[str, str]

    @property
    def place(self) -> str:
        return self.quantity.place.format(name=self.name)


def _render(
    template: str,
    fact: _Fact,
    *,
    value: str | None = None,
    direction: str | None = None,
    place: str | None = None,
    y1: int | None = None,
    y2: int | None = None,
    **more: Any,
) -> str:
    q = fact.quantity
    direction = direction or fact.direction
    words = q.words[direction]
    place = place or fact.place
    text = template.format(
        place=place,
        place_cap=capitalize_first(place),
        v=value or fact.value,
        u=q.unit,
        y1=y1 or fact.y1,
        y2=y2 or fact.y2,
        **words,
        **fact.extras,
        **more,
    )
    return capitalize_first(_article_fix(text))


class _Generator:
    def __init__(self, seed: int) -> None:
        self.seed = seed
        self.claims_seen: set[str] = set()

    def names(self, rng: random.Random, k: int) -> list[str]:
        return [rng.choice(_PREFIXES) + rng.choice(_SUFFIXES) for _ in range(k)]

    def fact(self, rng: random.Random) -> _Fact:
        q = rng.choice(QUANTITIES)
        span = rng.choice((15, 20, 25, 30, 40))
        y2 = rng.randint(1985, 2023)
        y1 = y2 - span
        raw = rng.uniform(q.low, q.high)
        value = _fmt(raw, q.decimals)
        if float(value) <= 0:
            value = _fmt(q.low, q.decimals)
        extras = {k: rng.choice(v) for k, v in q.extras.items()}
        return _Fact(q, self.names(rng, 1)[0], rng.choice(("up", "down")), value, y1, y2, extras)

    def other_value(self, rng: random.Random, fact: _Fact) -> str:
        q = fact.quantity
        for factor in rng.sample(_REFUTE_FACTORS, len(_REFUTE_FACTORS)):
            candidate = _fmt(float(fact.value) * factor, q.decimals)
            if float(candidate) > 0 and candidate != fact.value:
                return candidate
        return _fmt(float(fact.value) + max(1.0, float(fact.value)), q.decimals)  # pragma: no cover

    def small_number(self, rng: random.Random, fact: _Fact) -> str:
        """A number for NEI descriptions that is never the claim's value."""
        while True:
            candidate = str(rng.choice((rng.randint(2, 60), rng.randint(120, 3800))))
            if candidate != fact.value:
                return candidate

    def example(self, rng: random.Random, label: str) -> tuple[str, str, dict[str, Any]]:
        while True:
            fact = self.fact(rng)
            claim = _render(rng.choice(fact.quantity.claims), fact)
            if claim not in self.claims_seen:
                self.claims_seen.add(claim)
                break
        meta: dict[str, Any] = {
            "quantity": fact.quantity.key,
            "place": fact.place,
            "value": fact.value,
            "direction": fact.direction,
            "years": [fact.y1, fact.y2],
            "evidence_value": None,
            "evidence_direction": None,
            "mode": None,
        }
        q = fact.quantity
        if label == "SUPPORTS":
            evidence = _render(rng.choice(q.restatements), fact)
            meta.update(evidence_value=fact.value, evidence_direction=fact.direction, mode="restatement")
        elif label == "REFUTES":
            if rng.random() < 0.5:
                other = self.other_value(rng, fact)
                evidence = _render(rng.choice(q.restatements), fact, value=other)
                meta.update(evidence_value=other, evidence_direction=fact.direction, mode="different_value")
            else:
                flipped = "down" if fact.direction == "up" else "up"
                evidence = _render(rng.choice(q.restatements), fact, direction=flipped)
                meta.update(evidence_value=fact.value, evidence_direction=flipped, mode="opposite_direction")
        else:
            mode = rng.choice(("description", "description", "other_place", "earlier_period"))
            if mode == "description":
                evidence = _render(
                    rng.choice(q.descriptions), fact, n=self.small_number(rng, fact), yr=rng.randint(1890, 1980)
                )
            elif mode == "other_place":
                other_name = fact.name
                while other_name == fact.name:
                    other_name = self.names(rng, 1)[0]
                other = self.other_value(rng, fact)
                direction = rng.choice(("up", "down"))
                evidence = _render(
                    rng.choice(q.claims), fact, value=other, direction=direction, place=q.place.format(name=other_name)
                )
                meta.update(evidence_value=other, evidence_direction=direction)
            else:
                span = fact.y2 - fact.y1
                y2 = fact.y1 - rng.randint(1, 10)
                other = self.other_value(rng, fact)
                direction = rng.choice(("up", "down"))
                evidence = _render(rng.choice(q.claims), fact, value=other, direction=direction, y1=y2 - span, y2=y2)
                meta.update(evidence_value=other, evidence_direction=direction)
            meta["mode"] = mode
            assert fact.value not in numbers_in(evidence)
        return claim, evidence, meta

    def split(self, name: str, size: int) -> list[dict[str, Any]]:
        rng = random.Random(f"synthetic_claims:v{VERSION}:{self.seed}:{name}")
        labels = [LABELS[i % len(LABELS)] for i in range(size)]
        rng.shuffle(labels)
        rows = []
        for i, label in enumerate(labels):
            claim, evidence, meta = self.example(rng, label)
            rows.append(
                {"id": f"synclaim-{name}-{i:05d}", "claim": claim, "evidence": evidence, "label": label, "meta": meta}
            )
        return rows


def generate(seed: int = 0, sizes: Mapping[str, int] | None = None) -> dict[str, list[dict[str, Any]]]:
    """SYNTHETIC claim-evidence splits: ``{split: [{"id", "claim", "evidence", "label", "meta"}, ...]}``.

    ``sizes`` maps split names to sizes (default :data:`DEFAULT_SIZES`, i.e. 600 / 150 / 150); the same
    ``seed`` and sizes always give the same rows.
    """
    check_range("seed", seed, 0, None, integer=True)
    sizes = split_sizes(sizes, DEFAULT_SIZES, 100_000)
    generator = _Generator(seed)
    return {name: generator.split(name, sizes[name]) for name in DEFAULT_SIZES if name in sizes}
