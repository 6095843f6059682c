"""The study's 32 released summarization runs (registry dataset "study-outputs"): the catalogue, the alignment of the
arrays with MTS-Dialog TestSet-1 then TestSet-2 (BLEU reproduces the authors' metric files exactly, the reverse
order does not), ROUGE within tolerance, the refusals of files that are not the released ones, run records through
the run protocol with their reproduction table, and a paired comparison checked against a hand computation.

Everything is read through the library (data registry, :mod:`labscale.data.study_outputs`, the MTS-Dialog loader)
from an isolated ``LABSCALE_HOME`` filled from the mirror that conftest sets (``../shared/data``). Missing release
files are a failure here, never a skip.
"""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from labscale import metrics as metrics_module
from labscale import released
from labscale.data import mts_dialog, registry, study_outputs
from labscale.data.study_outputs import ReleasedOutputsError
from labscale.errors import InvalidParameter
from labscale.metrics import bleu_statistics, hf_bleu, rouge_fmeasures
from labscale.summary_scores import paired_runs, read_summary_scores

pytestmark = pytest.mark.shared_data

MISTRAL_FT = "mistral_finetuned_model_zeroshot_outputs"
GPT4_3SHOT = "gpt4_threeshot_outputs"
MISTRAL_LABEL = "mistral-7b-instruct fine-tuned"
GPT4_LABEL = "gpt-4-turbo 3-shot"


# -- fixtures -----------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module", autouse=True)
def isolated_home(tmp_path_factory):
    """A fresh LABSCALE_HOME (data cache and response cache) for this module; the release files come from the
    mirror conftest sets, and a missing mirror fails the fetch (HF_HUB_OFFLINE forbids the canonical URLs)."""
    home = tmp_path_factory.mktemp("labscale-home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LABSCALE_HOME", str(home))
        mp.delenv("LABSCALE_DATA", raising=False)
        mp.delenv("LABSCALE_CACHE", raising=False)
        yield home


@pytest.fixture(scope="module")
def release(isolated_home) -> dict[str, Path]:
    """The verified registry copies of the two datasets these tests read (no skip: a miss is an error)."""
    return {name: registry.fetch(name) for name in (study_outputs.DATASET, "mts-dialog")}


@pytest.fixture(scope="module")
def runs(release) -> dict[str, study_outputs.ReleasedRun]:
    return {run.info.stem: run for run in study_outputs.load_runs()}


@pytest.fixture(scope="module")
def references(release) -> list[str]:
    """The 400 references the arrays answer: MTS-Dialog TestSet-1 then TestSet-2 (``reference_data``)."""
    test = released.reference_data().splits["test"]
    return [str(ex.target) for ex in test]


@pytest.fixture(scope="module")
def rouge_means(runs, references) -> dict[str, dict[str, float]]:
    """Mean ROUGE-1/2/L F-measure of every run, computed once (a few seconds for all 32)."""
    return {
        stem: {k: float(v.mean()) for k, v in rouge_fmeasures(references, run.summaries).items()}
        for stem, run in runs.items()
    }


@pytest.fixture(scope="module")
def registry_sha(release) -> dict[str, str]:
    """The registry's sha256 of every study-outputs file, by file name."""
    return {Path(f.path).name: f.sha256 for f in registry.files(study_outputs.DATASET)}


@pytest.fixture()
def no_model(monkeypatch):
    """Fails the test if a BERTScore encoder is loaded or any summary is scored."""

    def tripwire(*args, **kwargs):
        raise AssertionError("a model was loaded / summaries were scored before the refusal")

    monkeypatch.setattr(metrics_module, "_bert_scorer", tripwire)
    monkeypatch.setattr(released, "summary_item_scores", tripwire)


