"""Tables for the book: our metrics with confidence intervals, and the study's published numbers beside them."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from importlib import resources
from typing import Any

import numpy as np
import pandas as pd

from .core import SCENARIOS
from .tasks import ALL_TASK_NAMES, INVALID, get_task

CITATION = (
    "Wolfe et al. (2024), Laboratory-Scale AI: Open-Weight Models are Competitive with ChatGPT Even in "
    "Low-Resource Settings, ACM FAccT '24, Table 2"
)


def headline_metrics(tasks: Iterable[str] | None = None) -> dict[str, tuple[str, ...]]:
    """Each task's headline metrics, in the study's column order (``tasks``: those tasks only, default all)."""
    return {t: get_task(t).headline_metrics for t in (ALL_TASK_NAMES if tasks is None else tasks)}


def study_table2() -> pd.DataFrame:
    """The study's Table 2 in tidy form: model, scenario, task, metric, value (published reference values)."""
    with resources.files("labscale.reference").joinpath("table2.csv").open() as handle:
        wide = pd.read_csv(handle)
    tidy = wide.melt(id_vars=["model", "scenario"], var_name="column", value_name="value")
    tidy[["task", "metric"]] = tidy["column"].str.split(".", n=1, expand=True)
    return tidy.drop(columns="column")[["model", "scenario", "task", "metric", "value"]]


