"""The Foundation Model Transparency Index (FMTI, ``stanford-crfm/fmti``, CC-BY; registry dataset ``fmti``).

Three releases: v1.0 (October 2023, 10 developers) and v1.1 (May 2024, 14 developers) score the same 100 v1
indicators 0/1; the December 2025 index (:func:`dec2025`) scores a **new** indicator set and is not comparable.

Indicator names: the canonical name is the one in ``fmti-indicators.csv`` (the v1 definitions, which the May 2024
per-developer reports use too). Both score tables spell some indicators differently ("Data copyright status" for
"Copyrighted data", "Third-party ..." for "Third party ..."): :data:`V10_RENAMES` and :data:`V11_RENAMES` map them
explicitly, and a score-table name that is neither canonical nor mapped is refused, naming it. Names are stripped
("Data creators " carries a trailing space in every file). Every loader checks row counts, domains, the files'
own Total rows/columns and the positional order against the name join, and raises naming the file.
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from ..errors import DataUnavailable, InvalidParameter, invalid_choice
from . import registry

DATASET = "fmti"
INDICATORS_FILE = "fmti-indicators.csv"
N_INDICATORS = 100
DOMAINS = ("Upstream", "Model", "Downstream")
VERSIONS = ("v1.0", "v1.1")
#: version -> (folder, score file, date)
_RELEASES = {
    "v1.0": ("October2023", "October2023_scores.csv", "2023-10"),
    "v1.1": ("May2024", "May2024_scores.csv", "2024-05"),
}
_ALIASES = {"October2023": "v1.0", "May2024": "v1.1", "2023-10": "v1.0", "2024-05": "v1.1"}

# Both maps were made by comparing, row by row, the stripped Indicator column of each score table with that of
# fmti-indicators.csv (all three list the 100 indicators in the same order; the loaders re-check it) and keeping
# every pair that differs: score-table name -> fmti-indicators.csv name.
#: names both score tables use where fmti-indicators.csv has another
_SCORE_TABLE_RENAMES: dict[str, str] = {
    "Data copyright status": "Copyrighted data",
    "Data license status": "Data license",
    "Third-party capabilities evaluation": "Third party capabilities evaluation",
    "Third-party evaluation of limitations": "Third party evaluation of limitations",
    "Third-party risks evaluation": "Third party risks evaluation",
    "Third-party mitigations evaluation": "Third party mitigations evaluation",
    "Machine-generated content": "Detection of machine-generated content",
}
#: October 2023 score table name -> canonical (fmti-indicators.csv) name
V10_RENAMES: dict[str, str] = {
    **_SCORE_TABLE_RENAMES,
    "Release decision-making protocol": "Release decision-making",
    "Model Asset License": "Model License",
}
#: May 2024 score table name -> canonical v1.0 (fmti-indicators.csv) name
V11_RENAMES: dict[str, str] = {**_SCORE_TABLE_RENAMES, "License": "Model License"}
_RENAMES = {"v1.0": V10_RENAMES, "v1.1": V11_RENAMES}

#: May 2024 score-table developer -> the name v1.0 uses for the same company (so both releases join on it);
#: BigCode (Hugging Face with ServiceNow) is kept apart from v1.0's Hugging Face: another developer and model
V11_DEVELOPERS = {"Stability": "Stability AI"}
#: May 2024 report file developer (from the file name) -> the developer as :func:`scores` names it
_REPORT_DEVELOPERS = {"BigCode Hugging Face ServiceNow": "BigCode"}
_REPORT_COLUMNS = ("indicator", "definition", "notes", "disclosure", "references", "score", "justification")

#: the study's models -> the FMTI developer whose flagship model was scored (None: no usable FMTI score)
STUDY_DEVELOPERS: dict[str, str | None] = {
    # Meta scored on Llama 2 in both v1.0 (54) and v1.1 (60)
    "llama-2-7b-chat": "Meta",
    # Mistral scored on Mistral 7B in v1.1 only (55); absent from v1.0
    "mistral-7b-instruct": "Mistral",
    # OpenAI scored on GPT-4 in v1.0 (48) and v1.1 (49)
    "gpt-4-turbo": "OpenAI",
    # GPT-3.5 was never scored on its own; OpenAI's scores describe GPT-4, so none is attributed
    "gpt-3.5-turbo": None,
    # TII (Falcon's developer) was never assessed by any FMTI release
    "falcon-7b-instruct": None,
}


class FMTIFormatError(DataUnavailable):
    """An FMTI file that is not what this loader expects (rows, names, totals); the message names the file."""


def developer_for(model: str) -> str | None:
    """The FMTI developer of a study model (None: not scored); :class:`InvalidParameter` for unknown models."""
    if model not in STUDY_DEVELOPERS:
        raise invalid_choice("study model", model, STUDY_DEVELOPERS)
    return STUDY_DEVELOPERS[model]


def fmti_root(path: str | Path | None = None) -> Path:
    """The folder holding ``fmti-indicators.csv``: ``path`` (that folder or a parent holding ``fmti/``), else the
    registry's verified copy."""
    root = registry.locate(DATASET, path)
    if path is None or (root / INDICATORS_FILE).is_file():
        return root
    if (root / DATASET / INDICATORS_FILE).is_file():
        return root / DATASET
    raise InvalidParameter(f"{str(root)!r} holds neither {INDICATORS_FILE} nor {DATASET}/{INDICATORS_FILE}")


