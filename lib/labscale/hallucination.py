"""The hallucination chapter's plans: QASPER with and without the documents, SQuAD 2.0 and TruthfulQA.

:func:`plan_hallucination` validates every parameter and loads every dataset (the three runner plans and the
TruthfulQA questions) before any model loads; :meth:`HallucinationPlan.run` runs the three grids.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from .runner import ExperimentPlan, plan_experiment, run_experiment
from .truthfulqa import Release, load_requested


@dataclass
class HallucinationPlan:
    """QASPER with the documents (the study's Table 6), without them (Table 7), SQuAD 2.0 and TruthfulQA."""

    with_documents: ExperimentPlan
    without_documents: ExperimentPlan
    squad: ExperimentPlan
    #: the TruthfulQA release as loaded (None: switched off with ``truthfulqa_source=None``)
    truthfulqa: Release | None

    @property
    def plans(self) -> tuple[ExperimentPlan, ExperimentPlan, ExperimentPlan]:
        return self.with_documents, self.without_documents, self.squad

    def summary(self) -> pd.DataFrame:
        """The three plans' data, one row per plan (see :meth:`~labscale.runner.ExperimentPlan.summary`)."""
        return pd.concat([p.summary().assign(plan=p.name) for p in self.plans], ignore_index=True)

    def add_adapters(self, adapters: Mapping[str, str | Path]) -> HallucinationPlan:
        """Evaluate a QASPER adapter zero-shot with and without the documents (the study's fine-tuned rows)."""
        for plan in (self.with_documents, self.without_documents):
            plan.add_adapters(adapters)
        return self

    def run(self, *, progress: bool = False) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
        """The metrics tables of the three grids: with documents, without them, SQuAD 2.0."""
        with_docs, without_docs, squad = (run_experiment(p, progress=progress) for p in self.plans)
        return with_docs, without_docs, squad


def plan_hallucination(
    models: Sequence[str] | str = ("smollm2-135m",),
    shots: Sequence[int] | int = (0, 1),
    *,
    limit: int | None = 24,
    source: str = "offline",
    data_path: str | None = None,
    context_chars: int = 3000,
    squad_source: str = "offline",
    squad_limit: int | None = 24,
    squad_shots: Sequence[int] | int = (0,),
    truthfulqa_source: str | None = "local",
    seed: int = 0,
    max_new_tokens: Mapping[str, int] | None = None,
    n_resamples: int = 1000,
    output_dir: str | Path = "runs/hallucination",
) -> HallucinationPlan:
    """Plan the chapter. The no-context runs go to ``<output_dir>_no_context`` (runs are keyed by model, task and
    shots, and QASPER appears twice); TruthfulQA is loaded from ``data_path`` or the data registry, or the hub,
    and is None only when ``truthfulqa_source`` is None."""
    common: dict[str, Any] = dict(
        seed=seed, max_new_tokens=max_new_tokens, n_resamples=n_resamples, data_path=data_path
    )
    with_documents = plan_experiment(
        models,
        ["qasper"],
        shots,
        limit=limit,
        source=source,
        output_dir=output_dir,
        task_options={"qasper": {"context": True, "context_chars": context_chars}},
        name="hallucination",
        **common,
    )
    without_documents = plan_experiment(
        models,
        ["qasper"],
        [0],
        limit=limit,
        source=source,
        output_dir=f"{output_dir}_no_context",
        task_options={"qasper": {"context": False}},
        name="hallucination_no_context",
        **common,
    )
    squad = plan_experiment(
        models,
        ["squad_v2"],
        squad_shots,
        limit=squad_limit,
        source=squad_source,
        output_dir=output_dir,
        name="hallucination_squad",
        **common,
    )
    truthfulqa = load_requested(truthfulqa_source, data_path=data_path)
    return HallucinationPlan(with_documents, without_documents, squad, truthfulqa)
