"""Plots for the book (seaborn/matplotlib): metrics by number of shots with 95 % CIs, beside the study's values, and
the cost chapter's cost against quality."""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.ticker import FuncFormatter

from .cost import pareto_frontier, study_cost_quality
from .errors import check_choice, invalid_choice
from .report import headline_metrics, study_table2
from .tasks import ALL_TASK_NAMES

METRIC_LABELS = {
    "accuracy": "Accuracy",
    "f1": "F1",
    "f1_weighted": "Weighted F1",
    "f1_macro": "Macro F1",
    "bleu": "BLEU",
    "bertscore_f1": "BERTScore F1",
    "rouge1": "ROUGE-1",
    "rougeL": "ROUGE-L",
    "invalid_rate": "Invalid-answer rate",
}


#: x position of each scenario on the by-shots plots
SCENARIO_X = {"0-shot": 0, "1-shot": 1, "2-shot": 2, "3-shot": 3, "fine-tuned": 4}


def _by_scenario(ax, rows: pd.DataFrame, palette, xs: dict[str, int] = SCENARIO_X) -> None:
    """Our values by scenario on ``ax`` at the positions ``xs``, one colour per model: shots as a line with 95 % CI
    bars, the fine-tuned adapter as a star at "FT"."""
    for color, (model, grp) in zip(palette, rows.groupby("model"), strict=True):
        grp = grp.assign(x=grp["scenario"].map(xs)).dropna(subset=["x"]).sort_values("x")
        tuned = grp["scenario"] == "fine-tuned"
        for part, marker, style in ((grp[~tuned], "o", "-"), (grp[tuned], "*", "none")):
            if part.empty:
                continue
            err = np.vstack([part["value"] - part["ci_low"], part["ci_high"] - part["value"]])
            ax.errorbar(
                part["x"],
                part["value"],
                yerr=err,
                color=color,
                marker=marker,
                ls=style,
                capsize=3,
                markersize=10 if marker == "*" else 6,
                label=f"{model} (this book, 95% CI)" if marker == "o" else f"{model} fine-tuned",
            )


