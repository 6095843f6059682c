"""Climate fact-checking: label a claim-evidence pair SUPPORTS, REFUTES or NOT_ENOUGH_INFO (study §4.1).

Data sources (loaded by :mod:`labscale.data.climate_fever`):

* ``"hub"``: ``amandakonet/climate_fever_adopted``, the study's copy with its own train / valid / test split
  (4,298 / 1,842 / 1,535 pairs). Pass ``revision=...`` to pin it.
* ``"local"``: the original Climate-FEVER release ``climate-fever.jsonl`` (7,675 pairs, no split). It is split
  here by a hash of the claim id (56 / 24 / 20 %, every evidence of a claim in one split); **this is not the hub
  split**. The claims used as fixed shots are removed from every split. See :mod:`labscale.data.climate_fever`.
* ``"offline"``: SYNTHETIC claims about fictional places (:mod:`labscale.data.synthetic_claims`), with fixed
  shots taken from its own train split.

Replies are parsed by the shared grammar of :mod:`labscale.parsing` over :data:`~labscale.parsing.FACT_CHECK`
(see :meth:`FactChecking.parse`); ``parse(reply, parser="study")`` applies the study's case-sensitive exact match.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..core import Example, Source, TaskData
from ..data import climate_fever
from ..errors import InvalidParameter
from ..parsing import FACT_CHECK, parse_reply
from ..prompts import Shot
from .base import Task

SUPPORTS, REFUTES, NOT_ENOUGH_INFO = "SUPPORTS", "REFUTES", "NOT_ENOUGH_INFO"
LABELS = (SUPPORTS, REFUTES, NOT_ENOUGH_INFO)

#: the study's instruction (original ``evaluate_factcheck.py``), verbatim
INSTRUCTION = (
    "Please classify the following Claim into one of three labels based on the Evidence that follows it. "
    "The labels are SUPPORTS, if the Claim is supported by the Evidence; REFUTES, if the Claim is refuted by "
    "the Evidence; or NOT_ENOUGH_INFO, if the Claim is neither supported nor refuted by the Evidence. "
    "Output only one word: SUPPORTS, REFUTES, or NOT_ENOUGH_INFO."
)
#: the study's sentence between the single-prompt shots and the item, verbatim
TRANSITION = (
    "Here is the example that needs to be classified. Please respond with only one word after being "
    "asked for the correct label."
)
QUERY = "Claim: {claim} Evidence: {evidence} What is the correct label?"

#: the study's three fixed Climate-FEVER shots (claim, evidence, label), in the study's order
STUDY_SHOTS = (
    (
        "The Review concluded that CRU's actions were normal and did not threaten the integrity of peer review.",
        'Describing its report as "hugely positive", he stated that "it is especially important that, despite a '
        "deluge of allegations and smears against the CRU, this independent group of utterly reputable scientists "
        'have concluded that there was no evidence of any scientific malpractice."',
        SUPPORTS,
    ),
    (
        "Recent research also indicates that the quantity of fossil fuels staying in the atmosphere is much less "
        "than previously thought.",
        "(2007) concluded that unless energy policies changed substantially, the world would continue to depend on "
        "fossil fuels until 2025–2030.",
        NOT_ENOUGH_INFO,
    ),
    (
        '"Global warming" and "climate change" mean different things and have both been used for decades.',
        "Global warming and climate change are often used interchangeably.",
        REFUTES,
    ),
)

_SHOT_ORDER = (SUPPORTS, NOT_ENOUGH_INFO, REFUTES)


class FactChecking(Task):
    """Climate fact-checking with the study's prompt, shots and label set.

    Shot layout: ``shot_style`` defaults to ``"single"``, all shots in one user prompt followed by the study's
    transition sentence. The study *says* few-shot prompts were multi-turn chats, but its fact-checking
    numbers came from the single-prompt layout: the original ``--multiturn`` switch was dead code (a
    ``type=bool`` flag compared with the string ``'True'``, and the shell lines that passed it never reached
    Python; original-code.md §6 item 7), so every "multiturn" run fell back to one prompt. ``"chat"`` (shots
    as user/assistant turns) stays available through ``messages(..., shot_style="chat")``.

    Parsing (:mod:`labscale.parsing`) is case-insensitive and tolerant of preambles ("The answer is refutes.")
    and explanations after the label, where the original did a case-sensitive exact match (§6 item 12); a reply
    that does not start with a label, or names a second, different label in its first sentence, is
    :data:`~labscale.core.INVALID` and scored as wrong.
    """

    name = "fact_checking"
    title = "Climate fact-checking"
    headline_metrics = ("accuracy", "f1_weighted")
    max_new_tokens = 10
    system_message = None
    instruction = INSTRUCTION
    shot_style = "single"
    transition = TRANSITION
    labels = LABELS

    # -- data (:mod:`labscale.data.climate_fever`) -------------------------------------------------------
    data_module = climate_fever

    def loader_arguments(self, source: str, options: dict[str, Any]) -> dict[str, Any]:
        """Local data is the release without the shot claims: :data:`STUDY_SHOTS` are used as shots for it."""
        return {"exclude_claims": [c for c, _, _ in STUDY_SHOTS]} if source == Source.LOCAL else {}

    # -- prompts ----------------------------------------------------------------------------------------
    def format_input(self, example: Example) -> str:
        return QUERY.format(claim=example.fields["claim"], evidence=example.fields["evidence"])

    def fixed_shots(self, data: TaskData) -> list[Shot]:
        """The study's three shots (SUPPORTS, NOT_ENOUGH_INFO, REFUTES) for hub and local data; for offline
        data, the first SUPPORTS, first NOT_ENOUGH_INFO and first REFUTES item of its own train split."""
        if data.source != "offline":
            return [Shot(QUERY.format(claim=c, evidence=e), label) for c, e, label in STUDY_SHOTS]
        train = data.splits.get("train") or []
        shots = []
        for label in _SHOT_ORDER:
            example = next((ex for ex in train if ex.target == label), None)
            if example is None:
                raise InvalidParameter(
                    f"offline data has no {label} item in its train split to use as a fixed "
                    f"shot (train size {len(train)}); generate a larger train split"
                )
            shots.append(Shot(self.format_input(example), example.target))
        return shots

    # -- parsing and scoring ----------------------------------------------------------------------------
    def parse(self, text: str, *, parser: str = "strict") -> str:
        """The label the reply *starts* with (any case; "NOT ENOUGH INFO" and "not enough information" included,
        after a preamble such as "The answer is" or "Label:"), by :func:`labscale.parsing.parse_label` over
        :data:`~labscale.parsing.FACT_CHECK`; :data:`~labscale.core.INVALID` when the reply does not start
        with a label ("not SUPPORTS"; "it is unclear whether the evidence supports it"), offers alternatives
        ("SUPPORTS or REFUTES") or names a second, different label in its first sentence. Later sentences are an
        explanation: "NOT_ENOUGH_INFO. The evidence neither supports nor refutes it." is NOT_ENOUGH_INFO.
        ``parser="study"``: the study's rule instead (``.`` removed, case-sensitive exact match)."""
        return parse_reply(self.name, text, FACT_CHECK, parser)

    def score(
        self, examples: Sequence[Example], parsed: Sequence[str], *, seed: int = 0, n_resamples: int = 1000
    ) -> dict[str, dict[str, float]]:
        """Accuracy and weighted F1 (the study's choice; INVALID counts as wrong), with bootstrap intervals."""
        from ..metrics import multiclass_classification_metrics

        self.check_replies(examples, parsed)
        gold = [ex.target for ex in examples]
        return multiclass_classification_metrics(gold, list(parsed), labels=LABELS, n_resamples=n_resamples, seed=seed)
