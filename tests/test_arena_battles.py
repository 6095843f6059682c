"""labscale.arena battles and judges on tiny records built here: gold and reference judges counted by hand, the model
judge end to end with the embedded model, the annotation sheet round trip, and the refusals."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from labscale import records
from labscale.arena.battles import check_battles, pairs, presentation_order
from labscale.arena.judges import (
    JUDGE_PROMPT,
    battles_from_runs,
    combine_orders,
    gold_battles,
    llm_battles,
    parse_verdict,
    reference_battles,
    verdict_winner,
)
from labscale.arena.sheets import export_sheet, import_sheet
from labscale.backends import parse_model_spec
from labscale.core import INVALID
from labscale.errors import InvalidParameter
from labscale.protocol import Produced, RunSpec, execute
from labscale.summary_scores import SummaryScores, read_summary_scores


def make_record(root: Path, model: str, task: str, rows: list[dict], metrics: dict | None = None) -> Path:
    """A 0-shot run record of ``model`` (its label) on ``task`` with predictions ``rows``, through execute."""
    spec = RunSpec(
        experiment="arena_test",
        model=parse_model_spec("smollm2-135m"),
        label=model,
        task=task,
        source="offline",
        scenario="0-shot",
        data={"data_path": None, "data_seed": 0, "split": "test", "task_options": {}},
    )
    return execute(spec, root / spec.name, lambda: Produced(rows, metrics or {}), identity={"backend": "test"})


def labelled(root: Path, model: str, correct: dict[str, int], task: str = "fact_checking") -> Path:
    rows = [
        {"id": i, "target": "SUPPORTS", "reply": "x", "parsed": "SUPPORTS" if c else "REFUTES", "invalid": False,
         "scores": {"correct": float(c), "invalid": 0.0}}
        for i, c in correct.items()
    ]  # fmt: skip
    return make_record(root, model, task, rows)


def summaries(root: Path, model: str, texts: dict[str, str], bertscore: list[float]) -> Path:
    rows = [
        {"id": i, "target": f"reference {i}", "reply": t, "parsed": t, "invalid": False,
         "scores": {"rouge1": 0.1, "rouge2": 0.0, "rougeL": 0.1, "bertscore_f1": f, "invalid": 0.0,
                    "bleu_stats": [3, 3, 1, 0, 0, 0, 3, 2, 1, 0]}}
        for (i, t), f in zip(texts.items(), bertscore, strict=True)
    ]  # fmt: skip
    metrics = {"bertscore_f1": {"value": float(np.mean(bertscore)), "encoder": "test-encoder"}}
    return make_record(root, model, "summarization", rows, metrics)


def hand_scores(labels: list[str], bertscore: list[list[float]]) -> SummaryScores:
    """SummaryScores of ``labels`` with per-item BERTScore ``bertscore`` (runs x items), other scores zero."""
    values = np.asarray(bertscore, dtype=float)
    runs, items = values.shape
    zeros = np.zeros((runs, items))
    return SummaryScores(
        runs=pd.DataFrame({"label": labels, "model": [label.split()[0] for label in labels], "group": "main"}),
        ids=tuple(f"item-{i}" for i in range(items)),
        scores={"rouge1": zeros, "rouge2": zeros, "rougeL": zeros, "bertscore_f1": values, "invalid": zeros},
        bleu_stats=np.zeros((runs, items, 10), dtype=np.int64),
        summaries=tuple(tuple(f"{label.split()[0]} says {i}" for i in range(items)) for label in labels),
        references=tuple(f"reference {i}" for i in range(items)),
    )


def tally(battles: pd.DataFrame) -> dict[tuple[str, str], tuple[int, int, int]]:
    """(model_a wins, model_b wins, ties) per pair."""
    out = {}
    for (a, b), group in battles.groupby(["model_a", "model_b"], sort=False):
        counts = group["winner"].value_counts()
        out[(a, b)] = tuple(int(counts.get(w, 0)) for w in ("model_a", "model_b", "tie"))
    return out


# -- pairs and orders ---------------------------------------------------------------------------------------------
def test_pairs_and_presentation_order():
    assert pairs(["a", "b", "c"]) == [("a", "b"), ("a", "c"), ("b", "c")]
    with pytest.raises(InvalidParameter, match=r"at least two runs, got \['a'\]"):
        pairs(["a"])
    with pytest.raises(InvalidParameter, match=r"\['a'\] more than once"):
        pairs(["a", "b", "a"])
    orders = [presentation_order(7, f"item-{i}", "a", "b") for i in range(400)]
    assert orders == [presentation_order(7, f"item-{i}", "a", "b") for i in range(400)]  # seeded, stable
    assert set(orders) == {"ab", "ba"} and 150 < orders.count("ab") < 250
    assert orders != [presentation_order(8, f"item-{i}", "a", "b") for i in range(400)]


# -- gold ----------------------------------------------------------------------------------------------------------
def test_gold_battles_by_hand(tmp_path):
    alpha = labelled(tmp_path, "alpha", {"c1": 1, "c2": 1, "c3": 0, "c4": 0})
    beta = labelled(tmp_path, "beta", {"c4": 0, "c3": 1, "c2": 0, "c1": 1})  # other order: aligned by id
    gamma = labelled(tmp_path, "gamma", {"c1": 0, "c2": 0, "c3": 0, "c4": 1})
    out = gold_battles([alpha, beta, gamma], seed=5)
    assert len(out) == 4 * 3
    assert set(out["judge"]) == {"gold"} and set(out["order"]) == {"ab"} and set(out["seed"]) == {5}
    # alpha-beta: c1 both right, c2 alpha, c3 beta, c4 both wrong; alpha-gamma: c1 c2 alpha, c3 tie, c4 gamma;
    # beta-gamma: c1 c3 beta, c2 tie, c4 gamma
    assert tally(out) == {
        ("alpha 0-shot", "beta 0-shot"): (1, 1, 2),
        ("alpha 0-shot", "gamma 0-shot"): (2, 1, 1),
        ("beta 0-shot", "gamma 0-shot"): (2, 1, 1),
    }
    ab = out[(out["model_a"] == "alpha 0-shot") & (out["model_b"] == "beta 0-shot")].set_index("item")["winner"]
    assert ab.to_dict() == {"c1": "tie", "c2": "model_a", "c3": "model_b", "c4": "tie"}
    assert battles_from_runs([alpha, beta, gamma], "gold", seed=5).equals(out)


def test_gold_battles_refusals(tmp_path):
    alpha = labelled(tmp_path, "alpha", {"c1": 1, "c2": 0})
    fewer = labelled(tmp_path, "beta", {"c1": 1})
    other = labelled(tmp_path, "gamma", {"c1": 1, "c2": 0}, task="entity_resolution")
    summary = summaries(tmp_path, "delta", {"c1": "s", "c2": "t"}, [0.5, 0.5])
    with pytest.raises(InvalidParameter, match=r"beta/fact_checking/0shot' and '.*alpha/.*' answer different items"):
        gold_battles([alpha, fewer])
    with pytest.raises(InvalidParameter, match=r"gamma/entity_resolution/0shot' is a 'entity_resolution' run"):
        gold_battles([alpha, other])
    with pytest.raises(InvalidParameter, match=r"delta/summarization/0shot'.* no per-item 'correct' score"):
        gold_battles([summary, summaries(tmp_path, "eps", {"c1": "s", "c2": "t"}, [0.5, 0.5])])
    with pytest.raises(InvalidParameter, match="at least two run records"):
        gold_battles([alpha])
    with pytest.raises(InvalidParameter, match=r"unknown judge 'crowd'; valid choices: 'gold', 'reference', 'llm'"):
        battles_from_runs([alpha, fewer], "crowd")


# -- reference -----------------------------------------------------------------------------------------------------
def test_reference_battles_tie_band_by_hand():
    scores = hand_scores(["a 0-shot", "b 0-shot"], [[0.50, 0.80, 0.300], [0.51, 0.70, 0.305]])
    out = reference_battles(scores, tie_band=0.01).set_index("item")
    # differences a - b: -0.01 (on the band: a tie), +0.10 (a), -0.005 (within: a tie)
    assert out["winner"].to_dict() == {"item-0": "tie", "item-1": "model_a", "item-2": "tie"}
    assert out["difference"].to_numpy() == pytest.approx([-0.01, 0.10, -0.005])
    assert set(out["judge"]) == {"reference:bertscore_f1±0.01"}
    strict = reference_battles(scores, tie_band=0.0).set_index("item")
    assert strict["winner"].to_dict() == {"item-0": "model_b", "item-1": "model_a", "item-2": "model_b"}
    wide = reference_battles(scores, tie_band=0.2)
    assert set(wide["winner"]) == {"tie"}
    three = hand_scores(["a 0-shot", "b 0-shot", "c 0-shot"], [[0.5], [0.6], [0.7]])
    picked = reference_battles(three, labels=["c 0-shot", "a 0-shot"], tie_band=0.0)
    assert picked[["model_a", "model_b", "winner"]].values.tolist() == [["c 0-shot", "a 0-shot", "model_a"]]


def test_reference_battles_refusals():
    scores = hand_scores(["a 0-shot", "b 0-shot"], [[0.5], [0.6]])
    with pytest.raises(InvalidParameter, match=r"unknown metric 'bleu'; valid choices: 'rouge1', .*'bertscore_f1'"):
        reference_battles(scores, metric="bleu")
    with pytest.raises(InvalidParameter, match=r"tie_band=-0.1 is out of range"):
        reference_battles(scores, tie_band=-0.1)
    with pytest.raises(InvalidParameter, match=r"unknown run 'z 0-shot'; valid choices: 'a 0-shot', 'b 0-shot'"):
        reference_battles(scores, labels=["a 0-shot", "z 0-shot"])


# -- the model judge ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "text, verdict",
    [
        ("[[A]]", "A"),
        ("The verdict: [[B]]", "B"),
        ("[[C]]", "C"),
        ("A is better. [[A]] Final: [[A]]", "A"),
        ("[[A]] or [[B]]", INVALID),
        ("A", INVALID),
        ("[[D]]", INVALID),
        ("[A]", INVALID),
        ("", INVALID),
    ],
)
def test_parse_verdict(text, verdict):
    assert parse_verdict(text) == verdict


def test_verdicts_map_to_winners_and_combine():
    assert [verdict_winner(v, "ab") for v in ("A", "B", "C", INVALID)] == ["model_a", "model_b", "tie", "tie"]
    assert [verdict_winner(v, "ba") for v in ("A", "B", "C", INVALID)] == ["model_b", "model_a", "tie", "tie"]
    assert combine_orders("model_a", "model_a") == ("model_a", True)
    assert combine_orders("tie", "tie") == ("tie", True)
    assert combine_orders("model_a", "model_b") == ("tie", False)
    assert combine_orders("model_b", "tie") == ("tie", False)
    assert "[[A]]" in JUDGE_PROMPT["system"] and "{answer_b}" in JUDGE_PROMPT["user"]


@pytest.fixture()
def two_summary_runs(tmp_path) -> SummaryScores:
    """Two summarization runs of the offline synthetic dialogues' first two test items."""
    ids = ["syndlg-test-00000", "syndlg-test-00001"]
    good = summaries(tmp_path / "runs", "good", {ids[0]: "Father had asthma.", ids[1]: "No allergies."}, [0.6, 0.7])
    bad = summaries(tmp_path / "runs", "bad", {ids[0]: "The weather is nice.", ids[1]: ""}, [0.2, 0.1])
    return read_summary_scores([good, bad])