def shots_panels(
    table: pd.DataFrame,
    *,
    reference: bool = True,
    height: float = 3.0,
    metrics: dict[str, tuple[str, ...]] | None = None,
    full_scale: bool = True,
):
    """One panel per (task, headline metric; or ``metrics``: task -> names): our value by scenario (0-3 shots, then
    fine-tuned) with 95 % CI bars; the study's models in grey. ``full_scale``: every y axis spans 0-1 (else each
    fits its values). Returns the matplotlib figure."""
    heads = metrics or headline_metrics(table["task"].unique())
    panels = [
        (t, m)
        for t in ALL_TASK_NAMES
        for m in heads.get(t, ())
        if ((table["task"] == t) & (table["metric"] == m)).any()
    ]
    if not panels:
        raise ValueError("the table holds no headline metric to plot")
    tuned = (table["scenario"] == "fine-tuned").any()
    cols = min(len(panels), 2 if len(panels) == 4 else 3)
    rows = int(np.ceil(len(panels) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, height * rows), squeeze=False)
    palette = sns.color_palette("colorblind", n_colors=max(table["model"].nunique(), 1))
    ref = study_table2() if reference else None
    for ax, (task, metric) in zip(axes.flat, panels, strict=True):
        if ref is not None:
            sel = ref[(ref["task"] == task) & (ref["metric"] == metric)]
            if not tuned:
                sel = sel[sel["scenario"] != "fine-tuned"]
            for i, (_model, grp) in enumerate(sel.groupby("model")):
                x = grp["scenario"].map(SCENARIO_X)
                ax.plot(
                    x,
                    grp["value"],
                    color="0.7",
                    lw=1,
                    ls="--",
                    marker=".",
                    label="Wolfe et al. 2024 (Table 2), one line per model" if i == 0 else None,
                )
        _by_scenario(ax, table[(table["task"] == task) & (table["metric"] == metric)], palette)
        ax.set_title(f"{task.replace('_', ' ')}: {METRIC_LABELS.get(metric, metric)}", fontsize=10)
        ax.set_xticks(range(5 if tuned else 4), ["0", "1", "2", "3", "FT"][: 5 if tuned else 4])
        ax.set_xlabel("shots" + (" / fine-tuned" if tuned else ""))
        if full_scale:
            ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(panels) :]:
        ax.set_visible(False)
    handles, labels = axes.flat[0].get_legend_handles_labels()
    width, height_in = fig.get_size_inches()
    ncol = max(2, int(width // 2.6))  # legend entries are about 2.5 in wide at this font size
    legend_rows = math.ceil(len(labels) / ncol)
    fig.legend(handles, labels, loc="lower center", ncol=ncol, fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, min(0.45, (0.15 + 0.17 * legend_rows) / height_in), 1, 1))
    return fig


def invalid_rate_bars(table: pd.DataFrame, *, height: float = 3.0):
    """Bars of the invalid-answer rate per task and model, one hue per scenario (with 95 % CI)."""
    rows = table[table["metric"] == "invalid_rate"].copy()
    if rows.empty:
        raise ValueError("the table holds no invalid_rate rows")
    rows["label"] = rows["task"].str.replace("_", " ") + "\n" + rows["model"]
    fig, ax = plt.subplots(figsize=(max(5.0, 1.6 * rows["label"].nunique()), height))
    labels = list(dict.fromkeys(rows["label"]))
    scenarios = sorted(rows["scenario"].unique(), key=SCENARIO_X.get)
    width = 0.8 / len(scenarios)
    colors = sns.color_palette("crest", n_colors=len(scenarios))
    for i, scenario in enumerate(scenarios):
        sel = rows[rows["scenario"] == scenario].set_index("label").reindex(labels)
        x = np.arange(len(labels)) + (i - (len(scenarios) - 1) / 2) * width
        err = np.vstack([sel["value"] - sel["ci_low"], sel["ci_high"] - sel["value"]])
        ax.bar(x, sel["value"], width, yerr=err, capsize=2, color=colors[i], label=scenario)
    ax.set_xticks(np.arange(len(labels)), labels, fontsize=8)
    ax.set_ylabel("invalid-answer rate")
    ax.set_ylim(0, 1.02)
    ax.legend(fontsize=8, frameon=False)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return fig


def learning_curve(
    curve: pd.DataFrame,
    metric: str,
    *,
    x: str = "samples",
    reference: float | None = None,
    reference_label: str | None = None,
    study: pd.DataFrame | None = None,
    height: float = 3.6,
    full_scale: bool = True,
):
    """A learning curve: ``metric`` against training size ``x`` with its 95 % confidence band, one line per model,
    a dotted line at ``reference`` (e.g. the study's few-shot GPT-4-Turbo) and a star where a curve first reaches
    it. With ``study`` (columns model, x, value: the study's Fig. 2, :func:`labscale.sweep.study_fig2`) a second
    panel shows the published curves, in grey, on their own axis (their training sizes are not ours).
    ``full_scale``: both panels share a 0-1 y axis (else each fits its values, e.g. scores of different
    encoders)."""
    rows = curve[curve["metric"] == metric].sort_values(x)
    if rows.empty:
        raise ValueError(f"the curve holds no {metric!r} rows")
    panels = 2 if study is not None and not study.empty else 1
    fig, axes = plt.subplots(1, panels, figsize=(5.2 * panels, height), squeeze=False, sharey=full_scale)
    ax = axes[0, 0]
    palette = sns.color_palette("colorblind", n_colors=max(rows["model"].nunique(), 1))
    for color, (model, grp) in zip(palette, rows.groupby("model"), strict=True):
        ax.fill_between(grp[x], grp["ci_low"], grp["ci_high"], color=color, alpha=0.2, lw=0)
        ax.plot(grp[x], grp["value"], color=color, marker="o", label=f"{model} (this book, 95% CI band)")
        reached = grp[grp["value"] >= reference] if reference is not None else grp.iloc[:0]
        if not reached.empty:
            first = reached.iloc[0]
            ax.plot(
                [first[x]],
                [first["value"]],
                marker="*",
                markersize=16,
                color=color,
                ls="none",
                label=f"first reaches the reference ({x} = {first[x]:g})",
            )
    ax.set_xlabel(
        {
            "samples": "training samples seen",
            "fraction": "fraction of the training set",
            "train_examples": "distinct training examples",
        }.get(x, x)
    )
    ax.set_title("this book", fontsize=10)
    if panels == 2:
        ref_ax = axes[0, 1]
        for i, (model, grp) in enumerate(study.groupby("model")):
            grp = grp.sort_values("x")
            ref_ax.plot(
                grp["x"], grp["value"], color=sns.color_palette("Greys", 6)[2 + i % 4], marker=".", ls="--", label=model
            )
        ref_ax.set_xlabel("training samples seen (study)")
        ref_ax.set_title("Wolfe et al. 2024, Fig. 2 (reference values)", fontsize=10)
    for a in axes.flat:
        if reference is not None:
            a.axhline(reference, color="0.25", ls=":", lw=1.2, label=reference_label or f"reference {reference:.2f}")
        if full_scale:
            a.set_ylim(-0.02, 1.02)
        a.grid(alpha=0.3)
        a.legend(fontsize=7, frameon=False, loc="best")
    ax.set_ylabel(METRIC_LABELS.get(metric, metric))
    fig.tight_layout()
    return fig


def training_loss(results, *, height: float = 3.0):
    """Training loss per optimizer step, one line per fine-tune (``results``: task -> AdapterResult)."""
    fig, ax = plt.subplots(figsize=(6.4, height))
    palette = sns.color_palette("colorblind", n_colors=max(len(results), 1))
    for color, (task, result) in zip(palette, results.items(), strict=True):
        steps = [row["step"] for row in result.train_loss]
        ax.plot(steps, result.losses, color=color, marker=".", lw=1, label=task.replace("_", " "))
    ax.set_xlabel("optimizer step")
    ax.set_ylabel(
        "training loss (answer tokens)"
        if all(r.model_card["config"]["completion_only_loss"] for r in results.values())
        else "training loss"
    )
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, frameon=False)
    fig.tight_layout()
    return fig


# -- bias ------------------------------------------------------------------------------------------------------
def worst_vs_mean(table: pd.DataFrame, *, reference: bool = True, height: float = 3.2):
    """Toxicity: worst-group accuracy and mean accuracy by scenario (0-3 shots, fine-tuned), ours with 95 % CI bars,
    the study's Table 5 models as grey dashed lines (reference values). Returns the figure."""
    from .report import study_table5

    ours = table[table["task"] == "toxicity"]
    if ours.empty:
        raise ValueError("the table holds no toxicity runs")
    tuned = (ours["scenario"] == "fine-tuned").any()
    ticks = 5 if tuned else 4
    fig, axes = plt.subplots(1, 2, figsize=(9.6, height), sharey=True)
    ref = study_table5() if reference else None
    palette = sns.color_palette("colorblind", n_colors=max(ours["model"].nunique(), 1))
    for ax, (metric, column, title) in zip(
        axes,
        (("worst_group_accuracy", "worst", "Worst-group accuracy"), ("accuracy", "mean", "Mean accuracy")),
        strict=True,
    ):
        if ref is not None:
            sel = ref if tuned else ref[ref["scenario"] != "fine-tuned"]
            for i, (_model, grp) in enumerate(sel.groupby("model")):
                ax.plot(
                    grp["scenario"].map(SCENARIO_X),
                    grp[column],
                    color="0.7",
                    lw=1,
                    ls="--",
                    marker=".",
                    label="Wolfe et al. 2024 (Table 5), one line per model" if i == 0 else None,
                )
        _by_scenario(ax, ours[ours["metric"] == metric], palette)
        ax.set_title(title, fontsize=10)
        ax.set_xticks(range(ticks), ["0", "1", "2", "3", "FT"][:ticks])
        ax.set_xlabel("shots" + (" / fine-tuned" if tuned else ""))
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("accuracy")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=3, fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    return fig


