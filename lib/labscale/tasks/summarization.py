"""Clinical dialogue summarization: write the note section (``section_text``) for a doctor-patient dialogue and
a section topic (``section_header``), as in MTS-Dialog / MEDIQA-Sum 2023 (study §4.1).

Data sources (loaded by :mod:`labscale.data.mts_dialog`):

* ``"hub"``: ``beanham/medsum``, the study's copy (train / validation / test). Pass ``revision=...`` to pin it.
* ``"local"``: the official MTS-Dialog CSVs: training 1,201 -> train, validation 100 -> validation, test sets
  1 + 2 -> test (400, like the study's test set). ``load("local", test_set="1")`` or ``test_set="2"`` makes the
  test split from one test set only (TestSet-1, MEDIQA-Chat 2023, or TestSet-2, MEDIQA-Sum 2023; 200 items
  each); ``"both"`` is the default. Rows with an unknown section header are counted as malformed. See
  :mod:`labscale.data.mts_dialog`.
* ``"offline"``: SYNTHETIC dialogues about fictional patients (:mod:`labscale.data.synthetic_dialogues`).

Fixed shots are validation items 0, 1 and 5 of whichever source is loaded, the study's picks (commented
"comprehensive", "negation" and "short" in the original code).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..core import INVALID, Example, TaskData
from ..data import mts_dialog
from ..errors import InvalidParameter
from ..metrics import SUMMARY_ITEM_SCORES
from ..prompts import Shot
from .base import Task

#: the study's system message, verbatim (including its trailing space)
SYSTEM_MESSAGE = (
    "You are a helpful medical assistant! Please help me summarize dialogues between doctors and "
    "patients. I will provide you with the content and topic for each dialogue. "
)
INSTRUCTION = "Please summarize the following dialogue."
QUERY = "## Content:\n{dialogue}\n\n## Topic:\n{section_header}\n\n## Summary:"
#: validation items used as fixed shots, in order (the study's "comprehensive", "negation", "short")
SHOT_INDICES = (0, 1, 5)
#: the task's own (scoring) options, accepted by every source
SCORING_OPTIONS = ("bertscore_model",)

_LEADING_SUMMARY = re.compile(r"^(?:#+\s*)?summary\s*:\s*", re.I)


class Summarization(Task):
    """Clinical dialogue summarization with the study's system message, prompt and shots.

    Shots are laid out as chat turns (``shot_style="chat"``), as the study did for every model but Falcon.
    Scoring is BLEU and BERTScore F1 (headline) plus ROUGE; an empty reply is :data:`INVALID` and is scored
    as an empty summary. The BERTScore encoder is the task option ``bertscore_model`` (``load(...,
    bertscore_model="distilbert-base-uncased")`` for the study's encoder, kept on the task), or the
    attribute, or :meth:`score`'s argument; ``None`` leaves the choice to
    :func:`labscale.metrics.summarization_metrics` (its offline encoder).
    """

    name = "summarization"
    title = "Clinical dialogue summarization"
    headline_metrics = ("bleu", "bertscore_f1")
    # One generation budget for every backend. The original Hugging Face runs stopped at the default 50 new
    # tokens while the GPT script allowed 512 (original-code.md §6 item 10), which cut open-model summaries
    # short; 128 tokens covers most MTS-Dialog reference sections.
    max_new_tokens = 128
    system_message = SYSTEM_MESSAGE
    instruction = INSTRUCTION
    shot_style = "chat"
    #: BERTScore model passed to the metric (None: the metric's default)
    bertscore_model: str | None = None

    # -- data (:mod:`labscale.data.mts_dialog`) ----------------------------------------------------------
    data_module = mts_dialog

    def loader_arguments(self, source: str, options: dict[str, Any]) -> dict[str, Any]:
        """Takes the task's own option, accepted by every source: ``bertscore_model`` (kept on the task for
        :meth:`score`)."""
        model = options.pop("bertscore_model", None)
        if model is not None:
            if not isinstance(model, str) or not model.strip():
                raise InvalidParameter(f"bertscore_model must be a model name or path, got {model!r}")
            self.bertscore_model = model
        return {"accepted": SCORING_OPTIONS}

    # -- prompts ----------------------------------------------------------------------------------------
    def format_input(self, example: Example) -> str:
        return QUERY.format(dialogue=example.fields["dialogue"], section_header=example.fields["section_header"])

    def fixed_shots(self, data: TaskData) -> list[Shot]:
        """Validation items 0, 1 and 5 of ``data`` (the study's picks), with their reference section as reply."""
        validation = data.splits.get("validation") or []
        if len(validation) <= max(SHOT_INDICES):
            raise InvalidParameter(
                f"the fixed shots are validation items {SHOT_INDICES}, but this data has "
                f"{len(validation)} validation items; load at least {max(SHOT_INDICES) + 1}"
            )
        return [Shot(self.format_input(validation[i]), self.format_target(validation[i])) for i in SHOT_INDICES]

    # -- parsing and scoring ----------------------------------------------------------------------------
    def parse(self, text: str) -> str:
        """The reply without surrounding whitespace and a leading "Summary:" / "## Summary:"; INVALID if empty."""
        if not isinstance(text, str):
            return INVALID
        cleaned = _LEADING_SUMMARY.sub("", text.strip()).strip()
        return cleaned if cleaned else INVALID

    item_score_names = SUMMARY_ITEM_SCORES

    def item_scores(self, examples: Sequence[Example], parsed: Sequence[str]) -> dict[str, list]:
        """Per-item ROUGE F-measures, BERTScore F1 (the task's encoder), BLEU sufficient statistics and the invalid
        flag (:data:`~labscale.metrics.SUMMARY_ITEM_SCORES`): a subset or a pairing of items needs no rescoring.
        Scoring the run and then its items encodes each pair once: BERTScore pairs are kept in the response cache."""
        from ..metrics import summary_item_scores

        references = [str(ex.target) for ex in examples]
        scores, _ = summary_item_scores(references, parsed, bertscore_model=self.bertscore_model)
        return {name: np.asarray(values).tolist() for name, values in scores.items()}

    def score(
        self,
        examples: Sequence[Example],
        parsed: Sequence[str],
        *,
        seed: int = 0,
        n_resamples: int = 1000,
        bertscore_model: str | None = None,
    ) -> dict[str, dict[str, float]]:
        """BLEU, BERTScore, ROUGE and length ratio against the reference sections; INVALID replies count as empty
        summaries (and in ``invalid_rate``)."""
        from ..metrics import summary_item_scores, summary_metrics_from_items

        self.check_replies(examples, parsed)
        references = [str(ex.target) for ex in examples]
        scores, info = summary_item_scores(references, parsed, bertscore_model=bertscore_model or self.bertscore_model)
        return summary_metrics_from_items(scores, info, n_resamples=n_resamples, seed=seed)