def test_llm_battles_end_to_end(embedded_model_dir, two_summary_runs, tmp_path, cache, monkeypatch):
    out_dir = tmp_path / "judged"
    with pytest.raises(InvalidParameter, match="unknown model 'gpt-5'"):
        llm_battles(two_summary_runs, "gpt-5", output_dir=out_dir, cache=cache)
    table = llm_battles(two_summary_runs, "smollm2-135m", output_dir=out_dir, max_new_tokens=12, cache=cache)
    (run_dir,) = records.find_runs(out_dir)
    record = records.read_run(run_dir)
    params, frame = record["params"], record["predictions"]
    assert params["experiment"] == "arena_judge" and params["task"] == "summarization"
    assert params["judged"] == ["good 0-shot", "bad 0-shot"] and params["judge_prompt"] == JUDGE_PROMPT
    assert params["decoding"]["max_new_tokens"] == 12
    assert len(frame) == 4  # 2 items x 1 pair x 2 orders
    assert sorted(frame.groupby("id")["order"].apply(sorted).tolist()) == [["ab", "ba"], ["ab", "ba"]]
    shown = record["manifest"]["example_messages"][1]["content"]
    assert "Doctor:" in shown and "## Topic:" in shown  # the dialogue and topic, reloaded from the recorded data
    assert "Father had asthma." in shown and "The weather is nice." in shown
    assert [parse_verdict(r) for r in frame["reply"]] == frame["parsed"].tolist()
    # the combination rule on the recorded verdicts, by hand
    assert len(table) == 2 and set(table["judge"]) == {"llm:smollm2-135m"}
    for _, battle in table.iterrows():
        both = frame[frame["id"] == battle["item"]]
        mapped = {}
        for _, j in both.iterrows():
            v = j["parsed"]
            mapped[j["order"]] = {"A": "model_a", "B": "model_b"}.get(v, "tie") if j["order"] == "ab" else (
                {"A": "model_b", "B": "model_a"}.get(v, "tie"))  # fmt: skip
        agree = mapped["ab"] == mapped["ba"]
        assert battle["winner"] == (mapped["ab"] if agree else "tie")
        if (both["parsed"] == INVALID).any():
            assert pd.isna(battle["consistent"])  # an INVALID verdict measures no consistency
        else:
            assert battle["consistent"] == agree
        assert battle["invalid"] == int((both["parsed"] == INVALID).sum())
        assert battle["order"] == presentation_order(0, battle["item"], "good 0-shot", "bad 0-shot")
        assert battle["order"] == both[both["first"]]["order"].iloc[0]
    metrics = record["metrics"]
    assert metrics["invalid_rate"]["value"] == pytest.approx(frame["invalid"].mean())
    assert metrics["invalid_rate"]["n"] == 4
    valid = table[table["invalid"] == 0]  # swap consistency counts the battles with two valid verdicts
    assert metrics["swap_consistency"]["n"] == len(valid)
    assert metrics["swap_consistency"]["value"] == pytest.approx(
        valid["consistent"].astype(float).mean() if len(valid) else 0.0
    )

    # the same inputs reuse the record: no model call, the same table
    from labscale.backends.hf import HFBackend

    def tripwire(*args, **kwargs):
        raise AssertionError("the model was called although the record could be reused")

    monkeypatch.setattr(HFBackend, "_generate_batch", tripwire)
    written = record["manifest"]["written_at"], (run_dir / "predictions.jsonl").read_bytes()
    again = llm_battles(two_summary_runs, "smollm2-135m", output_dir=out_dir, max_new_tokens=12, cache=cache)
    assert again.equals(table)
    assert (records.read_manifest(run_dir)["written_at"], (run_dir / "predictions.jsonl").read_bytes()) == written