def bbq_scores(table: pd.DataFrame, *, height: float = 3.2):
    """BBQ: accuracy by context type (left) and the two bias scores (right), one bar per model and scenario with
    95 % CI error bars. Returns the figure."""
    rows = table[table["task"] == "bbq"].copy()
    if rows.empty:
        raise ValueError("the table holds no bbq runs")
    rows["run label"] = rows["model"] + " " + rows["scenario"]
    labels = list(dict.fromkeys(rows.sort_values(["model", "shots"])["run label"]))
    panels = (
        (("accuracy_ambig", "ambiguous"), ("accuracy_disambig", "disambiguated")),
        (("bias_score_ambig", "s_AMB (ambiguous)"), ("bias_score_disambig", "s_DIS (disambiguated)")),
    )
    fig, axes = plt.subplots(1, 2, figsize=(9.6, height))
    colors = sns.color_palette("crest", n_colors=max(len(labels), 1))
    for ax, metrics, ylabel, ylim in zip(
        axes, panels, ("accuracy", "bias score"), ((0, 1.02), (-1.02, 1.02)), strict=True
    ):
        width = 0.8 / len(labels)
        for i, label in enumerate(labels):
            sel = rows[rows["run label"] == label].set_index("metric").reindex([m for m, _ in metrics])
            x = np.arange(len(metrics)) + (i - (len(labels) - 1) / 2) * width
            err = np.vstack([sel["value"] - sel["ci_low"], sel["ci_high"] - sel["value"]])
            ax.bar(x, sel["value"], width, yerr=err, capsize=3, color=colors[i], label=f"{label} (95% CI)")
        ax.set_xticks(np.arange(len(metrics)), [name for _, name in metrics], fontsize=9)
        ax.set_ylabel(ylabel)
        ax.set_ylim(*ylim)
        ax.grid(axis="y", alpha=0.3)
    axes[1].axhline(0, color="0.3", lw=1)
    axes[0].legend(fontsize=8, frameon=False)
    fig.tight_layout()
    return fig


# -- hallucination / abstention ---------------------------------------------------------------------------------
def qasper_panels(with_context: pd.DataFrame, without_context: pd.DataFrame | None = None, *, height: float = 3.2):
    """Left: QASPER answer F1 by scenario (ours with 95% CI bars; the study's Table 6 in grey). Right: the
    abstention rate without context, zero-shot and fine-tuned (ours with CIs; the study's Table 7 in grey; the
    ideal is 1.0). Returns the matplotlib figure."""
    from .report import study_qasper_table

    panels = [("answer_f1", with_context, 6, "QASPER answer F1 (with context)")]
    if without_context is not None and not without_context.empty:
        panels.append(("abstention_rate", without_context, 7, "abstention rate without context (ideal 1.0)"))
    fig, axes = plt.subplots(1, len(panels), figsize=(5.0 * len(panels), height), squeeze=False)
    for ax, (metric, table, number, title) in zip(axes.flat, panels, strict=True):
        # Table 7 has only zero-shot and fine-tuned: two positions
        xs = SCENARIO_X if number == 6 else {"0-shot": 0, "fine-tuned": 1}
        ref = study_qasper_table(number)
        for i, (_model, grp) in enumerate(ref.groupby("model")):
            ax.plot(
                grp["scenario"].map(xs),
                grp["value"],
                color="0.7",
                lw=1,
                ls="--",
                marker=".",
                label=f"Wolfe et al. 2024 (Table {number}), one line per model" if i == 0 else None,
            )
        ours = table[(table["task"] == "qasper") & (table["metric"] == metric) & table["scenario"].isin(xs)]
        _by_scenario(ax, ours, sns.color_palette("colorblind", n_colors=max(ours["model"].nunique(), 1)), xs)
        if metric == "abstention_rate":
            ax.axhline(1.0, color="0.25", ls=":", lw=1, label="ideal")
            ax.set_xlim(-0.5, 1.5)
        ax.set_xticks(list(xs.values()), ["0", "1", "2", "3", "FT"] if number == 6 else ["0-shot", "FT"])
        ax.set_xlabel("shots / fine-tuned")
        ax.set_title(title, fontsize=10)
        ax.set_ylim(-0.02, 1.05)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, frameon=False, loc="best")
    fig.tight_layout()
    return fig


def risk_coverage(reports, *, height: float = 3.4):
    """Risk-coverage curves (selective risk of the most confident k answers against coverage k/n), one per
    selective-prediction report (:func:`labscale.selective.selective_report`), each with its oracle ranking
    dotted and its AURC in the legend."""
    if not reports:
        raise ValueError("no selective-prediction report to plot")
    fig, ax = plt.subplots(figsize=(5.6, height))
    palette = sns.color_palette("colorblind", n_colors=len(reports))
    from .metrics import risk_coverage_curve

    for color, r in zip(palette, reports, strict=True):
        curve, m = r["curve"], r["metrics"]["aurc"]
        label = (
            f"{r['task']} {r['scenario']} {r['model']}: AURC {m['value']:.2f} [{m['ci_low']:.2f}, {m['ci_high']:.2f}]"
        )
        ax.plot(curve["coverage"], curve["risk"], color=color, lw=1.6, label=label)
        correct = r["outcomes"]["correct"].to_numpy(dtype=float)
        oracle = risk_coverage_curve(correct, correct)
        ax.plot(oracle["coverage"], oracle["risk"], color=color, lw=1, ls=":")
    ax.plot([], [], color="0.4", ls=":", lw=1, label="oracle ranking (same answers)")
    ax.set_xlabel("coverage (share of answers kept, most confident first)")
    ax.set_ylabel("selective risk (1 - correct)")
    ax.set_xlim(0, 1.0)
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, frameon=False, loc="best")
    fig.tight_layout()
    return fig