@pytest.fixture(scope="module")
def recorded(tmp_path_factory, release) -> dict:
    """Run records of the fine-tuned Mistral and the 3-shot GPT-4 runs (offline BERTScore encoder, computed here:
    the response cache is this module's fresh one)."""
    out = tmp_path_factory.mktemp("released-runs")
    table = released.record_released_runs(out, runs=[MISTRAL_FT, GPT4_3SHOT], n_resamples=200, progress=False)
    by_stem = {}
    for run_dir in table["run"].drop_duplicates():
        params = json.loads((Path(run_dir) / "params.json").read_text())
        by_stem[params["released"]["stem"]] = Path(run_dir)
    return {"out": out, "table": table, "dirs": by_stem}


# -- 1. catalogue -------------------------------------------------------------------------------------------------
def test_catalogue_has_the_32_runs_in_their_groups(release, registry_sha):
    cat = study_outputs.catalogue()
    assert len(cat) == 32
    assert list(cat) == study_outputs.stems()
    groups = Counter(info.group for info in cat.values())
    assert groups == {"main": 24, "checkpoint": 4, "cross-task": 4}
    main_models = Counter(info.model for info in cat.values() if info.group == "main")
    assert main_models == {
        "mistral-7b-instruct": 5,
        "llama-2-7b-chat": 5,
        "falcon-7b-instruct": 5,
        "gpt-3.5-turbo": 5,
        "gpt-4-turbo": 4,
    }
    # every main model has 0..3-shot runs; all but GPT-4 also a fine-tuned one
    for model, n in main_models.items():
        scenarios = {info.scenario for info in cat.values() if info.model == model}
        expected = {"0-shot", "1-shot", "2-shot", "3-shot"} | ({"fine-tuned"} if n == 5 else set())
        assert scenarios == expected, model
    assert sorted(info.step for info in cat.values() if info.group == "checkpoint") == [60, 120, 180, 240]
    assert sorted(info.shots for info in cat.values() if info.group == "cross-task") == [0, 1, 2, 3]
    # (model, scenario) names each run once, so each gets its own record folder and comparison label
    assert len({(info.model, info.scenario) for info in cat.values()}) == 32
    # the registry holds exactly the 32 arrays and their 32 metric files
    assert set(registry_sha) == {f"{s}.npy" for s in cat} | {info.metrics_file for info in cat.values()}


def test_describe_representative_stems():
    info = study_outputs.describe("gpt35_finetuned_zeroshot_outputs")
    assert (info.model, info.scenario, info.shots, info.group, info.step) == (
        "gpt-3.5-turbo",
        "fine-tuned",
        0,
        "main",
        None,
    )
    assert info.metrics_file == "gpt35_finetuned_zeroshot_outputs.json"

    info = study_outputs.describe("checkpoint-60_finetuned_model_zeroshot_outputs")
    assert (info.model, info.scenario, info.shots, info.group, info.step) == (
        "checkpoint-60",
        "fine-tuned",
        0,
        "checkpoint",
        60,
    )

    info = study_outputs.describe("Llama-2-7b-chat-hf_finetuned_model_twoshot_outputs")
    assert (info.model, info.scenario, info.shots, info.group) == (
        study_outputs.CROSS_TASK_MODEL,
        "2-shot",
        2,
        "cross-task",
    )
    assert info.metrics_file == "Llama-2-7b-chat-hf_finetuned_model_twoshot_outputs.json"

    info = study_outputs.describe("gpt4_oneshot_outputs")
    assert (info.model, info.scenario, info.shots, info.group) == ("gpt-4-turbo", "1-shot", 1, "main")
    assert info.metrics_file == "gpt4_oneshot_results.json"

    info = study_outputs.describe("falcon_pretrained_model_threeshot_outputs")
    assert (info.model, info.scenario, info.shots) == ("falcon-7b-instruct", "3-shot", 3)
    info = study_outputs.describe(MISTRAL_FT)
    assert (info.model, info.scenario, info.shots) == ("mistral-7b-instruct", "fine-tuned", 0)


