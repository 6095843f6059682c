"""Plots for the book (seaborn/matplotlib): metrics by number of shots with 95 % CIs, beside the study's values."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from .report import headline_metrics, study_table2
from .tasks import ALL_TASK_NAMES

METRIC_LABELS = {"accuracy": "Accuracy", "f1": "F1", "f1_weighted": "Weighted F1", "f1_macro": "Macro F1",
                 "bleu": "BLEU", "bertscore_f1": "BERTScore F1", "rouge1": "ROUGE-1", "rougeL": "ROUGE-L",
                 "invalid_rate": "Invalid-answer rate"}


#: x position of each scenario on the by-shots plots
SCENARIO_X = {"0-shot": 0, "1-shot": 1, "2-shot": 2, "3-shot": 3, "fine-tuned": 4}


def shots_panels(table: pd.DataFrame, *, reference: bool = True, height: float = 3.0):
    """One panel per (task, headline metric): our value by scenario (0-3 shots, then fine-tuned) with 95 % CI bars;
    the study's models in grey. Returns the matplotlib figure."""
    heads = headline_metrics(table["task"].unique())
    panels = [(t, m) for t in ALL_TASK_NAMES for m in heads.get(t, ()) if ((table["task"] == t) & (table["metric"] == m)).any()]
    if not panels:
        raise ValueError("the table holds no headline metric to plot")
    tuned = (table["scenario"] == "fine-tuned").any()
    cols = min(len(panels), 2 if len(panels) == 4 else 3)
    rows = int(np.ceil(len(panels) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, height * rows), squeeze=False)
    palette = sns.color_palette("colorblind", n_colors=max(table["model"].nunique(), 1))
    ref = study_table2() if reference else None
    for ax, (task, metric) in zip(axes.flat, panels):
        if ref is not None:
            sel = ref[(ref["task"] == task) & (ref["metric"] == metric)]
            if not tuned:
                sel = sel[sel["scenario"] != "fine-tuned"]
            for i, (model, grp) in enumerate(sel.groupby("model")):
                x = grp["scenario"].map(SCENARIO_X)
                ax.plot(x, grp["value"], color="0.7", lw=1, ls="--", marker=".",
                        label="Wolfe et al. 2024 (Table 2), one line per model" if i == 0 else None)
        ours = table[(table["task"] == task) & (table["metric"] == metric)]
        for color, (model, grp) in zip(palette, ours.groupby("model")):
            grp = grp.assign(x=grp["scenario"].map(SCENARIO_X)).sort_values("x")
            for part, marker, style in ((grp[grp["x"] < 4], "o", "-"), (grp[grp["x"] == 4], "*", "none")):
                if part.empty:
                    continue
                err = np.vstack([part["value"] - part["ci_low"], part["ci_high"] - part["value"]])
                ax.errorbar(part["x"], part["value"], yerr=err, color=color, marker=marker, ls=style, capsize=3,
                            markersize=10 if marker == "*" else 6,
                            label=f"{model} (this book, 95% CI)" if marker == "o" else f"{model} fine-tuned")
        ax.set_title(f"{task.replace('_', ' ')}: {METRIC_LABELS.get(metric, metric)}", fontsize=10)
        ax.set_xticks(range(5 if tuned else 4), ["0", "1", "2", "3", "FT"][: 5 if tuned else 4])
        ax.set_xlabel("shots" + (" / fine-tuned" if tuned else ""))
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(panels):]:
        ax.set_visible(False)
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=2, fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.08, 1, 1))
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


def learning_curve(curve: pd.DataFrame, metric: str, *, x: str = "samples", reference: float | None = None,
                   reference_label: str | None = None, study: pd.DataFrame | None = None, height: float = 3.6):
    """A learning curve: ``metric`` against training size ``x`` with its 95 % confidence band, one line per model,
    a dotted line at ``reference`` (e.g. the study's few-shot GPT-4-Turbo) and a star where a curve first reaches
    it. With ``study`` (columns model, x, value: the study's Fig. 2, :func:`labscale.sweep.study_fig2`) a second
    panel shows the published curves, in grey, on their own axis (their training sizes are not ours)."""
    rows = curve[curve["metric"] == metric].sort_values(x)
    if rows.empty:
        raise ValueError(f"the curve holds no {metric!r} rows")
    panels = 2 if study is not None and not study.empty else 1
    fig, axes = plt.subplots(1, panels, figsize=(5.2 * panels, height), squeeze=False, sharey=True)
    ax = axes[0, 0]
    palette = sns.color_palette("colorblind", n_colors=max(rows["model"].nunique(), 1))
    for color, (model, grp) in zip(palette, rows.groupby("model")):
        ax.fill_between(grp[x], grp["ci_low"], grp["ci_high"], color=color, alpha=0.2, lw=0)
        ax.plot(grp[x], grp["value"], color=color, marker="o", label=f"{model} (this book, 95% CI band)")
        reached = grp[grp["value"] >= reference] if reference is not None else grp.iloc[:0]
        if not reached.empty:
            first = reached.iloc[0]
            ax.plot([first[x]], [first["value"]], marker="*", markersize=16, color=color, ls="none",
                    label=f"first reaches the reference ({x} = {first[x]:g})")
    ax.set_xlabel({"samples": "training samples seen", "fraction": "fraction of the training set",
                   "train_examples": "distinct training examples"}.get(x, x))
    ax.set_title("this book", fontsize=10)
    if panels == 2:
        ref_ax = axes[0, 1]
        for i, (model, grp) in enumerate(study.groupby("model")):
            grp = grp.sort_values("x")
            ref_ax.plot(grp["x"], grp["value"], color=sns.color_palette("Greys", 6)[2 + i % 4], marker=".",
                        ls="--", label=model)
        ref_ax.set_xlabel("training samples seen (study)")
        ref_ax.set_title("Wolfe et al. 2024, Fig. 2 (reference values)", fontsize=10)
    for a in axes.flat:
        if reference is not None:
            a.axhline(reference, color="0.25", ls=":", lw=1.2, label=reference_label or f"reference {reference:.2f}")
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
    for color, (task, result) in zip(palette, results.items()):
        steps = [row["step"] for row in result.train_loss]
        ax.plot(steps, result.losses, color=color, marker=".", lw=1, label=task.replace("_", " "))
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("training loss (answer tokens)" if all(
        r.model_card["config"]["completion_only_loss"] for r in results.values()) else "training loss")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, frameon=False)
    fig.tight_layout()
    return fig
