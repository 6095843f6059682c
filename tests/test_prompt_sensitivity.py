"""Prompt sensitivity: the format grammar, its effect on messages, refusals, and a real sweep on the embedded model."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from labscale import prompt_sensitivity as ps
from labscale.backends import parse_model_spec
from labscale.cache import ResponseCache
from labscale.errors import InvalidParameter
from labscale.prompt_sensitivity import (
    LABEL_WORDS,
    PromptFormat,
    check_prompt_format,
    format_grid,
    format_spread,
    ordering_holds,
    rank_flips,
    run_format_sweep,
    sweep_cost,
)
from labscale.records import find_runs, read_manifest, read_run
from labscale.runner import plan_experiment, run_spec
from labscale.tasks import get_task
from labscale.tasks.entity_resolution import PERSON_INSTRUCTION
from labscale.tasks.fact_checking import INSTRUCTION as FC_INSTRUCTION
from labscale.tasks.summarization import SYSTEM_MESSAGE


@pytest.fixture(scope="module")
def er():
    task = get_task("entity_resolution")
    data = task.load("offline", seed=0)
    return task, data, data.split("test")[0], task.shots(data, 2)


# -- the grammar ---------------------------------------------------------------------------------------------
def test_grid_sizes_and_names():
    grid = format_grid()
    assert [f.name for f in grid] == [
        "study",
        "separator-newline",
        "separator-rule",
        "casing-lower",
        "casing-upper",
        "label_words-alternative",
        "chat_template-off",
        "shot_order-reversed",
    ]
    assert grid[0] == PromptFormat() and grid[0].is_study
    full = format_grid("full")
    assert len(full) == 3 * 3 * 2 * 2 * 2 == 72 and len({f.name for f in full}) == 72 and full[0].is_study
    two = format_grid("full", {"separator": ["newline"], "casing": ["upper"]})
    assert [f.name for f in two] == ["study", "casing-upper", "separator-newline", "separator-newline__casing-upper"]
    assert [f.name for f in format_grid(factors=["shot_order"])] == ["study", "shot_order-reversed"]
    assert PromptFormat(casing="lower").as_dict() == {
        "separator": "blank line",
        "casing": "lower",
        "label_words": "study",
        "chat_template": "on",
        "shot_order": "study",
    }


def test_alternative_label_words_are_what_the_strict_parser_reads():
    for task_name, words in LABEL_WORDS.items():
        task = get_task(task_name)
        assert all(task.parse(alternative) == label for label, alternative in words.items())


# -- messages ------------------------------------------------------------------------------------------------
def test_study_format_gives_todays_messages_and_run_keys(er, tmp_path):
    task, data, example, shots = er
    today = task.messages(example, shots)
    assert task.messages(example, shots, prompt_format=PromptFormat()) == today
    assert today[0]["content"] == PERSON_INSTRUCTION + "\n\n" + shots[0].user
    assert [m["content"] for m in today if m["role"] == "assistant"] == ["n", "y"]
    kwargs = dict(tasks=["entity_resolution"], shots=[1], limit=2, output_dir=tmp_path)
    plain = plan_experiment(**kwargs, cache=ResponseCache(tmp_path / "a.sqlite"))
    study = plan_experiment(**kwargs, cache=ResponseCache(tmp_path / "b.sqlite"), prompt_format=PromptFormat())
    assert study.prompt_format is None
    spec = plain.models[0]
    one, other = run_spec(plain, spec, plain.tasks[0], 1), run_spec(study, spec, study.tasks[0], 1)
    assert one.params() == other.params() and one.settings == {"shot_style": "chat"}


def test_each_factor_changes_the_messages_as_declared(er):
    task, _, example, shots = er

    def first_turn(**factors):
        return task.messages(example, shots, prompt_format=PromptFormat(**factors))

    assert first_turn(separator="newline")[0]["content"] == PERSON_INSTRUCTION + "\n" + shots[0].user
    assert first_turn(separator="rule")[0]["content"] == PERSON_INSTRUCTION + "\n---\n" + shots[0].user
    lower = first_turn(casing="lower")
    assert lower[0]["content"] == PERSON_INSTRUCTION.lower() + "\n\n" + shots[0].user  # the records keep their case
    assert "Name 1: DOAN TIFFANY A. JORDAN" in lower[0]["content"] and lower[-1] == task.messages(example, shots)[-1]
    reversed_ = first_turn(shot_order="reversed")
    assert reversed_[0]["content"] == PERSON_INSTRUCTION + "\n\n" + shots[1].user
    assert [m["content"] for m in reversed_ if m["role"] == "assistant"] == ["y", "n"]
    words = first_turn(label_words="alternative")
    assert [m["content"] for m in words if m["role"] == "assistant"] == ["no", "yes"]
    assert first_turn(chat_template="off") == task.messages(example, shots)  # the template is the backend's

    fc = get_task("fact_checking")
    fc_data = fc.load("offline", seed=0)
    fmt = PromptFormat(separator="newline", label_words="alternative", casing="upper")
    text = fc.messages(fc_data.split("test")[0], fc.shots(fc_data, 3), prompt_format=fmt)[0]["content"]
    assert text.startswith(FC_INSTRUCTION.upper() + "\nHere is an example of how to perform the task.\n")
    assert text.count("\nsupports\n") == text.count("\nnot enough information\n") == 1 and "\nrefutes\n" in text
    summ = get_task("summarization")
    summ_data = summ.load("offline", seed=0)
    assert summ.messages(summ_data.split("test")[0], [], prompt_format=PromptFormat(casing="upper"))[0] == {
        "role": "system",
        "content": SYSTEM_MESSAGE.upper(),
    }


def test_chat_template_off_rewrites_hf_model_strings():
    off = PromptFormat(chat_template="off")
    assert off.model_spec(parse_model_spec("smollm2-135m")).text == "smollm2-135m?chat_template=none"
    spec = off.model_spec(parse_model_spec("hf:org/m?chat_template=auto&batch_size=2"))
    assert spec.text == "hf:org/m?batch_size=2&chat_template=none" and spec.options["chat_template"] == "none"


# -- refusals, all before any model loads --------------------------------------------------------------------
@pytest.mark.parametrize(
    "make, pattern",
    [
        (lambda: PromptFormat(casing="title"), r"'title'.*'as-is', 'lower', 'upper'"),
        (lambda: PromptFormat.of({"colour": "red"}), r"'colour'.*'separator'"),
        (lambda: format_grid("random"), r"'random'.*'one-at-a-time', 'full'"),
        (lambda: format_grid(factors={"separator": ["tab"]}), r"'tab'.*'blank line', 'newline', 'rule'"),
        (lambda: run_format_sweep("smollm2-135m", "fact_checking", 0, [{}, {}], limit=1, source="offline"), "repeated"),
        (lambda: check_prompt_format({"separator": "newline"}, ["toxicity"], []), r"toxicity.*entity_resolution"),
    ],
)
def test_bad_formats_are_refused(make, pattern):
    with pytest.raises(InvalidParameter, match=pattern):
        make()


def test_more_formats_than_the_cap_are_refused(monkeypatch):
    monkeypatch.setattr(ps, "MAX_FORMATS", 10)
    with pytest.raises(InvalidParameter, match="72 formats; at most 10"):
        format_grid("full")


def test_plan_refusals_name_the_valid_choices(tmp_path, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    cache = ResponseCache(tmp_path / "c.sqlite")
    with pytest.raises(InvalidParameter, match=r"'summarization'.*valid tasks: entity_resolution, fact_checking"):
        plan_experiment(
            tasks=["summarization"], output_dir=tmp_path, cache=cache, prompt_format={"label_words": "alternative"}
        )
    with pytest.raises(InvalidParameter, match=r"'gpt-4-turbo'.*Hugging Face"):  # refused before the key check
        plan_experiment(
            models=["gpt-4-turbo"],
            tasks=["fact_checking"],
            output_dir=tmp_path,
            cache=cache,
            prompt_format={"chat_template": "off"},
        )
    with pytest.raises(InvalidParameter, match=r"label_words 'alternative'.*'summarization'"):
        run_format_sweep(
            "smollm2-135m",
            ["fact_checking", "summarization"],
            0,
            format_grid(),
            limit=1,
            source="offline",
            output_dir=tmp_path / "sweep",
            cache=cache,
        )
    assert not (tmp_path / "sweep").exists()  # every format is planned before anything runs
    plan = plan_experiment(
        tasks=["toxicity"], limit=2, output_dir=tmp_path, cache=cache, prompt_format={"chat_template": "off"}
    )
    assert plan.backends["smollm2-135m"].chat_template == "none" and plan.backends["smollm2-135m"]._model is None


def test_rank_flips_compares_each_format_with_the_study_order():
    values = {"study": (0.8, 0.6, 0.4), "newline": (0.5, 0.6, 0.4), "rule": (0.8, 0.6, 0.4), "upper": (0.3, 0.6, 0.9)}
    table = pd.DataFrame(
        [
            {"format": f, "model": m, "task": "fact_checking", "scenario": "0-shot", "metric": "accuracy", "value": v}
            for f, vs in values.items()
            for m, v in zip("abc", vs, strict=True)
        ]
    ).assign(run=lambda t: t["format"] + "/" + t["model"])
    row = rank_flips(table).iloc[0]
    assert row["study_order"] == ["a", "b", "c"] and row["formats"] == 3 and row["formats_with_flips"] == 2
    assert row["flipped"] == [("newline", "a", "b"), ("upper", "a", "b"), ("upper", "a", "c"), ("upper", "b", "c")]
    with pytest.raises(InvalidParameter, match=r"'study'"):
        rank_flips(table[table["format"] != "study"])


# -- a real sweep --------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_sweep_on_the_embedded_model(embedded_model_dir, tmp_path):
    cache = ResponseCache(tmp_path / "c.sqlite")
    formats = [PromptFormat(), PromptFormat(separator="newline"), PromptFormat(chat_template="off")]
    kwargs = dict(
        limit=4,
        source="offline",
        output_dir=tmp_path / "sweep",
        n_resamples=200,
        max_new_tokens={"entity_resolution": 3},
        cache=cache,
        progress=False,
    )
    table = run_format_sweep("smollm2-135m", "entity_resolution", [0, 1], formats, **kwargs)
    names = [f.name for f in formats]
    assert list(table["format"].unique()) == names and table.columns[0] == "format"
    for name in names:
        assert len(find_runs(tmp_path / "sweep" / name)) == 2
    runs = sorted(table["run"].unique())
    keys = [read_manifest(r)["run_key"] for r in runs]
    assert len(runs) == 6 and len(set(keys)) == 6
    off = read_run(tmp_path / "sweep" / "chat_template-off" / "smollm2-135m" / "entity_resolution" / "1shot")
    assert off["params"]["model"] == "smollm2-135m" and off["params"]["model_spec"] == "smollm2-135m?chat_template=none"
    assert (
        off["params"]["prompt_format"]["chat_template"] == "off" and off["manifest"]["model"]["chat_template"] == "none"
    )
    assert len(cache) == 6 * 4  # every format's prompt (or rendering) is its own cache entry

    # a second sweep reuses every record: nothing is generated or rewritten
    written = {r: read_manifest(r)["written_at"] for r in runs}
    again = run_format_sweep("smollm2-135m", "entity_resolution", [0, 1], formats, **kwargs)
    assert {r: read_manifest(r)["written_at"] for r in runs} == written and len(cache) == 24
    assert again["value"].tolist() == table["value"].tolist()

    accuracy = table[table["metric"] == "accuracy"]
    spread = format_spread(table, n_resamples=200)
    assert len(spread) == 2 and set(spread["formats"]) == {3} and set(spread["items"]) == {4}
    for row in spread.itertuples():
        values = accuracy[accuracy["scenario"] == row.scenario].set_index("format")["value"]
        assert row.spread == pytest.approx(values.max() - values.min())
        assert row.sd == pytest.approx(values.std(ddof=1)) and row.best == pytest.approx(values.max())
        assert row.spread_interval in {"bca", "percentile", "degenerate"}

    holds = ordering_holds(table, "1-shot", "0-shot", n_resamples=200, seed=7)
    draws = np.random.default_rng(7).integers(0, 4, size=(200, 4))
    shares = []
    for name in names:
        correct = {}
        for k in (0, 1):
            record = read_run(tmp_path / "sweep" / name / "smollm2-135m" / "entity_resolution" / f"{k}shot")
            correct[k] = np.array([s["correct"] for s in record["predictions"]["scores"]])
        row = holds[holds["format"] == name].iloc[0]
        expected = correct[1][draws].mean(axis=1) > correct[0][draws].mean(axis=1)
        assert row["share"] == pytest.approx(expected.mean()) and row["holds"] == (
            correct[1].mean() > correct[0].mean()
        )
        shares.append(expected)
    assert holds[holds["format"] == "all"]["share"].iloc[0] == pytest.approx(np.mean(shares))

    cost = sweep_cost(table).set_index("format")
    usage = [read_manifest(r)["usage"] for r in runs]
    assert cost.loc["total", "prompt_tokens"] == sum(u["prompt_tokens"] for u in usage) > 0
    assert cost.loc["total", "completion_tokens"] == sum(u["completion_tokens"] for u in usage)
    assert cost.loc["total", "runs"] == 6 and list(cost.index) == [*names, "total"]
    # what the sweep costs without a cache: every item's prompt tokens, cached or not
    per_item = sum(int(read_run(r)["predictions"]["prompt_tokens"].sum()) for r in runs)
    assert cost.loc["total", "sweep_prompt_tokens"] == per_item >= cost.loc["total", "prompt_tokens"]
    assert rank_flips(table).empty  # one model: no order to flip
