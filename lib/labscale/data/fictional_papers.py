"""SYNTHETIC short research papers about fictional methods, with questions, for the abstention tasks offline.

Everything here is **synthetic**: each "paper" describes an invented method (name built from invented
syllables), trained on an invented corpus, by invented authors at an invented institute, with random numbers.
Any resemblance to a real method, dataset or person is coincidental. Because every name and number is drawn at
random, **no question is answerable without its document**: that is what makes the no-context abstention test
meaningful by construction (the study's "without context" condition, where the ideal abstention rate is 1.0).

A paper has three short paragraphs (method, data, results; about 120 words). Its questions come in the QASPER
answer types:

* ``extractive``: the answer is a span of the document (the corpus, the baseline, an author, a number...).
* ``abstractive``: the answer is not a span (the accuracy gain over the baseline, computed from two numbers).
* ``boolean``: "Yes"/"No" (is the code released? does the method beat the baseline?).
* ``none`` (unanswerable): a plausible question the document is silent on (parameter count, learning rate, the
  baseline's authors...); its target is "Unanswerable". Each carries a *plausible answer* of the right kind
  that does not occur in the document, as SQuAD 2.0's ``plausible_answers`` do.

Each row also records the ``evidence`` sentence (verbatim in the document) for answerable questions. Method
names are unique across all splits, so train, validation and test share no paper. The output is a pure function
of the seed and the sizes.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any

from ..errors import InvalidParameter, check_range
from .synthetic_claims import _PREFIXES, _SUFFIXES
from .text import split_sizes

#: bump when the generated text changes for a given seed
VERSION = "1"
GENERATOR = "labscale.data.fictional_papers"
ORIGIN = f"{GENERATOR} v{VERSION} (SYNTHETIC: short papers about fictional methods, datasets and authors)"

ANSWER_TYPES = ("extractive", "abstractive", "boolean", "none")
UNANSWERABLE = "Unanswerable"
#: questions per split (QASPER-style mix, see TYPE_WEIGHTS)
DEFAULT_SIZES = {"train": 600, "validation": 90, "test": 240}
#: share of each answer type, about QASPER's mix (Dasigi et al. 2021: about 52 % extractive, 24 % abstractive,
#: 14 % yes/no, 10 % unanswerable)
TYPE_WEIGHTS = {"extractive": 0.518, "abstractive": 0.242, "boolean": 0.139, "none": 0.102}
QUESTIONS_PER_PAPER = 3

_GIVEN = (
    "Ada",
    "Bram",
    "Cleo",
    "Dario",
    "Elin",
    "Farah",
    "Goran",
    "Hedda",
    "Ivo",
    "Juno",
    "Kasia",
    "Lior",
    "Mira",
    "Nils",
    "Orla",
    "Pavo",
    "Runa",
    "Soren",
    "Tilde",
    "Ulla",
    "Vesna",
    "Wim",
    "Yara",
    "Zofia",
)
_FAMILY_TAILS = ("ström", "ovic", "ane", "elli", "berg", "quist", "ard", "ington", "escu", "ayo", "oni", "ers")
_KINDS = (
    "graph neural network",
    "sequence-to-sequence model",
    "retrieval-augmented tagger",
    "contrastive encoder",
    "sparse transformer",
    "hierarchical classifier",
)
_TASKS = (
    "rumour detection",
    "dialect identification",
    "citation recommendation",
    "keyphrase extraction",
    "claim verification",
    "recipe parsing",
    "legal clause tagging",
    "question routing",
)
_DOMAINS = (
    "community forums",
    "parliamentary records",
    "museum catalogues",
    "ship logs",
    "radio transcripts",
    "court filings",
    "field notebooks",
    "patent abstracts",
)
_UNITS = ("documents", "sentences", "dialogues", "articles")
_SOURCES = (
    "a regional archive",
    "a volunteer project",
    "two public libraries",
    "a national broadcaster",
    "an online forum",
    "a university press",
)
_INSTITUTES = ("Institute", "Laboratory", "Centre", "School")


def _name(rng: random.Random) -> str:
    return rng.choice(_PREFIXES) + rng.choice(_SUFFIXES)


def _person(rng: random.Random) -> str:
    return f"{rng.choice(_GIVEN)} {rng.choice(_PREFIXES)}{rng.choice(_FAMILY_TAILS)}"


def _paper(rng: random.Random, method: str) -> dict[str, Any]:
    """The facts of one paper and its three paragraphs."""
    f: dict[str, Any] = {
        "method": method,
        "kind": rng.choice(_KINDS),
        "task": rng.choice(_TASKS),
        "domain": rng.choice(_DOMAINS),
        "author": _person(rng),
        "institute": f"{_name(rng)} {rng.choice(_INSTITUTES)}",
        "dataset": f"{_name(rng)} corpus",
        "n_items": rng.randrange(1200, 98000, 100),
        "unit": rng.choice(_UNITS),
        "source": rng.choice(_SOURCES),
        "baseline": _name(rng).upper()[:5],
        "hours": rng.randint(3, 90),
        "gpus": rng.choice((1, 2, 4, 8)),
        "released": rng.random() < 0.5,
        "year": rng.randint(1950, 2015),
    }
    while f["baseline"].lower() == method.lower():
        f["baseline"] = _name(rng).upper()[:5]
    f["accuracy"] = rng.randint(55, 93)
    gap = rng.choice((-1, 1)) * rng.randint(2, 15)
    f["baseline_accuracy"] = min(max(f["accuracy"] - gap, 30), 99)
    if f["baseline_accuracy"] == f["accuracy"]:
        f["baseline_accuracy"] -= 3
    code = (
        "The code and the trained models are publicly released."
        if f["released"]
        else "The authors have not released the code."
    )
    f["sentences"] = {
        "intro": f"We present {method}, a {f['kind']} for {f['task']} in {f['domain']}.",
        "author": f"{method} was developed by {f['author']} and colleagues at the {f['institute']}.",
        "data": (
            f"We train {method} on the {f['dataset']}, which contains {f['n_items']} {f['unit']} collected "
            f"from {f['source']}."
        ),
        "years": f"The {f['unit']} date from {f['year']} onwards and were annotated by two experts.",
        "accuracy": (
            f"On the test set of the {f['dataset']}, {method} reaches an accuracy of {f['accuracy']} "
            f"percent, against {f['baseline_accuracy']} percent for the {f['baseline']} baseline."
        ),
        "training": f"Training takes {f['hours']} hours on {f['gpus']} GPUs.",
        "code": code,
    }
    s = f["sentences"]
    f["document"] = "\n\n".join(
        [f"{s['intro']} {s['author']}", f"{s['data']} {s['years']}", f"{s['accuracy']} {s['training']} {s['code']}"]
    )
    return f


def _question(rng: random.Random, f: dict[str, Any], answer_type: str) -> dict[str, Any]:
    """One question of ``answer_type`` about paper ``f``: question, answer, evidence and, for unanswerable
    questions, a plausible answer absent from the document."""
    m, s = f["method"], f["sentences"]
    if answer_type == "extractive":
        q, a, ev = rng.choice(
            (
                (f"Which dataset is {m} trained on?", f["dataset"], s["data"]),
                (f"Who developed {m}?", f["author"], s["author"]),
                (f"Which baseline is {m} compared with?", f["baseline"], s["accuracy"]),
                (f"How many {f['unit']} does the {f['dataset']} contain?", str(f["n_items"]), s["data"]),
                (f"What accuracy does {m} reach?", f"{f['accuracy']} percent", s["accuracy"]),
                (f"How long does it take to train {m}?", f"{f['hours']} hours", s["training"]),
                (f"Where was the data for {m} collected?", f["source"], s["data"]),
            )
        )
    elif answer_type == "abstractive":
        gain = f["accuracy"] - f["baseline_accuracy"]
        q, a, ev = rng.choice(
            (
                (
                    f"By how many percentage points does {m} beat or trail the {f['baseline']} baseline?",
                    f"{'beats' if gain > 0 else 'trails'} it by {abs(gain)} points",
                    s["accuracy"],
                ),
                (
                    f"How many GPU hours does training {m} take in total?",
                    f"{f['hours'] * f['gpus']} GPU hours",
                    s["training"],
                ),
            )
        )
    elif answer_type == "boolean":
        better = f["accuracy"] > f["baseline_accuracy"]
        q, a, ev = rng.choice(
            (
                (f"Is the code of {m} publicly released?", "Yes" if f["released"] else "No", s["code"]),
                (f"Does {m} outperform the {f['baseline']} baseline?", "Yes" if better else "No", s["accuracy"]),
            )
        )
    elif answer_type == "none":
        for _ in range(100):  # a plausible answer that does not occur in the document
            q, plausible = _unanswerable(rng, f)
            if plausible not in f["document"]:
                break
        return {
            "question": q,
            "answer": UNANSWERABLE,
            "answer_type": "none",
            "evidence": None,
            "plausible_answer": plausible,
        }
    else:  # pragma: no cover - callers pass ANSWER_TYPES only
        raise InvalidParameter(f"unknown answer type {answer_type!r}; valid: {ANSWER_TYPES}")
    return {"question": q, "answer": a, "answer_type": answer_type, "evidence": ev, "plausible_answer": None}


def _unanswerable(rng: random.Random, f: dict[str, Any]) -> tuple[str, str]:
    m = f["method"]
    return rng.choice(
        (
            (f"How many parameters does {m} have?", f"{rng.randint(2, 900)} million"),
            (f"What learning rate is used to train {m}?", f"{rng.choice((1, 2, 3, 5))}e-{rng.randint(3, 5)}"),
            (f"Who created the {f['baseline']} baseline?", _person(rng)),
            (f"Which language are the {f['unit']} of the {f['dataset']} written in?", f"{_name(rng)}ish"),
            (f"How much did it cost to train {m}?", f"{rng.randint(2, 90)} thousand dollars"),
            (f"What F1 score does {m} reach?", f"{rng.randint(20, 99)}.{rng.randint(0, 9)}"),
        )
    )


class _Generator:
    def __init__(self, seed: int, weights: Mapping[str, float]) -> None:
        self.seed = seed
        self.types = [t for t in ANSWER_TYPES if weights.get(t, 0) > 0]
        self.weights = [weights[t] for t in self.types]
        self.methods: set[str] = set()  # unique across splits: no paper is shared between splits

    def method(self, rng: random.Random) -> str:
        for _ in range(10_000):
            name = _name(rng) + rng.choice(("", "-" + str(rng.randint(2, 9)), "Net", "BERT", "GAN", "X"))
            if name not in self.methods:
                self.methods.add(name)
                return name
        raise InvalidParameter("ran out of fictional method names; ask for fewer questions")  # pragma: no cover

    def split(self, name: str, size: int) -> list[dict[str, Any]]:
        rng = random.Random(f"{GENERATOR}:v{VERSION}:{self.seed}:{name}")
        rows: list[dict[str, Any]] = []
        paper_no = 0
        while len(rows) < size:
            paper = _paper(rng, self.method(rng))
            asked: set[str] = set()
            for _ in range(min(QUESTIONS_PER_PAPER, size - len(rows))):
                for _try in range(20):
                    q = _question(rng, paper, rng.choices(self.types, self.weights)[0])
                    if q["question"] not in asked:
                        break
                asked.add(q["question"])
                rows.append(
                    {
                        "id": f"fpaper-{name}-{paper_no:04d}-q{len(asked)}",
                        "paper_id": f"fpaper-{name}-{paper_no:04d}",
                        "title": f"{paper['method']}: a {paper['kind']} for {paper['task']}",
                        "document": paper["document"],
                        **q,
                        "meta": {"method": paper["method"], "dataset": paper["dataset"]},
                    }
                )
            paper_no += 1
        return rows


def generate(
    seed: int = 0, sizes: Mapping[str, int] | None = None, weights: Mapping[str, float] | None = None
) -> dict[str, list[dict[str, Any]]]:
    """SYNTHETIC question splits ``{split: [{"id", "paper_id", "title", "document", "question", "answer",
    "answer_type", "evidence", "plausible_answer", "meta"}, ...]}``.

    ``sizes``: questions per split (default :data:`DEFAULT_SIZES`); ``weights``: share of each answer type
    (default :data:`TYPE_WEIGHTS`; e.g. ``{"extractive": 1, "none": 1}`` for SQuAD 2.0-style data). The same
    arguments always give the same rows.
    """
    check_range("seed", seed, 0, None, integer=True)
    sizes = split_sizes(sizes, DEFAULT_SIZES, 100_000)
    weights = dict(TYPE_WEIGHTS if weights is None else weights)
    for kind, w in weights.items():
        if kind not in ANSWER_TYPES:
            raise InvalidParameter(f"unknown answer type {kind!r} in weights; valid: {', '.join(ANSWER_TYPES)}")
        check_range(f"weight of {kind!r}", w, 0, None)
    if not any(w > 0 for w in weights.values()):
        raise InvalidParameter(f"weights must give at least one answer type a positive weight, got {weights!r}")
    generator = _Generator(seed, weights)
    return {name: generator.split(name, sizes[name]) for name in DEFAULT_SIZES if name in sizes}
