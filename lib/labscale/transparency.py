"""The Foundation Model Transparency Index beside what the book measures (pure pandas on :mod:`labscale.data.fmti`).

FMTI scores describe a *developer's* disclosures about its flagship model (Meta: Llama 2; OpenAI: GPT-4; Mistral:
Mistral 7B), never the 7B variant or API model the study ran. Models without a score of their own keep NaN and a
note: TII (Falcon) was never assessed, and GPT-3.5 has no score (OpenAI's GPT-4 score is never used for it).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from .core import SCENARIOS
from .cost import study_table3
from .data import fmti
from .errors import InvalidParameter, check_choice
from .report import headline_metrics, study_table2

#: the developer -> the model its v1.0/v1.1 score describes (fmti README.md and SOURCE.md)
FLAGSHIP = {"Meta": "Llama 2", "OpenAI": "GPT-4", "Mistral": "Mistral 7B"}
#: why a study model has no FMTI score of its own
NO_SCORE = {
    "falcon-7b-instruct": "not assessed: TII (Falcon's developer) was never scored by any FMTI release",
    "gpt-3.5-turbo": (
        "not assessed: GPT-3.5 was never scored on its own; OpenAI's score describes GPT-4 and is not used for it"
    ),
}
STUDY_ORIGIN = "Wolfe et al. 2024, Table 2 (reference values)"
QUALITY_COLUMNS = ("model", "task", "metric", "value", "ci_low", "ci_high")
PathArg = str | Path | None


def _long(version: str, path: PathArg) -> pd.DataFrame:
    """Scores of one release with the indicator number."""
    long = fmti.scores(version, path)
    numbers = fmti.indicators(path).set_index("indicator")["number"]
    return long.assign(number=long["indicator"].map(numbers).astype(int))


def _by_total(version: str, path: PathArg) -> list[str]:
    """Developers of a release, total descending (ties in file order)."""
    t = fmti.totals(version, path)
    return list(t.sort_values("total", ascending=False, kind="stable")["developer"])


def _select(version: str, developers: Iterable[str] | None, path: PathArg) -> list[str]:
    order = _by_total(version, path)
    if developers is None:
        return order
    wanted = [developers] if isinstance(developers, str) else list(developers)
    for d in wanted:
        check_choice(f"{version} developer", d, order)
    return [d for d in order if d in wanted]


def indicator_matrix(version: str = "v1.1", developers: Iterable[str] | None = None, *, path: PathArg = None):
    """Indicators (index domain, subdomain, indicator; file order) by developers (total descending), 0/1."""
    long = _long(version, path)
    cols = _select(version, developers, path)
    wide = long.pivot_table(
        index=["number", "domain", "subdomain", "indicator"], columns="developer", values="score", aggfunc="sum"
    )
    wide = wide.sort_index(level="number").droplevel("number")[cols].astype(int)
    wide.columns.name = "developer"
    return wide


def _subtotals(version: str, levels: list[str], path: PathArg) -> pd.DataFrame:
    long = _long(version, path)
    first = long.groupby(levels)["number"].min().rename("first")
    table = long.groupby(["developer", *levels]).agg(points=("score", "sum"), out_of=("score", "size")).reset_index()
    table = table.merge(first.reset_index(), on=levels)
    rank = {d: i for i, d in enumerate(_by_total(long["version"].iloc[0], path))}
    table = table.assign(rank=table["developer"].map(rank)).sort_values(["rank", "first"])
    table["share"] = table["points"] / table["out_of"]
    table.insert(0, "version", long["version"].iloc[0])
    return table.drop(columns=["rank", "first"]).reset_index(drop=True)


def subdomain_subtotals(version: str = "v1.1", *, path: PathArg = None) -> pd.DataFrame:
    """Per developer and subdomain: version, developer, domain, subdomain, points, out_of, share."""
    return _subtotals(version, ["domain", "subdomain"], path)


def domain_subtotals(version: str = "v1.1", *, path: PathArg = None) -> pd.DataFrame:
    """Per developer and domain: version, developer, domain, points, out_of, share."""
    return _subtotals(version, ["domain"], path)


def change_v10_v11(*, path: PathArg = None) -> pd.DataFrame:
    """Developers scored in both releases, one row per (developer, indicator): domain, subdomain, number, v1.0,
    v1.1, change (-1/0/+1)."""
    twice = fmti.scored_twice(path)
    keys = ["developer", "number", "domain", "subdomain", "indicator"]
    old = _long("v1.0", path).rename(columns={"score": "v1.0"})[[*keys, "v1.0"]]
    new = _long("v1.1", path).rename(columns={"score": "v1.1"})[[*keys, "v1.1"]]
    both = old[old["developer"].isin(twice)].merge(new, on=keys, how="inner", validate="1:1")
    both["change"] = both["v1.1"] - both["v1.0"]
    rank = {d: i for i, d in enumerate(twice)}
    both = both.assign(rank=both["developer"].map(rank)).sort_values(["rank", "number"]).drop(columns="rank")
    return both[["developer", "domain", "subdomain", "number", "indicator", "v1.0", "v1.1", "change"]].reset_index(
        drop=True
    )


def change_summary(*, path: PathArg = None) -> pd.DataFrame:
    """Per developer scored twice: v1.0 and v1.1 totals, indicators gained and lost, net (= v1.1 - v1.0)."""
    change = change_v10_v11(path=path)
    summary = change.groupby("developer", sort=False).agg(
        **{
            "v1.0": ("v1.0", "sum"),
            "v1.1": ("v1.1", "sum"),
            "gained": ("change", lambda c: int((c > 0).sum())),
            "lost": ("change", lambda c: int((c < 0).sum())),
        }
    )
    summary["net"] = summary["gained"] - summary["lost"]
    return summary.reset_index()


def _developer_totals(path: PathArg) -> pd.Series:
    return fmti.totals(path=path).set_index(["version", "developer"])["total"]


def _note(model: str, version: str | None, totals: pd.Series) -> str:
    """Why ``model`` has (or has no) FMTI score in ``version`` (None: any release)."""
    if model not in fmti.STUDY_DEVELOPERS:
        return "not one of the study's models: no FMTI developer attributed"
    developer = fmti.STUDY_DEVELOPERS[model]
    if developer is None:
        return NO_SCORE.get(model, "not assessed by the FMTI")
    flagship = FLAGSHIP.get(developer, "the developer's flagship model at the time")
    versions = [v for v in fmti.VERSIONS if (v, developer) in totals.index]
    if version is not None and version not in versions:
        return f"not assessed: {developer} was not scored in FMTI {version} (scored in {', '.join(versions)})"
    missing = [v for v in fmti.VERSIONS if v not in versions]
    extra = f"; not scored in {', '.join(missing)}" if missing else ""
    return f"{developer}'s score, describing its flagship {flagship} (not this model specifically){extra}"


def study_models(*, path: PathArg = None) -> pd.DataFrame:
    """One row per study model: model, developer (None), flagship (the scored model), v1.0, v1.1 (NaN where not
    scored) and a note saying what the score describes or why there is none."""
    totals = _developer_totals(path)
    rows = []
    for model, developer in fmti.STUDY_DEVELOPERS.items():
        row = {"model": model, "developer": developer, "flagship": FLAGSHIP.get(developer) if developer else None}
        for v in fmti.VERSIONS:
            row[v] = float(totals.get((v, developer), np.nan)) if developer else np.nan
        row["note"] = _note(model, None, totals)
        rows.append(row)
    return pd.DataFrame(rows)


def beside_measurement(quality: pd.DataFrame, *, version: str = "v1.1", path: PathArg = None) -> pd.DataFrame:
    """``quality`` (model, task, metric, value, ci_low, ci_high, optional usd ...) with developer, transparency (the
    developer's ``version`` total; NaN where none, never a proxy), transparency_version and transparency_note."""
    missing = [c for c in QUALITY_COLUMNS if c not in quality]
    if missing:
        raise InvalidParameter(f"quality table lacks columns {missing}; it needs {list(QUALITY_COLUMNS)}")
    version = fmti.canonical_version(version)
    totals = _developer_totals(path)
    out = quality.copy()
    models = list(dict.fromkeys(out["model"]))
    developer = {m: fmti.STUDY_DEVELOPERS.get(m) for m in models}
    score = {m: float(totals.get((version, d), np.nan)) if d else np.nan for m, d in developer.items()}
    out["developer"] = out["model"].map(developer)
    out["transparency"] = out["model"].map(score).astype(float)
    out["transparency_version"] = version
    out["transparency_note"] = out["model"].map({m: _note(m, version, totals) for m in models})
    return out


def _at_best_scenario(rows: pd.DataFrame) -> pd.DataFrame:
    """Per (model, task), the row of the scenario with the highest ``value`` (ties: the earlier scenario)."""
    order = rows["scenario"].map({s: i for i, s in enumerate(SCENARIOS)})
    ranked = rows.assign(_order=order).sort_values(["value", "_order"], ascending=[False, True], kind="stable")
    return ranked.drop_duplicates(["model", "task"]).drop(columns="_order")


def study_quality(scenario: str = "best", *, tasks: Iterable[str] | None = None) -> pd.DataFrame:
    """The study's Table 2 as a ``quality`` frame for :func:`beside_measurement` (origin: :data:`STUDY_ORIGIN`).

    ``scenario``: one of 0-3-shot / "fine-tuned" (models without it are left out; GPT-4 was never fine-tuned), or
    "best": per (model, task) the scenario with the highest value of the task's first headline metric (ties: the
    earlier scenario), all metrics of that scenario. ci_low/ci_high are NaN (the study published no intervals).
    usd: the study's Table 3 cost of one test-set pass (fact-checking only, the one task Table 3 costs) and
    training_usd: the fine-tuning cost (fine-tuned rows only).
    """
    check_choice("scenario", scenario, ["best", *SCENARIOS])
    table = study_table2()
    if tasks is not None:
        wanted = [tasks] if isinstance(tasks, str) else list(tasks)
        for t in wanted:
            check_choice("task", t, list(dict.fromkeys(table["task"])))
        table = table[table["task"].isin(wanted)]
    unknown = sorted(set(table["model"]) - set(fmti.STUDY_DEVELOPERS))
    if unknown:
        raise InvalidParameter(f"Table 2 models {unknown} are not in fmti.STUDY_DEVELOPERS")
    if scenario == "best":
        first = {t: m[0] for t, m in headline_metrics(list(dict.fromkeys(table["task"]))).items()}
        lead = table[table["metric"] == table["task"].map(first)]
        best = _at_best_scenario(lead)[["model", "task", "scenario"]]
        table = table.merge(best, on=["model", "task", "scenario"])
    else:
        table = table[table["scenario"] == scenario]
    cost = study_table3()
    passes = cost[cost["scenario"] != "fine-tuning"][["model", "scenario", "total_usd"]].rename(
        columns={"total_usd": "usd"}
    )
    training = cost[cost["scenario"] == "fine-tuning"][["model", "total_usd"]].rename(
        columns={"total_usd": "training_usd"}
    )
    out = table.merge(passes, on=["model", "scenario"], how="left").merge(training, on="model", how="left")
    costed = out["task"] == "fact_checking"
    out["usd"] = out["usd"].where(costed)
    out["training_usd"] = out["training_usd"].where(costed & (out["scenario"] == "fine-tuned"))
    out["ci_low"] = np.nan
    out["ci_high"] = np.nan
    out["origin"] = STUDY_ORIGIN
    model_rank = {m: i for i, m in enumerate(fmti.STUDY_DEVELOPERS)}
    task_rank = {t: i for i, t in enumerate(dict.fromkeys(study_table2()["task"]))}
    out = out.assign(_m=out["model"].map(model_rank), _t=out["task"].map(task_rank))
    out = out.sort_values(["_t", "_m"], kind="stable").drop(columns=["_m", "_t"])
    columns = ["model", "task", "scenario", "metric", "value", "ci_low", "ci_high", "usd", "training_usd", "origin"]
    return out[columns].reset_index(drop=True)


#: where the released-outputs quality comes from
RELEASED_ORIGIN = "the study's released summaries, re-scored here (run records)"


def released_quality(metrics: pd.DataFrame, metric: str = "rougeL", scenario: str = "best") -> pd.DataFrame:
    """A ``quality`` frame for :func:`beside_measurement` from run records of the study's released summarization
    outputs (:func:`labscale.records.metrics_table` of the study-outputs chapter's records): the study's five models
    only (checkpoints, cross-task adapters and other models are left out), ``metric`` with its 95 % interval, at each
    model's best scenario (``"best"``, highest ``metric``; ties: the earlier scenario) or at a named one."""
    check_choice("scenario", scenario, ["best", *SCENARIOS])
    rows = metrics[(metrics["metric"] == metric) & metrics["model"].isin(list(fmti.STUDY_DEVELOPERS))]
    if rows.empty:
        found = sorted(set(metrics["metric"])) if "metric" in metrics else []
        raise InvalidParameter(f"no run of the study's models records {metric!r}; metrics recorded: {found}")
    if scenario == "best":
        rows = _at_best_scenario(rows)
    else:
        rows = rows[rows["scenario"] == scenario]
    rank = {m: i for i, m in enumerate(fmti.STUDY_DEVELOPERS)}
    rows = rows.sort_values("model", key=lambda s: s.map(rank), kind="stable")
    out = rows[["model", "task", "scenario", "metric", "value", "ci_low", "ci_high"]].reset_index(drop=True)
    return out.assign(origin=RELEASED_ORIGIN)


def sources() -> pd.DataFrame:
    """The FMTI files this chapter's numbers come from: path, sha256 (checked on every read), pinned URL, licence."""
    from .data import registry

    licence = registry.dataset("fmti").licence
    rows = [
        {"file": f.path, "sha256": f.sha256[:16], "bytes": f.size, "url": f.url, "licence": licence}
        for f in registry.files("fmti")
        if f.path.endswith(".csv") and "/reports/" not in f.path
    ]
    return pd.DataFrame(rows)