def _read(file: Path) -> pd.DataFrame:
    if not file.is_file():
        raise registry.DataMissing(f"FMTI file {file} is missing", file=str(file), fix=f"labscale-data fetch {DATASET}")
    return pd.read_csv(file, encoding="utf-8-sig", dtype=str, keep_default_na=False)


def _fail(file: Path, message: str) -> FMTIFormatError:
    return FMTIFormatError(f"{file}: {message}")


def indicators(path: str | Path | None = None) -> pd.DataFrame:
    """The 100 v1 indicators: number (1..100, file order), domain, subdomain, indicator, definition, notes."""
    file = fmti_root(path) / INDICATORS_FILE
    raw = _read(file)
    missing = {"Domain", "Subdomain", "Indicator", "Definition", "Notes"} - set(raw.columns)
    if missing:
        raise _fail(file, f"missing columns {sorted(missing)}")
    table = pd.DataFrame(
        {
            "number": range(1, len(raw) + 1),
            "domain": raw["Domain"].str.strip(),
            "subdomain": raw["Subdomain"].str.strip(),
            "indicator": raw["Indicator"].str.strip(),
            "definition": raw["Definition"].str.strip(),
            "notes": raw["Notes"].str.strip(),
        }
    )
    if len(table) != N_INDICATORS:
        raise _fail(file, f"expected {N_INDICATORS} indicators, found {len(table)}")
    if set(table["domain"]) != set(DOMAINS):
        raise _fail(file, f"expected domains {list(DOMAINS)}, found {sorted(set(table['domain']))}")
    if table["indicator"].duplicated().any():
        raise _fail(file, f"duplicate indicators {sorted(set(table['indicator'][table['indicator'].duplicated()]))}")
    return table


def canonical_version(version: str) -> str:
    """``version`` as the index names it (``v1.0``/``v1.1``, aliases resolved); an unknown one fails naming the
    valid ones."""
    version = _ALIASES.get(version, version)
    if version not in VERSIONS:
        raise invalid_choice("FMTI version", version, [*VERSIONS, *_ALIASES])
    return version


def _canonical(names: pd.Series, version: str, canon: pd.DataFrame, file: Path) -> pd.Series:
    """Map stripped score-table names onto canonical names; refuse unknown names and a differing row order."""
    renames = _RENAMES[version]
    stripped = names.str.strip()
    known = set(canon["indicator"])
    unknown = [n for n in stripped if n not in known and n not in renames]
    if unknown:
        raise _fail(file, f"unknown indicator names {unknown} (neither v1.0 names nor in the {version} rename map)")
    mapped = stripped.map(lambda n: renames.get(n, n))
    if len(mapped) != N_INDICATORS or mapped.duplicated().any():
        found = f"{mapped.nunique()} in {len(mapped)} rows"
        raise _fail(file, f"expected {N_INDICATORS} distinct indicators, found {found}")
    if list(mapped) != list(canon["indicator"]):
        raise _fail(file, "indicator order differs from fmti-indicators.csv")
    return mapped


