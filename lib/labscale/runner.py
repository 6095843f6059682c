"""Plan and run an experiment grid (models x tasks x shots) into run records.

:func:`plan_experiment` validates every parameter, loads every task's data and constructs every backend
(weights load lazily; API keys are checked) -- so bad input fails here, before any model loads or any API
call is paid for. :func:`run_experiment` then generates (through the response cache), parses, scores and
writes one run record per (model, task, shots).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from . import progress as progress_bars
from . import records
from .backends import Backend, Decoding, ModelSpec, load_backend, parse_model_spec
from .cache import ResponseCache
from .core import SPLITS, Scenario, sample_examples
from .errors import InvalidParameter, check_choice, check_range, invalid_choice
from .prompts import SHOT_STYLES
from .protocol import Produced, RunSpec, execute
from .tasks import ALL_TASK_NAMES, INVALID, SOURCES, TASK_NAMES, Example, Task, TaskData, get_task

if TYPE_CHECKING:
    from .prompt_sensitivity import PromptFormat


@dataclass
class TaskPlan:
    """One task's data, the evaluation items drawn from it and its load settings."""

    task: Task
    source: str
    data: TaskData
    items: list[Example]
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class ExperimentPlan:
    """A validated experiment: what will run, on which data, written where."""

    name: str
    models: list[ModelSpec]
    backends: dict[str, Backend]
    tasks: list[TaskPlan]
    shots: list[int]
    limit: int | None
    seed: int
    data_seed: int
    split: str
    output_dir: Path
    n_resamples: int
    max_new_tokens: dict[str, int]
    shot_style: str | None
    data_path: str | None
    #: task -> LoRA adapter folder: each HF model is also evaluated zero-shot with that adapter ("fine-tuned")
    adapters: dict[str, str] = field(default_factory=dict)
    #: (model label, task) -> backend with the task's adapter loaded
    tuned_backends: dict[tuple[str, str], Backend] = field(default_factory=dict)
    cache: ResponseCache | None = None
    #: the prompt format (:class:`~labscale.prompt_sensitivity.PromptFormat`); None: the study's
    prompt_format: PromptFormat | None = None

    def run_model(self, spec: ModelSpec) -> ModelSpec:
        """The model string a run of ``spec`` uses: ``spec``, with ``chat_template=none`` under a format whose chat
        template is off."""
        return _format_model(spec, self.prompt_format)

    def task_plan(self, name: str) -> TaskPlan:
        """The planned task called ``name`` (its data, items and options)."""
        for tp in self.tasks:
            if tp.task.name == name:
                return tp
        raise invalid_choice("planned task", name, [tp.task.name for tp in self.tasks])

    def add_adapters(self, adapters: Mapping[str, Any]) -> ExperimentPlan:
        """Also evaluate every Hugging Face model on each task zero-shot with that task's LoRA adapter (the
        "fine-tuned" scenario). Each adapter is checked (complete, trained on this base model) before any run."""
        task_names = [tp.task.name for tp in self.tasks]
        adapter_map = {t: str(a) for t, a in adapters.items()}
        for t in adapter_map:
            check_choice("task in adapters (it must also be in tasks)", t, task_names)
        from .finetune import check_adapter

        for spec in self.models:
            for t, adapter in adapter_map.items():
                tuned = self.run_model(spec).with_adapter(adapter)  # refuses an API model, naming it
                check_adapter(adapter, spec.text)
                self.tuned_backends[(spec.label, t)] = load_backend(tuned, cache=self.cache)
        self.adapters.update(adapter_map)
        return self

    def summary(self) -> pd.DataFrame:
        """The planned runs' data: task, source, origin, synthetic, items, hash, malformed rows (+ example)."""
        rows = []
        for tp in self.tasks:
            prov = tp.data.provenance()
            rows.append(
                {
                    "task": tp.task.name,
                    "source": tp.source,
                    "origin": prov["origin"],
                    "synthetic": prov["synthetic"],
                    "split": self.split,
                    "items": len(tp.items),
                    "split size": prov["sizes"].get(self.split),
                    "malformed rows": prov["malformed"]["count"],
                    "malformed example": prov["malformed"]["example"] or "",
                    "content sha256": prov["content_sha256"][:12],
                }
            )
        return pd.DataFrame(rows)

    @property
    def n_runs(self) -> int:
        return len(self.models) * len(self.tasks) * len(self.shots) + len(self.tuned_backends)


