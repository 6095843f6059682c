"""Climate-FEVER for the ``fact_checking`` task: the study's Hugging Face copy, the original release file, and
synthetic claims (:func:`load_offline`, :mod:`labscale.data.synthetic_claims`).

* :func:`load_hub` reads ``amandakonet/climate_fever_adopted``, the copy with train/valid/test splits that the
  study used (4,298 / 1,842 / 1,535 claim-evidence pairs).
* :func:`load_release` reads the authors' original ``climate-fever.jsonl`` (Diggelmann et al. 2020,
  ``tdiggelm/climate-fever-dataset``): 1,535 claims with 5 labelled evidence sentences each, 7,675 pairs, and
  **no split**. We make one: every claim goes, with all 5 of its evidences, to one split chosen by a SHA-256
  hash of its ``claim_id``; claims are ranked by that hash and cut at 56% / 24% / 20%, the proportions of the
  study's 4,298 / 1,842 / 1,535. **This is not the hub dataset's split**, so numbers on it are not comparable
  item by item with the study's. Claims that the task uses as fixed few-shot examples are removed from every
  split (matched on normalized claim text, so quoting differences do not hide a duplicate).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..core import Example, MalformedRows, Source, TaskData, reject_options, require_path
from ..errors import InvalidParameter
from ..hashing import sha256_files
from . import synthetic_claims
from .hub import load_hub_splits

TASK = "fact_checking"
HUB_ID = "amandakonet/climate_fever_adopted"
#: the hub dataset's split names -> ours
HUB_SPLITS = {"train": "train", "valid": "validation", "test": "test"}
RELEASE_FILE = "climate-fever.jsonl"
RELEASE_FOLDER = "climate-fever"
LABELS = ("SUPPORTS", "REFUTES", "NOT_ENOUGH_INFO")
#: the release's claim-level labels (the evidence labels plus DISPUTED)
CLAIM_LABELS = ("SUPPORTS", "REFUTES", "NOT_ENOUGH_INFO", "DISPUTED")
#: (split, share of claims): the study's 4,298 / 1,842 / 1,535 of 7,675 pairs
SPLIT_SHARES = (("train", 0.56), ("validation", 0.24), ("test", 0.20))
SPLIT_SALT = "labscale:climate-fever:v1"


def normalize_claim(text: str) -> str:
    """Lower case with everything but letters and digits removed: how claims are matched against shots."""
    return re.sub(r"[^a-z0-9]+", "", text.lower())


def _label_name(value: Any, feature: Any) -> str:
    if isinstance(value, int) and hasattr(feature, "int2str"):
        return feature.int2str(value)
    return str(value).strip()


def hub_rows(revision: str | None = None) -> dict[str, list[dict[str, Any]]]:
    """The study's splits as ``{split: [{"id", "claim", "evidence", "label"}, ...]}`` (valid -> validation)."""

    def convert(name: str, part: Any) -> list[dict[str, Any]]:
        feature = part.features.get("evidence_label")
        return [
            {
                "id": f"{name}-{i:05d}",
                "claim": row["claim"],
                "evidence": row["evidence"],
                "label": _label_name(row["evidence_label"], feature),
            }
            for i, row in enumerate(part)
        ]

    return load_hub_splits(HUB_ID, revision, convert, HUB_SPLITS)


# -- the original release ---------------------------------------------------------------------------------
@dataclass
class Release:
    """The parsed release: pairs per split, the dropped rows, the excluded shot claims and the file read."""

    file: Path
    splits: dict[str, list[dict[str, Any]]]
    malformed: MalformedRows = field(default_factory=MalformedRows)
    excluded_claim_ids: list[str] = field(default_factory=list)
    excluded_pairs: int = 0
    claims_per_split: dict[str, int] = field(default_factory=dict)


def release_file(path: str | Path) -> Path:
    """``climate-fever.jsonl`` from the file itself, its folder, or the shared data root holding that folder."""
    path = Path(path)
    for candidate in (path, path / RELEASE_FILE, path / RELEASE_FOLDER / RELEASE_FILE):
        if candidate.is_file():
            return candidate
    raise InvalidParameter(
        f"no {RELEASE_FILE} at {str(path)!r} (looked for the file, {RELEASE_FILE} inside it, and "
        f"{RELEASE_FOLDER}/{RELEASE_FILE} inside it)"
    )


