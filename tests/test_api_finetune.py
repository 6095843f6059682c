"""The OpenAI fine-tuning path against an HTTP-level fake of the OpenAI API.

A real fine-tuning job cannot run offline, so the only stand-in is an ``httpx2.MockTransport`` that implements the
endpoints the path uses (POST /files, POST /fine_tuning/jobs, GET /fine_tuning/jobs[/{id}[/events]], and
POST /chat/completions for the tuned model) and records every request. The real ``openai`` client does the
HTTP work.
"""

from __future__ import annotations

import json
import logging
import re

import httpx2
import pytest

from labscale import api_finetune
from labscale.api_finetune import (
    FineTuneError,
    FineTuneTimeout,
    build_jsonl,
    load_job_record,
    resume_job,
    start_job,
)
from labscale.backends import Decoding, parse_model_spec
from labscale.backends.openai_api import OpenAIBackend
from labscale.errors import InvalidParameter
from labscale.tasks import get_task

SECRET = "sk-labscale-finetune-SECRET-0123456789abcdef"
FAST = {"poll_interval": 0.001, "max_interval": 0.004}


class FakeOpenAI:
    """A minimal OpenAI API: files, fine-tuning jobs (with scripted statuses), job events, chat completions."""

    def __init__(
        self,
        statuses=("queued", "running", "succeeded"),
        *,
        error=None,
        ambiguous_creates=0,
        upload_status=200,
        upload_body=None,
    ):
        self.statuses = list(statuses)
        self.error = error
        self.ambiguous_creates = ambiguous_creates
        self.upload_status = upload_status
        self.upload_body = upload_body
        self.requests: list[dict] = []
        self.files: dict[str, bytes] = {}
        self.jobs: dict[str, dict] = {}
        self.polls: dict[str, int] = {}

    def client(self) -> httpx2.Client:
        return httpx2.Client(transport=httpx2.MockTransport(self.handle))

    # -- request log helpers --------------------------------------------------------------------------------
    def calls(self, method: str | None = None, path: str | None = None) -> list[dict]:
        return [
            r
            for r in self.requests
            if (method is None or r["method"] == method) and (path is None or re.fullmatch(path, r["path"]))
        ]

    # -- the API ------------------------------------------------------------------------------------------
    def handle(self, request: httpx2.Request) -> httpx2.Response:
        request.read()
        path = request.url.path.removeprefix("/v1")
        self.requests.append(
            {"method": request.method, "path": path, "headers": dict(request.headers), "content": request.content}
        )
        if request.method == "POST" and path == "/files":
            return self.upload(request)
        if request.method == "POST" and path == "/fine_tuning/jobs":
            return self.create(json.loads(request.content))
        if request.method == "GET" and path == "/fine_tuning/jobs":
            return httpx2.Response(
                200, json={"object": "list", "data": list(self.jobs.values())[::-1], "has_more": False}
            )
        match = re.fullmatch(r"/fine_tuning/jobs/([^/]+)(/events)?", path)
        if request.method == "GET" and match and match.group(1) in self.jobs:
            return self.events(match.group(1)) if match.group(2) else self.retrieve(match.group(1))
        if request.method == "POST" and path == "/chat/completions":
            body = json.loads(request.content)
            return httpx2.Response(
                200,
                json={
                    "id": "chatcmpl-1",
                    "object": "chat.completion",
                    "created": 1,
                    "model": body["model"],
                    "choices": [
                        {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "SUPPORTS"}}
                    ],
                    "usage": {"prompt_tokens": 12, "completion_tokens": 1, "total_tokens": 13},
                },
            )
        return httpx2.Response(404, json={"error": {"message": f"no route {request.method} {path}"}})

    def upload(self, request: httpx2.Request) -> httpx2.Response:
        if self.upload_status != 200:
            return httpx2.Response(self.upload_status, json=self.upload_body)
        boundary = request.headers["content-type"].split("boundary=")[1].encode()
        parts = {}
        for part in request.content.split(b"--" + boundary):
            head, _, body = part.partition(b"\r\n\r\n")
            name = re.search(rb'name="([^"]+)"', head)
            if name:
                parts[name.group(1).decode()] = body.removesuffix(b"\r\n")
        file_id = f"file-{len(self.files) + 1}"
        self.files[file_id] = parts["file"]
        assert parts["purpose"] == b"fine-tune"
        return httpx2.Response(
            200,
            json={
                "id": file_id,
                "object": "file",
                "bytes": len(parts["file"]),
                "created_at": 1_700_000_000,
                "filename": "train.jsonl",
                "purpose": "fine-tune",
                "status": "processed",
            },
        )

    def create(self, body: dict) -> httpx2.Response:
        job_id = f"ftjob-{len(self.jobs) + 1:04d}"
        self.jobs[job_id] = {
            "object": "fine_tuning.job",
            "id": job_id,
            "model": body["model"],
            "created_at": 1_700_000_000,
            "finished_at": None,
            "fine_tuned_model": None,
            "organization_id": "org-test",
            "result_files": [],
            "status": "validating_files",
            "training_file": body["training_file"],
            "validation_file": body.get("validation_file"),
            "hyperparameters": body.get("hyperparameters", {}),
            "trained_tokens": None,
            "error": None,
            "seed": 0,
        }
        self.polls[job_id] = 0
        if self.ambiguous_creates:
            self.ambiguous_creates -= 1
            return httpx2.Response(500, json={"error": {"message": "upstream timeout"}})
        return httpx2.Response(200, json=self.jobs[job_id])

    def retrieve(self, job_id: str) -> httpx2.Response:
        job = self.jobs[job_id]
        if job["status"] not in ("succeeded", "failed", "cancelled"):
            self.polls[job_id] += 1
            status = self.statuses[min(self.polls[job_id], len(self.statuses)) - 1]
            job["status"] = status
            if status == "succeeded":
                lines = self.files[job["training_file"]].decode().count("\n")
                job.update(
                    finished_at=1_700_005_544,
                    fine_tuned_model=f"ft:{job['model']}:labscale-test::{job_id[-4:]}",
                    trained_tokens=lines * 111 * job["hyperparameters"].get("n_epochs", 3),
                )
            elif status == "failed":
                job.update(finished_at=1_700_000_600, error=self.error)
        return httpx2.Response(200, json=job)

    def events(self, job_id: str) -> httpx2.Response:
        return httpx2.Response(
            200,
            json={
                "object": "list",
                "has_more": False,
                "data": [
                    {
                        "object": "fine_tuning.job.event",
                        "id": "ftevent-2",
                        "created_at": 1_700_005_544,
                        "level": "info",
                        "message": f"The job has {self.jobs[job_id]['status']}",
                    },
                    {
                        "object": "fine_tuning.job.event",
                        "id": "ftevent-1",
                        "created_at": 1_700_000_000,
                        "level": "info",
                        "message": "Created fine-tuning job",
                    },
                ],
            },
        )


