"""ViGGO MR parsing and scoring on hand-made MRs, and parsing of every MR in the released files."""

from __future__ import annotations

import csv

import pytest

from labscale.errors import InvalidParameter
from labscale.viggo_eval import mr_metrics, parse_mr, score_mr, sentence_metrics, slot_error_rate

DIRT = (
    "inform(name[Dirt: Showdown], release_year[2012], esrb[E 10+ (for Everyone 10 and Older)], "
    "genres[driving/racing, sport], platforms[PlayStation, Xbox, PC], available_on_steam[no], "
    "has_linux_release[no], has_mac_release[no])"
)
GOLD = (
    "inform(name[Dirt: Showdown], release_year[2012], genres[driving/racing, sport], platforms[PlayStation, Xbox, PC])"
)
PARTIAL = (
    "inform(name[Dirt: Showdown], release_year[2011], genres[sport], platforms[PC, Xbox, PlayStation], rating[good])"
)


def test_parse_example_mr():
    mr = parse_mr("  " + DIRT + ". ")
    assert mr.function == "inform" and mr.known
    assert len(mr.slots) == 8
    assert mr.slots["genres"] == frozenset({"driving/racing", "sport"})
    assert mr.slots["platforms"] == frozenset({"playstation", "xbox", "pc"})
    assert mr.slots["esrb"] == frozenset({"e 10+ (for everyone 10 and older)"})
    assert mr.slots["available_on_steam"] == frozenset({"no"})


def test_parse_single_values_with_commas_and_attribute_only_slot():
    mr = parse_mr("request_attribute(player_perspective[])")
    assert mr.function == "request_attribute" and mr.slots == {"player_perspective": frozenset()}
    assert mr.pairs() == {("player_perspective", "")}
    date = parse_mr("inform(name[X], exp_release_date[August 14, 2018], developer[Spectrum HoloByte, Inc.])")
    assert date.slots["exp_release_date"] == frozenset({"august 14, 2018"})
    assert date.slots["developer"] == frozenset({"spectrum holobyte, inc."})


def test_parse_unknown_function_flagged_and_malformed_rejected():
    odd = parse_mr("chitchat(name[X])")
    assert odd.function == "chitchat" and not odd.known
    for bad in (
        "inform(name[X], rating[good]",
        "inform(name[X]], rating[good])",
        "inform(name[X] rating[good])",
        "inform(name[X],)",
        "inform(name[X], name[Y])",
        "inform(genres[action, ])",
        "name[X]",
        "inform(name[X]) extra",
    ):
        assert parse_mr(bad) is None, bad
    with pytest.raises(InvalidParameter, match="None"):
        parse_mr(None)


def test_score_partial_prediction():
    s = score_mr(PARTIAL, GOLD)
    assert (s["tp"], s["fp"], s["fn"]) == (5, 2, 2)
    assert s["precision"] == pytest.approx(5 / 7) and s["recall"] == pytest.approx(5 / 7)
    assert s["f1"] == pytest.approx(5 / 7)
    assert s["valid"] and s["function_correct"] and not s["exact_match"] and not s["strict_exact_match"]


def test_reordered_slots_match_only_order_insensitively():
    reordered = (
        "inform(platforms[PC, xbox, PlayStation], genres[sport, driving/racing], release_year[2012], "
        "name[dirt: showdown])."
    )
    s = score_mr(reordered, GOLD)
    assert s["exact_match"] and s["f1"] == 1.0
    assert not s["strict_exact_match"]
    assert score_mr("  " + GOLD.replace(", ", ",  "), GOLD)["strict_exact_match"]


def test_function_mismatch_and_invalid_prediction():
    s = score_mr("confirm(name[X])", "verify_attribute(name[X], rating[poor])")
    assert not s["function_correct"] and not s["exact_match"]
    assert (s["tp"], s["fp"], s["fn"]) == (1, 0, 1)
    bad = score_mr("inform(name[X]", "inform(name[X])")
    assert not bad["valid"] and (bad["tp"], bad["fp"], bad["fn"]) == (0, 0, 1) and bad["f1"] == 0.0
    with pytest.raises(InvalidParameter, match="broken"):
        score_mr("inform(name[X])", "broken")


def test_mr_metrics_four_items():
    same = "request(specifier[interesting], genres[shooter])"
    preds = [PARTIAL, same, "give_opinion(name[X], rating[good]", "confirm(name[X])"]
    golds = [GOLD, same, "give_opinion(name[X], rating[good])", "verify_attribute(name[X], rating[poor])"]
    m = mr_metrics(preds, golds, n_resamples=200)
    # totals: tp 5+2+0+1 = 8, fp 2+0+0+0 = 2, fn 2+0+2+1 = 5
    assert m["slot_precision"]["value"] == pytest.approx(0.8)
    assert m["slot_recall"]["value"] == pytest.approx(8 / 13)
    assert m["slot_f1"]["value"] == pytest.approx(16 / 23)
    assert m["slot_f1"]["ci_low"] <= 16 / 23 <= m["slot_f1"]["ci_high"] and m["slot_f1"]["n"] == 4
    assert m["valid_rate"]["value"] == 0.75 and m["function_accuracy"]["value"] == 0.5
    assert m["exact_match"]["value"] == 0.25 and m["strict_exact_match"]["value"] == 0.25
    assert m["valid_rate"]["n"] == 4
    with pytest.raises(InvalidParameter, match="differ in length"):
        mr_metrics(preds, golds[:3])


def test_slot_error_rate_hand_made_sentence():
    mr = (
        "inform(name[Dirt: Showdown], release_year[2012], genres[driving/racing, sport], "
        "platforms[PlayStation, Xbox, PC], available_on_steam[no], rating[excellent])"
    )
    sentence = "Dirt: Showdown is a great racing game from 2012 for PlayStation and PC."
    # missed: sport, Xbox, Steam -> 3 of 9 values
    assert slot_error_rate(sentence, mr) == pytest.approx(3 / 9)
    full = sentence[:-1] + " and Xbox, a sport title not on Steam, rated E 10+."
    assert slot_error_rate(full, mr) == 0.0
    assert slot_error_rate("What perspective do you like?", "request_attribute(player_perspective[])") == 0.0
    m = sentence_metrics([sentence, full], [mr, mr], [sentence, [full, "other"]], n_resamples=100)
    assert m["slot_error_rate"]["value"] == pytest.approx(1 / 6)
    assert m["rouge_l"]["value"] == pytest.approx(1.0)


def test_real_files_parse():
    from labscale.data import registry

    root = registry.locate("viggo")
    sizes, failures = {}, []
    for split in ("train", "valid", "test"):
        with open(root / f"{split}.csv", encoding="utf-8", newline="") as handle:
            rows = list(csv.DictReader(handle))
        sizes[split] = len(rows)
        failures += [r["mr"] for r in rows if parse_mr(r["mr"]) is None or not parse_mr(r["mr"]).known]
    assert sizes == {"train": 5103, "valid": 714, "test": 1083}
    assert failures == []
