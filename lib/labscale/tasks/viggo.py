"""ViGGO, both directions: utterance -> meaning representation (``viggo``, the companion study's task) and meaning
representation -> utterance (``viggo_nlg``, ViGGO's data-to-text task).

Data (:mod:`labscale.data.viggo`): ``"local"`` is the release CSVs with ViGGO's split, ``"hub"`` is ``GEM/viggo``.

``viggo`` uses the companion study's Code Llama prompt (samlhuillier/viggo-finetune): its instruction verbatim, the
utterance under ``### Target sentence:`` and the MR after ``### Meaning representation:``. Scores
(:mod:`labscale.viggo_eval`): function accuracy, slot precision/recall/F1 over (attribute, value) pairs, the
order-insensitive exact match and the strict (string) exact match the companion study reported.

``viggo_nlg`` asks for one sentence that realises an MR; scores: slot error rate (share of the MR's values the
sentence does not mention) and ROUGE-L against the best of the MR's human references.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from ..core import INVALID, Example, Source, TaskData
from ..data import viggo
from ..errors import InvalidParameter
from ..prompts import Shot
from ..viggo_eval import best_rouge_l, mr_metrics, parse_mr, score_mr, sentence_metrics, slot_error_rate
from .base import Task

#: the companion study's instruction (its Code Llama training prompt), verbatim
INSTRUCTION = (
    "Given a target sentence construct the underlying meaning representation of the input sentence as a single "
    "function with attributes and attribute values.\nThis function should describe the target string accurately and "
    "the function must be one of the following ['inform', 'request', 'give_opinion', 'confirm', 'verify_attribute', "
    "'suggest', 'request_explanation', 'recommend', 'request_attribute'].\nThe attributes must be one of the "
    "following: ['name', 'exp_release_date', 'release_year', 'developer', 'esrb', 'rating', 'genres', "
    "'player_perspective', 'has_multiplayer', 'platforms', 'available_on_steam', 'has_linux_release', "
    "'has_mac_release', 'specifier']"
)
QUERY = "### Target sentence:\n{sentence}\n\n### Meaning representation:"
NLG_INSTRUCTION = (
    "Given the meaning representation of a dialogue act about a video game, write one natural sentence that a "
    "conversational agent would say to express it. Mention every attribute value it gives and nothing else."
)
NLG_QUERY = "### Meaning representation:\n{mr}\n\n### Sentence:"
_FENCES = re.compile(r"^```\w*\s*|\s*```$")
_LABEL = re.compile(r"^\s*(?:###\s*)?(?:meaning representation|mr|sentence|output|answer)\s*:\s*", re.IGNORECASE)


def _first_line(text: str) -> str:
    """The first non-empty line of a reply, without code fences or a leading label."""
    if not isinstance(text, str):
        return ""
    text = _FENCES.sub("", text.strip())
    text = _LABEL.sub("", text, count=1)
    return next((line.strip() for line in text.splitlines() if line.strip()), "")


def parse_representation(text: str) -> str:
    """The MR a reply *starts* with (after an optional "Meaning representation:" label or code fence): its first line
    must parse into one of ViGGO's nine dialogue acts; INVALID otherwise. The line is returned as written (the strict
    exact match compares strings)."""
    line = _first_line(text)
    parsed = parse_mr(line) if line else None
    return line if parsed is not None and parsed.known else INVALID


def parse_sentence(text: str) -> str:
    """The first line of a reply, without a "Sentence:" label or surrounding quotes; INVALID when empty."""
    line = _first_line(text).strip("\"'“” ")
    return line or INVALID


def _distinct_functions(task: Task, data: TaskData, k: int = 3) -> list[Shot]:
    """The first train items of ``k`` different dialogue acts, in train order (the same shots for every item)."""
    train = data.splits.get("train") or []
    chosen: dict[str, Example] = {}
    for ex in train:
        chosen.setdefault(ex.meta.get("function", ""), ex)
        if len(chosen) == k:
            break
    if len(chosen) < k:
        raise InvalidParameter(
            f"the train split ({len(train)} items) has {len(chosen)} dialogue acts, {k} fixed shots need {k}; "
            "load a larger train split"
        )
    return [Shot(task.format_input(ex), task.format_target(ex)) for ex in chosen.values()]


class _ViGGOTask(Task):
    sources = (Source.LOCAL.value, Source.HUB.value)
    system_message = None
    shot_style = "chat"
    data_module = viggo

    def loader_arguments(self, source: str, options: dict[str, Any]) -> dict[str, Any]:
        """Both ViGGO tasks read one data module; it builds the items of this task's direction."""
        return {"task": self.name}

    def fixed_shots(self, data: TaskData) -> list[Shot]:
        """The first train items of three different dialogue acts."""
        return _distinct_functions(self, data)