@pytest.fixture(scope="module")
def fc():
    task = get_task("fact_checking")
    return task, task.load("offline")


@pytest.fixture()
def training_file(fc, tmp_path):
    task, data = fc
    path, n, _ = build_jsonl(task, data, path=tmp_path / "fc_train.jsonl", train_fraction=0.05, seed=1)
    return path, n


@pytest.fixture()
def key(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    return SECRET


# -- the training file -----------------------------------------------------------------------------------------
def test_build_jsonl_uses_the_evaluation_prompt(fc, tmp_path):
    task, data = fc
    text, n, stats = build_jsonl(task, data)
    train = data.split("train")
    lines = text.splitlines()
    assert n == len(lines) == len(train) == stats["n_examples"]
    first = json.loads(lines[0])
    assert first == {
        "messages": task.messages(train[0], []) + [{"role": "assistant", "content": task.format_target(train[0])}]
    }
    # the zero-shot evaluation prompt, instruction included (the original trained on the bare claim/evidence)
    assert first["messages"][0]["content"].startswith("Please classify the following Claim")
    assert stats["estimated_tokens"] > 0 and stats["token_method"]

    path, n_path, stats_path = build_jsonl("fact_checking", data, path=tmp_path / "out" / "train.jsonl")
    assert path.read_text() == text and n_path == n and stats_path["sha256"] == stats["sha256"]


def test_build_jsonl_fraction_is_seeded_and_ordered(fc):
    task, data = fc
    train = data.split("train")
    text_a, n_a, _ = build_jsonl(task, data, train_fraction=0.1, seed=3)
    text_b, n_b, _ = build_jsonl(task, data, train_fraction=0.1, seed=3)
    text_c, _, _ = build_jsonl(task, data, train_fraction=0.1, seed=4)
    assert n_a == n_b == round(len(train) * 0.1) and text_a == text_b and text_a != text_c
    order = {json.dumps(task.messages(ex, [])): i for i, ex in enumerate(train)}
    positions = [order[json.dumps(json.loads(line)["messages"][:-1])] for line in text_a.splitlines()]
    assert positions == sorted(positions)
    with pytest.raises(InvalidParameter):
        build_jsonl(task, data, train_fraction=0.0)
    with pytest.raises(InvalidParameter):
        build_jsonl(task, data, train_fraction=1.5)


# -- a job from upload to success -------------------------------------------------------------------------------
@pytest.mark.parametrize("n_epochs", [1, 3])
def test_start_job_uploads_creates_and_polls_to_success(fc, training_file, key, tmp_path, n_epochs):
    task, data = fc
    path, n = training_file
    fake = FakeOpenAI()
    result = start_job(
        "gpt-3.5-turbo",
        path,
        n_epochs=n_epochs,
        http_client=fake.client(),
        record_dir=tmp_path / "jobs",
        task="fact_checking",
        **FAST,
    )

    # the uploaded file is the JSONL, byte for byte
    [uploaded] = fake.files.values()
    assert uploaded == path.read_bytes()
    lines = uploaded.decode().splitlines()
    assert len(lines) == n
    ex = next(
        e
        for e in data.split("train")
        if json.dumps(task.messages(e, [])) == json.dumps(json.loads(lines[0])["messages"][:-1])
    )
    assert json.loads(lines[0])["messages"] == task.messages(ex, []) + [
        {"role": "assistant", "content": task.format_target(ex)}
    ]

    # the job asked for the study's base snapshot and the given epochs
    [create] = fake.calls("POST", "/fine_tuning/jobs")
    body = json.loads(create["content"])
    assert body["model"] == "gpt-3.5-turbo-0613"
    assert body["hyperparameters"] == {"n_epochs": n_epochs}
    assert body["training_file"] == "file-1"
    # the key was used (as the bearer token) ...
    assert create["headers"]["authorization"] == f"Bearer {SECRET}"

    # polling stopped at success: queued, running, succeeded and not one poll more
    assert len(fake.calls("GET", r"/fine_tuning/jobs/ftjob-0001")) == 3
    assert result.polls == 3
    assert result.status == "succeeded" and result.succeeded
    assert result.job_id == "ftjob-0001"
    assert result.fine_tuned_model == "ft:gpt-3.5-turbo-0613:labscale-test::0001"
    assert result.trained_tokens == n * 111 * n_epochs
    assert result.n_epochs == n_epochs and result.base_model == "gpt-3.5-turbo-0613"
    assert result.wall_seconds == 5544 and "API timestamps" in result.wall_seconds_source
    assert result.events and result.events[0]["message"] == "The job has succeeded"

    # the persisted record says the same, and is a fine-tuning record for the cost table
    record = load_job_record("ftjob-0001", tmp_path / "jobs")
    assert record["kind"] == "finetune" and record["backend"] == "openai"
    assert record["status"] == "succeeded" and record["trained_tokens"] == result.trained_tokens
    assert record["fine_tuned_model"] == result.fine_tuned_model and record["task"] == "fact_checking"
    assert record["model_string"] == result.model_string
    assert result.record_path == str(tmp_path / "jobs" / "ftjob-0001" / "finetune.json")


def test_fine_tuned_model_evaluates_with_the_openai_backend(training_file, key, tmp_path):
    path, _ = training_file
    fake = FakeOpenAI()
    result = start_job("openai:gpt-3.5-turbo-0613", path, http_client=fake.client(), record_dir=tmp_path, **FAST)
    assert result.model_string == f"openai:{result.fine_tuned_model}"
    spec = parse_model_spec(result.model_string)
    assert spec.backend == "openai" and spec.model == result.fine_tuned_model
    backend = OpenAIBackend.from_spec(spec, http_client=fake.client())
    [generation] = backend.generate(
        [[{"role": "user", "content": "Claim: x Evidence: y"}]],
        Decoding(max_new_tokens=10, temperature=0.0, seed=0),
        progress=False,
    )
    assert generation.text == "SUPPORTS"
    assert json.loads(fake.calls("POST", "/chat/completions")[0]["content"])["model"] == result.fine_tuned_model


def test_polling_backs_off_exponentially_with_a_cap(training_file, key, tmp_path, monkeypatch):
    path, _ = training_file
    sleeps: list[float] = []
    monkeypatch.setattr(api_finetune, "_sleep", sleeps.append)
    fake = FakeOpenAI(statuses=["queued"] + ["running"] * 5 + ["succeeded"])
    result = start_job(
        "gpt-3.5-turbo", path, http_client=fake.client(), record_dir=tmp_path, poll_interval=1.0, max_interval=4.0
    )
    assert result.polls == 7
    assert sleeps == [1.0, 2.0, 4.0, 4.0, 4.0, 4.0]


# -- keys -------------------------------------------------------------------------------------------------------
def test_missing_key_is_refused_before_any_request(training_file, tmp_path, monkeypatch):
    path, _ = training_file
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("MY_FT_KEY", raising=False)
    fake = FakeOpenAI()
    with pytest.raises(InvalidParameter, match="OPENAI_API_KEY"):
        start_job("gpt-3.5-turbo", path, http_client=fake.client(), record_dir=tmp_path, **FAST)
    with pytest.raises(InvalidParameter, match="MY_FT_KEY"):
        start_job("gpt-3.5-turbo", path, api_key_env="MY_FT_KEY", http_client=fake.client(), record_dir=tmp_path)
    with pytest.raises(InvalidParameter, match="OPENAI_API_KEY"):
        resume_job("ftjob-0001", http_client=fake.client(), record_dir=tmp_path)
    with pytest.raises(InvalidParameter, match="NAME of an environment variable"):
        start_job("gpt-3.5-turbo", path, api_key_env=SECRET, http_client=fake.client(), record_dir=tmp_path)
    assert fake.requests == []
    assert not list(tmp_path.rglob("finetune.json"))


def test_the_key_never_reaches_records_reprs_logs_or_errors(training_file, key, tmp_path, caplog):
    path, _ = training_file
    caplog.set_level(logging.DEBUG)
    result = start_job("gpt-3.5-turbo", path, http_client=FakeOpenAI().client(), record_dir=tmp_path, **FAST)
    record_text = (tmp_path / result.job_id / "finetune.json").read_text()
    assert SECRET not in record_text and '"api_key_env": "OPENAI_API_KEY"' in record_text
    assert SECRET not in repr(result) and SECRET not in json.dumps(result.to_dict(), default=str)

    # an API error that echoes the key (as a 401 does) is scrubbed before it is raised
    echo = FakeOpenAI(
        upload_status=401,
        upload_body={
            "error": {
                "message": f"Incorrect API key provided: {SECRET}.",
                "type": "invalid_request_error",
                "code": "invalid_api_key",
            }
        },
    )
    with pytest.raises(RuntimeError) as raised:
        start_job("gpt-3.5-turbo", path, http_client=echo.client(), record_dir=tmp_path / "other", **FAST)
    assert "uploading the training file failed" in str(raised.value) and "401" in str(raised.value)
    assert SECRET not in str(raised.value) and raised.value.__cause__ is None

    # a failed job's message too
    failing = FakeOpenAI(
        statuses=("running", "failed"),
        error={
            "code": "invalid_training_file",
            "param": "training_file",
            "message": f"Training file rejected for key {SECRET}",
        },
    )
    with pytest.raises(FineTuneError) as failed:
        start_job("gpt-3.5-turbo", path, http_client=failing.client(), record_dir=tmp_path / "failed", **FAST)
    assert SECRET not in str(failed.value)
    assert SECRET not in "".join(r.getMessage() for r in caplog.records)
    for saved in tmp_path.rglob("*.json"):
        assert SECRET not in saved.read_text()


# -- failures, interruptions, duplicates ------------------------------------------------------------------------
def test_failed_job_raises_with_the_jobs_error_message(training_file, key, tmp_path):
    path, _ = training_file
    fake = FakeOpenAI(
        statuses=("queued", "running", "failed"),
        error={
            "code": "invalid_training_file",
            "param": "training_file",
            "message": "The job failed due to an invalid training file.",
        },
    )
    with pytest.raises(
        FineTuneError,
        match="ftjob-0001 failed: invalid_training_file: The job failed due to an "
        r"invalid training file\. \(param training_file\)",
    ) as raised:
        start_job("gpt-3.5-turbo", path, http_client=fake.client(), record_dir=tmp_path, **FAST)
    assert raised.value.result.status == "failed" and raised.value.result.fine_tuned_model is None
    record = load_job_record("ftjob-0001", tmp_path)
    assert record["status"] == "failed" and record["error"]["code"] == "invalid_training_file"
    assert len(fake.calls("GET", r"/fine_tuning/jobs/ftjob-0001")) == 3


def test_interrupted_poll_resumes_without_a_new_upload_or_job(training_file, key, tmp_path):
    path, _ = training_file
    fake = FakeOpenAI(statuses=("queued", "running", "running", "succeeded"))
    with pytest.raises(FineTuneTimeout, match=r"resume_job\('ftjob-0001'") as raised:
        start_job("gpt-3.5-turbo", path, http_client=fake.client(), record_dir=tmp_path, max_wait=0.0, **FAST)
    assert raised.value.job_id == "ftjob-0001"
    assert load_job_record("ftjob-0001", tmp_path)["status"] == "queued"
    posts = len(fake.calls("POST"))
    assert posts == 2  # one upload, one job

    # starting again with the same file would pay twice: refused, with no request sent
    before = len(fake.requests)
    with pytest.raises(InvalidParameter, match=r"resume_job\('ftjob-0001'\)"):
        start_job("gpt-3.5-turbo", path, http_client=fake.client(), record_dir=tmp_path, **FAST)
    assert len(fake.requests) == before

    result = resume_job("ftjob-0001", record_dir=tmp_path, http_client=fake.client(), **FAST)
    assert result.status == "succeeded" and result.fine_tuned_model
    assert len(fake.calls("POST")) == posts and len(fake.jobs) == 1 and len(fake.files) == 1
    assert result.polls == 4 and result.n_epochs == 1 and result.training_file == "file-1"


def test_ambiguous_create_failure_adopts_the_job_instead_of_paying_twice(training_file, key, tmp_path):
    path, _ = training_file
    fake = FakeOpenAI(ambiguous_creates=1)
    result = start_job("gpt-3.5-turbo", path, http_client=fake.client(), record_dir=tmp_path, **FAST)
    assert result.status == "succeeded"
    assert len(fake.jobs) == 1 and len(fake.calls("POST", "/fine_tuning/jobs")) == 1
    assert len(fake.calls("GET", "/fine_tuning/jobs")) == 1  # the list that found the job


@pytest.mark.parametrize(
    "model, options, match",
    [
        ("smollm2-135m", {}, "needs an OpenAI model"),
        ("gpt-3.5-turbo", {"n_epochs": 0}, "n_epochs"),
        ("gpt-3.5-turbo", {"suffix": "has space"}, "suffix"),
        ("gpt-3.5-turbo", {"base_url": "https://user:pw@api.openai.com/v1"}, "credentials"),
    ],
)
def test_bad_parameters_are_refused_before_any_request(training_file, key, tmp_path, model, options, match):
    path, _ = training_file
    fake = FakeOpenAI()
    with pytest.raises(InvalidParameter, match=match):
        start_job(model, path, http_client=fake.client(), record_dir=tmp_path, **{**FAST, **options})
    assert fake.requests == []


def test_training_files_are_checked_offline(key, tmp_path):
    fake = FakeOpenAI()
    line = json.dumps({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]})
    short = tmp_path / "short.jsonl"
    short.write_text("\n".join([line] * 9) + "\n")
    with pytest.raises(InvalidParameter, match="at least 10"):
        start_job("gpt-3.5-turbo", short, http_client=fake.client(), record_dir=tmp_path)
    bad = tmp_path / "bad.jsonl"
    bad.write_text("\n".join([line] * 10 + [json.dumps({"messages": [{"role": "user", "content": "q"}]})]) + "\n")
    with pytest.raises(InvalidParameter, match="line 11 does not end with an assistant turn"):
        start_job("gpt-3.5-turbo", bad, http_client=fake.client(), record_dir=tmp_path)
    with pytest.raises(InvalidParameter, match="does not exist"):
        start_job("gpt-3.5-turbo", tmp_path / "missing.jsonl", http_client=fake.client(), record_dir=tmp_path)
    assert fake.requests == []