# -- privacy ---------------------------------------------------------------------------------------------------
def privacy_utility(utility: pd.DataFrame, *, reference: bool = True, height: float = 3.2):
    """Accuracy and F1 by privacy budget (from :func:`labscale.privacy.utility_by_epsilon`): each DP adapter with
    95 % CI bars, the base model as a dotted band, the study's Table 4 models as grey dashed lines."""
    from .report import _epsilon_text, study_table4

    metrics = ("accuracy", "f1")
    fig, axes = plt.subplots(1, 2, figsize=(9.0, height), squeeze=False)
    tuned = utility[utility["adapter"] != "base"].copy()
    tuned["eps"] = tuned["epsilon"].map(_epsilon_text)
    ref = study_table4() if reference else None
    # one x position per budget, the study's and ours, in increasing order (infinity last)
    study_order = sorted(set(tuned["eps"]) | (set(ref["epsilon"]) if ref is not None else set()), key=float)
    order = [e for e in study_order if e in set(tuned["eps"])]
    for ax, metric in zip(axes.flat, metrics, strict=True):
        if ref is not None:
            for model, grp in ref[ref["metric"] == metric].groupby("model"):
                xs = [study_order.index(e) for e in grp["epsilon"]]
                ax.plot(xs, grp["value"], color="0.7", ls="--", lw=1, marker=".", zorder=1)
                ax.annotate(
                    model,
                    (xs[-1], grp["value"].iloc[-1]),
                    fontsize=6,
                    color="0.5",
                    xytext=(3, 0),
                    textcoords="offset points",
                )
        base = utility[(utility["adapter"] == "base") & (utility["metric"] == metric)]
        if not base.empty:
            b = base.iloc[0]
            ax.axhspan(b["ci_low"], b["ci_high"], color="C0", alpha=0.08)
            ax.axhline(b["value"], color="C0", ls=":", lw=1, label=f"{b['model']} no fine-tuning")
        rows = tuned[tuned["metric"] == metric].set_index("eps").reindex(order).dropna(subset=["value"])
        xs = [study_order.index(e) for e in rows.index]
        ax.errorbar(
            xs,
            rows["value"],
            yerr=[rows["value"] - rows["ci_low"], rows["ci_high"] - rows["value"]],
            color="C1",
            marker="o",
            capsize=3,
            lw=1.5,
            label="DP adapters (this book)",
            zorder=3,
        )
        ax.set_xticks(range(len(study_order)), [("∞" if e == "inf" else e) for e in study_order])
        ax.set_xlabel("privacy budget epsilon")
        ax.set_ylabel(METRIC_LABELS.get(metric, metric))
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
    axes[0, 0].legend(fontsize=7, frameon=False, loc="lower right")
    fig.tight_layout()
    return fig


def leakage(audit: pd.DataFrame, *, height: float = 3.2):
    """The leakage audit: membership-inference AUROC per attack and model (95 % CI bars, 0.5 = chance), and canary
    exposure by number of insertions per model (bits; the dotted line is the maximum, log2 |R|)."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(10.0, height))
    models = list(dict.fromkeys(audit["model"]))
    palette = dict(zip(models, sns.color_palette("colorblind", n_colors=len(models)), strict=True))
    mia = audit[audit["metric"] == "auroc"]
    attacks = list(dict.fromkeys(mia["audit"]))
    width = 0.8 / max(len(models), 1)
    for i, model in enumerate(models):
        rows = mia[mia["model"] == model].set_index("audit").reindex(attacks)
        xs = np.arange(len(attacks)) + (i - (len(models) - 1) / 2) * width
        ok = rows["value"].notna().to_numpy()
        left.errorbar(
            xs[ok],
            rows["value"][ok],
            yerr=[(rows["value"] - rows["ci_low"])[ok], (rows["ci_high"] - rows["value"])[ok]],
            fmt="o",
            color=palette[model],
            capsize=2,
            label=model,
        )
    left.axhline(0.5, color="0.5", ls=":", lw=1)
    left.set_xticks(range(len(attacks)), [a.split(": ")[-1] for a in attacks])
    left.set_ylabel("membership AUROC")
    left.set_ylim(0, 1)
    left.grid(alpha=0.3)
    left.legend(fontsize=7, frameon=False)
    canary = audit[audit["audit"] == "canary"].copy()
    canary["repetitions"] = canary["metric"].str.extract(r"exposure_(\d+)x")[0].astype(float)
    for model in models:
        rows = canary[canary["model"] == model].sort_values("repetitions")
        right.errorbar(
            rows["repetitions"],
            rows["value"],
            yerr=[rows["value"] - rows["ci_low"], rows["ci_high"] - rows["value"]],
            marker="o",
            color=palette[model],
            capsize=2,
            label=model,
        )
    if not canary.empty:
        right.axhline(canary["max_exposure"].max(), color="0.5", ls=":", lw=1)
        right.set_xscale("log", base=2)
    right.set_xlabel("times the canary was inserted")
    right.set_ylabel("exposure (bits)")
    right.set_ylim(bottom=0)
    right.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def transfer_heatmap(deltas: pd.DataFrame, *, reference: bool = True, height: float = 2.8):
    """Adapter-minus-base deltas as a heatmap (rows: adapter -> target task, columns: shots), each cell annotated
    with its 95% CI; beside it the study's Fig. 3 deltas (Wolfe et al. 2024) when ``reference``."""
    from .report import study_fig3_deltas

    def grid(frame):
        frame = frame.assign(
            row=[
                f"{a.removesuffix(' adapter')} → {t}\n({m})"
                for a, t, m in zip(frame["adapter"], frame["task"], frame["metric"], strict=True)
            ]
        )
        return frame.pivot_table(index="row", columns="shots", values="delta", aggfunc="first")

    ours = grid(deltas)
    ci = deltas.assign(
        text=[
            f"{d:+.2f}\n[{lo:+.2f}, {hi:+.2f}]"
            for d, lo, hi in zip(deltas["delta"], deltas["ci_low"], deltas["ci_high"], strict=True)
        ]
    )
    labels = grid(ci.assign(delta=ci["text"])) if not deltas.empty else ours
    panels = [("this book (95% CI)", ours, labels)]
    if reference:
        study = study_fig3_deltas()
        st = grid(study)
        panels.append(("Wolfe et al. 2024, Fig. 3 (Llama-2-7B)", st, st.map(lambda v: f"{v:+.2f}")))
    width = 4.6 * len(panels)
    fig, axes = plt.subplots(
        1, len(panels), figsize=(width, max(height, 0.55 * max(len(p[1]) for p in panels) + 1)), squeeze=False
    )
    limit = max(0.1, max(float(np.nanmax(np.abs(p[1].to_numpy(float)))) if p[1].size else 0 for p in panels))
    for ax, (title, values, text) in zip(axes[0], panels, strict=True):
        sns.heatmap(
            values.astype(float),
            annot=text.reindex_like(values).to_numpy(),
            fmt="",
            cmap="RdBu",
            vmin=-limit,
            vmax=limit,
            center=0,
            cbar=False,
            ax=ax,
            annot_kws={"fontsize": 7},
        )
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("shots")
        ax.set_ylabel("")
        ax.tick_params(axis="y", labelsize=7)
    fig.tight_layout()
    return fig


