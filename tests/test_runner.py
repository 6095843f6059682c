"""Planning fails early on bad input; running writes complete run records and reruns from the cache."""

from __future__ import annotations

import json
import time

import pytest

from labscale.cache import ResponseCache
from labscale.errors import InvalidParameter
from labscale.records import find_runs, metrics_table, read_run
from labscale.runner import plan_experiment, run_experiment


@pytest.mark.parametrize(
    "kwargs, pattern",
    [
        (
            {"tasks": ["entity_matching"]},
            r"unknown task 'entity_matching'; valid choices: 'entity_resolution', "
            r"'fact_checking', 'summarization'",
        ),
        ({"shots": [0, 4]}, r"shots=4 is out of range; valid range: \[0, 3\]"),
        ({"limit": 0}, r"limit=0 is out of range"),
        ({"source": "web"}, r"unknown data source for task 'entity_resolution' 'web'; valid choices: .*'offline'"),
        ({"models": ["gpt-5"]}, r"unknown model 'gpt-5'"),
        ({"models": ["smollm2-135m@abc"]}, r"embedded model has one revision.*remove '@abc'"),
        ({"split": "dev"}, r"unknown split 'dev'; valid choices: 'train', 'validation', 'test'"),
        ({"shot_style": "multiturn"}, r"unknown shot_style 'multiturn'; valid choices: 'chat', 'single'"),
        ({"n_resamples": 10}, r"n_resamples=10 is out of range"),
        (
            {"source": {"fact_checking": "offline"}, "tasks": ["fact_checking", "summarization"]},
            r"names no source for tasks \['summarization'\]",
        ),
        ({"source": "local", "data_path": "/nonexistent/folder", "tasks": ["fact_checking"]}, r"/nonexistent/folder"),
        (
            {
                "task_options": {"entity_resolution": {"benchmark": "Nope"}},
                "source": "local",
                "tasks": ["entity_resolution"],
            },
            r"'Nope'.*'DBLP-ACM'",
        ),
    ],
)
def test_bad_input_fails_before_any_model_loads(kwargs, pattern, tmp_path):
    with pytest.raises(InvalidParameter, match=pattern):
        plan_experiment(**{"output_dir": tmp_path, "cache": ResponseCache(tmp_path / "c.sqlite"), **kwargs})