def _as_list(value: Any, what: str) -> list:
    if isinstance(value, (str, int)):
        return [value]
    if not isinstance(value, Iterable) or isinstance(value, Mapping):
        raise InvalidParameter(f"{what} must be a list, got {value!r}")
    items = list(value)
    if not items:
        raise InvalidParameter(f"{what} must not be empty")
    return items


def _format_model(spec: ModelSpec, prompt_format: PromptFormat | None) -> ModelSpec:
    return spec if prompt_format is None else prompt_format.model_spec(spec)


def _checked_format(
    prompt_format: PromptFormat | Mapping[str, str] | None, task_names: Sequence[str], model_specs: Sequence[ModelSpec]
) -> PromptFormat | None:
    """The plan's prompt format, checked against its tasks and models; None for the study's format."""
    if prompt_format is None:
        return None
    from .prompt_sensitivity import check_prompt_format

    return check_prompt_format(prompt_format, task_names, model_specs)


def plan_experiment(
    models: Sequence[str] | str = ("smollm2-135m",),
    tasks: Sequence[str] | str = TASK_NAMES,
    shots: Sequence[int] | int = (0, 1, 2, 3),
    *,
    limit: int | None = None,
    source: str | Mapping[str, str] = "offline",
    data_path: str | None = None,
    task_options: Mapping[str, Mapping[str, Any]] | None = None,
    seed: int = 0,
    data_seed: int = 0,
    split: str = "test",
    output_dir: str | Path = "runs/domain_adaptation",
    name: str = "domain_adaptation",
    n_resamples: int = 1000,
    max_new_tokens: Mapping[str, int] | None = None,
    shot_style: str | None = None,
    adapters: Mapping[str, str] | None = None,
    cache: ResponseCache | None = None,
    prompt_format: PromptFormat | Mapping[str, str] | None = None,
) -> ExperimentPlan:
    """Validate parameters, load data and construct backends. Raises :class:`InvalidParameter` on bad input.

    ``seed`` draws the evaluation sample (``limit`` items) and seeds decoding; ``data_seed`` fixes the offline
    generators and deterministic splits, so runs with different seeds evaluate samples of the same data.
    ``adapters`` maps a task to a LoRA adapter folder: every Hugging Face model is then also evaluated on that
    task zero-shot with the adapter loaded (the study's "fine-tuned" scenario; see
    :meth:`ExperimentPlan.add_adapters` to add them after planning). With adapters, ``shots=[]`` runs only those.
    ``prompt_format`` (a :class:`~labscale.prompt_sensitivity.PromptFormat` or its factor mapping) varies the prompt's
    surface; None or the study's format leaves messages, settings and run keys exactly as without it.
    """
    model_specs = [parse_model_spec(m) for m in _as_list(models, "models")]
    labels = [spec.label for spec in model_specs]
    twice = sorted({label for label in labels if labels.count(label) > 1})
    if twice:  # client-side options (timeout, batch_size...) do not make another model
        raise InvalidParameter(
            f"models name the same model more than once: {twice} (they differ at most in "
            "client-side options, which cannot change an output); list each model once"
        )
    task_names = _as_list(tasks, "tasks")
    for t in task_names:
        check_choice("task", t, ALL_TASK_NAMES)
    # shots=[] evaluates the adapters alone (e.g. the points of a learning curve)
    shot_list = [] if adapters and isinstance(shots, (list, tuple)) and not shots else _as_list(shots, "shots")
    for k in shot_list:
        check_range("shots", k, 0, 3, integer=True)
    if limit is not None:
        check_range("limit", limit, 1, None, integer=True)
    check_range("seed", seed, 0, 2**32 - 1, integer=True)
    check_range("data_seed", data_seed, 0, 2**32 - 1, integer=True)
    check_range("n_resamples", n_resamples, 100, 100_000, integer=True)
    check_choice("split", split, SPLITS)
    if shot_style is not None:
        check_choice("shot_style", shot_style, SHOT_STYLES)
    prompt_format = _checked_format(prompt_format, task_names, model_specs)
    sources = dict(source) if isinstance(source, Mapping) else {t: source for t in task_names}
    for t, s in sources.items():
        check_choice("task in source mapping", t, ALL_TASK_NAMES)
        check_choice(f"data source for task {t!r}", s, SOURCES)
    missing = [t for t in task_names if t not in sources]
    if missing:
        raise InvalidParameter(f"source mapping names no source for tasks {missing}; valid sources: {SOURCES}")
    options = {t: dict(o) for t, o in (task_options or {}).items()}
    for t in options:
        check_choice("task in task_options", t, ALL_TASK_NAMES)
    budgets = dict(max_new_tokens or {})
    for t, n in budgets.items():
        check_choice("task in max_new_tokens", t, ALL_TASK_NAMES)
        check_range(f"max_new_tokens[{t!r}]", n, 1, 4096, integer=True)

    # Data before models: a bad path or a malformed file fails here, before anything loads.
    task_plans = []
    for t in task_names:
        task = get_task(t)
        # data_seed fixes generated/split data across runs; seed draws the evaluation sample and seeds decoding
        data = task.load(sources[t], path=data_path, seed=data_seed, **options.get(t, {}))
        items = sample_examples(data.split(split), limit, seed)
        if not items:
            raise InvalidParameter(f"task {t!r} has no {split!r} items from source {sources[t]!r}")
        for k in shot_list:  # fixed shots come from the data: a split too small for them fails here
            task.shots(data, k)
        task_plans.append(TaskPlan(task, sources[t], data, items, options.get(t, {})))

    cache = cache if cache is not None else ResponseCache()
    backends = {spec.label: load_backend(_format_model(spec, prompt_format), cache=cache) for spec in model_specs}
    out = Path(output_dir)
    if not out.is_absolute():
        out = Path.cwd() / out
    plan = ExperimentPlan(
        name,
        model_specs,
        backends,
        task_plans,
        shot_list,
        limit,
        seed,
        data_seed,
        split,
        out,
        n_resamples,
        budgets,
        shot_style,
        data_path,
        cache=cache,
        prompt_format=prompt_format,
    )
    return plan.add_adapters(adapters or {})


