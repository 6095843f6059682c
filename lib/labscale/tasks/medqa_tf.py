"""MedQA true/false ("MedQA-TF"), the study's privacy task (§4.2): is the proposed answer to the question correct?

Data sources (loaded by :mod:`labscale.data.medqa`):

* ``"hub"``: the study's ``lurosenb/medqa`` (or ``dataset_id=...``), reduced to true/false as described in
  :mod:`labscale.data.medqa`.
* ``"local"``: the original MedQA US 4-option release file(s); offline only the test file (1,273 questions) is
  available, split here 60/20/20 by question hash (not the study's split).
* ``"offline"``: SYNTHETIC patient records with questions about them (:mod:`labscale.data.synthetic_patients`):
  sensitive in kind (names, birth dates, addresses, social-security numbers), synthetic in fact.

The study's evaluation asked for "one of the options listed in the brackets" and scored SQuAD token F1 on 200
items (original-code.md §2.5, §6 item 15); here the binary task is scored as a binary task: accuracy and F1 of
``True``, with unparseable replies counted as wrong. Replies are parsed by the shared grammar of
:mod:`labscale.parsing` over :data:`~labscale.parsing.TRUE_FALSE`; the study has no true/false rule to reproduce.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..core import Example, TaskData
from ..data import medqa
from ..errors import InvalidParameter
from ..parsing import TRUE_FALSE, parse_reply
from ..prompts import Shot
from .base import Task

TRUE, FALSE = "True", "False"
LABELS = (TRUE, FALSE)

INSTRUCTION = "Is the proposed answer to the question correct? Respond with True or False only."
SYSTEM = "You are a careful medical assistant."


class MedQATrueFalse(Task):
    """True/false questions with an optional context record; strict parsing, binary metrics."""

    name = "medqa_tf"
    title = "MedQA true/false (privacy)"
    headline_metrics = ("accuracy", "f1")
    max_new_tokens = 5
    system_message = SYSTEM
    instruction = INSTRUCTION
    shot_style = "chat"

    data_module = medqa

    # -- prompts ----------------------------------------------------------------------------------------
    def format_input(self, example: Example) -> str:
        record = example.fields.get("record")
        context = f"Record: {record}\n" if record else ""
        return f"{context}Question: {example.fields['question']}\nProposed answer: {example.fields['option']}"

    def fixed_shots(self, data: TaskData) -> list[Shot]:
        """The first items of the train split alternating True, False, True (the same shots for every item)."""
        train = data.splits.get("train") or []
        wanted, shots = [TRUE, FALSE, TRUE], []
        used: set[str] = set()
        for label in wanted:
            example = next((ex for ex in train if ex.target == label and ex.id not in used), None)
            if example is None:
                raise InvalidParameter(
                    f"the train split has no unused {label} item for a fixed shot (train size {len(train)})"
                )
            used.add(example.id)
            shots.append(Shot(self.format_input(example), example.target))
        return shots

    def parse(self, text: str, *, parser: str = "strict") -> str:
        """``True``/``False`` when the reply starts with it (any case, after an optional "Answer:"-style preamble;
        "TRUE, the record says so" -> True) by :func:`labscale.parsing.parse_label` over
        :data:`~labscale.parsing.TRUE_FALSE`; :data:`~labscale.core.INVALID` otherwise ("True or False",
        "It is true", "False, not true"). ``parser="study"`` is refused: the study has no true/false rule."""
        return parse_reply(self.name, text, TRUE_FALSE, parser)

    def score(
        self, examples: Sequence[Example], parsed: Sequence[str], *, seed: int = 0, n_resamples: int = 1000
    ) -> dict[str, dict[str, float]]:
        """Accuracy, precision, recall and F1 of ``True`` and the invalid rate, with bootstrap intervals."""
        from ..metrics import binary_classification_metrics

        return binary_classification_metrics(
            [ex.target for ex in examples],
            list(parsed),
            positive=TRUE,
            negative=FALSE,
            n_resamples=n_resamples,
            seed=seed,
        )