def split_of_claims(claim_ids: Iterable[str]) -> dict[str, str]:
    """Claim id -> split: claims ranked by SHA-256 of salt + id, cut at the :data:`SPLIT_SHARES` proportions."""
    ranked = sorted(set(claim_ids), key=lambda c: hashlib.sha256(f"{SPLIT_SALT}:{c}".encode()).hexdigest())
    n = len(ranked)
    n_train = round(SPLIT_SHARES[0][1] * n)
    n_validation = round(SPLIT_SHARES[1][1] * n)
    out = {}
    for i, claim_id in enumerate(ranked):
        out[claim_id] = "train" if i < n_train else "validation" if i < n_train + n_validation else "test"
    return out


def load_release(path: str | Path, exclude_claims: Iterable[str] = ()) -> Release:
    """Read the release JSONL into claim-evidence pairs, dropping malformed rows and the ``exclude_claims``.

    A malformed line (bad JSON, no claim id or text, no evidence list, a ``claim_label`` that is present but not
    one of :data:`CLAIM_LABELS`) drops its claim; a malformed evidence (missing or unknown ``evidence_label``,
    empty text) drops that pair only. Both are counted in ``Release.malformed`` with the reason and the first
    offending row as an example. Labels are matched exactly: an unknown one (``"supports"``, ``"MIXED"``) is
    reported, never mapped onto a known label. A line without ``claim_label`` keeps its pairs (the claim label
    is carried in ``meta`` only; the targets are the evidence labels), with ``meta["claim_label"] = None``.
    """
    file = release_file(path)
    excluded = {normalize_claim(c) for c in exclude_claims}
    malformed = MalformedRows()
    claims: list[tuple[str, str, dict[str, Any], list[dict[str, Any]]]] = []
    excluded_ids: list[str] = []
    excluded_pairs = 0
    seen_ids: set[str] = set()
    with file.open(encoding="utf-8") as handle:
        for line_no, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                malformed.add("bad JSON", f"line {line_no}: {line.strip()}")
                continue
            if not isinstance(row, dict):
                malformed.add("not a JSON object", f"line {line_no}: {line.strip()}")
                continue
            claim_id, claim = row.get("claim_id"), row.get("claim")
            evidences = row.get("evidences")
            if claim_id is None or str(claim_id).strip() == "":
                malformed.add("missing claim_id", row)
                continue
            claim_id = str(claim_id)
            if claim_id in seen_ids:
                malformed.add("duplicate claim_id", row)
                continue
            if not isinstance(claim, str) or not claim.strip():
                malformed.add("missing or empty claim", row)
                continue
            if not isinstance(evidences, list) or not evidences:
                malformed.add("missing evidences", row)
                continue
            claim_label = row.get("claim_label")
            if claim_label is not None and claim_label not in CLAIM_LABELS:
                malformed.add(f"unknown claim_label {claim_label!r}", row)
                continue
            seen_ids.add(claim_id)
            if normalize_claim(claim) in excluded:
                excluded_ids.append(claim_id)
                excluded_pairs += len(evidences)
                continue
            pairs = []
            for j, ev in enumerate(evidences):
                if not isinstance(ev, dict):
                    malformed.add("evidence is not an object", {"claim_id": claim_id, "evidence": ev})
                    continue
                label = ev.get("evidence_label")
                text = ev.get("evidence")
                if label is None:
                    malformed.add("missing evidence_label", {"claim_id": claim_id, **ev})
                    continue
                if label not in LABELS:
                    malformed.add("unknown evidence_label", {"claim_id": claim_id, **ev})
                    continue
                if not isinstance(text, str) or not text.strip():
                    malformed.add("empty evidence", {"claim_id": claim_id, **ev})
                    continue
                pairs.append(
                    {
                        "id": f"cf-{claim_id}-{j}",
                        "claim": claim.strip(),
                        "evidence": text.strip(),
                        "label": label,
                        "meta": {
                            "claim_id": claim_id,
                            "evidence_id": ev.get("evidence_id"),
                            "article": ev.get("article"),
                            "claim_label": claim_label,
                        },
                    }
                )
            claims.append((claim_id, claim, row, pairs))
    assignment = split_of_claims(c[0] for c in claims)
    splits: dict[str, list[dict[str, Any]]] = {name: [] for name, _ in SPLIT_SHARES}
    claims_per_split = {name: 0 for name, _ in SPLIT_SHARES}
    for claim_id, _, _, pairs in claims:  # file order within each split
        name = assignment[claim_id]
        splits[name].extend(pairs)
        claims_per_split[name] += 1
    return Release(
        file=file,
        splits=splits,
        malformed=malformed,
        excluded_claim_ids=excluded_ids,
        excluded_pairs=excluded_pairs,
        claims_per_split=claims_per_split,
    )