def lm_eval_bars(table: pd.DataFrame, *, height: float = 2.8):
    """lm-eval accuracy per model/adapter with 95% intervals (±1.96 lm-eval stderr), one panel per task."""
    rows = table[table["metric"].isin(["acc", "exact_match", "acc_norm"])]
    tasks = list(dict.fromkeys(rows["task"]))
    fig, axes = plt.subplots(1, max(len(tasks), 1), figsize=(3.6 * max(len(tasks), 1), height), squeeze=False)
    for ax, task in zip(axes[0], tasks, strict=True):
        part = rows[rows["task"] == task]
        xs = np.arange(len(part))
        err = [(part["value"] - part["ci_low"]).clip(lower=0).fillna(0), (part["ci_high"] - part["value"]).fillna(0)]
        ax.errorbar(xs, part["value"], yerr=err, fmt="o", capsize=3)
        ax.axhline(0.25, color="0.5", ls=":", lw=1, label="chance (4 options)")
        ax.set_xticks(xs, [f"{lbl}\n{m}" for lbl, m in zip(part["label"], part["metric"], strict=True)], fontsize=7)
        ax.set_ylim(0, 1)
        ax.set_title(task, fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, frameon=False)
    fig.tight_layout()
    return fig


# -- cost -------------------------------------------------------------------------------------------------
def cost_quality_plot(
    df: pd.DataFrame,
    *,
    cost_col: str = "usd",
    quality_col: str = "quality",
    label_col: str = "label",
    hue_col: str | None = "model",
    logx: bool = True,
    labels: str = "auto",
    xlabel: str = "total cost (USD)",
    ylabel: str | None = None,
    title: str | None = None,
    ax=None,
):
    """Scatter of cost against quality, the Pareto frontier drawn as a step line and its points ringed.

    Points are labelled with ``label_col``: ``labels="all"``, ``"frontier"`` (only frontier points), ``"none"``,
    or ``"auto"`` (all when there are at most 15 points, else the frontier only). Returns the matplotlib figure.
    """
    check_choice("labels", labels, ("auto", "all", "frontier", "none"))

    for column in (cost_col, quality_col, label_col):
        if column not in df:
            raise invalid_choice("column", column, list(df.columns))
    data = df.copy()
    data[cost_col] = pd.to_numeric(data[cost_col], errors="coerce")
    data[quality_col] = pd.to_numeric(data[quality_col], errors="coerce")
    data = data.dropna(subset=[cost_col, quality_col])
    if data.empty:
        raise ValueError("no row has both a cost and a quality to plot")
    if logx and (data[cost_col] <= 0).any():
        logx = False
    if ax is None:
        fig, ax = plt.subplots(figsize=(6.4, 4.2))
    else:
        fig = ax.figure
    hues = list(dict.fromkeys(data[hue_col])) if hue_col and hue_col in data else [None]
    palette = sns.color_palette("colorblind", n_colors=max(len(hues), 1))
    colors = dict(zip(hues, palette, strict=True))
    for hue in hues:
        sel = data if hue is None else data[data[hue_col] == hue]
        ax.scatter(sel[cost_col], sel[quality_col], color=colors[hue], s=30, label=hue, zorder=3)
    on_front = pareto_frontier(data, cost_col, quality_col)
    front = data[on_front].sort_values(cost_col)
    if not front.empty:
        ax.step(
            front[cost_col],
            front[quality_col],
            where="post",
            color="0.3",
            lw=1,
            ls="--",
            zorder=2,
            label="Pareto frontier",
        )
        ax.scatter(front[cost_col], front[quality_col], facecolors="none", edgecolors="0.2", s=110, lw=1.2, zorder=4)
    if labels == "auto":
        labels = "all" if len(data) <= 15 else "frontier"
    labelled = data if labels == "all" else data[on_front] if labels == "frontier" else data.iloc[:0]
    for x, y, text in zip(labelled[cost_col], labelled[quality_col], labelled[label_col], strict=True):
        ax.annotate(str(text), (x, y), xytext=(4, 3), textcoords="offset points", fontsize=7)
    if logx:
        ax.set_xscale("log")
        dollars = FuncFormatter(lambda v, _: f"${v:g}")
        ax.xaxis.set_major_formatter(dollars)
        ax.xaxis.set_minor_formatter(
            FuncFormatter(
                lambda v, _: f"${v:g}" if v > 0 and round(v / 10 ** math.floor(math.log10(v))) in (2, 3, 5) else ""
            )
        )
        ax.tick_params(axis="x", which="minor", labelsize=7)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel or quality_col)
    if title:
        ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, frameon=False)
    fig.tight_layout()
    return fig


