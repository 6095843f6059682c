"""The FMTI loader on the real release files (through the data registry) and on broken copies of them."""

from __future__ import annotations

import csv
import shutil

import pytest

from labscale.data import fmti
from labscale.errors import DataUnavailable, InvalidParameter

pytestmark = pytest.mark.shared_data


@pytest.fixture(scope="module")
def root(shared_data):
    return shared_data / "fmti"


def _rows(file):
    with open(file, encoding="utf-8-sig", newline="") as fh:
        return list(csv.reader(fh))


def _copy(root, tmp_path):
    target = tmp_path / "fmti"
    shutil.copytree(root, target)
    return target


def _edited(root, tmp_path, release, edit):
    """A copy of the release files whose ``<release>/<release>_scores.csv`` rows went through ``edit`` (in place)."""
    copy = _copy(root, tmp_path)
    file = copy / release / f"{release}_scores.csv"
    rows = _rows(file)
    edit(rows)
    _write(file, rows)
    return copy


def _write(file, rows):
    with open(file, "w", encoding="utf-8", newline="") as fh:
        csv.writer(fh).writerows(rows)


def test_indicators(root):
    table = fmti.indicators(root)
    assert len(table) == 100 and list(table["number"]) == list(range(1, 101))
    assert table["domain"].value_counts().to_dict() == {"Downstream": 35, "Model": 33, "Upstream": 32}
    assert "Data creators" in set(table["indicator"])  # stripped: the file has "Data creators "
    assert table.loc[7, "indicator"] == "Copyrighted data"


def test_default_root_is_the_registry_copy(shared_data):
    assert (fmti.fmti_root() / fmti.INDICATORS_FILE).is_file()
    assert fmti.fmti_root(shared_data) == shared_data / "fmti"  # a parent holding fmti/


@pytest.mark.parametrize(("version", "folder", "n_dev"), [("v1.0", "October2023", 10), ("May2024", "May2024", 14)])
def test_scores_shape(root, version, folder, n_dev):
    long = fmti.scores(version, root)
    assert len(long) == 100 * n_dev
    assert (long.groupby("developer")["indicator"].nunique() == 100).all()
    assert long["domain"].notna().all() and set(long["domain"]) == set(fmti.DOMAINS)
    assert set(long["score"]) <= {0, 1}
    assert set(long["indicator"]) == set(fmti.indicators(root)["indicator"])
    assert long["version"].iloc[0] == fmti.canonical_version(version)


def _summed(file, developer):
    rows = _rows(file)
    col = rows[0].index(developer)
    return sum(int(r[col]) for r in rows[1:] if r[col] and r[rows[0].index("Indicator")].strip() != "Total")


def test_known_totals_from_the_rows(root):
    oct23, may24 = root / "October2023" / "October2023_scores.csv", root / "May2024" / "May2024_scores.csv"
    assert (_summed(oct23, "Meta"), _summed(may24, "Meta")) == (54, 60)
    assert (_summed(oct23, "OpenAI"), _summed(may24, "OpenAI")) == (48, 49)
    assert _summed(may24, "Mistral") == 55
    t = fmti.totals(path=root).set_index(["version", "developer"])["total"]
    assert (t["v1.0", "Meta"], t["v1.1", "Meta"], t["v1.0", "OpenAI"], t["v1.1", "OpenAI"]) == (54, 60, 48, 49)
    assert t["v1.1", "Mistral"] == 55 and ("v1.0", "Mistral") not in t.index


def test_domain_totals_add_up(root):
    t = fmti.totals("v1.1", root)
    assert (t[["upstream", "model", "downstream"]].sum(axis=1) == t["total"]).all()
    meta = t.set_index("developer").loc["Meta"]
    assert (meta["upstream"], meta["model"], meta["downstream"]) == (15, 25, 20)


def test_rename_maps_match_the_files(root):
    canon = [r[2].strip() for r in _rows(root / "fmti-indicators.csv")[1:]]
    may = [r[0].strip() for r in _rows(root / "May2024" / "May2024_scores.csv")[1:101]]
    oct_ = [r[2].strip() for r in _rows(root / "October2023" / "October2023_scores.csv")[1:101]]
    assert {m: c for m, c in zip(may, canon, strict=True) if m != c} == fmti.V11_RENAMES
    assert {o: c for o, c in zip(oct_, canon, strict=True) if o != c} == fmti.V10_RENAMES
    # the definitions file says "Copyrighted data"; both score tables say "Data copyright status"
    assert fmti.V11_RENAMES["Data copyright status"] == "Copyrighted data"
    assert fmti.V11_RENAMES["License"] == fmti.V10_RENAMES["Model Asset License"] == "Model License"
    assert "Release decision-making" not in fmti.V11_RENAMES  # only October 2023 adds "protocol"
    long = fmti.scores("v1.1", root)
    assert {"Copyrighted data", "Data creators"} <= set(long["indicator"])
    assert not {"Data copyright status", "Data creators "} & set(long["indicator"])


