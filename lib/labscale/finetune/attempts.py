"""The attempts of one fine-tune: what a preempted (or crashed) run cost before it resumed.

A spot instance can vanish between two checkpoints; the next attempt resumes from the newest complete checkpoint
and the work done after it is paid for twice. ``attempts.json`` beside the checkpoints keeps, for every attempt of
the same request, when it started, the step it started from, the last step it finished (written at every optimizer
step) and when each of its checkpoints was saved. From that, :func:`summarize` counts

* ``seconds``: every attempt's time from its start to its last finished step (what a GPU bill counts, without
  the minutes a replacement instance takes to boot, which no record here sees);
* ``lost_seconds`` and ``lost_steps``: per interrupted attempt, the time and steps after the checkpoint the next
  attempt resumed from (all of the attempt when it saved no such checkpoint).

The adapter card carries the summary (``attempts``); the cost chapter bills the final attempt's wall time plus the
earlier attempts' ``earlier_seconds``, and shows the hours lost.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from ..records import write_json

ATTEMPTS_FILE = "attempts.json"


class AttemptLog:
    """The attempts of the fine-tune in ``output_dir`` for the request ``fingerprint``; :meth:`begin` adds this one."""

    def __init__(self, output_dir: str | Path, fingerprint: str, *, keep: bool = True):
        self.path = Path(output_dir) / ATTEMPTS_FILE
        self.fingerprint = fingerprint
        self.attempts: list[dict[str, Any]] = []
        if keep and self.path.is_file():  # keep=False: a run started over (resume=False) forgets the earlier ones
            saved = json.loads(self.path.read_text())
            if saved.get("fingerprint") == fingerprint:  # another request's attempts are not this one's cost
                self.attempts = saved.get("attempts", [])

    def begin(self, from_step: int) -> None:
        """Start an attempt that resumes from ``from_step`` (0: from scratch)."""
        now = time.time()
        self.attempts.append(
            {"from_step": from_step, "started": now, "last_step": from_step, "last_time": now, "checkpoints": {}}
        )
        self._write()

    def step(self, step: int) -> None:
        self.attempts[-1].update(last_step=step, last_time=time.time())
        self._write()

    def checkpoint(self, step: int) -> None:
        self.attempts[-1]["checkpoints"][str(step)] = time.time()
        self._write()

    def finish(self) -> dict[str, Any]:
        """Mark this attempt finished; the summary of all of them (:func:`summarize`)."""
        self.attempts[-1]["finished"] = True
        self._write()
        return summarize(self.attempts)

    def callback(self):
        """A :class:`transformers.TrainerCallback` recording this attempt's steps and checkpoints."""
        from transformers import TrainerCallback

        log = self

        class RecordAttempt(TrainerCallback):
            def on_step_end(self, args, state, control, **kwargs):
                log.step(state.global_step)

            def on_save(self, args, state, control, **kwargs):
                log.checkpoint(state.global_step)

        return RecordAttempt()

    def _write(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_json(self.path, {"fingerprint": self.fingerprint, "attempts": self.attempts})


def summarize(attempts: list[dict[str, Any]]) -> dict[str, Any]:
    """Attempts, interruptions, billed and lost seconds and lost steps of a fine-tune (see the module docstring)."""
    lost_seconds = 0.0
    lost_steps = 0
    for attempt, following in zip(attempts, attempts[1:], strict=False):
        resumed = following["from_step"]
        saved_at = attempt["checkpoints"].get(str(resumed))
        since = saved_at if saved_at is not None else attempt["started"]
        lost_seconds += max(0.0, attempt["last_time"] - since)
        lost_steps += max(0, attempt["last_step"] - max(resumed, attempt["from_step"]))
    earlier = sum(a["last_time"] - a["started"] for a in attempts[:-1])
    return {
        "count": len(attempts),
        "interrupted": sum(not a.get("finished") for a in attempts[:-1]),
        "seconds": round(earlier + attempts[-1]["last_time"] - attempts[-1]["started"], 3),
        "earlier_seconds": round(earlier, 3),
        "lost_seconds": round(lost_seconds, 3),
        "lost_steps": lost_steps,
        "resumed_from": [a["from_step"] for a in attempts[1:]],
    }
