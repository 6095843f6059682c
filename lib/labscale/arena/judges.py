"""Judges: who decides each battle of :mod:`labscale.arena.battles`, from run records.

* :func:`gold_battles`: labelled tasks; the run that is right where the other is wrong wins, otherwise a tie.
* :func:`reference_battles`: summaries; the answer closer to the reference by a per-item metric wins, a difference
  within a tie band is a tie.
* :func:`llm_battles`: a model judges with MT-Bench's pairwise prompt (:data:`JUDGE_PROMPT`), every battle in both
  presentation orders; its judgments are a run record written through :func:`labscale.protocol.execute`.

People judge through an annotation sheet (:mod:`labscale.arena.sheets`). Every judge reads the answers of several
runs to the same items as :class:`Answers`.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .. import records
from ..core import INVALID
from ..errors import InvalidParameter, LabscaleError, check_choice, check_range
from ..summary_scores import SummaryScores, read_summary_scores, run_label
from .battles import BATTLE_COLUMNS, check_battles, pairs, presentation_order

#: the per-item metrics a reference judge may compare answers on
REFERENCE_METRICS = ("rouge1", "rouge2", "rougeL", "bertscore_f1")
#: the judges :func:`battles_from_runs` dispatches to
JUDGES = ("gold", "reference", "llm")
#: a model judge's verdicts: the first answer shown ("A") is better, the second ("B"), or a tie ("C")
VERDICTS = ("A", "B", "C")

#: MT-Bench's pairwise judge prompt (Zheng et al. 2023, "pair-v2"), its user question widened to the study's
#: requests: a summary of a doctor-patient dialogue on a topic, or a task's input
JUDGE_PROMPT = {
    "system": (
        "Please act as an impartial judge and evaluate the quality of the responses provided by two AI assistants "
        "to the user request displayed below. The request is either to summarize a doctor-patient dialogue, with "
        "the dialogue and the topic of the summary given, or a task with its input given. You should choose the "
        "assistant that follows the user's instructions and answers the user's request better. Your evaluation "
        "should consider factors such as the helpfulness, relevance, accuracy, completeness and faithfulness to "
        "the input of their responses. Begin your evaluation by comparing the two responses and provide a short "
        "explanation. Avoid any position biases and ensure that the order in which the responses were presented "
        "does not influence your decision. Do not allow the length of the responses to influence your evaluation. "
        "Do not favor certain names of the assistants. Be as objective as possible. After providing your "
        'explanation, output your final verdict by strictly following this format: "[[A]]" if assistant A is '
        'better, "[[B]]" if assistant B is better, and "[[C]]" for a tie.'
    ),
    "user": (
        "[User Request]\n{request}\n\n"
        "[The Start of Assistant A's Answer]\n{answer_a}\n[The End of Assistant A's Answer]\n\n"
        "[The Start of Assistant B's Answer]\n{answer_b}\n[The End of Assistant B's Answer]"
    ),
}

#: how a model judge's two verdicts on one battle (the two presentation orders) make one, as MT-Bench does
TIE_RULE = (
    "each battle is judged in both presentation orders; the verdicts agree: that winner (consistent); they "
    "disagree, or one is a tie and the other not: a tie (not consistent); an INVALID verdict (no single [[A]], "
    "[[B]] or [[C]]) counts as a tie and is counted in the invalid column"
)

_VERDICT = re.compile(r"\[\[([ABC])\]\]")


# -- answers -------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Answers:
    """The answers of several runs to the same items: what a judge compares.

    ``texts[label]`` holds one answer per item of ``ids`` (a summary's parsed text, "" when invalid; a labelled
    task's raw reply); ``runs`` holds each label's record folder ("" when unknown); ``source`` the data source."""

    task: str
    source: str
    ids: tuple[str, ...]
    labels: tuple[str, ...]
    texts: Mapping[str, tuple[str, ...]]
    references: tuple[str, ...]
    runs: tuple[str, ...]

    def select(
        self, labels: Sequence[str] | None = None, items: int | Sequence[str] | None = None, seed: int = 0
    ) -> Answers:
        """These answers for the runs ``labels`` (in that order) and ``items``: ids, or a number of items drawn
        with ``seed`` (kept in this order)."""
        chosen = list(self.labels) if labels is None else list(labels)
        for label in chosen:
            check_choice("run", label, self.labels)
        pairs(chosen)  # at least two, none twice
        rows = _item_rows(self.ids, items, seed)
        return replace(
            self,
            ids=tuple(self.ids[k] for k in rows),
            labels=tuple(chosen),
            texts={label: tuple(self.texts[label][k] for k in rows) for label in chosen},
            references=tuple(self.references[k] for k in rows),
            runs=tuple(self.runs[self.labels.index(label)] for label in chosen),
        )


def _item_rows(ids: Sequence[str], items: int | Sequence[str] | None, seed: int) -> list[int]:
    """Row numbers of ``items`` in ``ids``: all, the given ids, or ``items`` rows drawn with ``seed``, in order."""
    if items is None:
        return list(range(len(ids)))
    if isinstance(items, int) and not isinstance(items, bool):
        check_range("items", items, 1, None, integer=True)
        return sorted(random.Random(seed).sample(range(len(ids)), min(items, len(ids))))
    if isinstance(items, str) or not isinstance(items, Iterable):
        raise InvalidParameter(f"items must be a number of items or a list of item ids, got {items!r}")
    chosen = list(items)
    if not chosen:
        raise InvalidParameter("items must not be empty")
    where = {item: k for k, item in enumerate(ids)}
    missing = [item for item in chosen if item not in where]
    if missing:
        raise InvalidParameter(f"{len(missing)} of the items are not answered by these runs, e.g. {missing[0]!r}")
    return [where[item] for item in chosen]


def read_answers(runs: Iterable[str | Path]) -> Answers:
    """The answers of the run records ``runs`` (same task, same items; refused otherwise, naming the runs)."""
    read = _read_records(runs)
    task = read[0][1]["task"]
    ids = tuple(read[0][2].index)
    texts = {}
    for _, params, frame in read:
        if task == "summarization":
            answer = [("" if bool(inv) else str(p)) for p, inv in zip(frame["parsed"], frame["invalid"], strict=True)]
        else:
            answer = [str(reply) for reply in frame["reply"]]
        texts[run_label(params)] = tuple(answer)
    return Answers(
        task=task,
        source=str(read[0][1].get("source", "")),
        ids=ids,
        labels=tuple(texts),
        texts=texts,
        references=tuple(str(t) for t in read[0][2]["target"]),
        runs=tuple(str(path) for path, _, _ in read),
    )


def answers_of(source: SummaryScores | Answers | Iterable[str | Path]) -> Answers:
    """:class:`Answers` from summary scores, run record folders, or answers already read."""
    if isinstance(source, Answers):
        return source
    if not isinstance(source, SummaryScores):
        return read_answers(source)
    runs = source.runs["run"].astype(str).tolist() if "run" in source.runs else [""] * len(source.labels)
    params = Path(runs[0]) / "params.json"
    origin = json.loads(params.read_text()).get("source", "") if runs[0] and params.is_file() else ""
    return Answers(
        task="summarization",
        source=str(origin),
        ids=tuple(source.ids),
        labels=tuple(source.labels),
        texts=dict(zip(source.labels, source.summaries, strict=True)),
        references=tuple(source.references),
        runs=tuple(runs),
    )


def _read_records(runs: Iterable[str | Path]) -> list[tuple[Path, dict, pd.DataFrame]]:
    """``(folder, params, predictions by id)`` of each record, in the first run's item order: one task, one item
    set, one label per run; refused otherwise, naming the runs."""
    paths = [Path(r) for r in ([runs] if isinstance(runs, (str, Path)) else runs)]
    if len(paths) < 2:
        raise InvalidParameter(f"a battle needs at least two run records, got {[str(p) for p in paths]}")
    read = []
    for path in paths:
        record = records.read_run(path)
        read.append((path, record["params"], record["predictions"].set_index("id", drop=False)))
    first_path, first, first_frame = read[0]
    labels = [run_label(params) for _, params, _ in read]
    twice = sorted({label for label in labels if labels.count(label) > 1})
    if twice:
        raise InvalidParameter(f"two runs share a label: {twice}; judge runs of different models or scenarios")
    for path, params, frame in read[1:]:
        if params["task"] != first["task"]:
            raise InvalidParameter(
                f"{str(path)!r} is a {params['task']!r} run but {str(first_path)!r} a {first['task']!r} run; "
                "battles compare runs of one task"
            )
        if set(frame.index) != set(first_frame.index):
            raise InvalidParameter(
                f"{str(path)!r} and {str(first_path)!r} answer different items "
                f"({len(set(frame.index) ^ set(first_frame.index))} differ); battles compare runs on the same items"
            )
    return [(path, params, frame.loc[list(first_frame.index)]) for path, params, frame in read]


def item_contexts(answers: Answers) -> dict[str, str]:
    """The request each item put to the runs (the task's instruction and input: for a summary, the dialogue and
    the topic), reloaded from the data the first run recorded; refused, with the fix, when it cannot be."""
    run = next((r for r in answers.runs if r), None)
    if run is None:
        raise InvalidParameter("these answers name no run record to reload their inputs from; pass contexts=")
    from ..tasks import get_task

    params = json.loads((Path(run) / "params.json").read_text())
    task = get_task(params["task"])
    try:
        data = task.load(
            params["source"],
            path=params.get("data_path"),
            seed=params.get("data_seed", 0),
            **(params.get("task_options") or {}),
        )
        examples = {ex.id: ex for ex in data.split(params.get("split", "test"))}
    except LabscaleError as exc:
        raise InvalidParameter(f"the inputs of {run!r} cannot be reloaded ({exc}); pass contexts=") from exc
    missing = [item for item in answers.ids if item not in examples]
    if missing:
        raise InvalidParameter(
            f"{len(missing)} items of {run!r} are not in its recorded data, e.g. {missing[0]!r}; pass contexts="
        )
    return {
        item: f"{task.instruction_for(examples[item])}\n\n{task.format_input(examples[item])}" for item in answers.ids
    }


def contexts_for(answers: Answers, contexts: Mapping[str, str] | None) -> dict[str, str]:
    """``contexts`` checked to cover every item, or the recorded ones."""
    if contexts is None:
        return item_contexts(answers)
    missing = [item for item in answers.ids if item not in contexts]
    if missing:
        raise InvalidParameter(f"contexts lack {len(missing)} of the items, e.g. {missing[0]!r}")
    return {item: str(contexts[item]) for item in answers.ids}


# -- gold and reference judges ------------------------------------------------------------------------------------
def _battle_frame(item: Sequence[str], a: str, b: str, winners: Sequence[str], judge: str, seed: int, **extra: Any):
    """The battles of one pair on ``item``, in :data:`BATTLE_COLUMNS` (order "ab": these judges see no order)."""
    return pd.DataFrame(
        {
            "item": list(item),
            "model_a": a,
            "model_b": b,
            "winner": list(winners),
            "judge": judge,
            "order": "ab",
            "seed": seed,
            "consistent": pd.NA,
            **extra,
        }
    )


def _winners(a_better: np.ndarray, b_better: np.ndarray) -> np.ndarray:
    return np.where(a_better, "model_a", np.where(b_better, "model_b", "tie"))


def gold_battles(runs: Iterable[str | Path], *, seed: int = 0) -> pd.DataFrame:
    """Battles of labelled-task runs on the same items, judged by the gold labels: per item and pair, the run
    that is right where the other is wrong wins; both right or both wrong is a tie (judge ``"gold"``)."""
    check_range("seed", seed, 0, 2**32 - 1, integer=True)
    read = _read_records(runs)
    correct = {}
    for path, params, frame in read:
        if "scores" not in frame or not all(isinstance(s, dict) and "correct" in s for s in frame["scores"]):
            raise InvalidParameter(
                f"{str(path)!r} (task {params['task']!r}) stores no per-item 'correct' score; gold battles need a "
                "labelled task"
            )
        correct[run_label(params)] = np.array([bool(s["correct"]) for s in frame["scores"]])
    ids = list(read[0][2].index)
    frames = [
        _battle_frame(ids, a, b, _winners(correct[a] & ~correct[b], correct[b] & ~correct[a]), "gold", seed)
        for a, b in pairs(correct)
    ]
    return check_battles(pd.concat(frames, ignore_index=True), correct)


def reference_battles(
    scores: SummaryScores,
    *,
    metric: str = "bertscore_f1",
    tie_band: float = 0.01,
    labels: Sequence[str] | None = None,
    seed: int = 0,
) -> pd.DataFrame:
    """Battles of summarization runs judged by closeness to the reference: per item and pair, the summary with the
    higher ``metric`` wins; a difference within ``tie_band`` (inclusive) is a tie. Judge
    ``reference:<metric>±<tie_band>``; the ``difference`` column holds model_a's value minus model_b's."""
    check_choice("metric", metric, REFERENCE_METRICS)
    check_range("tie_band", tie_band, 0.0, None)
    check_range("seed", seed, 0, 2**32 - 1, integer=True)
    chosen = scores.labels if labels is None else list(labels)
    values = {label: scores.item_values(metric, label) for label in chosen}
    judge = f"reference:{metric}±{tie_band}"
    frames = []
    for a, b in pairs(chosen):
        difference = values[a] - values[b]
        decisive = np.abs(difference) > tie_band + 1e-12  # a difference equal to the band, up to rounding, ties
        winners = _winners(decisive & (difference > 0), decisive & (difference < 0))
        frames.append(_battle_frame(scores.ids, a, b, winners, judge, seed, difference=difference))
    return check_battles(pd.concat(frames, ignore_index=True), chosen)


# -- the model judge ----------------------------------------------------------------------------------------------
def parse_verdict(text: str | None) -> str:
    """A model judge's verdict: ``"A"``, ``"B"`` or ``"C"`` when exactly one of ``[[A]]``, ``[[B]]``, ``[[C]]``
    appears in ``text`` (repeats of it allowed, other text ignored); :data:`~labscale.core.INVALID` when none
    does or two different ones do."""
    found = set(_VERDICT.findall(text or ""))
    return found.pop() if len(found) == 1 else INVALID


def verdict_winner(verdict: str, order: str) -> str:
    """The battle winner a verdict names when the answers were shown in ``order``: ``[[A]]`` is the answer shown
    first (model_a's in order "ab"); a tie or an INVALID verdict is a tie."""
    if verdict == "A":
        return "model_a" if order == "ab" else "model_b"
    if verdict == "B":
        return "model_b" if order == "ab" else "model_a"
    return "tie"


def combine_orders(first: str, second: str) -> tuple[str, bool]:
    """One battle's winner from its winners in the two presentation orders (:data:`TIE_RULE`, MT-Bench's
    convention): the same winner -> that winner, consistent; otherwise a tie, not consistent."""
    return (first, True) if first == second else ("tie", False)


def judge_messages(request: str, first: str, second: str) -> list[dict[str, str]]:
    """The judge's conversation for one presentation: ``first`` is shown as assistant A."""
    user = JUDGE_PROMPT["user"].format(request=request, answer_a=first, answer_b=second)
    return [{"role": "system", "content": JUDGE_PROMPT["system"]}, {"role": "user", "content": user}]


def _judgments(answers: Answers, contexts: Mapping[str, str], seed: int) -> list[dict[str, Any]]:
    """Every (item, pair, order) to judge, the seeded first presentation of each battle first, with its messages."""
    rows = []
    for k, item in enumerate(answers.ids):
        for a, b in pairs(answers.labels):
            first = presentation_order(seed, item, a, b)
            for order in (first, "ba" if first == "ab" else "ab"):
                shown = (a, b) if order == "ab" else (b, a)
                messages = judge_messages(contexts[item], *(answers.texts[label][k] for label in shown))
                rows.append(
                    {
                        "id": item,
                        "model_a": a,
                        "model_b": b,
                        "order": order,
                        "first": order == first,
                        "messages": messages,
                    }
                )
    return rows


def judge_battles(run_dir: str | Path) -> pd.DataFrame:
    """The battle table of a model judge's record (:func:`llm_battles`): its two verdicts per battle combined by
    :func:`combine_orders`; ``order`` is the first presentation, ``invalid`` the number of INVALID verdicts, and
    ``consistent`` is missing where a verdict is INVALID (as in the record's ``swap_consistency``)."""
    record = records.read_run(run_dir)
    params, frame = record["params"], record["predictions"]
    rows = []
    for (item, a, b), both in frame.groupby(["id", "model_a", "model_b"], sort=False):
        first, second = both[both["first"]].iloc[0], both[~both["first"]].iloc[0]
        winner, consistent = combine_orders(first["winner"], second["winner"])
        if both["invalid"].any():  # an INVALID verdict says nothing of position bias: consistency not measured
            consistent = pd.NA
        rows.append(
            {
                "item": item,
                "model_a": a,
                "model_b": b,
                "winner": winner,
                "judge": f"llm:{params['model']}",
                "order": first["order"],
                "seed": params["seed"],
                "consistent": consistent,
                "invalid": int(both["invalid"].sum()),
            }
        )
    return check_battles(pd.DataFrame(rows, columns=[*BATTLE_COLUMNS, "invalid"]), params["judged"])


def _judge_spec(spec: Any, answers: Answers, *, limited: bool, seed: int, max_new_tokens: int) -> Any:
    """The run specification of a model judge's record: the judged runs, the prompt and the tie rule as settings."""
    from ..backends import Decoding
    from ..protocol import RunSpec

    return RunSpec(
        experiment="arena_judge",
        model=spec,
        task=answers.task,
        source=answers.source or "unknown",
        scenario="pairwise",
        limit=len(answers.ids) if limited else None,
        seed=seed,
        decoding=Decoding(max_new_tokens=max_new_tokens, seed=seed),
        settings={
            "judged": list(answers.labels),
            "judged_runs": list(answers.runs),
            "judge_prompt": JUDGE_PROMPT,
            "verdicts": {"A": "first answer shown", "B": "second answer shown", "C": "tie"},
            "tie_rule": TIE_RULE,
        },
    )


def _judged(jobs: Sequence[Mapping[str, Any]], replies: Sequence[Any]) -> list[dict[str, Any]]:
    """One prediction row per judgment: the battle, the order, the raw reply, its verdict and the winner it names."""
    rows = []
    for job, reply in zip(jobs, replies, strict=True):
        verdict = parse_verdict(reply.text)
        rows.append(
            {
                **{k: v for k, v in job.items() if k != "messages"},
                "reply": reply.text,
                "parsed": verdict,
                "invalid": verdict == INVALID,
                "winner": verdict_winner(verdict, job["order"]),
                "prompt_tokens": reply.prompt_tokens,
                "completion_tokens": reply.completion_tokens,
                "cached": reply.cached,
            }
        )
    return rows


def _judge_metrics(predictions: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The share of INVALID verdicts (over judgments) and the share of battles whose two orders agree, over the
    battles with two valid verdicts (two INVALID verdicts "agree" on a tie but say nothing of position bias)."""
    from ..metrics import proportion_of

    frame = pd.DataFrame(predictions)
    consistent = [
        combine_orders(*both["winner"])[1]
        for _, both in frame.groupby(["id", "model_a", "model_b"], sort=False)
        if not both["invalid"].any()
    ]
    return {
        "invalid_rate": proportion_of(frame["invalid"].to_numpy()),
        "swap_consistency": proportion_of(consistent, over="battles with two valid verdicts"),
    }


def llm_battles(
    answers: SummaryScores | Answers | Iterable[str | Path],
    judge_model: str = "smollm2-135m",
    *,
    labels: Sequence[str] | None = None,
    items: int | Sequence[str] | None = None,
    contexts: Mapping[str, str] | None = None,
    seed: int = 0,
    output_dir: str | Path = "runs/arena_judge",
    max_new_tokens: int = 256,
    cache: Any = None,
    reuse: bool = True,
) -> pd.DataFrame:
    """Battles judged by the model ``judge_model`` (a model string) with :data:`JUDGE_PROMPT`.

    Every battle (item and pair of ``labels`` among ``answers``: summary scores, run records or
    :class:`Answers`) is judged in both presentation orders through the backend and the response cache, greedily,
    and the verdicts are combined by :data:`TIE_RULE`. ``items`` limits the items (a number drawn with ``seed``,
    or ids); ``contexts`` maps item ids to the request shown to the judge (default: reloaded from the first run's
    recorded data, :func:`item_contexts`). The judgments are a run record under ``output_dir`` (experiment
    ``arena_judge``; one prediction per item, pair and order; metrics ``invalid_rate`` over judgments and
    ``swap_consistency`` over battles with two valid verdicts); the same inputs reuse it without a model call.
    Returns :func:`judge_battles` of that record."""
    from ..backends import load_backend, parse_model_spec
    from ..cache import ResponseCache
    from ..protocol import Produced, execute

    spec = parse_model_spec(judge_model)
    check_range("max_new_tokens", max_new_tokens, 1, 8192, integer=True)
    check_range("seed", seed, 0, 2**32 - 1, integer=True)
    chosen = answers_of(answers).select(labels, items, seed)
    jobs = _judgments(chosen, contexts_for(chosen, contexts), seed)
    conversations = [job["messages"] for job in jobs]
    run = _judge_spec(spec, chosen, limited=items is not None, seed=seed, max_new_tokens=max_new_tokens)
    backend = load_backend(spec, cache=cache if cache is not None else ResponseCache())

    def produce() -> Produced:
        backend.reset_stats()
        predictions = _judged(jobs, backend.generate(conversations, run.decoding, desc=f"judge {spec.label}"))
        provenance = {"items": len(chosen.ids), "judgments": len(jobs), "example_messages": conversations[0]}
        return Produced(predictions, _judge_metrics(predictions), provenance, backend=backend)

    digest = hashlib.sha256(json.dumps([list(chosen.labels), list(chosen.ids)]).encode()).hexdigest()[:12]
    run_dir = Path(output_dir) / spec.slug / chosen.task / f"pairwise-{digest}"
    try:
        execute(run, run_dir, produce, identity=backend.identity(), inputs=(chosen.ids, conversations), reuse=reuse)
    finally:
        backend.close()
    return judge_battles(run_dir)


def battles_from_runs(runs: Iterable[str | Path], judge: str = "gold", **options: Any) -> pd.DataFrame:
    """Battles of the run records ``runs`` by ``judge``: :func:`gold_battles`, :func:`reference_battles` (on
    their summary scores) or :func:`llm_battles`, each given ``options``."""
    check_choice("judge", judge, JUDGES)
    runs = list(runs)
    if judge == "gold":
        return gold_battles(runs, **options)
    if judge == "reference":
        return reference_battles(read_summary_scores(runs), **options)
    return llm_battles(runs, **options)


__all__ = [
    "JUDGES",
    "JUDGE_PROMPT",
    "REFERENCE_METRICS",
    "TIE_RULE",
    "VERDICTS",
    "Answers",
    "answers_of",
    "battles_from_runs",
    "combine_orders",
    "contexts_for",
    "gold_battles",
    "item_contexts",
    "judge_battles",
    "judge_messages",
    "llm_battles",
    "parse_verdict",
    "read_answers",
    "reference_battles",
    "verdict_winner",
]