def test_unknown_v11_name_fails_naming_it(root, tmp_path):
    def rename(rows):
        rows[9][0] = "Data licence mystery"

    _edited(root, tmp_path, "May2024", rename)
    with pytest.raises(DataUnavailable, match="Data licence mystery"):
        fmti.scores("v1.1", path=tmp_path)


def test_swapped_v11_rows_fail(root, tmp_path):
    def swap(rows):
        rows[1], rows[2] = rows[2], rows[1]

    copy = _edited(root, tmp_path, "May2024", swap)
    with pytest.raises(DataUnavailable, match="order"):
        fmti.scores("v1.1", path=copy)


def test_wrong_october_total_fails(root, tmp_path):
    def wrong_total(rows):
        assert rows[1][-1] == "4"
        rows[1][-1] = "5"

    _edited(root, tmp_path, "October2023", wrong_total)
    with pytest.raises(DataUnavailable, match="Total column"):
        fmti.scores("v1.0", path=tmp_path)


def test_wrong_total_row_fails(root, tmp_path):
    def wrong_meta_total(rows):
        rows[-1][rows[0].index("Meta")] = "61"

    _edited(root, tmp_path, "May2024", wrong_meta_total)
    with pytest.raises(DataUnavailable, match="Meta"):
        fmti.scores("v1.1", path=tmp_path)


def test_developers_scored_twice(root):
    first = _rows(root / "October2023" / "October2023_scores.csv")[0][3:-1]
    second = _rows(root / "May2024" / "May2024_scores.csv")[0][1:]
    same_name = [d for d in first if d in second]
    assert same_name == ["Meta", "OpenAI", "Google", "Anthropic", "AI21 Labs", "Amazon"]
    # v1.1 spells Stability AI "Stability"; BigCode is not v1.0's Hugging Face
    assert "Stability" in second and "Stability AI" in first
    assert fmti.scored_twice(root) == ["Meta", "OpenAI", "Stability AI", *same_name[2:]]
    assert len(fmti.developers("v1.0", root)) == 10 and len(fmti.developers("v1.1", root)) == 14


def test_version_aliases_and_bad_version(root):
    assert fmti.scores("October2023", root).equals(fmti.scores("v1.0", root))
    with pytest.raises(InvalidParameter, match="v1.1"):
        fmti.scores("v2", root)


def test_reports(root):
    rep = fmti.reports(root)
    assert len(rep) == 1400 and rep["developer"].nunique() == 14
    assert set(rep["developer"]) == set(fmti.developers("v1.1", root))
    assert rep.groupby("developer")["score"].sum()[["Meta", "Mistral", "OpenAI"]].tolist() == [60, 55, 49]
    meta = rep[(rep["developer"] == "Meta") & (rep["indicator"] == "Documentation for responsible downstream use")]
    assert meta["disclosure"].iloc[0] == "Llama 2 responsible use guide provides such documentation"


def test_dec2025_is_separate(root):
    dec = fmti.dec2025(root)
    assert dec.attrs["comparable"] is False and not dec["comparable"].any()
    assert len(dec) == 100 * 13 and dec["indicator"].nunique() == 100
    assert dec.groupby("developer")["score"].sum()["Meta"] == 31
    both = fmti.scores("v1.0", root)["date"].tolist() + fmti.scores("v1.1", root)["date"].tolist()
    assert set(both) == {"2023-10", "2024-05"}
    assert "Data acquisition methods" not in set(fmti.scores("v1.1", root)["indicator"])


def test_study_developers():
    assert fmti.developer_for("falcon-7b-instruct") is None
    assert fmti.developer_for("gpt-3.5-turbo") is None
    assert fmti.developer_for("llama-2-7b-chat") == "Meta"
    assert fmti.developer_for("mistral-7b-instruct") == "Mistral"
    assert fmti.developer_for("gpt-4-turbo") == "OpenAI"
    with pytest.raises(InvalidParameter, match="llama-3"):
        fmti.developer_for("llama-3")