def _scores_01(table: pd.DataFrame, developers: list[str], file: Path) -> pd.DataFrame:
    values = table[developers].apply(lambda col: col.str.strip())
    bad = sorted(set(values.to_numpy().ravel()) - {"0", "1"})
    if bad:
        raise _fail(file, f"scores must be 0 or 1, found {bad}")
    return values.astype(int)


def scores(version: str, path: str | Path | None = None) -> pd.DataFrame:
    """One release's scores in long form: version, date, developer, domain, subdomain, indicator (v1.0 name),
    score (0/1). ``version``: "v1.0"/"October2023" or "v1.1"/"May2024" (v1.1's "Stability" is named "Stability AI").
    """
    version = canonical_version(version)
    root = fmti_root(path)
    canon = indicators(root)
    folder, name, date = _RELEASES[version]
    file = root / folder / name
    raw = _read(file)
    names = raw["Indicator"].str.strip()
    total_rows = raw[names == "Total"]
    body = raw[names != "Total"].reset_index(drop=True)
    if version == "v1.0":
        developers = [c for c in raw.columns if c not in ("Domain", "Subdomain", "Indicator", "Total")]
    else:
        developers = [c for c in raw.columns if c != "Indicator"]
    if "Domain" in raw.columns and version == "v1.1":
        raise _fail(file, "unexpected Domain column in the v1.1 table")
    mapped = _canonical(body["Indicator"], version, canon, file)
    values = _scores_01(body, developers, file)
    sums = values.sum()
    if version == "v1.0":
        if "Total" not in raw.columns:
            raise _fail(file, "no Total column")
        column = pd.to_numeric(body["Total"].str.strip(), errors="coerce")
        wrong = mapped[column.ne(values.sum(axis=1)).to_numpy()]
        if len(wrong):
            raise _fail(file, f"Total column disagrees with the developers' scores for {list(wrong)}")
        own = body[["Domain", "Subdomain"]].apply(lambda col: col.str.strip())
        if list(own["Domain"]) != list(canon["domain"]) or list(own["Subdomain"]) != list(canon["subdomain"]):
            raise _fail(file, "Domain/Subdomain columns disagree with fmti-indicators.csv")
    if len(total_rows) > 1:
        raise _fail(file, "more than one Total row")
    if len(total_rows) == 1:
        stated = pd.to_numeric(total_rows.iloc[0][developers].str.strip(), errors="coerce")
        off = [d for d in developers if stated[d] != sums[d]]
        if off:
            raise _fail(file, f"Total row disagrees with the summed scores for {off}")
    wide = values.assign(indicator=mapped.to_numpy())
    long = wide.melt(id_vars="indicator", var_name="developer", value_name="score")
    if version == "v1.1":
        long["developer"] = long["developer"].replace(V11_DEVELOPERS)
    # domain/subdomain by name (never by position alone; the positional order was checked above)
    long = long.merge(canon[["indicator", "domain", "subdomain", "number"]], on="indicator", how="left", validate="m:1")
    if long["domain"].isna().any() or (long.groupby("developer")["indicator"].nunique() != N_INDICATORS).any():
        raise _fail(file, "indicators without a domain or developers without 100 indicators")
    # melt keeps the file's developer order, then the indicator order; the left merge keeps that order
    long.insert(0, "date", date)
    long.insert(0, "version", version)
    columns = ["version", "date", "developer", "domain", "subdomain", "indicator", "score"]
    return long[columns].reset_index(drop=True)


def developers(version: str, path: str | Path | None = None) -> list[str]:
    """The developers scored in a release, in the file's column order."""
    return list(dict.fromkeys(scores(version, path)["developer"]))


def scored_twice(path: str | Path | None = None) -> list[str]:
    """The developers scored in both v1.0 and v1.1 (v1.0's column order; v1.1 names via :data:`V11_DEVELOPERS`)."""
    later = set(developers("v1.1", path))
    return [d for d in developers("v1.0", path) if d in later]


