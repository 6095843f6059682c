"""The FMTI beside the study: indicator matrix, subtotals, v1.0 -> v1.1 change, study models, quality tables, plots."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from labscale import plots, transparency  # noqa: E402
from labscale.data import fmti  # noqa: E402
from labscale.errors import InvalidParameter  # noqa: E402

pytestmark = pytest.mark.shared_data


@pytest.fixture(scope="module")
def root(shared_data):
    return shared_data / "fmti"


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


@pytest.mark.parametrize("version", ["v1.0", "v1.1"])
def test_matrix_matches_totals(root, version):
    matrix = transparency.indicator_matrix(version, path=root)
    assert matrix.shape[0] == 100 and list(matrix.index.names) == ["domain", "subdomain", "indicator"]
    assert list(matrix.index.get_level_values("indicator")) == list(fmti.indicators(root)["indicator"])
    assert set(np.unique(matrix.to_numpy())) <= {0, 1}
    totals = fmti.totals(version, root).set_index("developer")["total"]
    assert matrix.sum().to_dict() == totals.to_dict()
    assert list(matrix.sum()) == sorted(matrix.sum(), reverse=True)  # columns by total, descending


def test_matrix_known_values(root):
    assert transparency.indicator_matrix("v1.0", path=root)["Meta"].sum() == 54
    assert transparency.indicator_matrix("v1.1", path=root)["Meta"].sum() == 60
    some = transparency.indicator_matrix("v1.1", ["OpenAI", "Meta", "Mistral"], path=root)
    assert list(some.columns) == ["Meta", "Mistral", "OpenAI"]  # 60, 55, 49
    with pytest.raises(InvalidParameter, match="TII"):
        transparency.indicator_matrix("v1.1", ["TII"], path=root)


def test_subtotals(root):
    sub = transparency.subdomain_subtotals("v1.1", path=root)
    assert (sub.groupby("developer")["out_of"].sum() == 100).all()
    assert (
        sub.groupby("developer")["points"].sum().to_dict()
        == fmti.totals("v1.1", root).set_index("developer")["total"].to_dict()
    )
    data = sub[(sub["developer"] == "Meta") & (sub["subdomain"] == "Data")].iloc[0]
    assert data["out_of"] == 10 and data["domain"] == "Upstream"
    dom = transparency.domain_subtotals("v1.1", path=root).set_index(["developer", "domain"])
    assert (dom.loc[("Meta", "Upstream"), "points"], dom.loc[("Meta", "Model"), "points"]) == (15, 25)
    assert dom.loc[("Meta", "Downstream"), "out_of"] == 35
    assert (dom.groupby("developer")["out_of"].sum() == 100).all()


def test_change(root):
    change = transparency.change_v10_v11(path=root)
    assert set(change["change"]) <= {-1, 0, 1}
    assert len(change) == 100 * len(fmti.scored_twice(root))
    summary = transparency.change_summary(path=root).set_index("developer")
    assert list(summary.index) == fmti.scored_twice(root)
    totals = fmti.totals(path=root).set_index(["version", "developer"])["total"]
    for developer, row in summary.iterrows():
        assert row["net"] == row["v1.1"] - row["v1.0"]
        assert (row["v1.0"], row["v1.1"]) == (totals["v1.0", developer], totals["v1.1", developer])
    assert summary.loc["Meta", "net"] == 6 and summary.loc["OpenAI", "net"] == 1
    assert "Mistral" not in summary.index


def test_study_models(root):
    models = transparency.study_models(path=root).set_index("model")
    assert set(models.index) == set(fmti.STUDY_DEVELOPERS)
    assert models.loc["mistral-7b-instruct", "v1.1"] == 55 and np.isnan(models.loc["mistral-7b-instruct", "v1.0"])
    assert (models.loc["llama-2-7b-chat", "v1.0"], models.loc["llama-2-7b-chat", "v1.1"]) == (54, 60)
    for model in ("falcon-7b-instruct", "gpt-3.5-turbo"):
        assert models.loc[model, ["v1.0", "v1.1"]].isna().all() and models.loc[model, "developer"] is None
    assert "TII" in models.loc["falcon-7b-instruct", "note"]
    assert "GPT-3.5" in models.loc["gpt-3.5-turbo", "note"] and "GPT-4" in models.loc["gpt-3.5-turbo", "note"]
    assert "Llama 2" in models.loc["llama-2-7b-chat", "note"]


def test_study_quality_values():
    ft = transparency.study_quality("fine-tuned").set_index(["model", "task", "metric"])
    assert ft.loc[("mistral-7b-instruct", "fact_checking", "accuracy"), "value"] == 0.75
    assert ft.loc[("llama-2-7b-chat", "summarization", "bertscore_f1"), "value"] == 0.80
    assert "gpt-4-turbo" not in set(ft.index.get_level_values("model"))  # never fine-tuned
    row = ft.loc[("mistral-7b-instruct", "fact_checking", "accuracy")]
    assert (row["usd"], row["training_usd"]) == (0.29, 3.49)  # Table 3
    assert ft[["ci_low", "ci_high"]].isna().all().all()
    assert np.isnan(ft.loc[("mistral-7b-instruct", "summarization", "bleu"), "usd"])  # Table 3 costs fact-checking
    zero = transparency.study_quality("0-shot").set_index(["model", "task", "metric"])
    assert zero.loc[("gpt-4-turbo", "fact_checking", "accuracy"), "value"] == 0.72
    assert zero.loc[("gpt-4-turbo", "fact_checking", "accuracy"), "usd"] == 2.60
    best = transparency.study_quality()
    assert len(best) == 5 * 3 * 2 and (best["origin"] == transparency.STUDY_ORIGIN).all()
    picked = best.drop_duplicates(["model", "task"]).set_index(["model", "task"])["scenario"]
    assert picked["gpt-4-turbo", "entity_resolution"] == "2-shot"  # 0.97 first reached at 2 shots
    assert picked["mistral-7b-instruct", "fact_checking"] == "fine-tuned"
    with pytest.raises(InvalidParameter, match="best"):
        transparency.study_quality("4-shot")


def test_beside_measurement_never_proxies(root):
    table = transparency.beside_measurement(transparency.study_quality(), path=root)
    assert len(table) == 30
    gpt35 = table[table["model"] == "gpt-3.5-turbo"]
    assert len(gpt35) == 6 and gpt35["transparency"].isna().all() and gpt35["developer"].isna().all()
    assert not set(gpt35["transparency"].dropna()) & {48, 49}
    assert table[table["model"] == "falcon-7b-instruct"]["transparency"].isna().all()
    by_model = table.drop_duplicates("model").set_index("model")["transparency"]
    assert (by_model["llama-2-7b-chat"], by_model["mistral-7b-instruct"], by_model["gpt-4-turbo"]) == (60, 55, 49)
    old = transparency.beside_measurement(transparency.study_quality(), version="v1.0", path=root)
    mistral = old[old["model"] == "mistral-7b-instruct"]
    assert mistral["transparency"].isna().all() and "v1.0" in mistral["transparency_note"].iloc[0]


def test_beside_measurement_on_a_metrics_table(root):
    ours = pd.DataFrame(
        {
            "model": ["mistral-7b-instruct", "checkpoint-500", "gpt-3.5-turbo"],
            "task": ["summarization"] * 3,
            "scenario": ["fine-tuned", "fine-tuned", "0-shot"],
            "metric": ["rougeL"] * 3,
            "value": [0.3, 0.28, 0.25],
            "ci_low": [0.28, 0.26, 0.23],
            "ci_high": [0.32, 0.30, 0.27],
            "run": ["a", "b", "c"],
        }
    )
    table = transparency.beside_measurement(ours, path=root)
    assert list(table["transparency"].isna()) == [False, True, True] and table["run"].tolist() == ["a", "b", "c"]
    assert "not one of the study's models" in table["transparency_note"].iloc[1]
    with pytest.raises(InvalidParameter, match="ci_low"):
        transparency.beside_measurement(ours.drop(columns="ci_low"), path=root)
    fig = plots.transparency_vs_quality(table)
    assert len(fig.axes) == 1


def test_plots(root):
    fig = plots.transparency_heatmap(transparency.indicator_matrix("v1.1", path=root))
    (ax,) = fig.axes
    assert len(ax.get_yticks()) == 100 and len(ax.get_xticks()) == 14
    bold = {t.get_text().split(" (")[0] for t in ax.get_xticklabels() if t.get_fontweight() == "bold"}
    assert bold == {"Meta", "Mistral", "OpenAI"}
    assert "Meta (60)" in [t.get_text() for t in ax.get_xticklabels()]
    assert {t.get_text() for t in ax.texts} >= set(fmti.DOMAINS)
    fig = plots.transparency_change_plot(transparency.change_summary(path=root))
    assert len(fig.axes) == 1 and len(fig.axes[0].get_yticks()) == len(fmti.scored_twice(root))
    table = transparency.beside_measurement(transparency.study_quality(), path=root)
    fig = plots.transparency_vs_quality(table)
    assert len(fig.axes) == 3
    assert all(ax.get_xticklabels()[0].get_text() == "not\nassessed" for ax in fig.axes)
    grey = [c for c in fig.axes[0].collections if tuple(c.get_facecolor()[0][:3]) == (0.6, 0.6, 0.6)]
    assert len(grey) == 2  # falcon and gpt-3.5, at the margin, not given a score
