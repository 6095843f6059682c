"""QASPER: answer questions about research papers, and abstain ("Unanswerable") when the papers do not say
(study §4.2, abstention; Tables 6 and 7).

Data sources (loaded by :mod:`labscale.data.qasper`):

* ``"hub"``: ``allenai/qasper`` (train / validation / test; pass ``revision=...`` to pin it).
* ``"local"``: the QASPER release JSON (``qasper-{train,dev,test}-v0.3.json``): a folder holding them (or a
  ``qasper`` folder below it), or one file. A file whose name does not say its split (the shared 1-paper fixture
  ``qasper_sample_small.json``) is loaded as the test split.
* ``"offline"``: SYNTHETIC short papers about fictional methods (:mod:`labscale.data.fictional_papers`).

Task options (every source): ``context`` (True: the documents are in the prompt; False: the study's "without
context" condition: the documents are removed, so no question is answerable and the ideal abstention rate is
1.0; only answerable questions are kept there, as in the study), ``context_chars`` (a character budget for the
documents, default 3,000: a long real paper is cut at a paragraph boundary, never the question or the answer cue,
which the original's end-of-prompt truncation could cut; how many documents were cut is recorded in the origin)
and, for real papers, ``context_mode`` ("full": title, abstract and sections in order; "evidence": title,
abstract and the annotators' evidence paragraphs, QASPER's gold-evidence setting).

Prompt: the study's system message and instruction verbatim, "## Documents / ## Question / ## Answer"; fixed
shots (an extractive, an unanswerable and a yes/no training item: the same for every item and every run, where
the original drew unseeded random shots). Scoring: QASPER answer F1 (SQuAD token F1, max over the annotators'
references), by answer type, abstention rate and (with context) abstention precision/recall.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from ..core import INVALID, Example, TaskData
from ..data import qasper as qasper_data
from ..data.qasper import UNANSWERABLE
from ..prompts import Shot
from .base import Task

#: the study's system message and instruction (original ``values-tasks/abstention``), verbatim
SYSTEM_MESSAGE = "You are a helpful assistant!"
INSTRUCTION = (
    'Create an Answer to the Question (using following documents). Answer "Unanswerable" when you are '
    "not sure about the answer."
)
QUERY = "## Documents:\n{document}\n\n## Question:\n{question}\n\n## Answer:"
QUERY_NO_CONTEXT = "## Question:\n{question}\n\n## Answer:"
#: answer types of the fixed shots, in order
SHOT_TYPES = ("extractive", "none", "boolean")

_SPECIAL_TOKENS = re.compile(
    r"</s>|<s>|<pad>|<unk>|<\|endoftext\|>|<\|im_end\|>|<\|im_start\|>|<\|eot_id\|>|"
    r"<eos>|\[/INST\]|\[INST\]",
    re.I,
)
_LEAD = re.compile(
    r"^\s*(?:#+\s*)?(?:the\s+)?(?:final\s+)?answer(?:\s+to\s+(?:the|this)\s+question)?\s*"
    r"(?:is\s*:?|:)\s*",
    re.I,
)
_QUOTES = "\"'`*"
_YES_NO = re.compile(r"^(yes|no)\s*(?:$|[.,;:!]\s*)", re.I)


def parse_answer(text: str) -> str:
    """A reply as an answer: :data:`UNANSWERABLE` when it contains "unanswerable" anywhere (the study's rule),
    "Yes"/"No" only when the reply *is* a yes/no answer ("No", "yes.", "No, it is not released"), otherwise the
    answer text (special tokens, a leading "Answer:" or "The answer to the question is", surrounding quotes and
    anything after a blank line or a "##" heading removed);
    :data:`~labscale.core.INVALID` when nothing is left.

    The original mapped every reply *starting* with "no" to the boolean no, so "None of the above" or "Not
    reported" were scored as "No" (original-code.md §2.6); here those stay answer text."""
    if not isinstance(text, str):
        return INVALID
    text = _SPECIAL_TOKENS.sub(" ", text)
    if "unanswerable" in text.lower():
        return UNANSWERABLE
    text = _LEAD.sub("", text.strip())
    text = re.split(r"\n\s*\n|\n?\s*##", text, maxsplit=1)[0].strip()
    if len(text) > 1 and text[0] in _QUOTES and text[0] == text.rstrip(".")[-1]:
        text = text.rstrip(".")[1:-1].strip()
    match = _YES_NO.match(text)
    if match:
        return match.group(1).capitalize()
    return text if text.strip(" ." + _QUOTES) else INVALID


class Qasper(Task):
    """QASPER question answering with the study's prompt; ``context=False`` is the no-context abstention test."""

    name = "qasper"
    title = "QASPER question answering and abstention"
    headline_metrics = ("answer_f1", "abstention_rate")
    max_new_tokens = 24
    system_message = SYSTEM_MESSAGE
    instruction = INSTRUCTION
    shot_style = "single"
    transition = "Here is the question that needs to be answered."

    data_module = qasper_data

    # -- prompts ----------------------------------------------------------------------------------------
    def format_input(self, example: Example) -> str:
        if example.fields.get("document") is None:
            return QUERY_NO_CONTEXT.format(question=example.fields["question"])
        return QUERY.format(document=example.fields["document"], question=example.fields["question"])

    def fixed_shots(self, data: TaskData) -> list[Shot]:
        """The first train item of each of :data:`SHOT_TYPES` (extractive, unanswerable, yes/no), falling back
        to the first remaining train items; always the same for one data set. In the no-context condition the
        train split holds answerable questions only and the shots carry no documents either."""
        train = data.splits.get("train") or []
        chosen: list[Example] = []
        for kind in SHOT_TYPES:
            ex = next((e for e in train if e.meta.get("kind") == kind and e not in chosen), None)
            if ex is not None:
                chosen.append(ex)
        chosen += [e for e in train if e not in chosen][: self.max_shots - len(chosen)]
        return [Shot(self.format_input(ex), self.format_target(ex)) for ex in chosen[: self.max_shots]]

    # -- parsing and scoring ----------------------------------------------------------------------------
    def parse(self, text: str) -> str:
        return parse_answer(text)

    item_score_names = ("f1", "exact", "invalid")

    def item_scores(self, examples: Sequence[Example], parsed: Sequence[str]) -> dict[str, list[float]]:
        """Per-item answer F1 and exact match (max over references) and the invalid flag."""
        from ..metrics import best_reference, exact_match

        preds = ["" if p == INVALID else p for p in parsed]
        return {
            "f1": [best_reference(p, ex.fields["references"])[0] for ex, p in zip(examples, preds, strict=True)],
            "exact": [
                best_reference(p, ex.fields["references"], exact_match)[0]
                for ex, p in zip(examples, preds, strict=True)
            ],
            "invalid": [float(p == INVALID) for p in parsed],
        }

    def score(
        self, examples: Sequence[Example], parsed: Sequence[str], *, seed: int = 0, n_resamples: int = 1000
    ) -> dict[str, dict[str, float]]:
        """Answer F1 (overall and by type), abstention rate (+ precision/recall with context), invalid rate."""
        from ..metrics import qasper_metrics

        self.check_replies(examples, parsed)
        with_context = any(ex.fields.get("document") is not None for ex in examples)
        should = [ex.meta["should_abstain"] for ex in examples]
        return qasper_metrics(
            [ex.fields["references"] for ex in examples],
            [ex.fields["reference_types"] for ex in examples],
            ["" if p == INVALID else p for p in parsed],
            abstained=[p == UNANSWERABLE for p in parsed],
            invalid=[p == INVALID for p in parsed],
            should_abstain=should if with_context and any(should) else None,
            n_resamples=n_resamples,
            seed=seed,
        )
