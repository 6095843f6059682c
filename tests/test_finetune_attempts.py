"""What an interrupted fine-tune cost: the attempts log and its summary (times are given, not measured)."""

from __future__ import annotations

import json

from labscale.finetune.attempts import ATTEMPTS_FILE, AttemptLog, summarize


def attempt(from_step, started, last_step, last_time, checkpoints=None, finished=False):
    return {
        "from_step": from_step,
        "started": started,
        "last_step": last_step,
        "last_time": last_time,
        "checkpoints": {str(k): v for k, v in (checkpoints or {}).items()},
        **({"finished": True} if finished else {}),
    }


def test_a_preempted_attempt_loses_the_work_after_the_checkpoint_resumed_from():
    first = attempt(0, 1000.0, 130, 2300.0, {50: 1500.0, 100: 2000.0})  # preempted after step 130
    second = attempt(100, 2600.0, 200, 3600.0, {150: 3100.0, 200: 3600.0}, finished=True)
    summary = summarize([first, second])
    assert summary == {
        "count": 2,
        "interrupted": 1,
        "seconds": 1300.0 + 1000.0,  # both attempts are billed
        "earlier_seconds": 1300.0,
        "lost_seconds": 300.0,  # steps 101-130 ran twice: from the checkpoint at 2000 s to the preemption at 2300 s
        "lost_steps": 30,
        "resumed_from": [100],
    }


def test_an_attempt_without_a_checkpoint_of_its_own_loses_all_its_time():
    first = attempt(0, 0.0, 60, 600.0, {50: 500.0})
    second = attempt(50, 700.0, 70, 900.0)  # preempted before saving anything
    third = attempt(50, 1000.0, 100, 1500.0, {100: 1500.0}, finished=True)
    summary = summarize([first, second, third])
    assert summary["lost_seconds"] == 100.0 + 200.0 and summary["lost_steps"] == 10 + 20
    assert summary["interrupted"] == 2 and summary["resumed_from"] == [50, 50]


def test_the_log_keeps_one_requests_attempts(tmp_path):
    log = AttemptLog(tmp_path, "fp-a")
    log.begin(0)
    log.step(1)
    log.checkpoint(1)
    log.step(2)  # ... and the process dies here
    resumed = AttemptLog(tmp_path, "fp-a")
    resumed.begin(1)
    resumed.step(3)
    summary = resumed.finish()
    assert summary["count"] == 2 and summary["lost_steps"] == 1 and summary["resumed_from"] == [1]
    saved = json.loads((tmp_path / ATTEMPTS_FILE).read_text())
    assert saved["fingerprint"] == "fp-a" and saved["attempts"][-1]["finished"] is True
    assert AttemptLog(tmp_path, "fp-b").attempts == []  # another request's attempts are not its cost
    assert AttemptLog(tmp_path, "fp-a", keep=False).attempts == []  # a run started over forgets them