class ViGGO(_ViGGOTask):
    """Utterance -> meaning representation, the companion study's ViGGO task."""

    name = "viggo"
    title = "ViGGO: utterance to meaning representation"
    headline_metrics = ("exact_match", "slot_f1")
    #: the companion study generated up to 100 new tokens
    max_new_tokens = 100
    instruction = INSTRUCTION
    item_score_names = ("function_correct", "exact", "strict_exact", "tp", "fp", "fn", "invalid")

    def format_input(self, example: Example) -> str:
        return QUERY.format(sentence=example.fields["sentence"])

    def parse(self, text: str) -> str:
        """:func:`parse_representation`."""
        return parse_representation(text)

    def item_scores(self, examples: Sequence[Example], parsed: Sequence[str]) -> dict[str, list[float]]:
        """Per item: function correct, exact and strict exact match, slot true/false positives and false negatives
        (for micro P/R/F1), invalid."""
        self.check_replies(examples, parsed)
        scores = [score_mr(p, ex.target) for ex, p in zip(examples, parsed, strict=True)]
        keys = {"function_correct": "function_correct", "exact": "exact_match", "strict_exact": "strict_exact_match"}
        out = {name: [float(s[key]) for s in scores] for name, key in keys.items()}
        out.update({name: [float(s[name]) for s in scores] for name in ("tp", "fp", "fn")})
        out["invalid"] = [float(p == INVALID) for p in parsed]
        return out

    def score(
        self, examples: Sequence[Example], parsed: Sequence[str], *, seed: int = 0, n_resamples: int = 1000
    ) -> dict[str, dict[str, float]]:
        """Exact and strict exact match, function accuracy, micro slot P/R/F1 (BCa) and the invalid rate."""
        from ..metrics import proportion_of

        self.check_replies(examples, parsed)
        metrics = mr_metrics(list(parsed), [ex.target for ex in examples], n_resamples=n_resamples, seed=seed)
        metrics.pop("valid_rate", None)
        metrics["invalid_rate"] = proportion_of([p == INVALID for p in parsed])
        return metrics


class ViGGONLG(_ViGGOTask):
    """Meaning representation -> utterance, ViGGO's data-to-text task."""

    name = "viggo_nlg"
    title = "ViGGO: meaning representation to utterance"
    headline_metrics = ("slot_error_rate", "rouge_l")
    max_new_tokens = 60
    instruction = NLG_INSTRUCTION
    item_score_names = ("slot_error_rate", "rouge_l", "invalid")

    def format_input(self, example: Example) -> str:
        return NLG_QUERY.format(mr=example.fields["mr"])

    def parse(self, text: str) -> str:
        """:func:`parse_sentence`."""
        return parse_sentence(text)

    def item_scores(self, examples: Sequence[Example], parsed: Sequence[str]) -> dict[str, list[float]]:
        """Per item: slot error rate (1.0 for an invalid reply, which mentions nothing), ROUGE-L against the best
        reference (0.0 for an invalid reply) and invalid."""
        self.check_replies(examples, parsed)
        pairs = list(zip(examples, parsed, strict=True))
        return {
            "slot_error_rate": [1.0 if p == INVALID else slot_error_rate(p, ex.fields["mr"]) for ex, p in pairs],
            "rouge_l": [0.0 if p == INVALID else best_rouge_l(p, ex.fields["references"]) for ex, p in pairs],
            "invalid": [float(p == INVALID) for p in parsed],
        }

    def score(
        self, examples: Sequence[Example], parsed: Sequence[str], *, seed: int = 0, n_resamples: int = 1000
    ) -> dict[str, dict[str, float]]:
        """Mean slot error rate and ROUGE-L against the best reference (BCa; an invalid reply is the empty
        sentence: every slot missed, ROUGE-L 0) and the invalid rate."""
        from ..metrics import proportion_of

        self.check_replies(examples, parsed)
        sentences = ["" if p == INVALID else p for p in parsed]
        metrics = sentence_metrics(
            sentences,
            [ex.fields["mr"] for ex in examples],
            [ex.fields["references"] for ex in examples],
            n_resamples=n_resamples,
            seed=seed,
        )
        metrics["invalid_rate"] = proportion_of([p == INVALID for p in parsed])
        return metrics