def test_unknown_stem_is_refused_naming_the_valid_choices(no_model):
    with pytest.raises(InvalidParameter) as exc:
        study_outputs.describe("gpt5_zeroshot_outputs")
    message = str(exc.value)
    assert "'gpt5_zeroshot_outputs'" in message and "valid choices" in message
    assert "'gpt4_oneshot_outputs'" in message and f"'{MISTRAL_FT}'" in message
    with pytest.raises(InvalidParameter, match="valid choices"):
        study_outputs.load_runs(["gpt4_oneshot_outputs", "no_such_run"])


# -- 2. alignment with MTS-Dialog ----------------------------------------------------------------------------------
def test_reference_order_is_testset1_then_testset2(release, references):
    first = [str(ex.target) for ex in mts_dialog.load_local(test_set="1").splits["test"]]
    second = [str(ex.target) for ex in mts_dialog.load_local(test_set="2").splits["test"]]
    assert len(first) == len(second) == 200
    assert references == first + second
    ids = [ex.id for ex in released.reference_data().splits["test"]]
    assert ids[0] == "mts-test1-0" and ids[200] == "mts-test2-0"


def test_bleu_reproduces_the_authors_files_only_in_release_order(runs, references):
    assert len(runs) == 32
    reverse = references[200:] + references[:200]
    for stem, run in runs.items():
        authors = run.authors_metrics["bleu"]
        ours = hf_bleu(bleu_statistics(references, run.summaries))
        # the same numbers, not merely to 4 decimals: the arrays answer TestSet-1 then TestSet-2
        assert abs(ours["bleu"] - authors["bleu"]) < 1e-12, stem
        assert abs(ours["brevity_penalty"] - authors["brevity_penalty"]) < 1e-12, stem
        assert ours["translation_length"] == authors["translation_length"], stem
        assert ours["reference_length"] == authors["reference_length"] == 18240, stem
        assert ours["precisions"] == pytest.approx(authors["precisions"], abs=1e-12), stem
        # the reverse order keeps the corpus lengths (so the brevity penalty) but not the n-gram matches: BLEU
        # falls to under 0.6 of the authors' value, more than 0.01 below it, for every run
        flipped = hf_bleu(bleu_statistics(reverse, run.summaries))
        assert flipped["translation_length"] == authors["translation_length"], stem
        assert authors["bleu"] - flipped["bleu"] > 0.01, stem
        assert flipped["bleu"] < 0.6 * authors["bleu"], stem


def test_main_runs_round_to_the_studys_table2(runs):
    published = released._published_table2()
    main = [run for run in runs.values() if run.info.group == "main"]
    assert len(main) == 24
    for run in main:
        key = (run.info.model, run.info.scenario)
        assert key in published.index, key
        authors = run.authors_metrics
        assert round(authors["bleu"]["bleu"], 2) == pytest.approx(published.loc[key, "bleu"]), key
        f1 = float(np.mean(authors["bertscore"]["f1"]))
        assert round(f1, 2) == pytest.approx(published.loc[key, "bertscore_f1"]), key


# -- 3. ROUGE ------------------------------------------------------------------------------------------------------
def test_rouge_within_tolerance_of_the_authors_for_all_runs(runs, rouge_means):
    assert released.ROUGE_TOLERANCE == 0.003
    assert len(rouge_means) == 32
    worst = 0.0
    for stem, run in runs.items():
        for rouge in ("rouge1", "rouge2", "rougeL"):
            diff = abs(rouge_means[stem][rouge] - run.authors_metrics["rouge"][rouge])
            assert diff < released.ROUGE_TOLERANCE, (stem, rouge, diff)
            worst = max(worst, diff)
    assert worst > 0  # the authors' values are bootstrap aggregates, not the plain means
    # the check in SOURCE.md: mean ROUGE-1 of the pretrained zero-shot Mistral is 0.2164 (json 0.2166)
    assert rouge_means["mistral_pretrained_model_zeroshot_outputs"]["rouge1"] == pytest.approx(0.2164, abs=5e-5)