# -- people ---------------------------------------------------------------------------------------------------------
def test_sheet_round_trip(tmp_path):
    scores = hand_scores(["alpha 0-shot", "beta 0-shot", "gamma 0-shot"], [[0.1, 0.2], [0.3, 0.4], [0.5, 0.6]])
    contexts = {"item-0": "Dialogue zero", "item-1": "Dialogue one"}
    sheet_path, key_path = export_sheet(
        scores, tmp_path / "class" / "sheet.csv", contexts=contexts, reference=True, seed=3
    )
    assert key_path == tmp_path / "class" / "sheet.key.csv"
    sheet = pd.read_csv(sheet_path, dtype=str, keep_default_na=False)
    key = pd.read_csv(key_path, dtype=str, keep_default_na=False)
    assert list(sheet.columns) == [
        "pair_id", "item", "context", "reference", "response_1", "response_2", "verdict", "annotator"
    ]  # fmt: skip
    assert len(sheet) == 2 * 3 and sheet["pair_id"].tolist() == key["pair_id"].tolist()
    assert not sheet.drop(columns=["response_1", "response_2"]).apply(lambda c: c.str.contains("alpha")).any().any()
    assert set(sheet["verdict"]) == {""} and sheet["context"].str.startswith("Dialogue").all()
    for _, row in key.iterrows():  # the seeded order: response_1 is model_1's answer
        assert row["order"] == presentation_order(3, row["item"], row["model_a"], row["model_b"])
        assert row["model_1"] == (row["model_a"] if row["order"] == "ab" else row["model_b"])
    assert set(key["order"]) == {"ab", "ba"}

    # annotators fill it in: 1, 2, tie in turn
    sheet["verdict"] = ["1", "2", "tie", "1", " Tie ", "2"]
    sheet["annotator"] = ["ana", "ana", "ana", "ben", "ben", ""]
    sheet.to_csv(sheet_path, index=False)
    out = import_sheet(sheet_path, key_path)
    assert out["judge"].tolist() == ["human:ana"] * 3 + ["human:ben"] * 2 + ["human"]
    for (_, battle), (_, row) in zip(out.iterrows(), sheet.iterrows(), strict=True):
        verdict = row["verdict"].strip().lower()
        if verdict == "tie":
            assert battle["winner"] == "tie"
            continue
        author = row[f"response_{verdict}"].split()[0]  # "alpha says 0" was written by "alpha 0-shot"
        assert battle[battle["winner"]] == f"{author} 0-shot"
        assert battle["item"] == row["item"] and battle["order"] in ("ab", "ba") and battle["seed"] == 3

    with pytest.raises(InvalidParameter, match="already exists"):
        export_sheet(scores, sheet_path, contexts=contexts, seed=3)