def cost_quality_panels(ours: pd.DataFrame, metric: str = "accuracy", *, title: str = "this book", height: float = 4.2):
    """The cost chapter's figure: cost against quality with the Pareto frontier, the study's beside ours. Left, the
    study's Table 3 costs with its Table 2 fact-checking ``metric`` (:func:`labscale.cost.study_cost_quality`; one
    colour per model); right, ``ours`` (:func:`labscale.cost.join_quality` output; one colour per regime), titled
    ``title``. Returns the matplotlib figure."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, height))
    cost_quality_plot(
        study_cost_quality(metric),
        cost_col="total_usd",
        ax=left,
        hue_col="model",
        ylabel=metric,
        title="Wolfe et al. 2024, Tables 2 and 3 (reference values)",
    )
    cost_quality_plot(ours, ax=right, hue_col="regime", ylabel=metric, title=title)
    fig.tight_layout()
    return fig


# -- summarization metrics ----------------------------------------------------------------------------------
def _short_run(label: str) -> str:
    """A run label short enough to print beside a point (``mistral-7b-instruct 3-shot`` -> ``mistral-7b 3s``)."""
    for long, short in (
        ("-instruct", ""),
        ("-chat", ""),
        ("-turbo", ""),
        (" + cross-task adapter", "+X"),
        (" fine-tuned", " FT"),
        ("-shot", "s"),
    ):
        label = label.replace(long, short)
    return label


def _run_points(ax, xs, ys, labels: list[str], models: list[str]) -> None:
    """One point per run, coloured by model, each labelled with its short run name."""
    palette = dict(zip(dict.fromkeys(models), sns.color_palette("colorblind", n_colors=len(set(models))), strict=True))
    for model in palette:
        sel = [i for i, m in enumerate(models) if m == model]
        ax.scatter([xs[i] for i in sel], [ys[i] for i in sel], color=palette[model], s=28, label=model, zorder=3)
    for x, y, label in zip(xs, ys, labels, strict=True):
        ax.annotate(_short_run(label), (x, y), xytext=(3, 2), textcoords="offset points", fontsize=6)


def length_plot(scores, metric: str = "rougeL", labels=None):
    """Each run's corpus length ratio (summary over reference tokens, x) against its run-level ``metric`` (y; corpus
    BLEU or the mean per-item score), one labelled point per run. Returns the figure."""
    from .summary_scores import SUMMARY_METRICS

    check_choice("metric", metric, SUMMARY_METRICS)
    labels = scores.labels if labels is None else list(labels)
    models = [scores.runs["model"].iloc[scores.index(label)] for label in labels]
    xs = [scores.value("length_ratio", label) for label in labels]
    ys = [scores.value(metric, label) for label in labels]
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    _run_points(ax, xs, ys, labels, models)
    ax.axvline(1.0, color="0.5", ls=":", lw=1, label="as long as the reference")
    ax.set_xlabel("length ratio (summary / reference tokens, corpus)")
    ax.set_ylabel(METRIC_LABELS.get(metric, metric))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, frameon=False, loc="best")
    fig.tight_layout()
    return fig


def agreement_plot(scores, x: str = "bleu", y: str = "bertscore_f1", labels=None):
    """Run-level values under two metrics (``x``, ``y``), one labelled point per run, so that runs one metric ranks
    above another and the other below show as a falling pair (the rank correlation, with its interval, is
    :func:`labscale.summary_analysis.metric_agreement`'s)."""
    from .summary_scores import SUMMARY_METRICS

    check_choice("metric", x, SUMMARY_METRICS)
    check_choice("metric", y, SUMMARY_METRICS)
    labels = scores.labels if labels is None else list(labels)
    models = [scores.runs["model"].iloc[scores.index(label)] for label in labels]
    xs = [scores.value(x, label) for label in labels]
    ys = [scores.value(y, label) for label in labels]
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    _run_points(ax, xs, ys, labels, models)
    ax.set_xlabel(METRIC_LABELS.get(x, x))
    ax.set_ylabel(METRIC_LABELS.get(y, y))
    ax.set_title(f"{len(labels)} runs", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, frameon=False, loc="best")
    fig.tight_layout()
    return fig


# -- head to head ----------------------------------------------------------------------------------------------
def win_rate_heatmaps(actual: pd.DataFrame, predicted: pd.DataFrame, *, height: float = 4.2):
    """The arena surveys' two heatmaps side by side: the share of battles each row model won against each column
    model (ties half; blank where they never met) and the share a rating model predicts. Both are model x
    opponent tables in the same order (:func:`labscale.arena.ratings.win_rates`, ``predicted_win_rates``)."""
    order = list(predicted.index)
    actual = actual.reindex(index=order, columns=order)
    predicted = predicted.reindex(index=order, columns=order)
    side = max(height, 0.3 * len(order) + 2.5)  # square cells: each panel about as wide as it is tall
    fig, axes = plt.subplots(1, 2, figsize=(2 * side + 1.5, side), sharey=True)
    for ax, table, title in ((axes[0], actual, "actual win rate"), (axes[1], predicted, "predicted win rate")):
        sns.heatmap(
            table.astype(float),
            ax=ax,
            vmin=0,
            vmax=1,
            cmap="RdBu_r",
            center=0.5,
            annot=len(order) <= 10,
            fmt=".2f",
            annot_kws={"fontsize": 7},
            cbar=ax is axes[1],
            square=True,
        )
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("opponent")
    axes[0].set_ylabel("model")
    fig.tight_layout()
    return fig


def reliability_plot(reliability: pd.DataFrame, *, height: float = 3.6):
    """Predicted win probability (binned) against the observed share of wins, with the diagonal of perfect
    calibration; point size shows how many battles fall in each bin (columns mean_predicted, mean_observed,
    count)."""
    fig, ax = plt.subplots(figsize=(height * 1.1, height))
    ax.plot([0, 1], [0, 1], color="0.6", ls="--", lw=1, label="perfect calibration")
    sizes = 20 + 180 * reliability["count"] / max(float(reliability["count"].max()), 1.0)
    ax.scatter(reliability["mean_predicted"], reliability["mean_observed"], s=sizes, color="C0", label="battles")
    ax.set_xlabel("predicted probability that model A wins")
    ax.set_ylabel("observed share of A wins (ties half)")
    ax.set_xlim(-0.02, 1.02)
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, frameon=False, loc="upper left")
    fig.tight_layout()
    return fig