def test_rouge_in_reverse_order_is_far_off(runs, references):
    run = runs["mistral_pretrained_model_zeroshot_outputs"]
    reverse = references[200:] + references[:200]
    rouge1 = float(rouge_fmeasures(reverse, run.summaries, ("rouge1",))["rouge1"].mean())
    assert rouge1 == pytest.approx(0.081, abs=5e-4)  # SOURCE.md
    assert run.authors_metrics["rouge"]["rouge1"] - rouge1 > 0.1


# -- 4. refusals of files that are not the released ones ----------------------------------------------------------
_unpickled: list[str] = []


def _tripped() -> str:
    _unpickled.append("unpickled")
    return "x"


class _Tripwire:
    """An object whose unpickling is recorded: loading it would run code from the file."""

    def __reduce__(self):
        return (_tripped, ())


def test_pickled_array_is_refused_without_unpickling(tmp_path, no_model):
    path = tmp_path / "pickled_outputs.npy"
    np.save(path, np.array([_Tripwire()] * 400, dtype=object), allow_pickle=True)
    with pytest.raises(ReleasedOutputsError) as exc:
        study_outputs.read_summaries(path)
    message = str(exc.value)
    assert "pickled_outputs.npy" in message
    assert "allow_pickle=False" in message and "never unpickled" in message
    assert _unpickled == []


def test_array_of_399_is_refused(tmp_path, no_model):
    path = tmp_path / "short_outputs.npy"
    np.save(path, np.array([f"summary {i}" for i in range(399)]))
    with pytest.raises(ReleasedOutputsError) as exc:
        study_outputs.read_summaries(path)
    message = str(exc.value)
    assert "short_outputs.npy" in message and "399" in message and "400" in message
    assert len(study_outputs.read_summaries(path, items=399)) == 399


@pytest.mark.parametrize(
    ("array", "expected"),
    [
        (np.array([["a summary"] * 20] * 20), "2-D array of dtype <U9"),
        (np.arange(400), "1-D array of dtype int64"),
    ],
    ids=["2-D", "not-text"],
)
def test_array_of_wrong_shape_or_dtype_is_refused(tmp_path, no_model, array, expected):
    path = tmp_path / "odd_outputs.npy"
    np.save(path, array)
    with pytest.raises(ReleasedOutputsError) as exc:
        study_outputs.read_summaries(path)
    message = str(exc.value)
    assert "odd_outputs.npy" in message and expected in message and "1-D array of unicode strings" in message


def test_non_npy_file_is_refused(tmp_path, no_model):
    path = tmp_path / "notes_outputs.npy"
    path.write_text("these are not numpy summaries\n" * 20, encoding="utf-8")
    with pytest.raises(ReleasedOutputsError) as exc:
        study_outputs.read_summaries(path)
    assert "notes_outputs.npy is not a numpy .npy file (no .npy header)" in str(exc.value)
    with pytest.raises(ReleasedOutputsError, match=r"absent_outputs\.npy is not a numpy \.npy file"):
        study_outputs.read_summaries(tmp_path / "absent_outputs.npy")
    empty = tmp_path / "empty_outputs.npy"
    empty.write_bytes(b"")
    with pytest.raises(ReleasedOutputsError, match=r"empty_outputs\.npy is not a numpy \.npy file"):
        study_outputs.read_summaries(empty)
    truncated = tmp_path / "truncated_outputs.npy"
    np.save(truncated, np.array(["a summary"] * 400))
    truncated.write_bytes(truncated.read_bytes()[:200])
    with pytest.raises(ReleasedOutputsError, match=r"truncated_outputs\.npy"):
        study_outputs.read_summaries(truncated)


