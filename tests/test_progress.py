"""Progress you can see, and none on the pages: with the book build's side channel set, every labscale progress bar
(runs of a plan, items and cache hits of a generation call, fine-tuning steps) writes to the side-channel file and
nothing to the process's stderr; the relay copies that file to the build's terminal; an executed chapter holds no
progress text."""

from __future__ import annotations

import io
import os
import re

import nbformat
import pytest

from labscale import progress
from labscale.cache import ResponseCache
from labscale.runner import plan_experiment, run_experiment

BAR_TEXT = re.compile(r"%\||it/s|item/s|run/s|step/s|s/it|hits=")


def test_generate_bars_go_to_the_side_channel_only(embedded_model_dir, tmp_path, monkeypatch, capsys):
    channel = tmp_path / "progress.log"
    monkeypatch.setenv(progress.ENV, str(channel))
    cache = ResponseCache(tmp_path / "responses.sqlite")
    options = {"output_dir": tmp_path / "runs", "cache": cache, "max_new_tokens": {"fact_checking": 4}}
    plan = plan_experiment(["smollm2-135m"], ["fact_checking"], [0], limit=2, **options)
    run_experiment(plan)
    first = channel.read_text(encoding="utf-8")
    # the per-call bar: items done of the call's total, the cache hits, and the runs bar with the current run
    assert re.search(r"fact_checking 0-shot: 100%\|[^\r\n]*\| 2/2 \[[^\]]*hits=0\]", first), first
    assert re.search(r"domain_adaptation: 100%\|[^\r\n]*\| 1/1 \[[^\]]*fact_checking 0-shot\]", first)
    err = capsys.readouterr().err
    # (transformers' own weight-loading bar may show here; the book build turns it off, see test_relay_...)
    assert not re.search(r"hits=|domain_adaptation|item/s|run/s", err), err

    run_experiment(plan, reuse=False)  # rebuilt from the response cache: both items are hits
    second = channel.read_text(encoding="utf-8")[len(first) :]
    assert re.search(r"fact_checking 0-shot: 100%\|[^\r\n]*\| 2/2 \[[^\]]*hits=2\]", second), second
    assert "hits=" not in capsys.readouterr().err
    cache.close()


def test_bars_show_where_they_run_without_the_side_channel(monkeypatch, capsys):
    monkeypatch.delenv(progress.ENV, raising=False)
    with progress.bar(total=3, desc="plain") as bar:
        bar.update(3)
    assert "plain: 100%" in capsys.readouterr().err
    with progress.bar(total=3, desc="hidden", disable=True) as bar:
        bar.update(3)
    assert capsys.readouterr().err == ""


def _write(path, text):
    with open(path, "ab") as handle:
        handle.write(text)


def test_tail_copies_the_file_as_written_to_a_live_stream(tmp_path):
    path = tmp_path / "progress.log"
    path.touch()
    written = "\rrun:   0%|          | 0/2\rrun:  50%|█████     | 1/2\rrun: 100%|██████████| 2/2\n".encode()
    out = io.StringIO()
    tail = progress.Tail(path, out, live=True, poll=0.01).start()
    # a multi-byte bar character split across two writes is decoded whole
    cut = written.index("█".encode()) + 1
    _write(path, written[:cut])
    _write(path, written[cut:])
    tail.stop()
    assert out.getvalue() == written.decode()
    # a bar left cleared ends at the start of the line, one left showing ends its line
    out = io.StringIO()
    with progress.Tail(path, out, live=True, poll=0.01):
        _write(path, b"\rcall: 50%|##  | 1/2" + b"\r" + b" " * 20)
    assert out.getvalue().endswith(" " * 20 + "\r")
    out = io.StringIO()
    with progress.Tail(path, out, live=True, poll=0.01):
        _write(path, b"\rcall: 50%|##  | 1/2")
    assert out.getvalue().endswith("1/2\n")


def test_tail_writes_lines_to_a_log(tmp_path):
    path = tmp_path / "progress.log"
    path.touch()
    out = io.StringIO()
    with progress.Tail(path, out, live=False, interval=3600, poll=0.01):
        for n in range(5):
            _write(path, f"\rplan: {n * 25:3d}%|{'#' * n}| {n}/4 [00:0{n}<00:00]\x1b[A".encode())
        _write(path, b"\n\rcall: 50%|##  | 1/2 [hits=1]")
    lines = out.getvalue().splitlines()
    # the bar's finish at once (and only once), the other bar's latest state when the tail stops; no escapes
    assert lines == ["plan: 100%|####| 4/4 [00:04<00:00]", "call: 50%|##  | 1/2 [hits=1]"]