# -- the task's three sources ----------------------------------------------------------------------------------
def _examples(rows: Sequence[Mapping[str, Any]]) -> list[Example]:
    return [
        Example(
            id=r["id"],
            fields={"claim": r["claim"], "evidence": r["evidence"]},
            target=r["label"],
            meta=dict(r.get("meta") or {}),
        )
        for r in rows
    ]


def _offline_examples(rows: Sequence[Mapping[str, Any]]) -> list[Example]:
    # meta["kind"]: how the evidence was built (restatement, different_value, other_place...), so run
    # records can break synthetic results down by construction
    return [
        Example(
            id=r["id"],
            fields={"claim": r["claim"], "evidence": r["evidence"]},
            target=r["label"],
            meta={**r["meta"], "kind": r["meta"]["mode"]},
        )
        for r in rows
    ]


def load_offline(path=None, *, seed: int = 0, sizes: Mapping[str, int] | None = None, **options: Any) -> TaskData:
    """SYNTHETIC data from :mod:`labscale.data.synthetic_claims` (default 600 / 150 / 150, balanced labels)."""
    reject_options(TASK, "offline", options)
    splits = synthetic_claims.generate(seed=seed, sizes=sizes)
    return TaskData(
        task=TASK,
        source=Source.OFFLINE,
        origin=f"{synthetic_claims.ORIGIN}, seed={seed}",
        splits={k: _offline_examples(v) for k, v in splits.items()},
        synthetic=True,
    )


def load_local(path=None, *, seed: int = 0, exclude_claims: Iterable[str] = (), **options: Any) -> TaskData:
    """The original release, split by claim hash (not the hub split), without the ``exclude_claims`` (the task's
    shot claims)."""
    reject_options(TASK, "local", options)
    release = load_release(require_path(path, "Climate-FEVER", "climate-fever"), exclude_claims=exclude_claims)
    origin = (
        f"{release.file} (Climate-FEVER release, tdiggelm/climate-fever-dataset; labscale split by "
        f"claim-id hash 56/24/20%, not the hub split; {len(release.excluded_claim_ids)} shot claims "
        f"({release.excluded_pairs} pairs) excluded)"
    )
    return TaskData(
        task=TASK,
        source=Source.LOCAL,
        origin=origin,
        splits={k: _examples(v) for k, v in release.splits.items()},
        malformed=release.malformed,
        content_hash=sha256_files([release.file]),
    )


def load_hub(path=None, *, seed: int = 0, revision: str | None = None, **options: Any) -> TaskData:
    """The study's dataset ``amandakonet/climate_fever_adopted`` (needs network or the datasets cache)."""
    reject_options(TASK, "hub", options)
    data = TaskData(
        task=TASK,
        source=Source.HUB,
        origin=HUB_ID,
        splits={k: _examples(v) for k, v in hub_rows(revision).items()},
        revision=revision,
    )
    unknown = {ex.target for exs in data.splits.values() for ex in exs} - set(LABELS)
    if unknown:
        raise InvalidParameter(f"{HUB_ID} has labels {sorted(unknown)} outside {LABELS}")
    return data