def test_metric_file_without_bleu_is_refused(tmp_path, runs, release, no_model):
    info = study_outputs.describe(GPT4_3SHOT)
    source = release[study_outputs.DATASET] / study_outputs.FOLDER / info.metrics_file
    payload = json.loads(source.read_text(encoding="utf-8"))
    assert study_outputs.read_authors_metrics(source) == payload
    del payload["bleu"]
    path = tmp_path / info.metrics_file
    path.write_text(json.dumps(payload), encoding="utf-8")
    with pytest.raises(ReleasedOutputsError) as exc:
        study_outputs.read_authors_metrics(path)
    assert str(exc.value) == "gpt4_threeshot_results.json lacks the metric section(s) bleu"
    path.write_text("{not json", encoding="utf-8")
    with pytest.raises(ReleasedOutputsError, match=r"gpt4_threeshot_results\.json is not a JSON metric file"):
        study_outputs.read_authors_metrics(path)


def test_modified_copy_is_refused_by_checksum(tmp_path, release, registry_sha, no_model):
    folder = tmp_path / study_outputs.FOLDER
    shutil.copytree(release[study_outputs.DATASET] / study_outputs.FOLDER, folder)
    # the unmodified copy loads and holds the registry copy's texts
    [copy] = study_outputs.load_runs(GPT4_3SHOT, path=tmp_path)
    [original] = study_outputs.load_runs(GPT4_3SHOT)
    assert copy.summaries == original.summaries and copy.sha256 == original.sha256
    # change one summary of one run: still a valid array of 400 strings, but not the authors' file
    name = f"{MISTRAL_FT}.npy"
    array = np.load(folder / name, allow_pickle=False)
    array[7] = array[7] + " (edited)"
    np.save(folder / name, array)
    actual = registry.sha256_of(folder / name)
    assert len(study_outputs.read_summaries(folder / name)) == 400 and actual != registry_sha[name]
    for call in (
        lambda: study_outputs.load_runs(path=tmp_path),
        lambda: study_outputs.load_runs([GPT4_3SHOT, MISTRAL_FT], path=folder),
        lambda: released.record_released_runs(tmp_path / "runs", runs=MISTRAL_FT, outputs_path=tmp_path),
    ):
        with pytest.raises(registry.ChecksumMismatch) as exc:
            call()
        err = exc.value
        assert (err.file, err.expected, err.actual) == (name, registry_sha[name], actual)
        message = str(err)
        assert name in message and registry_sha[name] in message and actual in message
    assert not (tmp_path / "runs").exists()


