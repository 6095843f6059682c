"""SQuAD 2.0: extractive question answering where a third or more of the questions have no answer in the
paragraph, so the model must answer from the context *or* abstain (Rajpurkar, Jia & Liang 2018). Not in the
study; the book adds it beside QASPER as the standard answerable/unanswerable benchmark (methods.md §B3).

Data sources (loaded by :mod:`labscale.data.squad_v2`):

* ``"hub"``: ``rajpurkar/squad_v2`` (pass ``revision=...``): hub train -> train; the hub validation set (the
  official dev set) is split by article into validation (25 %) and test (75 %).
* ``"local"``: official SQuAD 2.0 JSON. A folder (or a ``squad-v2.0`` folder below it, or its ``cs224n-split``)
  holding ``dev-v2.0.json`` and optionally ``train-v2.0.json``, or one file. Without a train file, the dev file's
  articles are split by a SHA-256 hash of the title into train / validation / test (50 / 12.5 / 37.5 % of the
  articles); with one, train is the train file and dev is split 25 / 75 into validation / test. The shared copy
  is the CS224N half of the official dev set (16 of 35 articles, 6,078 questions): scores on it are **not**
  comparable to published full-dev numbers.
* ``"offline"``: SYNTHETIC short papers about fictional methods (:mod:`labscale.data.fictional_papers`) with
  extractive and unanswerable questions only; an unanswerable question asks for a plausible fact about the
  paper's entities that the paragraph does not contain.

Scoring follows the official ``evaluate-v2.0.py``: answers normalised (lower case, no punctuation, no articles,
single spaces), exact match and token F1 as the maximum over the gold answers, and an unanswerable question
scores 1 only when the prediction is empty: here, when the model abstains ("Unanswerable").
"""

from __future__ import annotations

from collections.abc import Sequence

from ..core import INVALID, Example, TaskData
from ..data import squad_v2 as squad_data
from ..prompts import Shot
from .base import Task
from .qasper import SYSTEM_MESSAGE, UNANSWERABLE, parse_answer

INSTRUCTION = (
    'Answer the Question with a short span copied from the Context. Answer "Unanswerable" when the '
    "Context does not contain the answer."
)
QUERY = "## Context:\n{context}\n\n## Question:\n{question}\n\n## Answer:"


class SquadV2(Task):
    """SQuAD 2.0-style answerable / unanswerable extractive QA with the official scoring."""

    name = "squad_v2"
    title = "SQuAD 2.0 answerable and unanswerable questions"
    headline_metrics = ("f1", "NoAns_exact")
    max_new_tokens = 16
    system_message = SYSTEM_MESSAGE
    instruction = INSTRUCTION
    shot_style = "single"
    transition = "Here is the question that needs to be answered."

    data_module = squad_data

    # -- prompts ----------------------------------------------------------------------------------------
    def format_input(self, example: Example) -> str:
        return QUERY.format(context=example.fields["context"], question=example.fields["question"])

    def fixed_shots(self, data: TaskData) -> list[Shot]:
        """The first answerable, the first unanswerable and the second answerable train item."""
        train = data.splits.get("train") or []
        answerable = [e for e in train if e.fields["answers"]][:2]
        unanswerable = [e for e in train if not e.fields["answers"]][:1]
        chosen = answerable[:1] + unanswerable + answerable[1:2]
        return [Shot(self.format_input(ex), ex.target) for ex in chosen]

    # -- parsing and scoring ----------------------------------------------------------------------------
    def parse(self, text: str) -> str:
        """As QASPER (:func:`~labscale.tasks.qasper.parse_answer`): "Unanswerable" anywhere is an abstention."""
        return parse_answer(text)

    @staticmethod
    def _prediction(parsed: str) -> str:
        return "" if parsed in (INVALID, UNANSWERABLE) else parsed

    item_score_names = ("exact", "f1", "invalid")

    def item_scores(self, examples: Sequence[Example], parsed: Sequence[str]) -> dict[str, list[float]]:
        """Per-item official (exact, f1), an invalid reply scoring 0, and the invalid flag."""
        from ..metrics import squad_v2_item_scores

        scores = squad_v2_item_scores(
            [ex.fields["answers"] for ex in examples],
            [self._prediction(p) for p in parsed],
            [p == INVALID for p in parsed],
        )
        invalid = [float(p == INVALID) for p in parsed]
        return {"exact": scores[:, 0].tolist(), "f1": scores[:, 1].tolist(), "invalid": invalid}

    def score(
        self, examples: Sequence[Example], parsed: Sequence[str], *, seed: int = 0, n_resamples: int = 1000
    ) -> dict[str, dict[str, float]]:
        """exact, f1, HasAns_exact/f1, NoAns_exact, abstention rate/recall/precision, invalid rate (95% CIs)."""
        from ..metrics import squad_v2_metrics

        self.check_replies(examples, parsed)
        return squad_v2_metrics(
            [ex.fields["answers"] for ex in examples],
            [self._prediction(p) for p in parsed],
            abstained=[p == UNANSWERABLE for p in parsed],
            invalid=[p == INVALID for p in parsed],
            n_resamples=n_resamples,
            seed=seed,
        )