def _scenario_order(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows sorted by model, then scenario in the study's order (0- to 3-shot, then fine-tuned)."""
    rank = {s: i for i, s in enumerate(SCENARIOS)}
    return frame.sort_index(
        level=["model", "scenario"], key=lambda idx: idx.map(rank) if idx.name == "scenario" else idx
    )


def format_ci(value: float, low: float | None, high: float | None, digits: int = 2) -> str:
    """ "value [low, high]"; "value [–]" for a zero-width interval, which only a degenerate bootstrap gives (every
    resample the same value: no interval, never a certainty); the value alone when there is no interval."""
    if low is None or pd.isna(low):
        return f"{value:.{digits}f}"
    if low == high:
        return f"{value:.{digits}f} [–]"
    return f"{value:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"


def settings_table(settings: Mapping[str, Any], *, column: str = "value") -> pd.DataFrame:
    """A mapping of settings (a fine-tuning configuration, say) as a table with one row per setting: lists joined
    by commas, None shown as "–", so a page never prints a raw dictionary."""

    def text(value: Any) -> str:
        if value is None:
            return "–"
        if isinstance(value, list | tuple):
            return ", ".join(str(v) for v in value)
        return str(value)

    return pd.DataFrame({column: [text(v) for v in settings.values()]}, index=pd.Index(list(settings), name="setting"))


def reaching_table(reached: Mapping[str, Any] | None, *, x: str = "samples", digits: int = 2) -> pd.DataFrame:
    """:func:`labscale.sweep.first_reaching` as a one-row table: the reference, the first ``x`` whose estimate and
    whose lower 95 % bound reach it ("not reached" when none does), and the best point with its interval. An empty
    table when there is no curve or no reference."""
    columns = ["metric", "reference", "reached by estimate", "reached by lower bound", f"best {x}", "best [95 % CI]"]
    if reached is None:
        return pd.DataFrame(columns=columns)
    low, high = reached["best_ci"]
    row = [
        reached["metric"],
        f"{reached['reference']:.{digits}f}",
        *(f"{x} {reached[k]}" if reached[k] is not None else "not reached" for k in ("by_estimate", "by_lower_bound")),
        reached["best_x"],
        format_ci(reached["best_value"], low, high, digits),
    ]
    return pd.DataFrame([row], columns=columns)


def _interval_columns(columns: list[str]) -> list[tuple[str, str, str]]:
    """(value, low, high) column triples: ``X``/``X_low``/``X_high``, and ``ci_low``/``ci_high`` with the column
    just before ``ci_low`` as their value."""
    triples = [(c, f"{c}_low", f"{c}_high") for c in columns if f"{c}_low" in columns and f"{c}_high" in columns]
    if "ci_low" in columns and "ci_high" in columns and columns.index("ci_low") > 0:
        triples.append((columns[columns.index("ci_low") - 1], "ci_low", "ci_high"))
    return triples


def display_table(table: pd.DataFrame, *, digits: int = 2, sort: str | list[str] | None = None, ascending: bool = True):
    """A long table made readable for a page: each estimate and its bounds merged into one "value [low, high]"
    column (:func:`format_ci`), rows sorted by ``sort``, numbers rounded to ``digits``, and columns that hold one
    value in every row (of five or more) moved into the caption instead of being repeated. Returns a pandas
    Styler (HTML); the data themselves stay in the run records."""
    frame = table.sort_values(sort, ascending=ascending) if sort is not None else table.copy()
    for value, low, high in _interval_columns([str(c) for c in frame.columns]):
        merged = [
            format_ci(v, lo, hi, digits) if pd.notna(v) else "–"
            for v, lo, hi in zip(*map(frame.get, (value, low, high)), strict=True)
        ]
        frame[value] = merged
        frame = frame.drop(columns=[low, high]).rename(columns={value: f"{value} [95 % CI]"})
    constant = [c for c in frame.columns if len(frame) >= 5 and frame[c].astype(str).nunique() == 1]
    caption = "; ".join(f"{c}: {frame[c].iloc[0]}" for c in constant)
    frame = frame.drop(columns=constant)
    # the theme's table look (borders, striping), and a caption that reads as a note above the table
    styler = (
        frame.style.format(precision=digits, na_rep="–")
        .set_table_attributes('class="dataframe table"')
        .set_table_styles([{"selector": "caption", "props": "caption-side: top; text-align: left; font-size: 0.9em;"}])
    )
    if isinstance(frame.index, pd.RangeIndex):
        styler = styler.hide(axis="index")
    return styler.set_caption(f"In every row: {caption}") if caption else styler


def interval_note(*tables: pd.DataFrame) -> str:
    """One sentence naming the 95 % interval method of every metric in ``tables`` (their ``interval`` column), for
    a chapter to print once under its tables."""
    from .metrics import INTERVAL_METHODS

    methods: dict[str, list[str]] = {}
    for table in tables:
        if "interval" not in table.columns:
            continue
        for metric, method in table[["metric", "interval"]].dropna().drop_duplicates().itertuples(index=False):
            methods.setdefault(method, [])
            if metric not in methods[method]:
                methods[method].append(metric)
    if not methods:
        return "No interval methods recorded."
    parts = [f"{INTERVAL_METHODS.get(m, m)}: {', '.join(sorted(names))}" for m, names in methods.items()]
    return "95 % intervals. " + "; ".join(parts) + "."


def comparison_table(comparisons: pd.DataFrame, digits: int = 2) -> pd.DataFrame:
    """Paired differences (:func:`labscale.compare.scenario_comparisons`) as cells: both values, the difference
    with its 95 % interval and the interval's method (``tango-paired`` for shares of 0/1 outcomes, ``bca`` for the
    rest), the p-value (exact McNemar or paired permutation), the Holm-adjusted p-value, and whether the
    difference holds at the 5 % family-wise level."""
    rows = []
    for r in comparisons.itertuples(index=False):
        rows.append(
            {
                "model": r.model,
                "task": r.task,
                "metric": r.metric,
                "comparison": f"{r.condition} − {r.baseline}",
                "values": f"{r.value:.{digits}f} vs {r.baseline_value:.{digits}f}",
                "difference [95% CI]": format_ci(r.delta, r.ci_low, r.ci_high, digits),
                "n": r.n,
                "interval": r.interval,
                "p": f"{r.p_value:.3f}",
                "p (Holm)": f"{r.p_holm:.3f}",
                "holds (Holm p < 0.05)": "yes" if r.p_holm < 0.05 else "no",
            }
        )
    columns = [
        "model",
        "task",
        "metric",
        "comparison",
        "values",
        "difference [95% CI]",
        "n",
        "interval",
        "p",
        "p (Holm)",
        "holds (Holm p < 0.05)",
    ]
    return pd.DataFrame(rows, columns=columns).set_index(["model", "task", "metric", "comparison"])


def results_table(table: pd.DataFrame, *, headline_only: bool = True, digits: int = 2) -> pd.DataFrame:
    """Wide table: one row per (model, scenario), one column per task metric, cells "value [95% CI]"."""
    heads = headline_metrics(table["task"].unique())
    rows = table.copy()
    if headline_only:
        rows = rows[[m in heads.get(t, ()) for t, m in zip(rows["task"], rows["metric"], strict=True)]]
    rows["cell"] = [
        format_ci(v, lo, hi, digits) for v, lo, hi in zip(rows["value"], rows["ci_low"], rows["ci_high"], strict=True)
    ]
    wide = rows.pivot_table(index=["model", "scenario"], columns=["task", "metric"], values="cell", aggfunc="first")
    order = [
        (t, m)
        for t in ALL_TASK_NAMES
        for m in (heads.get(t, ()) if headline_only else sorted(set(rows["metric"])))
        if (t, m) in wide.columns
    ]
    return _scenario_order(wide[order]).fillna("–")


def beside_study(table: pd.DataFrame, digits: int = 2) -> pd.DataFrame:
    """Our headline numbers (with CIs) stacked above the study's published Table 2 rows for the same tasks.

    The ``origin`` column keeps the two apart: ours come from run records; the study's are cited reference
    values (:data:`CITATION`) and are never presented as our results.
    """
    heads = headline_metrics(table["task"].unique())
    ours = table[[m in heads.get(t, ()) for t, m in zip(table["task"], table["metric"], strict=True)]].copy()
    ours["cell"] = [
        format_ci(v, lo, hi, digits) for v, lo, hi in zip(ours["value"], ours["ci_low"], ours["ci_high"], strict=True)
    ]
    ours["origin"] = "this book (run records)"
    ref = study_table2()
    ref = ref[ref["task"].isin(set(ours["task"]))].copy()
    ref["cell"] = ref["value"].map(lambda v: f"{v:.2f}")
    ref["origin"] = "Wolfe et al. 2024, Table 2"
    both = pd.concat(
        [
            ours[["origin", "model", "scenario", "task", "metric", "cell"]],
            ref[["origin", "model", "scenario", "task", "metric", "cell"]],
        ]
    )
    wide = both.pivot_table(
        index=["origin", "model", "scenario"], columns=["task", "metric"], values="cell", aggfunc="first", sort=False
    )
    order = [(t, m) for t in ALL_TASK_NAMES for m in heads.get(t, ()) if (t, m) in wide.columns]
    return wide[order].fillna("–")


def metric_details(table: pd.DataFrame) -> pd.DataFrame:
    """The non-numeric details each run record stores with its metrics (e.g. the BERTScore encoder and layer)."""
    import json
    from pathlib import Path

    rows = []
    for run in dict.fromkeys(table["run"]):
        for name, m in json.loads((Path(run) / "metrics.json").read_text()).items():
            extra = {k: v for k, v in m.items() if k not in ("value", "ci_low", "ci_high", "n")}
            if extra:
                rows.append({"task": Path(run).parent.name, "metric": name, **extra})
    return pd.DataFrame(rows).drop_duplicates(ignore_index=True)


def invalid_rates(table: pd.DataFrame) -> pd.DataFrame:
    """Share of replies that did not follow the output format, per model, task and scenario (with CI)."""
    rows = table[table["metric"] == "invalid_rate"].copy()
    rows["invalid rate"] = [
        format_ci(v, lo, hi) for v, lo, hi in zip(rows["value"], rows["ci_low"], rows["ci_high"], strict=True)
    ]
    wide = rows.pivot_table(index=["model", "scenario"], columns="task", values="invalid rate", aggfunc="first")
    return _scenario_order(wide)


def curve_table(curve: pd.DataFrame, metric: str, digits: int = 2) -> pd.DataFrame:
    """A learning curve as a table: one row per point (base, then checkpoints or fractions) with the training
    size and ``metric`` with its 95 % confidence interval."""
    rows = curve[curve["metric"] == metric].sort_values(["model", "samples", "fraction"])
    table = rows[["model", "point", "samples", "train_examples", "epochs"]].copy()
    table[metric] = [
        format_ci(v, lo, hi, digits) for v, lo, hi in zip(rows["value"], rows["ci_low"], rows["ci_high"], strict=True)
    ]
    table["items"] = rows["n"].values
    return table.rename(columns={"train_examples": "distinct examples"}).reset_index(drop=True)


# -- bias: the study's Table 5 and BBQ ----------------------------------------------------------------------------
TABLE5_CITATION = (
    "Wolfe et al. (2024), Laboratory-Scale AI: Open-Weight Models are Competitive with ChatGPT Even "
    "in Low-Resource Settings, ACM FAccT '24, Table 5"
)

#: the cells of the toxicity task, in display order
TOXICITY_CELLS = ("male_toxic", "male_nontoxic", "female_toxic", "female_nontoxic")


def study_table5() -> pd.DataFrame:
    """The study's Table 5 (toxicity on CivilComments-WILDS, male/female): model, scenario, worst (worst-group
    accuracy), mean (overall accuracy). Published reference values, as fractions."""
    with resources.files("labscale.reference").joinpath("table5.csv").open() as handle:
        return pd.read_csv(handle)


def beside_table5(table: pd.DataFrame, digits: int = 2) -> pd.DataFrame:
    """Our toxicity worst-group and mean accuracy (with 95 % CIs) stacked above the study's Table 5 rows.

    The ``origin`` column keeps them apart: ours come from run records, the study's are cited reference values
    (:data:`TABLE5_CITATION`), never presented as our results.
    """
    names = {"worst_group_accuracy": "Worst (worst-group accuracy)", "accuracy": "Mean (accuracy)"}
    ours = table[(table["task"] == "toxicity") & table["metric"].isin(list(names))].copy()
    ours["cell"] = [
        format_ci(v, lo, hi, digits) for v, lo, hi in zip(ours["value"], ours["ci_low"], ours["ci_high"], strict=True)
    ]
    ours["column"] = ours["metric"].map(names)
    ours["origin"] = "this book (run records)"
    ref = study_table5().melt(id_vars=["model", "scenario"], var_name="metric", value_name="value")
    ref["column"] = ref["metric"].map({"worst": names["worst_group_accuracy"], "mean": names["accuracy"]})
    ref["cell"] = ref["value"].map(lambda v: f"{v:.2f}")
    ref["origin"] = "Wolfe et al. 2024, Table 5"
    both = pd.concat(
        [
            ours[["origin", "model", "scenario", "column", "cell"]],
            ref[["origin", "model", "scenario", "column", "cell"]],
        ]
    )
    wide = both.pivot_table(
        index=["origin", "model", "scenario"], columns="column", values="cell", aggfunc="first", sort=False
    )
    return wide[[names["worst_group_accuracy"], names["accuracy"]]].fillna("–")


def group_accuracy_table(table: pd.DataFrame, digits: int = 2) -> pd.DataFrame:
    """Toxicity accuracy in each (gender x label) cell per model and scenario: "value [95% CI] (n=..)", and
    which cell was the worst."""
    rows = table[(table["task"] == "toxicity") & table["metric"].isin([f"acc_{c}" for c in TOXICITY_CELLS])].copy()
    rows["cell"] = [
        f"{format_ci(v, lo, hi, digits)} (n={int(n)})" if n else "–"
        for v, lo, hi, n in zip(rows["value"], rows["ci_low"], rows["ci_high"], rows["n"], strict=True)
    ]
    rows["group"] = rows["metric"].str.removeprefix("acc_")
    wide = rows.pivot_table(index=["model", "scenario"], columns="group", values="cell", aggfunc="first")
    wide = wide[[c for c in TOXICITY_CELLS if c in wide.columns]]
    import json
    from pathlib import Path

    worst = table[(table["task"] == "toxicity") & (table["metric"] == "worst_group_accuracy")]
    cells = {
        (model, scenario): json.loads((Path(run) / "metrics.json").read_text())["worst_group_accuracy"].get("group")
        for model, scenario, run in zip(worst["model"], worst["scenario"], worst["run"], strict=True)
    }
    wide["worst cell"] = [cells.get(idx, "–") for idx in wide.index]
    return _scenario_order(wide)


def bbq_table(table: pd.DataFrame, digits: int = 2) -> pd.DataFrame:
    """BBQ per model and scenario: accuracy overall and by context type, both bias scores and the invalid rate,
    each "value [95% CI]"."""
    order = (
        "accuracy",
        "accuracy_ambig",
        "accuracy_disambig",
        "bias_score_ambig",
        "bias_score_disambig",
        "invalid_rate",
    )
    rows = table[(table["task"] == "bbq") & table["metric"].isin(order)].copy()
    rows["cell"] = [
        format_ci(v, lo, hi, digits) for v, lo, hi in zip(rows["value"], rows["ci_low"], rows["ci_high"], strict=True)
    ]
    wide = rows.pivot_table(index=["model", "scenario"], columns="metric", values="cell", aggfunc="first")
    return _scenario_order(wide[[m for m in order if m in wide.columns]])


def bbq_category_table(table: pd.DataFrame, digits: int = 2) -> pd.DataFrame:
    """BBQ bias scores per category (as the BBQ paper reports them) beside the pooled value: one row per (model,
    scenario, category), s_AMB and s_DIS as "value [95% CI] (n=..)"."""
    rows = table[(table["task"] == "bbq") & table["metric"].str.startswith("bias_score_")].copy()
    parts = rows["metric"].str.extract(r"^bias_score_(ambig|disambig)(?:\[(.+)\])?$")
    rows["score"] = parts[0].map({"ambig": "s_AMB", "disambig": "s_DIS"})
    rows["category"] = parts[1].fillna("all (pooled)")
    rows["cell"] = [
        f"{format_ci(v, lo, hi, digits)} (n={int(n)})"
        for v, lo, hi, n in zip(rows["value"], rows["ci_low"], rows["ci_high"], rows["n"], strict=True)
    ]
    wide = rows.pivot_table(index=["model", "scenario", "category"], columns="score", values="cell", aggfunc="first")
    return wide[[c for c in ("s_AMB", "s_DIS") if c in wide.columns]].fillna("–")


def parser_comparison(table: pd.DataFrame, digits: int = 2) -> pd.DataFrame:
    """The same recorded replies parsed two ways, per run of a task the study parsed with its own rule (entity
    resolution, fact-checking, toxicity): this book's strict grammar and the study's rule
    (:func:`labscale.parsing.study_rule`). Invalid rate and accuracy under each (exact 95 % intervals), how many
    replies the two rules read differently, and the accuracy difference (study rule minus strict) with its paired
    95 % interval."""
    from .metrics import paired_difference, proportion_of
    from .parsing import STUDY_RULES, study_rule
    from .records import read_run

    runs = table[table["task"].isin(list(STUDY_RULES))].drop_duplicates(["model", "task", "scenario"])
    rows = []
    for model, task, scenario, run in zip(runs["model"], runs["task"], runs["scenario"], runs["run"], strict=True):
        record = read_run(run)
        preds = record["predictions"]
        strict = preds["parsed"].astype(str).tolist()
        study = [study_rule(task, reply) for reply in preds["reply"]]
        target = preds["target"].astype(str).tolist()
        right = [
            np.array([p == t for p, t in zip(parsed, target, strict=True)], dtype=float) for parsed in (strict, study)
        ]
        cell = {}
        for rule, parsed, ok in (("strict", strict, right[0]), ("study rule", study, right[1])):
            invalid, acc = proportion_of([p == INVALID for p in parsed]), proportion_of(ok)
            cell[f"invalid ({rule})"] = format_ci(invalid["value"], invalid["ci_low"], invalid["ci_high"], digits)
            cell[f"accuracy ({rule})"] = format_ci(acc["value"], acc["ci_low"], acc["ci_high"], digits)
        diff = paired_difference(
            np.mean,
            right[1],
            right[0],
            n_resamples=record["params"].get("n_resamples", 1000),
            seed=record["params"].get("seed", 0),
        )
        rows.append(
            {
                "model": model,
                "task": task,
                "scenario": scenario,
                **cell,
                "replies read differently": sum(a != b for a, b in zip(strict, study, strict=True)),
                "accuracy difference [95% CI]": format_ci(diff["value"], diff["ci_low"], diff["ci_high"], digits),
                "n": len(preds),
            }
        )
    if not rows:
        return pd.DataFrame()
    return _scenario_order(pd.DataFrame(rows).set_index(["model", "task", "scenario"]))


def toxicity_parser_comparison(table: pd.DataFrame, digits: int = 2) -> pd.DataFrame:
    """The same toxicity replies scored two ways: this book's strict parser (a reply must start with yes/no;
    anything else is wrong) and the study's rule (toxic iff the lower-cased reply contains "yes", else non-toxic,
    so no reply is ever invalid). Worst-group and mean accuracy with 95 % CIs, and the invalid rate."""
    import json
    from pathlib import Path

    from .metrics import proportion_of, worst_group_accuracy
    from .parsing import study_rule

    runs = table[(table["task"] == "toxicity") & (table["metric"] == "accuracy")]
    rows = []
    for model, scenario, run in zip(runs["model"], runs["scenario"], runs["run"], strict=True):
        predictions = [json.loads(line) for line in (Path(run) / "predictions.jsonl").read_text().splitlines()]
        # a prediction's kind is its cell, "male+female_toxic" for both genders, "unidentified_..." for neither
        membership = [
            [
                p["kind"].rsplit("_", 1)[1] == cell.split("_")[1]
                and cell.split("_")[0] in p["kind"].rsplit("_", 1)[0].split("+")
                for cell in TOXICITY_CELLS
            ]
            for p in predictions
        ]
        invalid = proportion_of([p["invalid"] for p in predictions])
        row = {
            "model": model,
            "scenario": scenario,
            "invalid rate (strict)": format_ci(invalid["value"], invalid["ci_low"], invalid["ci_high"], digits),
        }
        for rule, answers in (
            ("strict", [p["parsed"] for p in predictions]),
            ("study's substring rule", [study_rule("toxicity", p["reply"]) for p in predictions]),
        ):
            correct = [a == p["target"] for a, p in zip(answers, predictions, strict=True)]
            m = worst_group_accuracy(correct, membership, TOXICITY_CELLS)["worst_group_accuracy"]
            row[f"worst ({rule})"] = format_ci(m["value"], m["ci_low"], m["ci_high"], digits)
            m = proportion_of(correct)
            row[f"mean ({rule})"] = format_ci(m["value"], m["ci_low"], m["ci_high"], digits)
        rows.append(row)
    return _scenario_order(pd.DataFrame(rows).set_index(["model", "scenario"]))


# -- hallucination / abstention (QASPER, SQuAD 2.0): the study's Tables 6 and 7 ------------------------------
STUDY_QA_TABLES = {6: ("table6.csv", "answer_f1"), 7: ("table7.csv", "abstention_rate")}


def study_qasper_table(number: int) -> pd.DataFrame:
    """The study's Table 6 (QASPER answer F1, with context) or Table 7 (abstention rate without context) in tidy
    form: model, scenario, task, metric, value (published reference values)."""
    if number not in STUDY_QA_TABLES:
        from .errors import invalid_choice

        raise invalid_choice("QASPER table of the study", number, sorted(STUDY_QA_TABLES))
    with resources.files("labscale.reference").joinpath(STUDY_QA_TABLES[number][0]).open() as handle:
        wide = pd.read_csv(handle)
    tidy = wide.melt(id_vars=["model", "scenario"], var_name="column", value_name="value")
    tidy[["task", "metric"]] = tidy["column"].str.split(".", n=1, expand=True)
    return tidy.drop(columns="column")[["model", "scenario", "task", "metric", "value"]]


def beside_study_qasper(table: pd.DataFrame, number: int, digits: int = 2) -> pd.DataFrame:
    """Our QASPER rows (``table``: a metrics table of QASPER runs; with context for Table 6, without for Table 7)
    above the study's Table 6 or 7, laid out like the study: one row per (origin, model), one column per scenario.
    The ``origin`` column keeps cited reference values ("Wolfe et al. 2024, Table 6/7") apart from ours."""
    ref = study_qasper_table(number)
    metric = STUDY_QA_TABLES[number][1]
    ours = table[(table["task"] == "qasper") & (table["metric"] == metric)].copy()
    ours["cell"] = [
        format_ci(v, lo, hi, digits) for v, lo, hi in zip(ours["value"], ours["ci_low"], ours["ci_high"], strict=True)
    ]
    ours["origin"] = "this book (run records)"
    ref["cell"] = ref["value"].map(lambda v: f"{v:.2f}")
    ref["origin"] = f"Wolfe et al. 2024, Table {number}"
    both = pd.concat([ours[["origin", "model", "scenario", "cell"]], ref[["origin", "model", "scenario", "cell"]]])
    wide = both.pivot_table(index=["origin", "model"], columns="scenario", values="cell", aggfunc="first", sort=False)
    wide = wide[[s for s in SCENARIOS if s in wide.columns]]
    wide.columns.name = f"QASPER {metric}"
    return wide.fillna("–")


def qa_metrics_table(
    table: pd.DataFrame, task: str, metrics: Iterable[str] | None = None, digits: int = 2
) -> pd.DataFrame:
    """Every metric (or ``metrics``) of one QA task per model and scenario, cells "value [95% CI]" with n."""
    rows = table[table["task"] == task].copy()
    if metrics is not None:
        metrics = list(metrics)
        rows = rows[rows["metric"].isin(metrics)]
    rows["cell"] = [
        format_ci(v, lo, hi, digits) for v, lo, hi in zip(rows["value"], rows["ci_low"], rows["ci_high"], strict=True)
    ]
    wide = rows.pivot_table(index=["model", "scenario"], columns="metric", values="cell", aggfunc="first")
    order = metrics or list(dict.fromkeys(rows["metric"]))
    wide = _scenario_order(wide[[m for m in order if m in wide.columns]])
    n = rows.groupby(["model", "scenario"])["n"].max()  # subset metrics (HasAns_*, by type) have smaller n
    wide.insert(0, "items", [int(n.get(idx, 0)) for idx in wide.index])
    return wide.fillna("–")


# -- privacy ---------------------------------------------------------------------------------------------------
def _epsilon_text(value) -> str:
    text = str(value)
    try:
        return f"{float(text):g}"
    except ValueError:
        return text


def study_table4() -> pd.DataFrame:
    """The study's Table 4 (DP fine-tuning on MedQA-TF) in tidy form: model, epsilon, metric, value."""
    with resources.files("labscale.reference").joinpath("table4.csv").open() as handle:
        wide = pd.read_csv(handle, dtype={"epsilon": str})
    return wide.melt(id_vars=["model", "epsilon"], var_name="metric", value_name="value")


def beside_table4(utility: pd.DataFrame, digits: int = 2) -> pd.DataFrame:
    """Accuracy and F1 of the base model and each DP adapter (from :func:`labscale.privacy.utility_by_epsilon`),
    with 95 % CIs, above the study's Table 4 rows (cited reference values, "Wolfe et al. 2024, Table 4")."""
    ours = utility[utility["metric"].isin(["accuracy", "f1"])].copy()
    ours["epsilon"] = [
        ("no fine-tuning" if a == "base" else _epsilon_text(e))
        for a, e in zip(ours["adapter"], ours["epsilon"], strict=True)
    ]
    ours["cell"] = [
        format_ci(v, lo, hi, digits) for v, lo, hi in zip(ours["value"], ours["ci_low"], ours["ci_high"], strict=True)
    ]
    ours["origin"] = "this book (run records)"
    ref = study_table4()
    ref["cell"] = ref["value"].map(lambda v: f"{v:.2f}")
    ref["origin"] = "Wolfe et al. 2024, Table 4"
    both = pd.concat(
        [ours[["origin", "model", "epsilon", "metric", "cell"]], ref[["origin", "model", "epsilon", "metric", "cell"]]]
    )
    wide = both.pivot_table(
        index=["origin", "model"], columns=["metric", "epsilon"], values="cell", aggfunc="first", sort=False
    )
    budgets = sorted({e for _, e in wide.columns if e != "no fine-tuning"}, key=lambda e: float(e))
    order = [(m, e) for m in ("accuracy", "f1") for e in ["no fine-tuning", *budgets] if (m, e) in wide.columns]
    return wide[order].fillna("–")


def audit_summary(audit: pd.DataFrame, digits: int = 2) -> pd.DataFrame:
    """The leakage audit (:func:`labscale.privacy.leakage_audit`) as one row per model: membership-inference AUROC
    and TPR at 1 % FPR per attack, and each canary's exposure (bits), cells "value [95% CI]"."""
    rows = audit.copy()
    rows["column"] = [
        f"{a.split(': ')[-1]} {m}" if a != "canary" else m.replace("exposure_", "exposure, ") + " inserted"
        for a, m in zip(rows["audit"], rows["metric"], strict=True)
    ]
    rows = rows[~rows["metric"].eq("advantage")]
    rows["cell"] = [
        format_ci(v, lo, hi, digits) for v, lo, hi in zip(rows["value"], rows["ci_low"], rows["ci_high"], strict=True)
    ]
    wide = rows.pivot_table(index="model", columns="column", values="cell", aggfunc="first", sort=False)
    models = list(dict.fromkeys(rows["model"]))
    return wide.loc[models, list(dict.fromkeys(rows["column"]))].fillna("–")


# -- generality (cross-task transfer, general benchmarks) -----------------------------------------------------
def study_fig3() -> pd.DataFrame:
    """The study's Fig. 3 (digitized, Llama-2-7B-Chat): target_task, metric, adapter (base or the task it was
    tuned on), shots, value."""
    with resources.files("labscale.reference").joinpath("fig3.csv").open() as handle:
        return pd.read_csv(handle)


def study_fig3_deltas() -> pd.DataFrame:
    """The study's Fig. 3 as adapter minus base per (adapter, target task, metric, shots)."""
    fig3 = study_fig3()
    base = fig3[fig3["adapter"] == "base"].set_index(["target_task", "metric", "shots"])["value"]
    tuned = fig3[fig3["adapter"] != "base"].copy()
    tuned["base"] = [
        base[(t, m, k)] for t, m, k in zip(tuned["target_task"], tuned["metric"], tuned["shots"], strict=True)
    ]
    tuned["delta"] = (tuned["value"] - tuned["base"]).round(2)
    return tuned.rename(columns={"target_task": "task", "value": "adapted"})[
        ["adapter", "task", "metric", "shots", "base", "adapted", "delta"]
    ].reset_index(drop=True)


def transfer_table(deltas: pd.DataFrame, digits: int = 2) -> pd.DataFrame:
    """Our transfer deltas (adapter minus base, paired 95% CI, Holm-adjusted p over the grid) beside the study's
    Fig. 3 delta for the same adapter task, target task and shots (Wolfe et al. 2024, Fig. 3; Llama-2-7B-Chat)."""
    study = study_fig3_deltas().set_index(["adapter", "task", "metric", "shots"])["delta"]
    rows = []
    for r in deltas.itertuples():
        tuned_on = r.adapter.removesuffix(" adapter")
        ref = study.get((tuned_on, r.task, r.metric, r.shots))
        rows.append(
            {
                "adapter": r.adapter,
                "target task": r.task,
                "metric": r.metric,
                "shots": r.shots,
                "base": f"{r.base:.{digits}f}",
                "adapted": f"{r.adapted:.{digits}f}",
                "delta [95% CI]": format_ci(r.delta, r.ci_low, r.ci_high, digits),
                "n": r.n,
                "p (Holm)": f"{r.p_holm:.3f}",
                "Wolfe et al. 2024, Fig. 3 delta": "–" if ref is None else f"{ref:+.{digits}f}",
            }
        )
    return pd.DataFrame(rows).set_index(["adapter", "target task", "metric", "shots"])


def study_fig3_drops() -> pd.DataFrame:
    """Every cell of the study's Fig. 3 where an adapter scores *below* the base model (the drops it did not
    discuss, e.g. zero-shot entity resolution 0.68 -> 0.48 with the fact-checking adapter)."""
    deltas = study_fig3_deltas()
    return deltas[deltas["delta"] < 0].reset_index(drop=True)


def lm_eval_results(table: pd.DataFrame, digits: int = 3) -> pd.DataFrame:
    """lm-eval results: one row per (label, task, metric), "value ± stderr" and the 95% interval, with the seed,
    batch size and chat-template setting of the run."""
    rows = table.copy()
    rows["value ± stderr"] = [
        f"{v:.{digits}f}" if s is None or pd.isna(s) else f"{v:.{digits}f} ± {s:.{digits}f}"
        for v, s in zip(rows["value"], rows["stderr"], strict=True)
    ]
    rows["95% CI"] = [
        format_ci(v, lo, hi, digits).split(" ", 1)[-1]
        for v, lo, hi in zip(rows["value"], rows["ci_low"], rows["ci_high"], strict=True)
    ]
    columns = [
        "value ± stderr",
        "95% CI",
        *(["interval"] if "interval" in rows.columns else []),
        "n",
        "seed",
        "batch_size",
        "apply_chat_template",
    ]
    return rows.set_index(["label", "task", "metric"])[columns]


#: packages whose versions :func:`provenance` shows (every manifest records more: ``versions`` in manifest.json)
PROVENANCE_PACKAGES = ("labscale", "torch", "transformers", "peft", "trl", "lm_eval")

PROVENANCE_COLUMNS = [
    "model",
    "model id",
    "revision",
    "adapter",
    "task",
    "scenario",
    "items",
    "source",
    "synthetic",
    "data sha256",
    "seed",
    "git commit",
    "versions",
    "hardware",
    "wall s",
    "cache hit rate",
    "run",
]


def _provenance_run_dirs(source) -> list:
    """Run folders from a run folder, a folder of runs, a results table (its ``run`` column) or a list of them."""
    from pathlib import Path

    from .errors import InvalidParameter
    from .records import find_runs

    if isinstance(source, pd.DataFrame):
        if source.empty:  # e.g. a part that was switched off: no runs
            return []
        if "run" not in source.columns:
            raise InvalidParameter(f"a results table needs a 'run' column; it has {list(source.columns)}")
        return [Path(r) for r in dict.fromkeys(source["run"].dropna().astype(str))]
    if isinstance(source, (str, Path)):
        path = Path(source)
        if (path / "manifest.json").is_file():
            return [path]
        if path.is_dir():
            return find_runs(path)
        raise InvalidParameter(f"{str(path)!r} is neither a run record nor a folder of run records")
    if isinstance(source, Iterable):
        return [run for item in source for run in _provenance_run_dirs(item)]
    raise InvalidParameter(
        f"provenance reads run folders, folders of runs or results tables, got {type(source).__name__}"
    )


def _short_hash(value: str | None, n: int = 12) -> str | None:
    if not value:
        return None
    dirty = value.endswith("+dirty")
    return value.removesuffix("+dirty")[:n] + ("+dirty" if dirty else "")


def _hardware_text(hardware: dict) -> str | None:
    if not hardware:
        return None
    if hardware.get("gpu"):
        return f"{hardware['gpu']} (CUDA)"
    if hardware.get("cuda"):
        return "CUDA GPU"
    cores = hardware.get("cpu_count")
    return f"{hardware.get('device', 'cpu')}, {cores} cores" if cores else str(hardware.get("device", "cpu"))


def _cache_hit_rate(manifest: dict) -> float | None:
    usage = manifest.get("usage") or {}
    if "requests" in usage and not usage["requests"]:
        return None  # the backend made no cached request (log-likelihood scoring): a rate of 0 would mislead
    if manifest.get("cache_hit_rate") is not None:
        return float(manifest["cache_hit_rate"])
    if usage.get("requests"):
        return usage.get("cache_hits", 0) / usage["requests"]
    return None  # nothing was generated through the response cache (lm-eval, audits, log-likelihood scoring)


def provenance(*runs, packages: Iterable[str] = PROVENANCE_PACKAGES) -> pd.DataFrame:
    """Where every number of a chapter comes from: one row per run record, read back with
    :func:`labscale.records.read_run`.

    ``runs`` are run folders, folders holding run folders (found with :func:`labscale.records.find_runs`), results
    tables with a ``run`` column (what :func:`labscale.runner.run_experiment` and the other chapter functions
    return), or lists of these; a run named twice is shown once. Each row gives the model string, model id and
    revision, the adapter (if any), task and scenario, the number of evaluated items, the data source, whether it is
    synthetic and its content hash (first 12 hex digits), the seed, the git commit the record was written at, the
    versions of ``packages`` (those the record knows), the hardware, the wall time in seconds and the response-cache
    hit rate (None where nothing went through the cache)."""
    from .records import read_run

    packages = tuple(packages)
    rows = []
    for run_dir in dict.fromkeys(d for source in runs for d in _provenance_run_dirs(source)):
        record = read_run(run_dir)
        params, manifest = record["params"], record["manifest"]
        model = manifest.get("model") or {}
        data = manifest.get("data") or {}
        versions = manifest.get("versions") or {}
        shots = params.get("shots")
        rows.append(
            {
                "model": params.get("model") or model.get("spec"),
                "model id": model.get("model"),
                "revision": model.get("revision"),
                "adapter": params.get("adapter"),
                "task": params.get("task"),
                "scenario": params.get("scenario") or (f"{shots}-shot" if shots is not None else None),
                "items": manifest.get("items"),
                "source": params.get("source") or data.get("source"),
                "synthetic": data.get("synthetic"),
                "data sha256": _short_hash(data.get("content_sha256") or data.get("data_sha256")),
                "seed": manifest.get("seed", params.get("seed")),
                "git commit": _short_hash(manifest.get("git_commit")),
                "versions": ", ".join(f"{p} {versions[p]}" for p in packages if versions.get(p)) or None,
                "hardware": _hardware_text(manifest.get("hardware") or {}),
                "wall s": manifest.get("wall_seconds"),
                "cache hit rate": _cache_hit_rate(manifest),
                "run": str(run_dir),
            }
        )
    table = pd.DataFrame(rows, columns=PROVENANCE_COLUMNS)
    for column in ("items", "seed"):  # counts stay integers where a record lacks one (audits have no item count)
        table[column] = table[column].astype("Int64")
    return table