# -- 5. run records through the run protocol -----------------------------------------------------------------------
def test_record_released_runs(recorded, runs, registry_sha, monkeypatch):
    table, dirs = recorded["table"], recorded["dirs"]
    assert set(dirs) == {MISTRAL_FT, GPT4_3SHOT}
    assert len(table) == 2 * 7 and set(table["metric"]) == {
        "bleu",
        "rouge1",
        "rouge2",
        "rougeL",
        "bertscore_f1",
        "length_ratio",
        "invalid_rate",
    }
    expected = {
        MISTRAL_FT: ("mistral-7b-instruct", "fine-tuned", 0, "mistral_finetuned_model_zeroshot_outputs.json"),
        GPT4_3SHOT: ("gpt-4-turbo", "3-shot", 3, "gpt4_threeshot_results.json"),
    }
    written_at = {}
    for stem, run_dir in dirs.items():
        model, scenario, shots, metrics_file = expected[stem]
        for name in ("params.json", "metrics.json", "manifest.json", "predictions.jsonl"):
            assert (run_dir / name).is_file(), (stem, name)
        params = json.loads((run_dir / "params.json").read_text())
        assert (params["experiment"], params["model"], params["scenario"], params["shots"]) == (
            "study_outputs",
            model,
            scenario,
            shots,
        )
        assert params["task"] == "summarization" and params["n_resamples"] == 200
        assert params["released"] == {"stem": stem, "group": "main", "step": None}
        manifest = json.loads((run_dir / "manifest.json").read_text())
        assert manifest["items"] == 400
        assert manifest["model"] == {"spec": f"released:{stem}@{study_outputs.COMMIT}", **runs[stem].identity}
        identity = {
            "spec": f"released:{stem}@{study_outputs.COMMIT}",
            "origin": "BillHoweLab/lab-scale-ai",
            "commit": "6bed44004d599938734770063a5ec76794f7a3ad",
            "file": f"tasks/results/{stem}.npy",
            "sha256": registry_sha[f"{stem}.npy"],
            "metrics_file": f"tasks/results/{metrics_file}",
            "metrics_sha256": registry_sha[metrics_file],
        }
        assert {k: manifest["model"].get(k) for k in identity} == identity
        written_at[stem] = (manifest["written_at"], (run_dir / "manifest.json").stat().st_mtime_ns)
        lines = (run_dir / "predictions.jsonl").read_text().splitlines()
        assert len(lines) == 400 and json.loads(lines[0])["id"] == "mts-test1-0"
        bert = json.loads((run_dir / "metrics.json").read_text())["bertscore_f1"]
        assert "all-MiniLM-L6-v2" in bert["encoder"] and bert["rescaled"] is False and bert["n"] == 400

    # the offline encoder's BERTScore-F1 (not the study's distilbert: lower than Table 2's 0.81 / 0.80)
    values = table[table["metric"] == "bertscore_f1"].set_index("model")["value"]
    assert values["mistral-7b-instruct"] == pytest.approx(0.58505, abs=2e-3)
    assert values["gpt-4-turbo"] == pytest.approx(0.59115, abs=2e-3)

    # a second call reuses both records: nothing is scored and no manifest is rewritten
    def tripwire(*args, **kwargs):
        raise AssertionError("a reused record was rescored")

    monkeypatch.setattr(released, "summary_item_scores", tripwire)
    monkeypatch.setattr(metrics_module, "_bertscore_f1", tripwire)  # no prefetch either: the records are current
    again = released.record_released_runs(
        recorded["out"], runs=[MISTRAL_FT, GPT4_3SHOT], n_resamples=200, progress=False
    )
    assert again.equals(table)
    for stem, run_dir in dirs.items():
        manifest = json.loads((run_dir / "manifest.json").read_text())
        assert (manifest["written_at"], (run_dir / "manifest.json").stat().st_mtime_ns) == written_at[stem]

    rows = released.reproduction_table(table).set_index("run")
    assert set(rows.index) == {MISTRAL_FT, GPT4_3SHOT}
    assert rows["bleu_ok"].all() and rows["rouge_ok"].all()
    assert rows.loc[MISTRAL_FT, "bleu_table2"] == pytest.approx(0.10)
    assert rows.loc[GPT4_3SHOT, "bleu_table2"] == pytest.approx(0.08)
    assert rows.loc[MISTRAL_FT, "bertscore_f1_table2"] == pytest.approx(0.81)
    assert rows.loc[GPT4_3SHOT, "bertscore_f1_table2"] == pytest.approx(0.80)
    assert rows.loc[MISTRAL_FT, "bleu"] == pytest.approx(0.098667, abs=5e-7)
    assert rows.loc[GPT4_3SHOT, "bleu"] == pytest.approx(0.082099, abs=5e-7)
    assert (rows.loc[MISTRAL_FT, "summary_tokens"], rows.loc[GPT4_3SHOT, "summary_tokens"]) == (15021, 13300)
    assert (rows["reference_tokens"] == 18240).all()
    for column in ("bleu", "brevity_penalty", "rouge1", "rouge2", "rougeL"):
        assert (rows[column] - rows[f"{column}_authors"]).abs().max() <= (
            released.BLEU_TOLERANCE if column in ("bleu", "brevity_penalty") else released.ROUGE_TOLERANCE
        ), column


def _refuse_file_reads(monkeypatch):
    def tripwire(*args, **kwargs):
        raise AssertionError("a file was read before the refusal")

    monkeypatch.setattr(study_outputs, "load_runs", tripwire)
    monkeypatch.setattr(study_outputs, "read_summaries", tripwire)
    monkeypatch.setattr(released, "reference_data", tripwire)
    monkeypatch.setattr(registry, "sha256_of", tripwire)


