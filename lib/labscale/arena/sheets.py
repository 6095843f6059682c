"""People as judges: a blinded annotation sheet of answer pairs, and its import as a battle table (a class exercise).

:func:`export_sheet` writes two CSV files: the *sheet* handed to annotators (one row per item and pair, the two
answers as ``response_1`` and ``response_2`` in a seeded order, the rows shuffled, no model names) and the *key*
the instructor keeps (which model wrote each response, and a hash of each response's text). Annotators fill
``verdict`` with ``1``, ``2`` or ``tie`` and ``annotator`` with their name; several annotators may each fill a copy,
or add rows (a ``pair_id`` may repeat). :func:`import_sheet` checks the sheet against the key and returns the
battle table (judge ``human:<annotator>``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import InvalidParameter, check_range
from ..summary_scores import SummaryScores
from .battles import BATTLE_COLUMNS, check_battles, pairs, presentation_order
from .judges import Answers, answers_of, contexts_for

#: the sheet's columns (``reference`` after ``context`` when exported with the references)
SHEET_COLUMNS = ("pair_id", "item", "context", "response_1", "response_2", "verdict", "annotator")
#: the key's columns: who wrote each response, the battle it belongs to and a hash of each response's text
KEY_COLUMNS = ("pair_id", "item", "model_1", "model_2", "model_a", "model_b", "order", "sha256_1", "sha256_2", "seed")
#: what an annotator may write in ``verdict``
SHEET_VERDICTS = ("1", "2", "tie")


def text_hash(text: str) -> str:
    """SHA-256 of a response's text, line endings normalised (a spreadsheet may save ``\\r\\n``)."""
    return hashlib.sha256(str(text).replace("\r\n", "\n").encode()).hexdigest()


def key_path_for(sheet_path: str | Path) -> Path:
    """Where :func:`export_sheet` writes the key of ``sheet_path``: ``<stem>.key.csv`` beside it."""
    path = Path(sheet_path)
    return path.with_name(f"{path.stem}.key.csv")


def export_sheet(
    answers: SummaryScores | Answers | Iterable[str | Path],
    path: str | Path,
    *,
    items: int | Sequence[str] | None = None,
    labels: Sequence[str] | None = None,
    contexts: Mapping[str, str] | None = None,
    reference: bool = False,
    seed: int = 0,
    overwrite: bool = False,
) -> tuple[Path, Path]:
    """Write the blinded sheet of every item and pair of ``labels`` among ``answers`` to ``path`` (a ``.csv``) and
    its key beside it (:func:`key_path_for`); returns ``(sheet_path, key_path)``.

    ``items`` limits the items (a number drawn with ``seed``, or ids); ``contexts`` maps item ids to the request
    shown (default: reloaded from the first run's recorded data); ``reference`` adds the reference answer. Each
    pair's presentation order and the row order are drawn with ``seed``. An existing sheet (perhaps already filled
    in) is kept unless ``overwrite``."""
    check_range("seed", seed, 0, 2**32 - 1, integer=True)
    sheet_path = Path(path)
    if sheet_path.suffix.lower() != ".csv":
        raise InvalidParameter(f"the sheet must be a .csv file, got {str(sheet_path)!r}")
    key_path = key_path_for(sheet_path)
    if not overwrite and (sheet_path.exists() or key_path.exists()):
        raise InvalidParameter(
            f"{str(sheet_path)!r} or its key already exists (perhaps filled in); pass overwrite=True to replace it"
        )
    chosen = answers_of(answers).select(labels, items, seed)
    requests = contexts_for(chosen, contexts)
    sheet, key = [], []
    for k, item in enumerate(chosen.ids):
        for a, b in pairs(chosen.labels):
            order = presentation_order(seed, item, a, b)
            first, second = (a, b) if order == "ab" else (b, a)
            text_1, text_2 = chosen.texts[first][k], chosen.texts[second][k]
            row = {"item": item, "context": requests[item]}
            if reference:
                row["reference"] = chosen.references[k]
            sheet.append({**row, "response_1": text_1, "response_2": text_2, "verdict": "", "annotator": ""})
            key.append(
                {
                    "item": item,
                    "model_1": first,
                    "model_2": second,
                    "model_a": a,
                    "model_b": b,
                    "order": order,
                    "sha256_1": text_hash(text_1),
                    "sha256_2": text_hash(text_2),
                    "seed": seed,
                }
            )
    shuffled = np.random.default_rng(seed).permutation(len(sheet))
    width = len(str(len(sheet)))
    pair_ids = [f"P{n + 1:0{width}d}" for n in range(len(sheet))]
    columns = [*SHEET_COLUMNS[:3], *(["reference"] if reference else []), *SHEET_COLUMNS[3:]]
    sheet_rows = [{"pair_id": pid, **sheet[i]} for pid, i in zip(pair_ids, shuffled, strict=True)]
    key_rows = [{"pair_id": pid, **key[i]} for pid, i in zip(pair_ids, shuffled, strict=True)]
    sheet_path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(sheet_rows, columns=columns).to_csv(sheet_path, index=False)
    pd.DataFrame(key_rows, columns=list(KEY_COLUMNS)).to_csv(key_path, index=False)
    return sheet_path, key_path


