"""The run protocol: one function writes every record, reuses current ones and rebuilds stale ones."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from labscale import records
from labscale.backends import Decoding, parse_model_spec
from labscale.protocol import Produced, RunSpec, execute, run_key

LIB = Path(__file__).resolve().parents[1] / "lib" / "labscale"


def _spec(**changes) -> RunSpec:
    fields = dict(
        experiment="unit",
        model=parse_model_spec("smollm2-135m"),
        task="entity_resolution",
        source="offline",
        scenario="0-shot",
        limit=2,
        seed=0,
        data={"split": "test", "data_seed": 0},
        decoding=Decoding(max_new_tokens=4, seed=0),
    )
    return RunSpec(**{**fields, **changes})


def _producer(calls: list[int]):
    def produce() -> Produced:
        calls.append(1)
        predictions = [
            {"id": "a", "target": "y", "parsed": "y", "scores": {"correct": 1.0}},
            {"id": "b", "target": "n", "parsed": "y", "scores": {"correct": 0.0}},
        ]
        metrics = {"accuracy": {"value": 0.5, "ci_low": 0.01, "ci_high": 0.99, "n": 2, "interval": "clopper-pearson"}}
        return Produced(predictions, metrics, {"data": {"content_sha256": "abc"}})

    return produce


def test_only_the_protocol_writes_run_records():
    """No module but protocol.py calls records.write_run (target of issue 11: one writer)."""
    writers = []
    for path in sorted(LIB.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call):
                name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", None)
                if name == "write_run":
                    writers.append(path.relative_to(LIB).as_posix())
    assert writers == ["protocol.py"]


def test_execute_writes_params_predictions_and_a_stamped_manifest(tmp_path):
    spec = _spec()
    calls: list[int] = []
    run_dir = execute(spec, tmp_path / spec.name, _producer(calls), identity={"model_id": "m"}, inputs=(["a", "b"],))
    assert run_dir == tmp_path / "smollm2-135m" / "entity_resolution" / "0shot"
    record = records.read_run(run_dir)
    params, manifest = record["params"], record["manifest"]
    assert (params["model"], params["task"], params["scenario"], params["shots"]) == (
        "smollm2-135m",
        "entity_resolution",
        "0-shot",
        0,
    )
    assert params["decoding"]["max_new_tokens"] == 4 and params["adapter"] is None
    assert manifest["run_key"] == spec.key({"model_id": "m"}, ["a", "b"])
    assert manifest["items"] == 2 and manifest["data"] == {"content_sha256": "abc"}
    assert manifest["model"] == {"spec": "smollm2-135m", "model_id": "m"}
    assert {"versions", "git_commit", "hardware", "wall_seconds", "written_at"} <= set(manifest)
    assert manifest["versions"]["labscale"] == "0.1.0"
    assert record["predictions"]["scores"].tolist() == [{"correct": 1.0}, {"correct": 0.0}]
    assert calls == [1]


def test_execute_reuses_a_current_record_and_rebuilds_a_stale_one(tmp_path):
    calls: list[int] = []
    spec = _spec()
    run_dir = tmp_path / spec.name
    execute(spec, run_dir, _producer(calls), identity={"model_id": "m"})
    execute(spec, run_dir, _producer(calls), identity={"model_id": "m"})
    assert calls == [1]  # same spec, model, inputs, code and versions: reused
    execute(_spec(seed=1), run_dir, _producer(calls), identity={"model_id": "m"})
    assert calls == [1, 1]  # another seed: rebuilt
    execute(_spec(seed=1), run_dir, _producer(calls), identity={"model_id": "m2"})
    assert calls == [1, 1, 1]  # other weights: rebuilt
    # a record made by other code (its key differs) is rebuilt, never mixed in
    manifest = json.loads((run_dir / "manifest.json").read_text())
    (run_dir / "manifest.json").write_text(json.dumps({**manifest, "run_key": "made-by-older-code"}))
    execute(_spec(seed=1), run_dir, _producer(calls), identity={"model_id": "m2"})
    assert calls == [1, 1, 1, 1]
    execute(_spec(seed=1), run_dir, _producer(calls), identity={"model_id": "m2"}, reuse=False)
    assert len(calls) == 5


def test_a_crashed_producer_leaves_no_complete_record(tmp_path):
    spec = _spec()

    def crash() -> Produced:
        raise RuntimeError("out of memory")

    with pytest.raises(RuntimeError, match="out of memory"):
        execute(spec, tmp_path / spec.name, crash, identity={})
    assert records.find_runs(tmp_path) == []


def test_the_adapter_is_a_field_of_the_spec_and_names_the_fine_tuned_folder():
    base = parse_model_spec("mistral-7b-instruct?load_in_4bit=true")
    spec = _spec(model=base.with_adapter("runs/a/adapter"), label=base.label, scenario="fine-tuned")
    params = spec.params()
    assert params["model"] == "mistral-7b-instruct?load_in_4bit=true"
    assert params["model_spec"] == "mistral-7b-instruct?load_in_4bit=true&adapter=runs/a/adapter"
    assert params["adapter"] == "runs/a/adapter"
    assert spec.name == "mistral-7b-instruct-load_in_4bit-true/entity_resolution/finetuned"
    assert spec.key({}) != _spec(model=base, label=base.label, scenario="fine-tuned").key({})


def test_run_key_covers_inputs():
    assert run_key({"a": 1}, ["i1"]) == run_key({"a": 1}, ["i1"])
    assert run_key({"a": 1}, ["i1"]) != run_key({"a": 1}, ["i2"])


@pytest.mark.parametrize("task_name", ["entity_resolution", "fact_checking", "summarization", "qasper", "squad_v2"])
def test_tasks_return_the_per_item_scores_they_name(task_name):
    """Per-item scores are the record's per-instance stats: named up front, one value per item, and for a label
    task the mean of ``correct`` is the run's accuracy."""
    from labscale.tasks import INVALID, get_task

    task = get_task(task_name)
    items = task.load("offline", seed=0).split("test")[:4]
    parsed = [items[0].target, INVALID, items[2].target, "something else entirely"]
    scores = task.item_scores(items, parsed)
    assert tuple(scores) == task.item_score_names
    assert all(len(values) == 4 for values in scores.values())
    assert scores["invalid"] == [0.0, 1.0, 0.0, 0.0]
    if "correct" in scores:
        metrics = task.score(items, parsed, n_resamples=200)
        assert sum(scores["correct"]) / 4 == pytest.approx(metrics["accuracy"]["value"])
