"""SYNTHETIC doctor-patient dialogues with reference note sections, for running summarization with no download.

Everything here is **synthetic**: short procedurally generated conversations about **fictional** patients
(no names, no real people; only an age and a sex are sampled), in the format of MTS-Dialog (``Doctor:`` /
``Patient:`` turns, a ``section_header`` such as GENHX or MEDICATIONS, and a ``section_text`` written in the
terse style of a clinical note). The dialogue and the reference summary are both rendered from the same
sampled facts, so every summary is faithful to its dialogue by construction, and each example records its key
facts (drug names and doses, allergens, conditions, ages, durations...) in ``meta["facts"]``: every one of
them appears verbatim (case-insensitively) in both the dialogue and the summary.

Drug, allergen and condition names are ordinary clinical vocabulary; the patients, their histories and the
conversations are invented. Scores on this data say nothing about real clinical summarization; it exists to
exercise the pipeline offline. The output is a pure function of ``seed`` and the split sizes.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from typing import Any

from ..errors import InvalidParameter, check_range
from .text import article_for_number, capitalize_first

#: bump when the generated text changes for a given seed
VERSION = "1"
GENERATOR = "labscale.data.synthetic_dialogues"
ORIGIN = f"{GENERATOR} v{VERSION} (SYNTHETIC: procedurally generated dialogues about fictional patients)"

DEFAULT_SIZES = {"train": 300, "validation": 40, "test": 60}
HEADERS = ("CC", "GENHX", "MEDICATIONS", "ALLERGY", "FAM/SOCHX", "PASTMEDICALHX")

# (summary phrase, what the patient says); the summary phrase always occurs in the patient's words
_SYMPTOMS = (
    ("lower back pain", "I've had lower back pain"),
    ("headaches", "I keep getting headaches"),
    ("chest pain", "I've been having chest pain"),
    ("a cough", "I've had a cough"),
    ("right knee pain", "I've had right knee pain"),
    ("shortness of breath", "I get shortness of breath"),
    ("abdominal pain", "I've been having abdominal pain"),
    ("dizziness", "I keep having dizziness"),
    ("a sore throat", "I've had a sore throat"),
    ("left shoulder pain", "I've got left shoulder pain"),
    ("a rash on both arms", "I've had a rash on both arms"),
    ("fatigue", "I've had a lot of fatigue"),
)
_DURATIONS = ("2 days", "3 days", "5 days", "1 week", "2 weeks", "3 weeks", "1 month", "2 months", "6 months")
_TRIGGERS = (
    ("after lifting boxes", "It started after lifting boxes at work."),
    ("after a long run", "It started after a long run."),
    ("without any clear cause", "It just started, without any clear cause."),
    ("after a cold", "It started after a cold."),
    ("after a fall", "It started after a fall on the stairs."),
)
_WORSE = (
    ("with activity", "It gets worse with activity."),
    ("at night", "It's worse at night."),
    ("when lying down", "It's worse when lying down."),
    ("in the morning", "It's worse in the morning."),
)
_TRIED = ("ibuprofen", "acetaminophen", "rest and ice", "a heating pad", "naproxen", "cough drops")
_RELIEF = (
    ("with some relief", "it helps a bit"),
    ("without relief", "it didn't help at all"),
    ("with partial relief", "it takes the edge off"),
)

# (name, doses, unit, frequencies); the dialogue says "milligrams"/"micrograms", the note "mg"/"mcg"
_MEDICATIONS = (
    ("lisinopril", (10, 20, 40), "mg", ("once a day",)),
    ("metformin", (500, 850, 1000), "mg", ("twice a day", "once a day")),
    ("atorvastatin", (10, 20, 40), "mg", ("at night",)),
    ("levothyroxine", (50, 75, 100), "mcg", ("every morning",)),
    ("amlodipine", (5, 10), "mg", ("once a day",)),
    ("omeprazole", (20, 40), "mg", ("once a day", "before breakfast")),
    ("sertraline", (50, 100), "mg", ("once a day",)),
    ("metoprolol", (25, 50), "mg", ("twice a day",)),
    ("gabapentin", (300, 600), "mg", ("three times a day", "at night")),
    ("losartan", (25, 50, 100), "mg", ("once a day",)),
)
_UNIT_WORDS = {"mg": "milligrams", "mcg": "micrograms"}

_ALLERGENS = (
    ("penicillin", "a rash"),
    ("sulfa drugs", "hives"),
    ("codeine", "nausea"),
    ("latex", "itching"),
    ("shellfish", "lip swelling"),
    ("amoxicillin", "hives"),
    ("aspirin", "wheezing"),
    ("peanuts", "throat swelling"),
)

_RELATIVES = ("mother", "father", "brother", "sister", "grandmother", "grandfather")
_FAMILY_CONDITIONS = (
    "diabetes",
    "heart disease",
    "breast cancer",
    "high blood pressure",
    "a stroke",
    "colon cancer",
    "asthma",
)
_OCCUPATIONS = ("teacher", "truck driver", "nurse", "accountant", "carpenter", "cook", "mail carrier", "electrician")
_SMOKING = (
    ("never smoked", "No, I've never smoked.", "never smoked"),
    ("quit", "I quit {n} years ago.", "quit smoking {n} years ago"),
    ("current", "Yes, about {n} cigarettes a day.", "smokes {n} cigarettes a day"),
)
_ALCOHOL = (
    ("none", "No, I don't drink.", "does not drink alcohol"),
    ("social", "Just socially, on weekends.", "drinks alcohol socially"),
    ("weekly", "Maybe {n} beers a week.", "drinks {n} beers a week"),
)

# (clinical term used in the note, what the patient may say first or None)
_CONDITIONS = (
    ("hypertension", "high blood pressure"),
    ("type 2 diabetes", "sugar problems"),
    ("asthma", None),
    ("hypothyroidism", "an underactive thyroid"),
    ("hyperlipidemia", "high cholesterol"),
    ("GERD", "acid reflux"),
    ("osteoarthritis", None),
    ("migraines", None),
    ("depression", None),
    ("atrial fibrillation", "an irregular heartbeat"),
)

_OPENERS = (
    ("Doctor: Good morning, how are you doing today?", "Patient: I'm okay, thanks."),
    ("Doctor: Hi there, come on in and have a seat.", "Patient: Thank you."),
    ("Doctor: Hello again, it's good to see you.", "Patient: Good to see you too."),
    None,
)
_CLOSERS = (
    ("Doctor: Okay, thank you, that's very helpful.", "Patient: Sure."),
    ("Doctor: Alright, I'll make a note of that.", "Patient: Thanks, doctor."),
    None,
)


def _join(items: list[str]) -> str:
    if len(items) == 1:
        return items[0]
    return ", ".join(items[:-1]) + " and " + items[-1]


def _a(noun: str) -> str:
    return ("an " if noun[:1] in "aeiou" else "a ") + noun


class _Patient:
    def __init__(self, rng: random.Random) -> None:
        self.age = rng.randint(19, 86)
        self.sex = rng.choice(("female", "male"))
        self.they = "she" if self.sex == "female" else "he"
        self.their = "her" if self.sex == "female" else "his"


def _cc(rng: random.Random, p: _Patient) -> tuple[list[str], str, list[str]]:
    symptom, said = rng.choice(_SYMPTOMS)
    duration = rng.choice(_DURATIONS)
    turns = [
        rng.choice(
            (
                "Doctor: What brings you in today?",
                "Doctor: What seems to be the problem?",
                "Doctor: What can I do for you today?",
            )
        ),
        f"Patient: {said} for about {duration}.",
        "Doctor: Has anything like this happened before?",
        rng.choice(("Patient: No, this is the first time.", "Patient: Not that I can remember.")),
        "Doctor: Is it getting better, worse, or staying the same?",
        rng.choice(
            (
                "Patient: About the same, I think.",
                "Patient: A little worse every day.",
                "Patient: Maybe a little better, but it's still there.",
            )
        ),
        "Doctor: Okay, we'll take a closer look.",
    ]
    summary = capitalize_first(f"{symptom} for {duration}.") if rng.random() < 0.6 else capitalize_first(f"{symptom}.")
    facts = [symptom] + ([duration] if duration in summary else [])
    return turns, summary, facts


def _genhx(rng: random.Random, p: _Patient) -> tuple[list[str], str, list[str]]:
    symptom, said = rng.choice(_SYMPTOMS)
    duration = rng.choice(_DURATIONS)
    trigger, trigger_said = rng.choice(_TRIGGERS)
    worse, worse_said = rng.choice(_WORSE)
    severity = rng.randint(3, 9)
    tried = rng.choice(_TRIED)
    relief, relief_said = rng.choice(_RELIEF)
    turns = [
        "Doctor: How old are you?",
        f"Patient: I'm {p.age}.",
        "Doctor: And what's been going on?",
        f"Patient: {said} for about {duration}.",
        "Doctor: How did it start?",
        f"Patient: {trigger_said}",
        "Doctor: On a scale of zero to ten, how bad is it?",
        f"Patient: About {article_for_number(severity)} {severity}.",
        "Doctor: Does anything make it worse?",
        f"Patient: {worse_said}",
        "Doctor: Have you tried anything for it?",
        f"Patient: I've tried {tried}, and {relief_said}.",
    ]
    article = article_for_number(p.age)
    summary = (
        f"The patient is {article} {p.age}-year-old {p.sex} who presents with {symptom} for {duration}. "
        f"The symptoms began {trigger}. {capitalize_first(p.they)} rates the severity as {severity}/10. "
        f"It is worse {worse}. {capitalize_first(p.they)} has tried {tried} {relief}."
    )
    return turns, summary, [str(p.age), symptom, duration, tried]


def _medications(rng: random.Random, p: _Patient) -> tuple[list[str], str, list[str]]:
    chosen = rng.sample(_MEDICATIONS, rng.randint(1, 3))
    turns = [
        rng.choice(
            (
                "Doctor: What medications are you taking right now?",
                "Doctor: Are you on any medications at the moment?",
                "Doctor: Can you tell me which medicines you take?",
            )
        )
    ]
    notes, facts = [], []
    for i, (name, doses, unit, frequencies) in enumerate(chosen):
        dose, frequency = rng.choice(doses), rng.choice(frequencies)
        if i > 0:
            turns.append(rng.choice(("Doctor: Anything else?", "Doctor: Any others?", "Doctor: What else?")))
        lead = "I take" if i == 0 else rng.choice(("I also take", "Also", "There's also"))
        turns.append(f"Patient: {lead} {name}, {dose} {_UNIT_WORDS[unit]}, {frequency}.")
        if rng.random() < 0.4:
            turns.append(f"Doctor: What do you take the {name} for?")
            turns.append(
                rng.choice(
                    (
                        "Patient: My doctor started me on it a few years ago.",
                        "Patient: Honestly, I don't remember exactly.",
                    )
                )
            )
        notes.append(f"{name} {dose} {unit} {frequency}")
        facts += [name, str(dose)]
    if rng.random() < 0.5:
        turns += ["Doctor: Any others?", "Patient: No, that's all."]
    else:
        turns += ["Doctor: Is that everything?", "Patient: Yes, that's everything."]
    turns.append(rng.choice(("Doctor: Are you taking them as prescribed?", "Doctor: Do you ever miss a dose?")))
    turns.append(
        rng.choice(
            (
                "Patient: Yes, I use a pill box so I don't forget.",
                "Patient: Hardly ever, I keep them next to the coffee maker.",
            )
        )
    )
    turns += [
        "Doctor: Any side effects that bother you?",
        rng.choice(("Patient: No, nothing I've noticed.", "Patient: Not really, maybe a dry mouth.")),
    ]
    return turns, capitalize_first(", ".join(notes) + "."), facts


def _allergy(rng: random.Random, p: _Patient) -> tuple[list[str], str, list[str]]:
    turns = [
        rng.choice(
            (
                "Doctor: Do you have any allergies to medications?",
                "Doctor: Are you allergic to anything?",
                "Doctor: Any drug allergies I should know about?",
            )
        )
    ]
    if rng.random() < 0.25:
        turns += [
            rng.choice(("Patient: No, none that I know of.", "Patient: No, I'm not.")),
            "Doctor: Not even to foods or latex?",
            "Patient: No, nothing.",
            "Doctor: Have you ever reacted badly to a vaccine?",
            "Patient: No, never.",
            "Doctor: Okay, so no known allergies.",
        ]
        return turns, "No known allergies.", ["no known allergies"]
    chosen = rng.sample(_ALLERGENS, rng.randint(1, 2))
    facts, notes = [], []
    for i, (allergen, reaction) in enumerate(chosen):
        if i == 0:
            turns.append(f"Patient: Yes, I'm allergic to {allergen}.")
        else:
            turns += ["Doctor: Anything else?", f"Patient: {allergen[:1].upper() + allergen[1:]} too."]
        turns += [f"Doctor: What happens when you're exposed to {allergen}?", f"Patient: I get {reaction}."]
        if i == 0:
            turns += [
                "Doctor: When did you first find out?",
                rng.choice(
                    (
                        "Patient: When I was a kid.",
                        "Patient: A few years ago, it was pretty scary.",
                        "Patient: In my twenties, I think.",
                    )
                ),
            ]
        notes.append(f"{allergen} ({reaction})")
        facts += [allergen, reaction]
    turns += ["Doctor: Okay, I'll add that to your chart."]
    return turns, capitalize_first(f"Allergic to {_join(notes)}."), facts


def _famsochx(rng: random.Random, p: _Patient) -> tuple[list[str], str, list[str]]:
    relative, condition = rng.choice(_RELATIVES), rng.choice(_FAMILY_CONDITIONS)
    occupation = rng.choice(_OCCUPATIONS)
    smoke_kind, smoke_said, smoke_note = rng.choice(_SMOKING)
    drink_kind, drink_said, drink_note = rng.choice(_ALCOHOL)
    n_smoke, n_drink = rng.choice((5, 10, 15, 20)), rng.choice((2, 3, 4, 6))
    living = rng.choice(
        ("alone", "with " + ("her husband" if p.sex == "female" else "his wife"), "with " + p.their + " two children")
    )
    turns = [
        "Doctor: Does anything run in your family?",
        f"Patient: My {relative} had {condition}.",
        "Doctor: What do you do for work?",
        f"Patient: I work as {_a(occupation)}.",
        "Doctor: Do you smoke?",
        f"Patient: {smoke_said.format(n=n_smoke)}",
        "Doctor: How about alcohol?",
        f"Patient: {drink_said.format(n=n_drink)}",
        "Doctor: Who do you live with?",
        f"Patient: I live {living.replace(p.their, 'my')}.",
    ]
    summary = (
        f"{capitalize_first(p.their)} {relative} had {condition}. {capitalize_first(p.they)} works as {_a(occupation)} "
        f"and lives {living}. {capitalize_first(p.they)} {smoke_note.format(n=n_smoke)} and "
        f"{drink_note.format(n=n_drink)}."
    )
    facts = [relative, condition, occupation]
    if smoke_kind != "never smoked":
        facts.append(str(n_smoke))
    if drink_kind == "weekly":
        facts.append(str(n_drink))
    return turns, summary, facts


def _pastmedicalhx(rng: random.Random, p: _Patient) -> tuple[list[str], str, list[str]]:
    chosen = rng.sample(_CONDITIONS, rng.randint(1, 3))
    turns = [
        rng.choice(
            (
                "Doctor: Do you have any medical conditions?",
                "Doctor: Tell me about your past medical history.",
                "Doctor: Any ongoing health problems?",
            )
        )
    ]
    terms = []
    for i, (term, lay) in enumerate(chosen):
        if i > 0:
            turns.append(rng.choice(("Doctor: Anything else?", "Doctor: Any other conditions?")))
        said = lay or term
        lead = "I have" if i == 0 else "I also have"
        turns.append(f"Patient: {lead} {said}.")
        if lay:
            turns.append(f"Doctor: So, {term}. How long have you had that?")
            turns.append(f"Patient: About {rng.randint(2, 20)} years.")
        terms.append(term)
    turns += [
        "Doctor: Are things well controlled right now?",
        rng.choice(
            (
                "Patient: Mostly, yes. I see my regular doctor every few months.",
                "Patient: I think so, but I could be better about checkups.",
            )
        ),
        "Doctor: Any surgeries or hospital stays?",
        "Patient: No, nothing like that.",
    ]
    return turns, capitalize_first(_join(terms) + "."), terms


_SECTIONS: Mapping[str, Callable[[random.Random, _Patient], tuple[list[str], str, list[str]]]] = {
    "CC": _cc,
    "GENHX": _genhx,
    "MEDICATIONS": _medications,
    "ALLERGY": _allergy,
    "FAM/SOCHX": _famsochx,
    "PASTMEDICALHX": _pastmedicalhx,
}


def _dialogue(rng: random.Random, header: str) -> dict[str, Any]:
    patient = _Patient(rng)
    turns, summary, facts = _SECTIONS[header](rng, patient)
    opener, closer = rng.choice(_OPENERS), rng.choice(_CLOSERS)
    if opener:
        turns = list(opener) + turns
    if turns[-1].startswith("Doctor:"):
        turns.append(rng.choice(("Patient: Okay, thank you.", "Patient: Sounds good.", "Patient: Alright.")))
    if closer:
        turns = turns + list(closer)
    return {
        "dialogue": "\n".join(turns),
        "section_header": header,
        "section_text": summary,
        "meta": {"facts": facts, "age": patient.age, "sex": patient.sex},
    }


def generate(seed: int = 0, sizes: Mapping[str, int] | None = None) -> dict[str, list[dict[str, Any]]]:
    """SYNTHETIC dialogue splits: ``{split: [{"id", "dialogue", "section_header", "section_text", "meta"}]}``.

    ``sizes`` maps split names to sizes (default :data:`DEFAULT_SIZES`, i.e. 300 / 40 / 60). Section headers
    are balanced within each split (counts differ by at most one).
    """
    check_range("seed", seed, 0, None, integer=True)
    sizes = dict(DEFAULT_SIZES if sizes is None else sizes)
    out: dict[str, list[dict[str, Any]]] = {}
    for name, size in sizes.items():
        if name not in DEFAULT_SIZES:
            raise InvalidParameter(f"unknown split {name!r} in sizes; valid splits: {', '.join(DEFAULT_SIZES)}")
        check_range(f"size of split {name!r}", size, 0, 100_000, integer=True)
    for name in DEFAULT_SIZES:
        if name not in sizes:
            continue
        rng = random.Random(f"synthetic_dialogues:v{VERSION}:{seed}:{name}")
        headers = [HEADERS[i % len(HEADERS)] for i in range(sizes[name])]
        rng.shuffle(headers)
        out[name] = [{"id": f"syndlg-{name}-{i:05d}", **_dialogue(rng, header)} for i, header in enumerate(headers)]
    return out
