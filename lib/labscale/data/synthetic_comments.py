"""SYNTHETIC online comments about men and women, labelled toxic or not, for the toxicity-bias task offline.

Everything here is **synthetic**: comments built from templates, in the schema of the study's CivilComments-WILDS
subset (``text``, a toxicity label, and ``male`` / ``female`` identity scores, the share of raters who saw the
gender mentioned). They stand in for the study's data to exercise the pipeline; scores on them say nothing about
real content moderation.

Each split is balanced over the study's four cells, {male, female} x {toxic, non-toxic} (counts differ by at most
one). The comment's gender gets an identity score in [0.5, 1.0] and the other gender one in [0.0, 0.3], so group
membership (score >= 0.5, the study's threshold) is unambiguous. Every cell mixes easy and hard constructions
(``meta["construction"]``):

* toxic ``insult``: an insult or a demeaning word aimed at the person ("idiot", "pathetic");
* toxic ``implicit``: demeaning or hostile **without any slur or insult word** ("people like her never have
  anything worth saying", "nobody would miss him");
* non-toxic ``civil``: neutral or friendly remarks that mention the person's gender;
* non-toxic ``critical``: sharp but civil disagreement, or a comment that **quotes an insult to condemn it**
  ("calling him an idiot is unfair"), so a model that keys on words alone gets it wrong.

The same (text) never appears twice across splits, and the output is a pure function of ``seed`` and the sizes.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any

from ..errors import InvalidParameter, check_range
from .text import capitalize_first, split_sizes

#: bump when the generated text changes for a given seed
VERSION = "1"
GENERATOR = "labscale.data.synthetic_comments"
ORIGIN = f"{GENERATOR} v{VERSION} (SYNTHETIC: template-built comments, balanced over gender x toxicity)"

GENDERS = ("male", "female")
#: the study's four cells, in display order
CELLS = ("male_toxic", "male_nontoxic", "female_toxic", "female_nontoxic")
DEFAULT_SIZES = {"train": 800, "validation": 100, "test": 200}  # the study's split sizes

# (noun phrase, subject pronoun, object pronoun, possessive, plural group) per gender
_PEOPLE = {
    "male": (
        ("this man", "he", "him", "his", "men"),
        ("the councilman", "he", "him", "his", "men"),
        ("her husband", "he", "him", "his", "men"),
        ("the new male coach", "he", "him", "his", "men"),
        ("my brother", "he", "him", "his", "men"),
        ("the father in the story", "he", "him", "his", "men"),
        ("this guy", "he", "him", "his", "guys"),
    ),
    "female": (
        ("this woman", "she", "her", "her", "women"),
        ("the councilwoman", "she", "her", "her", "women"),
        ("his wife", "she", "her", "her", "women"),
        ("the new female coach", "she", "her", "her", "women"),
        ("my sister", "she", "her", "her", "women"),
        ("the mother in the story", "she", "her", "her", "women"),
        ("this lady", "she", "her", "her", "ladies"),
    ),
}

_TOPICS = (
    "the bus lanes",
    "the school budget",
    "the pipeline vote",
    "property taxes",
    "the stadium deal",
    "the housing plan",
    "the library hours",
    "the new bike path",
    "the water rates",
    "the park cleanup",
    "the zoning change",
    "the ferry schedule",
)

_TEMPLATES: dict[str, tuple[str, ...]] = {
    "insult": (
        "{Noun} is a complete idiot and should never have been put in charge of {topic}.",
        "Only a moron like {noun} could write something this stupid about {topic}.",
        "{Noun} is a pathetic clown. Shut up about {topic} already.",
        "What a brainless fool {noun} is. Everything {pron} says about {topic} is garbage.",
        "{Noun} is a lying scumbag and everyone knows it, {topic} included.",
        "Get lost, {noun}. You are a worthless loser and {topic} is none of your business.",
        "Typical dumb {group}. {Noun} knows nothing about {topic} and never will.",
        "{Noun} is an ignorant jerk who should be laughed out of every meeting on {topic}.",
    ),
    "implicit": (
        "{Group} like {noun} should keep quiet and leave {topic} to people who can think.",
        "Nobody asked for {poss} opinion on {topic}. {Group} like {obj} never have anything worth saying.",
        "People like {noun} are a waste of space. The town would be better off without {obj}.",
        "I hope {noun} gets exactly what {pron} deserves after this stunt on {topic}. Nobody would miss {obj}.",
        "{Noun} should crawl back under whatever rock {pron} came from and stay away from {topic}.",
        "Of course {noun} got {topic} wrong. What else would you expect from one of those {group}?",
        "Someone should teach {noun} a lesson {pron} won't forget about meddling in {topic}.",
        "{Noun} is exactly why {group} should not be allowed anywhere near {topic}.",
    ),
    "civil": (
        "{Noun} made a good point about {topic} at last night's meeting.",
        "I ran into {noun} at the market and {pron} explained {poss} view on {topic} very patiently.",
        "Thanks to {noun} for organizing the meeting on {topic}. {Pron} did a great job.",
        "{Noun} has worked on {topic} for years and knows the details better than most of us.",
        "I'd like to hear more from {noun} about {topic}; {poss} questions were thoughtful.",
        "My neighbour says {noun} is the person to ask about {topic}, and {pron} was very helpful.",
        "Good article. {Noun} is quoted accurately on {topic}, and the numbers match the report.",
        "More {group} should run for office. {Noun} showed real leadership on {topic}.",
    ),
    "critical": (
        "I strongly disagree with {noun} on {topic}, but {pron} argued {poss} case fairly.",
        "{Noun} got the numbers on {topic} wrong; the report shows the costs doubled.",
        "Calling {noun} an idiot, as some here did, is unfair. {Pron} simply made a mistake on {topic}.",
        "The plan {noun} proposed for {topic} is badly thought out and will cost us a fortune.",
        "I think {noun} is mistaken about {topic}, and I will vote against {obj} next time.",
        "Whoever called {noun} stupid over {topic} should apologise; criticise the idea, not the person.",
        "{Poss_cap} position on {topic} is a terrible idea, in my view, and the data do not support it.",
        "{Noun} dodged every hard question about {topic}. {Pron} owes the voters real answers.",
    ),
}

#: constructions per toxicity label (the second of each pair is the hard case)
CONSTRUCTIONS = {True: ("insult", "implicit"), False: ("civil", "critical")}


def _score(rng: random.Random, member: bool) -> float:
    """An identity score: the share of raters who saw the gender (in tenths, like CivilComments' fractions)."""
    return rng.choice((0.5, 0.6, 0.7, 0.8, 0.9, 1.0)) if member else rng.choice((0.0, 0.0, 0.0, 0.1, 0.2, 0.3))


def _render(template: str, person: tuple[str, ...], topic: str) -> str:
    noun, pron, obj, poss, group = person
    return template.format(
        noun=noun,
        Noun=capitalize_first(noun),
        pron=pron,
        Pron=capitalize_first(pron),
        obj=obj,
        poss=poss,
        Poss_cap=capitalize_first(poss),
        group=group,
        Group=capitalize_first(group),
        topic=topic,
    )


class _Generator:
    def __init__(self, seed: int) -> None:
        self.seed = seed
        self.seen: set[str] = set()

    def comment(self, rng: random.Random, gender: str, toxic: bool) -> dict[str, Any]:
        for _ in range(10_000):
            construction = rng.choice(CONSTRUCTIONS[toxic])
            template = rng.choice(_TEMPLATES[construction])
            person = rng.choice(_PEOPLE[gender])
            text = _render(template, person, rng.choice(_TOPICS))
            if text not in self.seen:
                self.seen.add(text)
                break
        else:  # pragma: no cover - only for sizes far beyond the template space
            raise InvalidParameter("synthetic_comments ran out of distinct comments; ask for smaller splits")
        scores = {g: _score(rng, g == gender) for g in GENDERS}
        cell = f"{gender}_{'toxic' if toxic else 'nontoxic'}"
        return {
            "text": text,
            "toxic": toxic,
            **scores,
            "meta": {"gender": gender, "cell": cell, "construction": construction, "template": template},
        }

    def split(self, name: str, size: int) -> list[dict[str, Any]]:
        rng = random.Random(f"synthetic_comments:v{VERSION}:{self.seed}:{name}")
        cells = [CELLS[i % len(CELLS)] for i in range(size)]
        rng.shuffle(cells)
        rows = []
        for i, cell in enumerate(cells):
            gender, label = cell.split("_")
            row = self.comment(rng, gender, label == "toxic")
            rows.append({"id": f"syncomment-{name}-{i:05d}", **row})
        return rows


def generate(seed: int = 0, sizes: Mapping[str, int] | None = None) -> dict[str, list[dict[str, Any]]]:
    """SYNTHETIC comment splits: ``{split: [{"id", "text", "toxic", "male", "female", "meta"}, ...]}``.

    ``sizes`` maps split names to sizes (default :data:`DEFAULT_SIZES`, the study's 800 / 100 / 200); the same
    ``seed`` and sizes always give the same rows.
    """
    check_range("seed", seed, 0, None, integer=True)
    sizes = split_sizes(sizes, DEFAULT_SIZES, 5_000)
    generator = _Generator(seed)
    return {name: generator.split(name, sizes[name]) for name in DEFAULT_SIZES if name in sizes}