def test_sheet_refusals(tmp_path):
    scores = hand_scores(["alpha 0-shot", "beta 0-shot"], [[0.1, 0.2], [0.3, 0.4]])
    contexts = {"item-0": "Dialogue zero", "item-1": "Dialogue one"}
    sheet_path, key_path = export_sheet(scores, tmp_path / "sheet.csv", contexts=contexts)
    clean = pd.read_csv(sheet_path, dtype=str, keep_default_na=False)
    clean["verdict"] = "1"

    def refused(column, values, pattern):
        sheet = clean.copy()
        sheet[column] = values
        sheet.to_csv(tmp_path / "filled.csv", index=False)
        with pytest.raises(InvalidParameter, match=pattern):
            import_sheet(tmp_path / "filled.csv", key_path)

    first, items = clean["pair_id"][0], clean["item"].tolist()
    refused(
        "verdict", ["A", "1"], rf"sheet row 1 \(pair_id '{first}'\) has verdict 'A'; valid choices: '1', '2', 'tie'"
    )
    refused("verdict", ["1", ""], r"sheet row 2 .* has verdict ''")
    refused("pair_id", [first, "P9"], r"sheet row 2 \(pair_id 'P9'\) is not in the key")
    refused("response_2", [clean["response_2"][0], "an edited answer"], r"sheet row 2 .* response_2 that differs")
    refused("item", [items[1], items[1]], rf"sheet row 1 .* names item '{items[1]}', but the key has '{items[0]}'")
    sheet = clean.copy()
    sheet["verdict"] = ["2", ""]
    sheet.to_csv(tmp_path / "half.csv", index=False)
    assert len(import_sheet(tmp_path / "half.csv", key_path, allow_blank=True)) == 1
    with pytest.raises(InvalidParameter, match=r"the sheet must be a \.csv file"):
        export_sheet(scores, tmp_path / "sheet.xlsx", contexts=contexts)
    with pytest.raises(InvalidParameter, match="contexts lack 1 of the items, e.g. 'item-1'"):
        export_sheet(scores, tmp_path / "other.csv", contexts={"item-0": "x"})
    with pytest.raises(InvalidParameter, match="name no run record to reload their inputs from"):
        export_sheet(scores, tmp_path / "other.csv")