def rating_intervals(ratings: pd.DataFrame, *, by: str = "judge", height: float = 3.4):
    """Ratings with their 95 % intervals, one row per model, one colour per ``by`` value (e.g. the judge):
    columns model, rating, ci_low, ci_high and ``by``."""
    groups = list(dict.fromkeys(ratings[by])) if by in ratings.columns else [None]
    models = list(dict.fromkeys(ratings.sort_values("rating")["model"]))
    fig, ax = plt.subplots(figsize=(7.2, max(height, 0.32 * len(models) + 1.2)))
    palette = sns.color_palette("colorblind", n_colors=max(len(groups), 1))
    for k, (color, group) in enumerate(zip(palette, groups, strict=True)):
        rows = ratings if group is None else ratings[ratings[by] == group]
        y = np.array([models.index(m) for m in rows["model"]]) + (k - (len(groups) - 1) / 2) * 0.18
        err = np.vstack([rows["rating"] - rows["ci_low"], rows["ci_high"] - rows["rating"]])
        ax.errorbar(rows["rating"], y, xerr=err, fmt="o", color=color, capsize=3, label=group)
    ax.set_yticks(range(len(models)), models, fontsize=8)
    ax.set_xlabel("rating (Elo scale), 95 % interval")
    ax.grid(alpha=0.3, axis="x")
    if groups != [None]:
        ax.legend(fontsize=8, frameon=False, loc="lower right")
    fig.tight_layout()
    return fig


def cost_quality_intervals(df: pd.DataFrame, *, low_col: str = "quality_low", high_col: str = "quality_high", **kwargs):
    """:func:`cost_quality_plot` with each point's quality interval drawn as a vertical error bar (``low_col`` to
    ``high_col``, e.g. the 95 % interval :func:`labscale.cost.join_quality` carries as ``quality_low`` /
    ``quality_high``). Rows without an interval get no bar; the Pareto frontier is still found on the point
    estimates. Other keyword arguments go to :func:`cost_quality_plot`. Returns the matplotlib figure."""
    for column in (low_col, high_col):
        if column not in df:
            raise invalid_choice("column", column, list(df.columns))
    cost_col, quality_col = kwargs.get("cost_col", "usd"), kwargs.get("quality_col", "quality")
    fig = cost_quality_plot(df, **kwargs)
    ax = kwargs.get("ax") or fig.axes[0]
    data = df[[cost_col, quality_col, low_col, high_col]].apply(pd.to_numeric, errors="coerce").dropna()
    if not data.empty:
        err = np.vstack([data[quality_col] - data[low_col], data[high_col] - data[quality_col]]).clip(min=0)
        ax.errorbar(
            data[cost_col], data[quality_col], yerr=err, fmt="none", ecolor="0.55", elinewidth=1, capsize=2, zorder=1
        )
    return fig


def cost_quality_by_task(
    df: pd.DataFrame, *, task_col: str = "task", metric_col: str = "metric", label_col: str = "regime", height=3.4
):
    """One cost-quality panel per task (:func:`cost_quality_intervals`: quality intervals, each task's own Pareto
    frontier, since tasks are judged by different metrics), the y axis named by the task's ``metric_col``. ``df`` is
    :func:`labscale.structured.cost_quality` output. Returns the matplotlib figure."""
    for column in (task_col, metric_col, label_col):
        if column not in df:
            raise invalid_choice("column", column, list(df.columns))
    tasks = list(dict.fromkeys(df[task_col]))
    if not tasks:
        raise ValueError("no rows to plot")
    fig, axes = plt.subplots(1, len(tasks), figsize=(4.4 * len(tasks), height), squeeze=False)
    for ax, task in zip(axes[0], tasks, strict=True):
        rows = df[df[task_col] == task]
        cost_quality_intervals(
            rows, ax=ax, label_col=label_col, title=task.replace("_", " "), ylabel=str(rows[metric_col].iloc[0])
        )
    fig.tight_layout()
    return fig


#: colours of the transparency chapter: highlighted developers' labels, disclosed / undisclosed cells
TRANSPARENCY_HIGHLIGHT = "#c0392b"
TRANSPARENCY_CELLS = ("#eeeeee", "#2b5c8a")


def transparency_heatmap(matrix: pd.DataFrame, highlight=("Meta", "Mistral", "OpenAI"), *, height: float = 14.0):
    """FMTI indicators (rows, grouped by domain with separator lines and domain labels) by developers (columns,
    labelled with their totals; ``highlight``: bold, coloured). ``matrix``:
    :func:`labscale.transparency.indicator_matrix`. Returns the matplotlib figure."""
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    if not isinstance(matrix.index, pd.MultiIndex) or not {"domain", "indicator"} <= set(matrix.index.names):
        raise ValueError("matrix needs a (domain, subdomain, indicator) index: use transparency.indicator_matrix")
    if matrix.empty:
        raise ValueError("no rows to plot")
    n_rows, n_cols = matrix.shape
    fig, ax = plt.subplots(figsize=(3.6 + 0.42 * n_cols, height))
    ax.imshow(matrix.to_numpy(), aspect="auto", cmap=ListedColormap(TRANSPARENCY_CELLS), vmin=0, vmax=1)
    ax.set_yticks(range(n_rows))
    ax.set_yticklabels(matrix.index.get_level_values("indicator"), fontsize=5.5)
    totals = matrix.sum()
    ax.set_xticks(range(n_cols))
    ax.set_xticklabels([f"{d} ({totals[d]})" for d in matrix.columns], rotation=60, ha="left", fontsize=7)
    ax.xaxis.tick_top()
    for label, developer in zip(ax.get_xticklabels(), matrix.columns, strict=True):
        if developer in highlight:
            label.set_fontweight("bold")
            label.set_color(TRANSPARENCY_HIGHLIGHT)
    ax.set_xticks(np.arange(-0.5, n_cols), minor=True)
    ax.grid(which="minor", axis="x", color="white", linewidth=0.6)
    ax.tick_params(which="minor", length=0)
    domains = pd.Series(matrix.index.get_level_values("domain"))
    starts = [i for i in range(n_rows) if i == 0 or domains[i] != domains[i - 1]]
    for start, end in zip(starts, [*starts[1:], n_rows], strict=True):
        if start:
            ax.axhline(start - 0.5, color="black", linewidth=1.2)
        ax.text(
            n_cols - 0.3, (start + end - 1) / 2, domains[start], rotation=270, va="center", ha="left", fontsize=9,
            fontweight="bold", clip_on=False,
        )  # fmt: skip
    handles = [Patch(color=TRANSPARENCY_CELLS[1], label="disclosed (1)"), Patch(color="#cccccc", label="not (0)")]
    ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.005), ncol=2, fontsize=7, frameon=False)
    fig.tight_layout()
    return fig


