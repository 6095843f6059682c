"""The head-to-head plots draw what they are given: heatmap cells equal the tables, calibration points sit at the
binned values, and every rating has its interval bar."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pandas as pd
import pytest

from labscale import plots

MODELS = ["a", "b", "c"]


def test_win_rate_heatmaps_show_both_tables_in_the_predicted_order():
    actual = pd.DataFrame([[np.nan, 0.7, 0.9], [0.3, np.nan, 0.6], [0.1, 0.4, np.nan]], index=MODELS, columns=MODELS)
    predicted = pd.DataFrame([[0.5, 0.65, 0.8], [0.35, 0.5, 0.7], [0.2, 0.3, 0.5]], index=MODELS, columns=MODELS)
    fig = plots.win_rate_heatmaps(actual.loc[["c", "a", "b"], ["b", "c", "a"]], predicted)
    left, right = fig.axes[0], fig.axes[1]
    assert [t.get_text() for t in left.get_yticklabels()] == MODELS  # reordered to the predicted table's order
    cells = left.collections[0].get_array().reshape(3, 3)
    assert cells[0, 1] == pytest.approx(0.7) and np.ma.is_masked(cells[0, 0])  # never met: blank
    assert right.collections[0].get_array().reshape(3, 3)[2, 0] == pytest.approx(0.2)
    assert left.get_title() == "actual win rate" and right.get_title() == "predicted win rate"


def test_reliability_plot_puts_one_point_per_bin():
    table = pd.DataFrame({"mean_predicted": [0.2, 0.5, 0.8], "mean_observed": [0.25, 0.45, 0.9], "count": [10, 40, 5]})
    fig = plots.reliability_plot(table)
    points = fig.axes[0].collections[0].get_offsets()
    assert np.allclose(points, table[["mean_predicted", "mean_observed"]].to_numpy())


def test_rating_intervals_draw_a_bar_per_model_and_judge():
    ratings = pd.DataFrame(
        {
            "model": ["a", "b", "a", "b"],
            "rating": [1010.0, 990.0, 1030.0, 970.0],
            "ci_low": [995.0, 975.0, 1000.0, 950.0],
            "ci_high": [1025.0, 1005.0, 1060.0, 990.0],
            "judge": ["gold", "gold", "llm", "llm"],
        }
    )
    fig = plots.rating_intervals(ratings)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["b", "a"]  # sorted by rating, lowest first
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["gold", "llm"]
    xs = sorted(x for line in ax.lines for x in np.atleast_1d(line.get_xdata()))
    assert 1030.0 in xs and 970.0 in xs