# -- the battle table ------------------------------------------------------------------------------------------------
def test_check_battles_refusals():
    good = pd.DataFrame(
        {"item": ["i1", "i2"], "model_a": ["a", "a"], "model_b": ["b", "b"], "winner": ["model_a", "tie"],
         "judge": "gold", "order": "ab", "seed": 0}
    )  # fmt: skip
    assert check_battles(good, ["a", "b"])["consistent"].isna().all()
    with pytest.raises(InvalidParameter, match=r"battle 1 pits 'a' against itself on item 'i2'"):
        check_battles(good.assign(model_b=["b", "a"]))
    with pytest.raises(InvalidParameter, match=r"battle 0 names unknown model 'b'; valid choices: 'a', 'c'"):
        check_battles(good, ["a", "c"])
    with pytest.raises(InvalidParameter, match=r"battle 1 has winner 'draw'; valid choices: 'model_a', 'model_b'"):
        check_battles(good.assign(winner=["model_a", "draw"]))
    with pytest.raises(InvalidParameter, match=r"battle 0 has order 'a-b'"):
        check_battles(good.assign(order="a-b"))
    with pytest.raises(InvalidParameter, match="lacks the column"):
        check_battles(good.drop(columns=["judge"]))


def test_records_stay_text(tmp_path):
    """Item ids that look like numbers stay text through the records the judges read."""
    alpha = labelled(tmp_path, "alpha", {"001": 1, "002": 0})
    beta = labelled(tmp_path, "beta", {"001": 0, "002": 0})
    out = gold_battles([alpha, beta])
    assert out["item"].tolist() == ["001", "002"] and out["winner"].tolist() == ["model_a", "tie"]
    assert json.loads((alpha / "params.json").read_text())["experiment"] == "arena_test"