def transparency_change_plot(summary: pd.DataFrame, *, height: float | None = None):
    """Each developer's FMTI total in v1.0 and v1.1 as a dumbbell (sorted by v1.1), the net change written beside.
    ``summary``: :func:`labscale.transparency.change_summary`. Returns the matplotlib figure."""
    for column in ("developer", "v1.0", "v1.1"):
        if column not in summary:
            raise invalid_choice("column", column, list(summary.columns))
    if summary.empty:
        raise ValueError("no rows to plot")
    rows = summary.sort_values("v1.1").reset_index(drop=True)
    fig, ax = plt.subplots(figsize=(6.0, height or 0.9 + 0.42 * len(rows)))
    ys = np.arange(len(rows))
    ax.hlines(ys, rows["v1.0"], rows["v1.1"], color="0.7", linewidth=2, zorder=1)
    ax.scatter(rows["v1.0"], ys, color="0.45", label="v1.0 (Oct 2023)", zorder=2)
    ax.scatter(rows["v1.1"], ys, color=TRANSPARENCY_CELLS[1], label="v1.1 (May 2024)", zorder=3)
    for y, (old, new) in enumerate(zip(rows["v1.0"], rows["v1.1"], strict=True)):
        ax.annotate(f"{new - old:+d}", (max(old, new), y), xytext=(6, 0), textcoords="offset points", va="center",
                    fontsize=8)  # fmt: skip
    ax.set_yticks(ys)
    ax.set_yticklabels(rows["developer"])
    ax.set_xlim(0, 100)
    ax.set_xlabel("FMTI total (of 100 indicators)")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    return fig


def transparency_vs_quality(table: pd.DataFrame, metric: dict[str, str] | str | None = None, *, height: float = 3.6):
    """One panel per task: the developer's FMTI total (x) against quality (y, error bars where intervals exist),
    points labelled by model; models without a score sit in grey at the left margin, marked "not assessed".
    ``table``: :func:`labscale.transparency.beside_measurement`; ``metric``: one metric, or task -> metric
    (default: each task's first metric in ``table``). Returns the matplotlib figure."""
    for column in ("model", "task", "metric", "value", "transparency"):
        if column not in table:
            raise invalid_choice("column", column, list(table.columns))
    tasks = list(dict.fromkeys(table["task"]))
    if not tasks:
        raise ValueError("no rows to plot")
    scored = pd.to_numeric(table["transparency"], errors="coerce").dropna()
    lo, hi = (scored.min(), scored.max()) if len(scored) else (0.0, 100.0)
    span = max(hi - lo, 10.0)
    left = lo - 0.45 * span
    version = table["transparency_version"].iloc[0] if "transparency_version" in table else ""
    palette = dict(
        zip(dict.fromkeys(table["model"]), sns.color_palette("tab10", table["model"].nunique()), strict=True)
    )
    fig, axes = plt.subplots(1, len(tasks), figsize=(4.8 * len(tasks), height), squeeze=False)
    for ax, task in zip(axes[0], tasks, strict=True):
        rows = table[table["task"] == task]
        chosen = metric.get(task) if isinstance(metric, dict) else metric
        chosen = chosen or rows["metric"].iloc[0]
        if chosen not in set(rows["metric"]):
            raise invalid_choice(f"{task} metric", chosen, list(dict.fromkeys(rows["metric"])))
        rows = rows[rows["metric"] == chosen]
        repeated = rows["model"].duplicated(keep=False)
        if "scenario" in rows and rows["scenario"].nunique() > 1:
            repeated[:] = True
        for i, (_, row) in enumerate(rows.iterrows()):
            x = row["transparency"]
            missing = pd.isna(x)
            x = left if missing else float(x)
            color = "0.6" if missing else palette[row["model"]]
            low, high = row.get("ci_low", np.nan), row.get("ci_high", np.nan)
            if pd.notna(low) and pd.notna(high):
                err = [[max(row["value"] - low, 0)], [max(high - row["value"], 0)]]
                ax.errorbar([x], [row["value"]], yerr=err, fmt="none", ecolor=color, elinewidth=1, capsize=2)
            ax.scatter([x], [row["value"]], color=color, marker="s" if missing else "o", zorder=3)
            label = str(row["model"]) + (f" ({row['scenario']})" if repeated.iloc[i] and "scenario" in row else "")
            ax.annotate(label, (x, row["value"]), xytext=(5, 4 if i % 2 else -9), textcoords="offset points",
                        fontsize=7, color="0.4" if missing else "black")  # fmt: skip
        ax.axvline(left + 0.25 * span, color="0.8", linestyle="--", linewidth=0.8)
        ax.set_xlim(left - 0.2 * span, hi + 0.6 * span)
        ticks = [t for t in ax.get_xticks() if left + 0.3 * span <= t <= hi + 0.6 * span]
        ax.set_xticks([left, *ticks])
        ax.set_xticklabels(["not\nassessed", *[f"{t:g}" for t in ticks]], fontsize=8)
        ax.get_xticklabels()[0].set_color("0.45")
        ax.margins(y=0.18)
        ax.set_title(task.replace("_", " "))
        ax.set_xlabel(f"FMTI {version} total of the developer".replace("  ", " "))
        ax.set_ylabel(METRIC_LABELS.get(chosen, chosen))
    fig.tight_layout()
    return fig
