"""BBQ (Parrish et al., Findings of ACL 2022) for the ``bbq`` task: the release files, their hub copy, template items.

* :func:`load_local`: the official release files ``data/<Category>.jsonl`` (``nyu-mll/BBQ``; default folder
  ``<shared data>/bbq/data``), option ``categories`` (file stems; default every file present). The stereotyped
  target option is derived from the row itself (:func:`roles_from_answer_info`), because the release's
  ``supplemental/additional_metadata.csv`` is not available offline; rows it cannot be derived for are counted
  as malformed with the reason, never silently dropped.
* :func:`load_hub`: the same release files from the Hugging Face dataset ``heegyu/bbq``, fetched with
  ``huggingface_hub`` and read by the same parser; ``revision`` pins it.
* :func:`load_offline`: SYNTHETIC template items (:mod:`labscale.data.bbq_templates`), option ``categories``.

BBQ has no train split: every source gives one ``test`` split. See :mod:`labscale.tasks.bbq` for the prompt and
the bias scores.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..core import Example, MalformedRows, Source, TaskData, reject_options, require_path
from ..errors import InvalidParameter, check_choices
from ..hashing import sha256_files
from . import bbq_templates
from .hub import download_hub_file

TASK = "bbq"
HUB_DATASET = "heegyu/bbq"
#: every category file of the official release, in its order
RELEASE_CATEGORIES = (
    "Age",
    "Disability_status",
    "Gender_identity",
    "Nationality",
    "Physical_appearance",
    "Race_ethnicity",
    "Race_x_SES",
    "Race_x_gender",
    "Religion",
    "SES",
    "Sexual_orientation",
)
#: the option letters; the gold target is the letter of the correct option
LETTERS = ("A", "B", "C")

#: the options each source reads (the task takes its scoring options before calling)
_OPTIONS = {"offline": ("categories",), "local": ("categories",), "hub": ("categories", "revision")}


def roles_from_answer_info(row: Mapping[str, Any]) -> tuple[list[str] | None, str | None]:
    """The role of each option (``target``/``non_target``/``unknown``) from a release row, or (None, reason)."""
    info = row.get("answer_info") or {}
    stereotyped = {str(g).lower() for g in ((row.get("additional_metadata") or {}).get("stereotyped_groups") or [])}
    keys = ("ans0", "ans1", "ans2")
    if any(not isinstance(info.get(k), (list, tuple)) or len(info[k]) < 2 for k in keys):
        return None, "answer_info lacks [text, group] for ans0..ans2"
    unknown = [i for i, k in enumerate(keys) if str(info[k][1]).lower() == "unknown"]
    if len(unknown) != 1:
        return None, f"{len(unknown)} options with answer_info group 'unknown' (need exactly 1)"
    if not stereotyped:
        return None, "no additional_metadata.stereotyped_groups"
    others = [i for i in range(3) if i != unknown[0]]
    matches = [i for i in others if str(info[keys[i]][1]).lower() in stereotyped]
    if not matches:  # e.g. Nationality: group labels are regions, stereotyped_groups name the country
        matches = [i for i in others if str(info[keys[i]][0]).lower() in stereotyped]
    if len(matches) != 1:
        return None, (f"{len(matches)} non-unknown options match stereotyped_groups (need exactly 1)")
    roles = ["non_target"] * 3
    roles[unknown[0]], roles[matches[0]] = "unknown", "target"
    return roles, None


def read_release_file(file: Path, malformed: MalformedRows) -> list[Example]:
    """The rows of one release ``<Category>.jsonl`` as examples; bad rows are counted in ``malformed``."""
    examples = []
    for line_no, line in enumerate(file.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            malformed.add(f"{file.name}: line {line_no} is not JSON", line)
            continue
        missing = [
            k
            for k in (
                "example_id",
                "question_polarity",
                "context_condition",
                "context",
                "question",
                "ans0",
                "ans1",
                "ans2",
                "label",
                "answer_info",
            )
            if k not in row
        ]
        if missing:
            malformed.add(f"{file.name}: missing fields {missing}", row)
            continue
        if row["context_condition"] not in ("ambig", "disambig") or row["question_polarity"] not in ("neg", "nonneg"):
            malformed.add(f"{file.name}: unknown context_condition/question_polarity", row)
            continue
        if row["label"] not in (0, 1, 2):
            malformed.add(f"{file.name}: label {row['label']!r} is not 0, 1 or 2", row)
            continue
        roles, reason = roles_from_answer_info(row)
        if roles is None:
            malformed.add(f"{file.name}: {reason}", row)
            continue
        if row["context_condition"] == "ambig" and roles[row["label"]] != "unknown":
            malformed.add(f"{file.name}: ambiguous item whose gold is not the unknown option", row)
            continue
        category = row.get("category") or file.stem
        examples.append(
            _example(
                f"bbq-{file.stem}-{row['example_id']}",
                row["context"],
                row["question"],
                [row["ans0"], row["ans1"], row["ans2"]],
                row["label"],
                roles,
                category=category,
                context_condition=row["context_condition"],
                question_polarity=row["question_polarity"],
                question_index=str(row.get("question_index")),
                stereotyped_groups=list((row.get("additional_metadata") or {}).get("stereotyped_groups") or []),
            )
        )
    return examples


def _example(
    id_: str, context: str, question: str, options: Sequence[str], label: int, roles: Sequence[str], **meta: Any
) -> Example:
    return Example(
        id=id_,
        fields={"context": context, "question": question, "options": list(options)},
        target=LETTERS[label],
        meta={
            **meta,
            "roles": list(roles),
            "gold_role": roles[label],
            "kind": f"{meta['context_condition']}_{meta['question_polarity']}",
        },
    )


def _release_categories(categories: Any, available: Sequence[str]) -> list[str]:
    if categories is None:
        return list(available)
    return check_choices("BBQ category", categories, available)


def _release_folder(path: str | Path | None) -> Path:
    """The folder holding ``<Category>.jsonl``: ``path`` itself, its ``data/`` or ``bbq/data/`` (shared layout)."""
    root = require_path(path, "BBQ", "bbq")
    for folder in (root, root / "data", root / "bbq" / "data"):
        if folder.is_dir() and any((folder / f"{c}.jsonl").is_file() for c in RELEASE_CATEGORIES):
            return folder
    raise InvalidParameter(
        f"no BBQ release files (<Category>.jsonl, e.g. Age.jsonl) in {str(root)!r}, its data/ or "
        f"bbq/data/; pass data_path= the folder of nyu-mll/BBQ's data/"
    )


def load_offline(path=None, *, seed: int = 0, accepted: Sequence[str] = (), **options: Any) -> TaskData:
    """SYNTHETIC template items in all four conditions (option ``categories``). ``accepted`` names options the
    caller already took, listed as valid when an unknown option is refused (as in every loader here)."""
    reject_options(TASK, "offline", options, _OPTIONS["offline"] + tuple(accepted))
    rows = bbq_templates.generate(seed=seed, categories=options.get("categories"))
    examples = [
        _example(
            r["id"],
            r["context"],
            r["question"],
            r["options"],
            r["label"],
            r["roles"],
            category=r["category"],
            context_condition=r["context_condition"],
            question_polarity=r["question_polarity"],
            template=r["template"],
            consistent=r["consistent"],
            stereotyped_groups=r["stereotyped_groups"],
        )
        for r in rows
    ]
    return TaskData(
        task=TASK,
        source=Source.OFFLINE,
        origin=f"{bbq_templates.ORIGIN}, seed={seed}",
        splits={"test": examples},
        synthetic=True,
    )


def load_local(path=None, *, seed: int = 0, accepted: Sequence[str] = (), **options: Any) -> TaskData:
    """The release's ``<Category>.jsonl`` files (option ``categories``; default all present)."""
    reject_options(TASK, "local", options, _OPTIONS["local"] + tuple(accepted))
    folder = _release_folder(path)
    available = [c for c in RELEASE_CATEGORIES if (folder / f"{c}.jsonl").is_file()]
    chosen = _release_categories(options.get("categories"), available)
    files = [folder / f"{c}.jsonl" for c in chosen]
    malformed = MalformedRows()
    examples = [ex for f in files for ex in read_release_file(f, malformed)]
    origin = (
        f"{folder} (nyu-mll/BBQ release: {', '.join(chosen)}; target option derived from answer_info + "
        "stereotyped_groups, not the official additional_metadata.csv)"
    )
    return TaskData(
        task=TASK,
        source=Source.LOCAL,
        origin=origin,
        splits={"test": examples},
        malformed=malformed,
        content_hash=sha256_files(files),
    )


def load_hub(
    path=None, *, seed: int = 0, revision: str | None = None, accepted: Sequence[str] = (), **options: Any
) -> TaskData:
    """The release files from ``heegyu/bbq`` on the Hugging Face Hub (needs network or the hub cache)."""
    reject_options(TASK, "hub", options, _OPTIONS["hub"] + tuple(accepted))
    chosen = _release_categories(options.get("categories"), RELEASE_CATEGORIES)
    way_out = (
        "Use source='offline' (template items) or source='local' (the release files in the data folder named by "
        "LABSCALE_DATA, or data_path=...)."
    )
    files = [download_hub_file(HUB_DATASET, f"data/{c}.jsonl", revision, way_out=way_out) for c in chosen]
    malformed = MalformedRows()
    examples = [ex for f in files for ex in read_release_file(f, malformed)]
    return TaskData(
        task=TASK,
        source=Source.HUB,
        origin=f"{HUB_DATASET} ({', '.join(chosen)})",
        splits={"test": examples},
        revision=revision,
        malformed=malformed,
    )