def totals(version: str | None = None, path: str | Path | None = None) -> pd.DataFrame:
    """Developer totals per version (None: both): version, date, developer, total, upstream, model, downstream."""
    versions = VERSIONS if version is None else (canonical_version(version),)
    frames = []
    for v in versions:
        long = scores(v, path)
        by_domain = long.pivot_table(index="developer", columns="domain", values="score", aggfunc="sum", sort=False)
        by_domain = by_domain[list(DOMAINS)].rename(columns=str.lower)
        by_domain.columns.name = None
        frame = by_domain.reset_index()
        frame.insert(1, "total", frame[[d.lower() for d in DOMAINS]].sum(axis=1))
        frame.insert(0, "date", long["date"].iloc[0])
        frame.insert(0, "version", v)
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def _report_developer(file: Path) -> str:
    m = re.fullmatch(r"(.+?)_fmtransparencyreport[-_]May2024\.csv", file.name)
    if m is None:
        raise _fail(file, "not a May 2024 report file name")
    name = m[1].replace("_", " ")
    return _REPORT_DEVELOPERS.get(name, name)


def reports(path: str | Path | None = None) -> pd.DataFrame:
    """The May 2024 per-developer reports in long form: developer (as in May2024_scores.csv), indicator (v1.0
    name), disclosure, references, score, justification; each report's scores are checked against the score
    table."""
    root = fmti_root(path)
    canon = indicators(root)
    v11 = scores("v1.1", root).set_index(["developer", "indicator"])["score"]
    folder = root / "May2024" / "reports"
    files = sorted(folder.glob("*.csv"))
    if not files:
        fix = f"labscale-data fetch {DATASET}"
        raise registry.DataMissing(f"no FMTI report files in {folder}", file=str(folder), fix=fix)
    frames = []
    for file in files:
        raw = _read(file)
        # one report's header names its first column after an indicator: columns are taken by position
        if [c.strip().lower() for c in raw.columns[1:7]] != list(_REPORT_COLUMNS[1:]):
            raise _fail(file, f"unexpected columns {list(raw.columns)}")
        table = raw.iloc[:, :7].copy()
        table.columns = list(_REPORT_COLUMNS)
        table = table.apply(lambda col: col.str.strip())
        developer = _report_developer(file)
        table["indicator"] = _canonical(table["indicator"], "v1.1", canon, file).to_numpy()
        table["score"] = _scores_01(table, ["score"], file)["score"]
        expected = v11.loc[developer].reindex(table["indicator"]).to_numpy() if developer in v11.index else None
        if expected is None or (table["score"].to_numpy() != expected).any():
            raise _fail(file, f"scores of {developer!r} disagree with May2024_scores.csv")
        table.insert(0, "developer", developer)
        frames.append(table[["developer", "indicator", "disclosure", "references", "score", "justification"]])
    return pd.concat(frames, ignore_index=True)


def dec2025(path: str | Path | None = None) -> pd.DataFrame:
    """The December 2025 FMTI scores in long form (developer, domain, subdomain, indicator, definition, score).

    A **new indicator set**, not comparable with v1.0/v1.1: kept out of :func:`scores`, marked ``comparable=False``
    (a column and ``attrs["comparable"]``)."""
    root = fmti_root(path) / "Dec2025"
    ind_file, score_file = root / "Dec2025_indicators.csv", root / "Dec2025_scores.csv"
    ind, raw = _read(ind_file), _read(score_file)
    ind = ind.apply(lambda col: col.str.strip())
    if len(ind) != N_INDICATORS or set(ind["Domain"]) != set(DOMAINS):
        raise _fail(ind_file, f"expected {N_INDICATORS} indicators in {list(DOMAINS)}, found {len(ind)}")
    names = raw["Indicator"].str.strip()
    if list(names) != list(ind["Indicator"]):
        raise _fail(score_file, "indicators differ from Dec2025_indicators.csv (names or order)")
    developers_ = [c for c in raw.columns if c != "Indicator"]
    values = _scores_01(raw, developers_, score_file).assign(indicator=names.to_numpy())
    long = values.melt(id_vars="indicator", var_name="developer", value_name="score")
    meta = ind.rename(columns=str.lower)[["domain", "subdomain", "indicator", "definition"]]
    long = long.merge(meta, on="indicator", how="left", validate="m:1")
    long.insert(0, "date", "2025-12")
    long.insert(0, "release", "Dec2025")
    long["comparable"] = False
    columns = ["release", "date", "developer", "domain", "subdomain", "indicator", "definition", "score", "comparable"]
    long = long[columns]
    long.attrs["comparable"] = False
    return long