def test_relay_sets_and_restores_the_environment(monkeypatch, tmp_path):
    monkeypatch.delenv(progress.ENV, raising=False)
    monkeypatch.delenv("HF_HUB_DISABLE_PROGRESS_BARS", raising=False)
    out = io.StringIO()
    with progress.relay(out, live=False, interval=0) as path:
        assert os.environ[progress.ENV] == str(path) and path.is_file()
        assert os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] == "1"
        with progress.bar(total=2, desc="relayed") as bar:
            bar.update(2)
    assert progress.ENV not in os.environ and "HF_HUB_DISABLE_PROGRESS_BARS" not in os.environ
    assert not path.exists()
    assert "relayed: 100%|" in out.getvalue() and "2/2" in out.getvalue()


def test_fine_tune_steps_show_in_the_side_channel(tmp_path, monkeypatch):
    from transformers import TrainerControl, TrainerState

    from labscale.finetune.training import step_progress

    channel = tmp_path / "progress.log"
    monkeypatch.setenv(progress.ENV, str(channel))
    callback, control = step_progress("fine-tune fact_checking"), TrainerControl()
    state = TrainerState(max_steps=4, global_step=1)  # resumed from a checkpoint at step 1
    callback.on_train_begin(None, state, control)
    for step in (2, 3, 4):
        state.global_step = step
        callback.on_step_end(None, state, control)
        callback.on_log(None, state, control, logs={"loss": 2.0 / step, "learning_rate": 1e-4})
    callback.on_train_end(None, state, control)
    text = channel.read_text(encoding="utf-8")
    assert "fine-tune fact_checking:  25%|" in text and "1/4" in text
    assert re.search(r"fine-tune fact_checking: 100%\|[^\r\n]*\| 4/4 \[[^\]]*step[^\]]*loss=0\.5000\]", text), text


@pytest.mark.slow
def test_an_executed_chapter_holds_no_progress_text(embedded_model_dir, tmp_path, monkeypatch):
    from labscale.book import execute_chapter

    monkeypatch.setenv("LABSCALE_CACHE", str(tmp_path / "responses.sqlite"))
    out = io.StringIO()
    with progress.relay(out, live=False, interval=0):
        executed = execute_chapter(
            "domain_adaptation",
            output=tmp_path / "domain_adaptation.ipynb",
            parameters={
                "tasks": ["fact_checking"],
                "shots": [0],
                "limit": 2,
                "finetune_tasks": [],
                "curve_task": None,
                "n_resamples": 200,
                "max_new_tokens": {"fact_checking": 4},
                "output_dir": str(tmp_path / "runs"),
                "adapter_root": str(tmp_path / "adapters"),
            },
        )
    relayed = out.getvalue()
    # the kernel inherited the side channel: its bars reached the relay's stream
    assert re.search(r"fact_checking 0-shot: 100%\|[^\n]*2/2 [^\n]*hits=0", relayed), relayed
    assert re.search(r"domain_adaptation: 100%\|[^\n]*1/1", relayed), relayed
    nb = nbformat.read(executed, as_version=4)
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert [o for o in outputs if o.output_type == "error"] == []
    streams = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert not BAR_TEXT.search(streams), [m.group(0) for m in BAR_TEXT.finditer(streams)]
    assert "Loading weights" not in streams
    assert not any("application/vnd.jupyter.widget-view+json" in o.get("data", {}) for o in outputs)
    assert not any("<progress" in o.get("data", {}).get("text/html", "") for o in outputs)


@pytest.mark.slow
def test_a_relayed_fine_tune_shows_its_steps_only_in_the_side_channel(embedded_model_dir, tmp_path, monkeypatch, capfd):
    from labscale.finetune import FinetuneConfig, finetune

    channel = tmp_path / "progress.log"
    monkeypatch.setenv(progress.ENV, str(channel))
    # 8 examples at batch 2 -> 4 optimizer steps, LoRA on the top layer; a loss logged every step
    tiny = dict(train_fraction=8 / 700, per_device_batch_size=2, grad_accumulation=1, max_length=192, top_layers=1)
    config = FinetuneConfig.preset("cpu", r=4, alpha=8, warmup_steps=0, logging_steps=1, **tiny)
    result = finetune("smollm2-135m", "entity_resolution", config=config, output_dir=tmp_path / "er", progress=True)
    assert result.optimizer_steps == 4
    text = channel.read_text(encoding="utf-8")
    done = r"fine-tune entity_resolution: 100%\|[^\r\n]*\| 4/4 \[[^\]]*(?:step/s|s/step)[^\]]*loss=\d"
    assert re.search(done, text), text
    out, err = capfd.readouterr()
    # neither the Trainer's bar nor its per-step log dicts reach the process's own output (a notebook's, in a kernel)
    assert "'loss'" not in out and "fine-tune" not in out + err
    assert all("Loading weights" in part for part in re.split(r"[\r\n]", err) if "%|" in part), err