def test_record_released_runs_refuses_bad_parameters_before_reading(tmp_path, monkeypatch, no_model):
    _refuse_file_reads(monkeypatch)
    with pytest.raises(InvalidParameter) as exc:
        released.record_released_runs(tmp_path, runs=[MISTRAL_FT, "mistral_finetuned_outputs"], progress=False)
    assert "'mistral_finetuned_outputs'" in str(exc.value) and "valid choices" in str(exc.value)
    with pytest.raises(InvalidParameter, match="n_resamples"):
        released.record_released_runs(tmp_path, runs=MISTRAL_FT, n_resamples=5, progress=False)
    with pytest.raises(InvalidParameter, match="bertscore_model"):
        released.record_released_runs(tmp_path, runs=MISTRAL_FT, bertscore_model="  ", progress=False)
    assert list(tmp_path.iterdir()) == []


# -- 6. a paired comparison against a hand computation -------------------------------------------------------------
def test_paired_comparison_matches_a_hand_computation(recorded, runs, release):
    import sacrebleu
    from rouge_score import rouge_scorer

    dirs = recorded["dirs"]
    scores = read_summary_scores([dirs[MISTRAL_FT], dirs[GPT4_3SHOT]])
    assert scores.labels == [MISTRAL_LABEL, GPT4_LABEL]
    # the texts the records hold are the released arrays and MTS-Dialog TestSet-1 then TestSet-2
    refs = [str(ex.target) for ex in mts_dialog.load_local(test_set="1").splits["test"]]
    refs += [str(ex.target) for ex in mts_dialog.load_local(test_set="2").splits["test"]]
    mistral, gpt4 = list(runs[MISTRAL_FT].summaries), list(runs[GPT4_3SHOT].summaries)
    assert scores.references == tuple(refs)
    assert scores.summaries == (tuple(mistral), tuple(gpt4))
    assert scores.ids[0] == "mts-test1-0" and scores.ids[200] == "mts-test2-0" and len(scores.ids) == 400

    result = paired_runs(scores, [("f", MISTRAL_LABEL, GPT4_LABEL)], metrics=("rougeL", "bleu"), n_resamples=200)
    assert list(result["metric"]) == ["rougeL", "bleu"]
    rows = result.set_index("metric")

    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    rouge_m = np.array([scorer.score(r, h)["rougeL"].fmeasure for r, h in zip(refs, mistral, strict=True)])
    rouge_g = np.array([scorer.score(r, h)["rougeL"].fmeasure for r, h in zip(refs, gpt4, strict=True)])
    assert rows.loc["rougeL", "delta"] == pytest.approx(float(np.mean(rouge_m - rouge_g)), abs=1e-12)
    assert rows.loc["rougeL", "value"] == pytest.approx(float(rouge_m.mean()), abs=1e-12)
    assert rows.loc["rougeL", "baseline_value"] == pytest.approx(float(rouge_g.mean()), abs=1e-12)
    assert rows.loc["rougeL", "delta"] == pytest.approx(-0.02354, abs=5e-5)

    bleu_m = sacrebleu.corpus_bleu(mistral, [refs]).score / 100
    bleu_g = sacrebleu.corpus_bleu(gpt4, [refs]).score / 100
    assert rows.loc["bleu", "delta"] == pytest.approx(bleu_m - bleu_g, abs=1e-12)
    assert (rows.loc["bleu", "value"], rows.loc["bleu", "baseline_value"]) == (
        pytest.approx(bleu_m, abs=1e-12),
        pytest.approx(bleu_g, abs=1e-12),
    )
    assert bleu_m == pytest.approx(0.098667, abs=5e-7) and bleu_g == pytest.approx(0.082099, abs=5e-7)

    for metric, row in rows.iterrows():
        assert row["ci_low"] <= row["delta"] <= row["ci_high"], metric
        assert row["ci_low"] < row["ci_high"], metric
        assert row["n"] == 400 and row["interval"] == "bca" and row["family"] == "f"
        assert 0 < row["p_value"] <= row["p_holm"] <= 1, metric
        assert (row["condition"], row["baseline"]) == (MISTRAL_LABEL, GPT4_LABEL)
    # Holm over the family's two tests, by hand
    low, high = sorted(rows["p_value"])
    adjusted = sorted(rows["p_holm"])
    assert adjusted[0] == pytest.approx(min(1.0, 2 * low))
    assert adjusted[1] == pytest.approx(min(1.0, max(2 * low, high)))
    # the signs the intervals support: fine-tuned Mistral has the higher BLEU, GPT-4 3-shot the higher ROUGE-L
    assert rows.loc["bleu", "ci_low"] > 0 and rows.loc["rougeL", "ci_high"] < 0