def run_spec(plan: ExperimentPlan, spec: ModelSpec, tp: TaskPlan, k: int, *, tuned: bool = False) -> RunSpec:
    """The specification of one run of ``plan``: (model, task, k shots), or the task's adapter when ``tuned``."""
    task = tp.task
    model = plan.run_model(spec)
    settings = {"shot_style": plan.shot_style or task.shot_style}
    if plan.prompt_format is not None:  # the study's format adds nothing: its run keys stay those of plain runs
        settings["prompt_format"] = plan.prompt_format.as_dict()
    return RunSpec(
        experiment=plan.name,
        model=model.with_adapter(plan.adapters[task.name]) if tuned else model,
        label=spec.label,
        task=task.name,
        source=tp.source,
        scenario=Scenario.of(k, tuned=tuned).value,
        shots=k,
        limit=plan.limit,
        seed=plan.seed,
        n_resamples=plan.n_resamples,
        data={
            "task_options": tp.options,
            "data_path": plan.data_path,
            "split": plan.split,
            "data_seed": plan.data_seed,
        },
        decoding=Decoding(max_new_tokens=plan.max_new_tokens.get(task.name, task.max_new_tokens), seed=plan.seed),
        settings=settings,
    )


def run_one(
    plan: ExperimentPlan, spec: ModelSpec, tp: TaskPlan, k: int, *, tuned: bool = False, reuse: bool = True
) -> Path:
    """Generate, parse, score and record one run: (model, task, k shots), or the task's adapter when ``tuned``."""
    task = tp.task
    backend = plan.tuned_backends[(spec.label, task.name)] if tuned else plan.backends[spec.label]
    run = run_spec(plan, spec, tp, k, tuned=tuned)
    shots = task.shots(tp.data, k)
    fmt = plan.prompt_format if plan.prompt_format is not None and plan.prompt_format.changes_messages else None
    formatted = {"prompt_format": fmt} if fmt is not None else {}  # tasks with their own layout never see it
    conversations = [task.messages(ex, shots, shot_style=run.settings["shot_style"], **formatted) for ex in tp.items]
    shown = fmt.arrange(task.name, shots) if fmt is not None else shots

    def produce() -> Produced:
        backend.reset_stats()
        generations = backend.generate(conversations, run.decoding, desc=f"{spec.label} {task.name} {run.scenario}")
        parsed = [task.parse_for(ex, g.text) for ex, g in zip(tp.items, generations, strict=True)]
        metrics = task.score(tp.items, parsed, seed=plan.seed, n_resamples=plan.n_resamples)
        per_item = task.item_scores(tp.items, parsed)
        predictions = [
            {
                "id": ex.id,
                "target": ex.target,
                "reply": g.text,
                "parsed": p,
                "invalid": p == INVALID,
                "scores": {name: values[i] for name, values in per_item.items()},
                "prompt_tokens": g.prompt_tokens,
                "completion_tokens": g.completion_tokens,
                "cached": g.cached,
                **({"kind": ex.meta["kind"]} if "kind" in ex.meta else {}),
                **({"logprob": g.extra["logprob"]} if "logprob" in g.extra else {}),
            }
            for i, (ex, g, p) in enumerate(zip(tp.items, generations, parsed, strict=True))
        ]
        provenance = {
            "data": tp.data.provenance(),
            "shots": [{"user": s.user, "assistant": s.assistant} for s in shown],
            "example_messages": conversations[0],
            # Prices come from the dated price table of the cost chapter; recorded here as unknown until then.
            "cost_usd": None,
        }
        return Produced(predictions, metrics, provenance, backend=backend)

    return execute(
        run,
        plan.output_dir / run.name,
        produce,
        identity=backend.identity(),
        inputs=(tp.data.content_hash, [ex.id for ex in tp.items], conversations),
        reuse=reuse,
    )


def run_experiment(plan: ExperimentPlan, *, reuse: bool = True, progress: bool = True) -> pd.DataFrame:
    """Run every (model, task, shots) of ``plan`` and every adapter; returns the tidy metrics table of those runs."""
    run_dirs = []
    with progress_bars.bar(total=plan.n_runs, desc=plan.name, unit="run", disable=not progress) as bar:
        for spec in plan.models:
            for tp in plan.tasks:
                for k in plan.shots:
                    bar.set_postfix_str(f"{spec.label} {tp.task.name} {k}-shot")
                    run_dirs.append(run_one(plan, spec, tp, k, reuse=reuse))
                    bar.update(1)
                if (spec.label, tp.task.name) in plan.tuned_backends:
                    bar.set_postfix_str(f"{spec.label} {tp.task.name} fine-tuned")
                    run_dirs.append(run_one(plan, spec, tp, 0, tuned=True, reuse=reuse))
                    plan.tuned_backends[(spec.label, tp.task.name)].close()
                    bar.update(1)
            plan.backends[spec.label].close()
    table = records.metrics_table(plan.output_dir)
    return table[table["run"].isin({str(d) for d in run_dirs})].reset_index(drop=True)
