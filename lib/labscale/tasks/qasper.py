"""QASPER: answer questions about research papers, and abstain ("Unanswerable") when the papers do not say
(study §4.2, abstention; Tables 6 and 7).

Data sources:

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

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ..errors import InvalidParameter, check_choice, check_range
from ..prompts import Shot
from .base import INVALID, Example, MalformedRows, Task, TaskData, file_sha256, reject_options, require_path

HUB_ID = "allenai/qasper"
HUB_SPLITS = {"train": "train", "validation": "validation", "test": "test"}
RELEASE_FILES = {
    "train": "qasper-train-v0.3.json",
    "validation": "qasper-dev-v0.3.json",
    "test": "qasper-test-v0.3.json",
}

#: the study's system message and instruction (original ``values-tasks/abstention``), verbatim
SYSTEM_MESSAGE = "You are a helpful assistant!"
INSTRUCTION = (
    'Create an Answer to the Question (using following documents). Answer "Unanswerable" when you are '
    "not sure about the answer."
)
QUERY = "## Documents:\n{document}\n\n## Question:\n{question}\n\n## Answer:"
QUERY_NO_CONTEXT = "## Question:\n{question}\n\n## Answer:"
UNANSWERABLE = "Unanswerable"
DEFAULT_CONTEXT_CHARS = 3000
CONTEXT_MODES = ("full", "evidence")
#: the official baseline repository's 1-paper test fixture, the only QASPER file in the shared data folder
FIXTURE = "qasper/fixtures/data/qasper_sample_small.json"
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
    :data:`~labscale.tasks.base.INVALID` when nothing is left.

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


def truncate_document(paragraphs: Sequence[str], budget: int | None) -> tuple[str, bool]:
    """Paragraphs joined by blank lines, cut to at most ``budget`` characters at a paragraph boundary (a first
    paragraph longer than the budget is cut at a word boundary); returns (text, truncated)."""
    text = "\n\n".join(p.strip() for p in paragraphs if p and p.strip())
    if budget is None or len(text) <= budget:
        return text, False
    kept: list[str] = []
    used = 0
    for p in (p.strip() for p in paragraphs if p and p.strip()):
        extra = len(p) + (2 if kept else 0)
        if used + extra > budget:
            if not kept:
                kept.append(p[:budget].rsplit(" ", 1)[0])
            break
        kept.append(p)
        used += extra
    return "\n\n".join(kept), True


# -- the QASPER release format -------------------------------------------------------------------------------
def _records(value: Any) -> list[dict[str, Any]]:
    """A list of dicts from either a list of dicts or a dict of parallel lists (the Hugging Face layout)."""
    if isinstance(value, Mapping):
        keys = list(value)
        return [dict(zip(keys, row, strict=True)) for row in zip(*(value[k] for k in keys), strict=True)]
    return list(value or [])


def reference_answers(annotations: Iterable[Mapping[str, Any]]) -> tuple[list[str], list[str]]:
    """The annotators' answers as QASPER's evaluator writes them, with their types: "Unanswerable" (none),
    "Yes"/"No" (boolean), the extractive spans joined by ", " (extractive), else the free-form answer
    (abstractive)."""
    answers, types = [], []
    for ann in annotations:
        a = ann.get("answer", ann)
        if a.get("unanswerable"):
            answers.append(UNANSWERABLE), types.append("none")
        elif a.get("yes_no") is not None:
            answers.append("Yes" if a["yes_no"] else "No"), types.append("boolean")
        elif a.get("extractive_spans"):
            answers.append(", ".join(a["extractive_spans"])), types.append("extractive")
        elif (a.get("free_form_answer") or "").strip():
            answers.append(a["free_form_answer"].strip()), types.append("abstractive")
    return answers, types


def _evidence(annotations: Iterable[Mapping[str, Any]]) -> list[str]:
    seen: dict[str, None] = {}
    for ann in annotations:
        for ev in ann.get("answer", ann).get("evidence") or []:
            if ev and not ev.startswith("FLOAT SELECTED"):
                seen.setdefault(ev.strip())
    return list(seen)


def papers_to_rows(
    papers: Mapping[str, Mapping[str, Any]],
    split: str,
    *,
    context_chars: int | None,
    context_mode: str,
    malformed: MalformedRows,
) -> tuple[list[dict[str, Any]], int]:
    """Question rows from release-format papers (``{arxiv_id: paper}``); returns (rows, documents truncated)."""
    rows, truncated, seen_ids = [], 0, set()
    for paper_id, paper in papers.items():
        if not isinstance(paper, Mapping) or "qas" not in paper:
            malformed.add("paper without qas", {"paper": paper_id})
            continue
        sections = _records(paper.get("full_text"))
        body = [
            p
            for s in sections
            for p in ([f"{s.get('section_name') or ''}".split(":::")[-1].strip()] if s.get("section_name") else [])
            + list(s.get("paragraphs") or [])
        ]
        head = [paper.get("title") or "", paper.get("abstract") or ""]
        for i, qa in enumerate(_records(paper["qas"])):
            annotations = _records(qa.get("answers"))
            refs, types = reference_answers(annotations)
            if not qa.get("question") or not refs:
                malformed.add("question without a usable answer", {"paper": paper_id, "qa": i})
                continue
            paragraphs = head + (_evidence(annotations) if context_mode == "evidence" else body)
            document, cut = truncate_document(paragraphs, context_chars)
            truncated += cut
            qid = str(qa.get("question_id") or f"{paper_id}-{i}")
            if qid in seen_ids:  # the shared fixture repeats one question_id for all its questions
                qid = f"{qid}#{i}"
            seen_ids.add(qid)
            rows.append(
                {
                    "id": qid,
                    "paper_id": paper_id,
                    "question": qa["question"].strip(),
                    "document": document,
                    "references": refs,
                    "reference_types": types,
                    "answer": refs[0],
                    "answer_type": types[0],
                    "truncated": cut,
                }
            )
    return rows, truncated


def release_files(path: Path) -> dict[str, Path]:
    """Split -> release file, from a file, a folder holding the files, or a folder with a ``qasper`` folder."""
    if path.is_file():
        for split, name in RELEASE_FILES.items():
            if path.name == name:
                return {split: path}
        return {"test": path}
    for folder in (path, path / "qasper"):
        found = {s: folder / n for s, n in RELEASE_FILES.items() if (folder / n).is_file()}
        if found:
            return found
    fixture = path / FIXTURE
    if fixture.is_file():  # the shared data folder holds only the 1-paper fixture (see its SOURCE.md)
        return {"test": fixture}
    raise InvalidParameter(
        f"no QASPER release file ({', '.join(RELEASE_FILES.values())}) in {str(path)!r}; "
        "pass data_path=<folder or file>"
    )


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
    #: set by load(): whether prompts include the documents
    context: bool = True

    # -- data -------------------------------------------------------------------------------------------
    def _take_options(self, options: dict[str, Any], *, real: bool) -> tuple[int | None, str]:
        context = options.pop("context", True)
        if not isinstance(context, bool):
            raise InvalidParameter(f"context must be True or False, got {context!r}")
        self.context = context
        chars = options.pop("context_chars", DEFAULT_CONTEXT_CHARS)
        if chars is not None:
            check_range("context_chars", chars, 200, None, integer=True)
        mode = options.pop("context_mode", None)
        if mode is not None:
            if not real:
                raise InvalidParameter(
                    "context_mode applies to real papers (sources 'local' and 'hub'), not to source 'offline'"
                )
            check_choice("context_mode", mode, CONTEXT_MODES)
        return chars, mode or "full"

    def _data(
        self,
        source: str,
        origin: str,
        rows_by_split: Mapping[str, list[dict[str, Any]]],
        *,
        truncated: int,
        chars: int | None,
        **kw: Any,
    ) -> TaskData:
        splits = {k: [self._example(r) for r in v] for k, v in rows_by_split.items()}
        if not self.context:
            # the study's "without context" set: answerable questions only, documents removed
            splits = {k: [ex for ex in v if not ex.meta["should_abstain"]] for k, v in splits.items()}
        notes = [f"context={'with' if self.context else 'WITHOUT (answerable questions only)'}"]
        if self.context:
            notes.append(f"documents cut to {chars} characters: {truncated}" if chars else "documents not cut")
        return TaskData(task=self.name, source=source, origin=f"{origin}; {'; '.join(notes)}", splits=splits, **kw)

    def _example(self, r: Mapping[str, Any]) -> Example:
        refs = list(r.get("references") or [r["answer"]])
        types = list(r.get("reference_types") or [r["answer_type"]])
        fields = {
            "question": r["question"],
            "document": r["document"] if self.context else None,
            "references": refs,
            "reference_types": types,
        }
        meta = {
            "kind": types[0],
            "should_abstain": all(t == "none" for t in types),
            "truncated": bool(r.get("truncated", False)),
            "paper_id": r.get("paper_id"),
        }
        return Example(id=r["id"], fields=fields, target=refs[0], meta=meta)

    def _load_offline(
        self, *, path=None, seed: int = 0, sizes: Mapping[str, int] | None = None, **options: Any
    ) -> TaskData:
        """SYNTHETIC papers from :mod:`labscale.data.fictional_papers` (default 600 / 90 / 240 questions)."""
        from ..data import fictional_papers

        chars, _ = self._take_options(options, real=False)
        reject_options(self.name, "offline", options)
        splits = fictional_papers.generate(seed=seed, sizes=sizes)
        truncated = 0
        for rows in splits.values():
            for r in rows:
                r["document"], r["truncated"] = truncate_document(r["document"].split("\n\n"), chars)
                truncated += r["truncated"]
        return self._data(
            "offline",
            f"{fictional_papers.ORIGIN}, seed={seed}",
            splits,
            truncated=truncated,
            chars=chars,
            synthetic=True,
        )

    def _load_local(self, *, path=None, seed: int = 0, **options: Any) -> TaskData:
        """The QASPER release JSON (a folder of ``qasper-*-v0.3.json`` files or one file)."""
        chars, mode = self._take_options(options, real=True)
        reject_options(self.name, "local", options)
        files = release_files(require_path(path, "QASPER"))
        malformed = MalformedRows()
        rows, truncated = {}, 0
        for split, file in files.items():
            try:
                papers = json.loads(file.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
                raise InvalidParameter(f"{str(file)!r} is not a QASPER release JSON file: {exc}") from exc
            if not isinstance(papers, Mapping):
                raise InvalidParameter(
                    f"{str(file)!r} is not a QASPER release file (expected an object keyed by "
                    f"paper id, got {type(papers).__name__})"
                )
            rows[split], cut = papers_to_rows(
                papers, split, context_chars=chars, context_mode=mode, malformed=malformed
            )
            truncated += cut
        origin = (
            f"{', '.join(str(f) for f in files.values())} (QASPER release format, allenai/qasper; context_mode={mode})"
        )
        return self._data(
            "local",
            origin,
            rows,
            truncated=truncated,
            chars=chars,
            malformed=malformed,
            content_hash=file_sha256(list(files.values())),
        )

    def _load_hub(self, *, path=None, seed: int = 0, revision: str | None = None, **options: Any) -> TaskData:
        """``allenai/qasper`` from the Hugging Face hub (needs network or the datasets cache)."""
        from ..data.hub import load_hub_dataset

        chars, mode = self._take_options(options, real=True)
        reject_options(self.name, "hub", options)
        dataset = load_hub_dataset(HUB_ID, revision)
        malformed = MalformedRows()
        rows, truncated = {}, 0
        for hub_name, split in HUB_SPLITS.items():
            if hub_name not in dataset:
                continue
            papers = {
                row["id"]: {
                    "title": row["title"],
                    "abstract": row["abstract"],
                    "full_text": row["full_text"],
                    "qas": row["qas"],
                }
                for row in dataset[hub_name]
            }
            rows[split], cut = papers_to_rows(
                papers, split, context_chars=chars, context_mode=mode, malformed=malformed
            )
            truncated += cut
        return self._data(
            "hub",
            f"{HUB_ID} (context_mode={mode})",
            rows,
            truncated=truncated,
            chars=chars,
            malformed=malformed,
            revision=revision,
        )

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

    def item_scores(self, examples: Sequence[Example], parsed: Sequence[str]) -> dict[str, list[float]]:
        """Per-item answer F1 and exact match (max over references), for selective prediction."""
        from ..metrics import best_reference, exact_match

        preds = ["" if p == INVALID else p for p in parsed]
        return {
            "f1": [best_reference(p, ex.fields["references"])[0] for ex, p in zip(examples, preds, strict=True)],
            "exact": [
                best_reference(p, ex.fields["references"], exact_match)[0]
                for ex, p in zip(examples, preds, strict=True)
            ],
        }

    def score(
        self, examples: Sequence[Example], parsed: Sequence[str], *, seed: int = 0, n_resamples: int = 1000
    ) -> dict[str, dict[str, float]]:
        """Answer F1 (overall and by type), abstention rate (+ precision/recall with context), invalid rate."""
        from ..metrics import qasper_metrics

        if len(examples) != len(parsed):
            raise InvalidParameter(
                f"score needs one parsed reply per example: {len(examples)} examples, {len(parsed)} replies"
            )
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
