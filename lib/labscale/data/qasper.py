"""QASPER (Dasigi et al., NAACL 2021) for the ``qasper`` task: the release JSON, the hub copy, and synthetic papers.

* :func:`load_hub`: ``allenai/qasper`` (train / validation / test; ``revision=...`` pins it).
* :func:`load_local`: the QASPER release JSON (``qasper-{train,dev,test}-v0.3.json``): a folder holding them (or a
  ``qasper`` folder below it), or one file. A file whose name does not say its split (the shared 1-paper fixture
  ``qasper_sample_small.json``) is loaded as the test split.
* :func:`load_offline`: SYNTHETIC short papers about fictional methods (:mod:`labscale.data.fictional_papers`).

Options (every source): ``context`` (False: the study's "without context" condition -- documents removed and only
answerable questions kept), ``context_chars`` (a character budget for the documents, default 3,000, cut at a
paragraph boundary) and, for real papers, ``context_mode`` ("full" or "evidence"). See :mod:`labscale.tasks.qasper`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ..core import Example, MalformedRows, Source, TaskData, reject_options, require_path
from ..errors import InvalidParameter, check_choice, check_range
from ..hashing import sha256_files
from . import fictional_papers
from .hub import load_hub_splits

TASK = "qasper"
HUB_ID = "allenai/qasper"
HUB_SPLITS = {"train": "train", "validation": "validation", "test": "test"}
RELEASE_FILES = {
    "train": "qasper-train-v0.3.json",
    "validation": "qasper-dev-v0.3.json",
    "test": "qasper-test-v0.3.json",
}
#: the official baseline repository's 1-paper test fixture, the only QASPER file in the data registry
FIXTURE = "qasper/fixtures/data/qasper_sample_small.json"
#: the reference answer of an unanswerable question (and the abstention a model is asked to reply with)
UNANSWERABLE = "Unanswerable"
DEFAULT_CONTEXT_CHARS = 3000
CONTEXT_MODES = ("full", "evidence")


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
    if fixture.is_file():  # the data registry holds only the 1-paper fixture (see its SOURCE.md)
        return {"test": fixture}
    raise InvalidParameter(
        f"no QASPER release file ({', '.join(RELEASE_FILES.values())}) in {str(path)!r}; "
        "pass data_path=<folder or file>"
    )


# -- the three sources -----------------------------------------------------------------------------------------
def _take_options(source: str, options: dict[str, Any], *, real: bool) -> tuple[bool, int | None, str]:
    """(context, context_chars, context_mode) from ``options``; any other option is refused."""
    context = options.pop("context", True)
    if not isinstance(context, bool):
        raise InvalidParameter(f"context must be True or False, got {context!r}")
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
    reject_options(TASK, source, options)
    return context, chars, mode or "full"


def _example(r: Mapping[str, Any], context: bool) -> Example:
    refs = list(r.get("references") or [r["answer"]])
    types = list(r.get("reference_types") or [r["answer_type"]])
    fields = {
        "question": r["question"],
        "document": r["document"] if context else None,
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


def _task_data(
    source: Source,
    origin: str,
    rows_by_split: Mapping[str, list[dict[str, Any]]],
    *,
    context: bool,
    truncated: int,
    chars: int | None,
    **kw: Any,
) -> TaskData:
    splits = {k: [_example(r, context) for r in v] for k, v in rows_by_split.items()}
    if not context:
        # the study's "without context" set: answerable questions only, documents removed
        splits = {k: [ex for ex in v if not ex.meta["should_abstain"]] for k, v in splits.items()}
    notes = [f"context={'with' if context else 'WITHOUT (answerable questions only)'}"]
    if context:
        notes.append(f"documents cut to {chars} characters: {truncated}" if chars else "documents not cut")
    return TaskData(task=TASK, source=source, origin=f"{origin}; {'; '.join(notes)}", splits=splits, **kw)


def load_offline(path=None, *, seed: int = 0, sizes: Mapping[str, int] | None = None, **options: Any) -> TaskData:
    """SYNTHETIC papers from :mod:`labscale.data.fictional_papers` (default 600 / 90 / 240 questions)."""
    context, chars, _ = _take_options("offline", options, real=False)
    splits = fictional_papers.generate(seed=seed, sizes=sizes)
    truncated = 0
    for rows in splits.values():
        for r in rows:
            r["document"], r["truncated"] = truncate_document(r["document"].split("\n\n"), chars)
            truncated += r["truncated"]
    return _task_data(
        Source.OFFLINE,
        f"{fictional_papers.ORIGIN}, seed={seed}",
        splits,
        context=context,
        truncated=truncated,
        chars=chars,
        synthetic=True,
    )


def load_local(path=None, *, seed: int = 0, **options: Any) -> TaskData:
    """The QASPER release JSON (a folder of ``qasper-*-v0.3.json`` files or one file)."""
    context, chars, mode = _take_options("local", options, real=True)
    files = release_files(require_path(path, "QASPER", "qasper"))
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
        rows[split], cut = papers_to_rows(papers, split, context_chars=chars, context_mode=mode, malformed=malformed)
        truncated += cut
    origin = f"{', '.join(str(f) for f in files.values())} (QASPER release format, allenai/qasper; context_mode={mode})"
    return _task_data(
        Source.LOCAL,
        origin,
        rows,
        context=context,
        truncated=truncated,
        chars=chars,
        malformed=malformed,
        content_hash=sha256_files(list(files.values())),
    )


def load_hub(path=None, *, seed: int = 0, revision: str | None = None, **options: Any) -> TaskData:
    """``allenai/qasper`` from the Hugging Face hub (needs network or the datasets cache)."""
    context, chars, mode = _take_options("hub", options, real=True)
    malformed = MalformedRows()

    def convert(split: str, part: Any) -> tuple[list[dict[str, Any]], int]:
        papers = {
            row["id"]: {
                "title": row["title"],
                "abstract": row["abstract"],
                "full_text": row["full_text"],
                "qas": row["qas"],
            }
            for row in part
        }
        return papers_to_rows(papers, split, context_chars=chars, context_mode=mode, malformed=malformed)

    converted = load_hub_splits(HUB_ID, revision, convert, HUB_SPLITS)
    return _task_data(
        Source.HUB,
        f"{HUB_ID} (context_mode={mode})",
        {split: rows for split, (rows, _) in converted.items()},
        context=context,
        truncated=sum(cut for _, cut in converted.values()),
        chars=chars,
        malformed=malformed,
        revision=revision,
    )