def test_api_model_without_key_fails_at_planning(tmp_path, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    with pytest.raises(InvalidParameter, match="OPENAI_API_KEY"):
        plan_experiment(
            models=["gpt-4-turbo"],
            tasks=["fact_checking"],
            output_dir=tmp_path,
            cache=ResponseCache(tmp_path / "c.sqlite"),
        )


def test_unavailable_hub_model_fails_at_planning_quickly(tmp_path, monkeypatch):
    """Offline, a hub id that is not in the local cache fails in plan_experiment, in well under a second, naming the
    model, what was tried and the ways out -- not at run time with a raw OSError after the hub client's retries."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model = "hf:labscale-test/no-such-model-3f9c2"
    start = time.perf_counter()
    with pytest.raises(InvalidParameter) as failure:
        plan_experiment(
            models=[model],
            tasks=["fact_checking"],
            shots=[0],
            limit=2,
            output_dir=tmp_path,
            cache=ResponseCache(tmp_path / "c.sqlite"),
        )
    assert time.perf_counter() - start < 5
    message = str(failure.value)
    for part in (
        model,
        "not in the Hugging Face cache",
        "HF_HUB_OFFLINE=1",
        "hf download labscale-test/no-such-",
        "HF_HOME",
        "'smollm2-135m'",
    ):
        assert part in message
    assert not (tmp_path / "runs").exists()
    # a pinned revision is named too; a folder that is not a model folder is refused as such
    with pytest.raises(InvalidParameter, match=r"at revision 'abc123'.*HF_HUB_OFFLINE=1"):
        plan_experiment(
            models=[f"{model}@abc123"],
            tasks=["fact_checking"],
            shots=[0],
            limit=2,
            output_dir=tmp_path,
            cache=ResponseCache(tmp_path / "c.sqlite"),
        )
    with pytest.raises(InvalidParameter, match=r"has no config.json"):
        plan_experiment(
            models=[f"hf:{tmp_path}"],
            tasks=["fact_checking"],
            shots=[0],
            limit=2,
            output_dir=tmp_path,
            cache=ResponseCache(tmp_path / "c.sqlite"),
        )


def test_unreachable_hub_fails_at_planning_without_waiting(tmp_path, monkeypatch):
    """Online mode with no way to the hub (here: an endpoint on a closed local port) fails at once, not after the
    download retries, and suggests offline mode."""
    import socket

    from huggingface_hub import constants

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.setenv(var, "0")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{port}")
    start = time.perf_counter()
    with pytest.raises(
        InvalidParameter,
        match=r"'hf:labscale-test/no-such-model'.*not in the Hugging Face cache.*"
        r"hub could not be reached.*set HF_HUB_OFFLINE=1",
    ):
        plan_experiment(
            models=["hf:labscale-test/no-such-model"],
            tasks=["fact_checking"],
            shots=[0],
            limit=2,
            output_dir=tmp_path,
            cache=ResponseCache(tmp_path / "c.sqlite"),
        )
    assert time.perf_counter() - start < 15


def test_a_local_model_folder_and_the_hub_cache_pass_planning(embedded_model_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    plan = plan_experiment(
        models=[f"hf:{embedded_model_dir}"],
        tasks=["fact_checking"],
        shots=[0],
        limit=2,
        output_dir=tmp_path,
        cache=ResponseCache(tmp_path / "c.sqlite"),
    )
    assert plan.backends[f"hf:{embedded_model_dir}"]._model is None
    # a hub id whose config and weights are in the local hub cache (the layout hf download writes) passes offline
    from huggingface_hub import constants

    commit = "0" * 40
    snapshot = tmp_path / "hub" / "models--labscale-test--cached-model" / "snapshots" / commit
    snapshot.mkdir(parents=True)
    (snapshot.parent.parent / "refs").mkdir()
    (snapshot.parent.parent / "refs" / "main").write_text(commit)
    for name in ("config.json", "model.safetensors"):
        (snapshot / name).write_text("{}")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    from labscale.backends.hf import check_model_available

    assert check_model_available("labscale-test/cached-model") == "cache"
    (snapshot / "model.safetensors").unlink()  # a config without weights is not a usable model
    with pytest.raises(InvalidParameter, match="not in the Hugging Face cache"):
        check_model_available("labscale-test/cached-model")


def test_one_model_listed_twice_is_refused(tmp_path):
    with pytest.raises(InvalidParameter, match=r"same model more than once: \['smollm2-135m'\]"):
        plan_experiment(
            models=["smollm2-135m", "smollm2-135m?batch_size=2"],
            tasks=["fact_checking"],
            output_dir=tmp_path,
            cache=ResponseCache(tmp_path / "c.sqlite"),
        )


def test_a_valid_plan_loads_no_weights(tmp_path):
    plan = plan_experiment(
        tasks=["fact_checking"], limit=5, output_dir=tmp_path, cache=ResponseCache(tmp_path / "c.sqlite")
    )
    backend = plan.backends["smollm2-135m"]
    assert backend._model is None
    summary = plan.summary()
    assert summary.loc[0, "items"] == 5 and bool(summary.loc[0, "synthetic"]) is True
    assert plan.n_runs == 4


@pytest.mark.slow
def test_run_writes_records_and_reruns_without_model_calls(embedded_model_dir, tmp_path):
    cache = ResponseCache(tmp_path / "c.sqlite")
    kwargs = dict(
        tasks=["entity_resolution", "fact_checking", "summarization"],
        shots=[0, 1],
        limit=3,
        seed=3,
        output_dir=tmp_path / "runs",
        cache=cache,
        max_new_tokens={"summarization": 24},
        n_resamples=200,
    )
    table = run_experiment(plan_experiment(**kwargs), progress=False)
    runs = find_runs(tmp_path / "runs")
    assert len(runs) == 6
    record = read_run(tmp_path / "runs" / "smollm2-135m" / "fact_checking" / "1shot")
    assert record["params"]["shots"] == 1 and record["params"]["seed"] == 3
    assert len(record["predictions"]) == 3
    assert set(record["predictions"].columns) >= {"id", "target", "reply", "parsed", "invalid", "cached"}
    manifest = record["manifest"]
    assert manifest["model"]["model"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert manifest["data"]["synthetic"] is True and len(manifest["data"]["content_sha256"]) == 64
    assert manifest["usage"]["model_calls"] == 3 and manifest["usage"]["prompt_tokens"] > 0
    assert manifest["versions"]["torch"] and manifest["wall_seconds"] > 0 and len(manifest["shots"]) == 1
    for name, m in record["metrics"].items():
        assert m["ci_low"] <= m["value"] <= m["ci_high"], name
    assert {"accuracy", "f1_weighted", "invalid_rate"} <= set(record["metrics"])
    assert set(table["task"]) == {"entity_resolution", "fact_checking", "summarization"}
    assert {"bleu", "bertscore_f1"} <= set(table.loc[table["task"] == "summarization", "metric"])

    # rerun with records forced to be rewritten: every generation is a cache hit, no model call
    rerun = plan_experiment(**kwargs)
    again = run_experiment(rerun, reuse=False, progress=False)
    manifest = json.loads(
        (tmp_path / "runs" / "smollm2-135m" / "summarization" / "0shot" / "manifest.json").read_text()
    )
    assert manifest["usage"]["model_calls"] == 0 and manifest["cache_hit_rate"] == 1.0
    assert rerun.backends["smollm2-135m"]._model is None
    cols = ["model", "task", "shots", "metric", "value"]
    assert again[cols].sort_values(cols).values.tolist() == table[cols].sort_values(cols).values.tolist()
    assert len(metrics_table(tmp_path / "runs")) == len(table)


def test_run_key_changes_with_prompts_and_code(tmp_path):
    from labscale.protocol import code_fingerprint, run_key

    base = run_key({"a": 1}, {"model": "m"}, ["i1"], [[{"role": "user", "content": "x"}]])
    assert base != run_key({"a": 1}, {"model": "m"}, ["i1"], [[{"role": "user", "content": "y"}]])
    assert len(code_fingerprint()) == 64