def _read_csv(path: str | Path, columns: Sequence[str], what: str) -> pd.DataFrame:
    """A sheet or key as text (no missing-value guessing), refused when it lacks one of ``columns``."""
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise InvalidParameter(f"{what} {str(path)!r} lacks the column(s) {', '.join(missing)}")
    return frame


def import_sheet(sheet_path: str | Path, key_path: str | Path, *, allow_blank: bool = False) -> pd.DataFrame:
    """The battle table of a filled sheet, checked against its key: one battle per sheet row, judge
    ``human:<annotator>`` (``human`` when unnamed). Refused, naming the row: a verdict other than ``1``, ``2`` or
    ``tie`` (a blank one too, unless ``allow_blank``, which skips it), a ``pair_id`` not in the key, an item or
    a response text that differs from the exported one."""
    sheet = _read_csv(sheet_path, SHEET_COLUMNS, "sheet")
    key = _read_csv(key_path, KEY_COLUMNS, "key").set_index("pair_id")
    if not key.index.is_unique:
        raise InvalidParameter(f"key {str(key_path)!r} lists a pair_id twice; use the key export_sheet wrote")
    rows = []
    for n, row in sheet.iterrows():
        where = f"sheet row {n + 1} (pair_id {row['pair_id']!r})"
        if row["pair_id"] not in key.index:
            raise InvalidParameter(f"{where} is not in the key {str(key_path)!r}; valid pair ids are the key's")
        truth = key.loc[row["pair_id"]]
        if row["item"] != truth["item"]:
            raise InvalidParameter(f"{where} names item {row['item']!r}, but the key has {truth['item']!r}")
        for side in ("1", "2"):
            if text_hash(row[f"response_{side}"]) != truth[f"sha256_{side}"]:
                raise InvalidParameter(f"{where} has a response_{side} that differs from the exported text")
        verdict = row["verdict"].strip().lower()
        if verdict == "" and allow_blank:
            continue
        if verdict not in SHEET_VERDICTS:
            raise InvalidParameter(
                f"{where} has verdict {row['verdict']!r}; valid choices: {', '.join(map(repr, SHEET_VERDICTS))}"
            )
        winner = "tie" if verdict == "tie" else truth[f"model_{verdict}"]
        annotator = row["annotator"].strip()
        rows.append(
            {
                "item": truth["item"],
                "model_a": truth["model_a"],
                "model_b": truth["model_b"],
                "winner": "tie" if winner == "tie" else ("model_a" if winner == truth["model_a"] else "model_b"),
                "judge": f"human:{annotator}" if annotator else "human",
                "order": truth["order"],
                "seed": int(truth["seed"]),
                "consistent": pd.NA,
                "pair_id": row["pair_id"],
            }
        )
    if not rows:
        raise InvalidParameter(f"sheet {str(sheet_path)!r} holds no verdict yet")
    return check_battles(pd.DataFrame(rows, columns=[*BATTLE_COLUMNS, "pair_id"]))


__all__ = [
    "KEY_COLUMNS",
    "SHEET_COLUMNS",
    "SHEET_VERDICTS",
    "export_sheet",
    "import_sheet",
    "key_path_for",
    "text_hash",
]