# -- 7. read_summary_scores refusals -------------------------------------------------------------------------------
def _copy_record(run_dir: Path, target: Path) -> Path:
    shutil.copytree(run_dir, target)
    return target


def test_read_summary_scores_refuses_other_tasks_and_mismatched_items(recorded, tmp_path):
    mistral, gpt4 = recorded["dirs"][MISTRAL_FT], recorded["dirs"][GPT4_3SHOT]

    other = _copy_record(mistral, tmp_path / "qa-run")
    params = json.loads((other / "params.json").read_text())
    params["task"] = "hallucination"
    (other / "params.json").write_text(json.dumps(params))
    with pytest.raises(InvalidParameter) as exc:
        read_summary_scores([gpt4, other])
    assert str(exc.value) == f"{str(other)!r} is a 'hallucination' run, not a summarization run"

    with pytest.raises(InvalidParameter) as exc:
        read_summary_scores([mistral, gpt4], ids=["mts-test1-0", "mts-test9-1"])
    assert str(exc.value) == f"{str(mistral)!r} did not answer 1 of the items, e.g. 'mts-test9-1'"

    # a record that answered only TestSet-1: the first run's items are not all in it
    partial = _copy_record(gpt4, tmp_path / "partial-run")
    lines = (partial / "predictions.jsonl").read_text().splitlines()
    (partial / "predictions.jsonl").write_text("\n".join(lines[:200]) + "\n")
    with pytest.raises(InvalidParameter) as exc:
        read_summary_scores([mistral, partial])
    assert str(exc.value) == f"{str(partial)!r} did not answer 200 of the items, e.g. 'mts-test2-0'"
    # on the items both answered they line up
    shared = read_summary_scores([mistral, partial], ids=[f"mts-test1-{i}" for i in range(200)])
    assert shared.bleu_stats.shape == (2, 200, 10)

    with pytest.raises(InvalidParameter, match="two runs share a label"):
        read_summary_scores([mistral, _copy_record(mistral, tmp_path / "same-run")])
    with pytest.raises(InvalidParameter, match="at least one run record"):
        read_summary_scores([])


def test_encoder_agreement_is_spearman_with_the_bonett_wright_interval():
    from scipy.stats import norm, spearmanr

    ours = np.array([0.55, 0.37, 0.42, 0.66, 0.50, 0.58, 0.35, 0.57])
    theirs = np.array([0.78, 0.73, 0.74, 0.85, 0.76, 0.80, 0.70, 0.81])
    repro = pd.DataFrame({"bertscore_f1": ours, "bertscore_f1_authors": theirs, "encoder": "minilm"})
    out = released.encoder_agreement(repro)
    rho = spearmanr(ours, theirs).statistic
    half = norm.ppf(0.975) * np.sqrt((1 + rho**2 / 2) / (8 - 3))
    assert out["value"] == pytest.approx(rho)
    assert out["ci_low"] == pytest.approx(np.tanh(np.arctanh(rho) - half))
    assert out["ci_high"] == pytest.approx(np.tanh(np.arctanh(rho) + half)) and out["n"] == 8
    with pytest.raises(InvalidParameter, match="at least 4 runs, got 3"):
        released.encoder_agreement(repro.iloc[:3])