def test_the_job_record_is_a_fine_tuning_record_for_the_cost_table(training_file, key, tmp_path):
    from labscale import records
    from labscale.cost import cost_table

    path, _ = training_file
    result = start_job(
        "gpt-3.5-turbo",
        path,
        http_client=FakeOpenAI().client(),
        record_dir=tmp_path / "jobs",
        task="fact_checking",
        **FAST,
    )
    info = {
        "spec": result.model_string,
        "backend": "openai",
        "model": result.fine_tuned_model,
        "base_url": "https://api.openai.com/v1",
    }
    records.write_run(
        tmp_path / "runs" / "ft" / "fact_checking" / "0shot",
        params={"model": result.model_string, "task": "fact_checking", "source": "offline", "shots": 0},
        predictions=[{"id": "1", "reply": "SUPPORTS", "prompt_tokens": 400, "completion_tokens": 2}],
        metrics={"accuracy": {"value": 1.0}},
        manifest={"model": info, "items": 1, "wall_seconds": 36.0, "hardware": {"cuda": False}},
    )
    table = cost_table(tmp_path / "runs", finetune_records=[tmp_path / "jobs"])
    rows = table.set_index("regime")
    assert list(table["model"].unique()) == ["gpt-3.5-turbo"]
    assert rows.loc["fine-tuned", "usd"] == pytest.approx(400 / 1000 * 0.003 + 2 / 1000 * 0.006)
    assert rows.loc["fine-tuning", "training_tokens"] == result.trained_tokens
    assert rows.loc["fine-tuning", "usd"] == pytest.approx(
        result.trained_tokens / 1000 * 0.008 + rows.loc["fine-tuned", "usd"]
    )
    assert rows.loc["fine-tuning", "hours"] == pytest.approx((5544 + 36) / 3600)
