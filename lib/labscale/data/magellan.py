"""Reader for the ER-Magellan / DeepMatcher entity-matching benchmarks in Ditto's serialisation.

Each split file (``train.txt``, ``valid.txt``, ``test.txt``) holds one record pair per line::

    COL <attr> VAL <value> COL <attr> VAL <value> ...<TAB>COL <attr> VAL <value> ...<TAB><label>

with label ``1`` for a match and ``0`` otherwise (Li et al., VLDB 2021; data from Mudgal et al., SIGMOD 2018).
The reader is strict: a line without exactly three tab-separated fields, with a label other than 0/1, or with
a record that does not parse as ``COL``/``VAL`` pairs is not guessed at; it is counted in a
:class:`~labscale.core.MalformedRows` (with the first offending line as an example) and dropped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from ..core import MalformedRows
from ..errors import InvalidParameter, invalid_choice
from ..hashing import sha256_files

#: benchmark name -> folder below ``er_magellan/`` (Abt-Buy is filed under Textual/ in Ditto's release)
BENCHMARKS: dict[str, str] = {
    "Amazon-Google": "Structured/Amazon-Google",
    "DBLP-ACM": "Structured/DBLP-ACM",
    "Walmart-Amazon": "Structured/Walmart-Amazon",
    "Abt-Buy": "Textual/Abt-Buy",
    "Beer": "Structured/Beer",
    "Fodors-Zagats": "Structured/Fodors-Zagats",
    "iTunes-Amazon": "Structured/iTunes-Amazon",
}

DEFAULT_BENCHMARK = "DBLP-ACM"

#: Ditto file name -> the library's split name
SPLIT_FILES: dict[str, str] = {"train": "train.txt", "validation": "valid.txt", "test": "test.txt"}

#: how a missing attribute value is shown in a prompt (the original code's convention for rel-text)
MISSING_VALUE = "NA"

_COL = re.compile(r"(?:(?<=\s)|^)COL (\S+) VAL(?= |$)")

Record = list[tuple[str, str]]


@dataclass(frozen=True)
class MagellanPair:
    """One labelled record pair from a benchmark file."""

    left: Record
    right: Record
    label: int  # 1 = match
    line_no: int  # 1-based line number in its file


def check_benchmark(name: str) -> str:
    """Return ``name`` if it is a known benchmark; :class:`InvalidParameter` listing the valid ones otherwise."""
    if name not in BENCHMARKS:
        raise invalid_choice("Magellan benchmark", name, BENCHMARKS)
    return name


def parse_record(text: str) -> Record:
    """Parse ``COL a VAL x COL b VAL y`` into ``[("a", "x"), ("b", "y")]``; ``ValueError`` if it does not parse.

    Values may be empty (Abt-Buy and Amazon-Google often have no price); whitespace around values is stripped.
    """
    matches = list(_COL.finditer(text))
    if not matches:
        raise ValueError("record has no 'COL <attr> VAL <value>' pair")
    if text[: matches[0].start()].strip():
        raise ValueError("text before the first COL marker")
    fields: Record = []
    for i, match in enumerate(matches):
        end = matches[i + 1].start() if i + 1 < len(matches) else len(text)
        fields.append((match.group(1), text[match.end() : end].strip()))
    names = [name for name, _ in fields]
    if len(set(names)) != len(names):
        raise ValueError("record repeats an attribute")
    return fields


def parse_line(line: str) -> tuple[Record, Record, int]:
    """Parse one file line into ``(left, right, label)``; ``ValueError`` naming the problem otherwise."""
    parts = line.rstrip("\r\n").split("\t")
    if len(parts) != 3:
        raise ValueError(f"expected 3 tab-separated fields, found {len(parts)}")
    left_text, right_text, label_text = parts
    label_text = label_text.strip()
    if label_text not in ("0", "1"):
        raise ValueError(f"label must be 0 or 1, found {label_text[:20]!r}")
    try:
        left = parse_record(left_text)
    except ValueError as err:
        raise ValueError(f"left record: {err}") from None
    try:
        right = parse_record(right_text)
    except ValueError as err:
        raise ValueError(f"right record: {err}") from None
    return left, right, int(label_text)


def read_pairs(path: str | Path, malformed: MalformedRows | None = None) -> list[MagellanPair]:
    """All well-formed pairs of one split file, in file order; bad lines go to ``malformed`` (blank lines too)."""
    path = Path(path)
    malformed = malformed if malformed is not None else MalformedRows()
    pairs: list[MagellanPair] = []
    with path.open(encoding="utf-8", newline="") as handle:
        for line_no, line in enumerate(handle, start=1):
            try:
                left, right, label = parse_line(line)
            except ValueError as err:
                malformed.add(f"{path.name}: {err}", f"line {line_no}: {line.rstrip()}")
                continue
            pairs.append(MagellanPair(left, right, label, line_no))
    return pairs


def format_record(record: Record) -> str:
    """``attr: value; attr: value`` with missing values shown as ``NA``."""
    return "; ".join(f"{name}: {value if value else MISSING_VALUE}" for name, value in record)


def format_pair(left: Record, right: Record) -> str:
    """The record block of an entity prompt: ``Record 1: ...`` and ``Record 2: ...`` on two lines."""
    return f"Record 1: {format_record(left)}\nRecord 2: {format_record(right)}"


def _has_split_files(folder: Path) -> bool:
    return all((folder / name).is_file() for name in SPLIT_FILES.values())


def resolve_benchmark_dir(path: str | Path, benchmark: str | None = None) -> tuple[Path, str]:
    """Find a benchmark's folder from ``path`` and return ``(folder, benchmark name)``.

    ``path`` may be the shared data root (holding ``magellan-er/``), the ``magellan-er`` folder, the
    ``er_magellan`` folder, its ``Structured``/``Textual`` parent, or one benchmark folder itself. ``benchmark``
    defaults to :data:`DEFAULT_BENCHMARK`, or to the folder's own name when ``path`` is a benchmark folder.
    """
    path = Path(path).expanduser()
    if benchmark is not None:
        check_benchmark(benchmark)
    if not path.exists():
        raise InvalidParameter(f"data path {str(path)!r} for the Magellan benchmarks does not exist")
    if _has_split_files(path):
        own = path.name if path.name in BENCHMARKS else None
        if benchmark is not None and own is not None and own != benchmark:
            raise InvalidParameter(
                f"data path {str(path)!r} is the {own!r} benchmark folder but benchmark={benchmark!r} was asked for"
            )
        return path, benchmark or own or path.name
    name = benchmark or DEFAULT_BENCHMARK
    sub = BENCHMARKS[name]
    candidates = [
        path / sub,
        path / sub.split("/")[1],
        path / "er_magellan" / sub,
        path / "data" / "er_magellan" / sub,
        path / "magellan-er" / "data" / "er_magellan" / sub,
    ]
    for candidate in candidates:
        if _has_split_files(candidate):
            return candidate, name
    raise InvalidParameter(
        f"no {name!r} benchmark files ({', '.join(SPLIT_FILES.values())}) found under {str(path)!r}; expected "
        f"a data root, magellan-er/, er_magellan/ or the benchmark folder er_magellan/{sub}"
    )


@dataclass
class MagellanBenchmark:
    """The three splits of one benchmark, with provenance."""

    name: str
    folder: Path
    splits: dict[str, list[MagellanPair]]
    malformed: MalformedRows
    content_hash: str


def load_benchmark(path: str | Path, benchmark: str | None = None) -> MagellanBenchmark:
    """Read train/valid/test of one benchmark (see :func:`resolve_benchmark_dir` for ``path``)."""
    folder, name = resolve_benchmark_dir(path, benchmark)
    malformed = MalformedRows()
    splits = {split: read_pairs(folder / fname, malformed) for split, fname in SPLIT_FILES.items()}
    digest = sha256_files(folder / fname for fname in SPLIT_FILES.values())
    return MagellanBenchmark(name=name, folder=folder, splits=splits, malformed=malformed, content_hash=digest)


def fixed_shot_pairs(train: list[MagellanPair]) -> list[MagellanPair]:
    """Deterministic shots from a train split: its first non-match, first match and second non-match (n, y, n)."""
    negatives = [p for p in train if p.label == 0]
    positives = [p for p in train if p.label == 1]
    if len(negatives) < 2 or not positives:
        raise InvalidParameter("the train split needs at least two non-matches and one match to supply shots")
    return [negatives[0], positives[0], negatives[1]]
