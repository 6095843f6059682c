"""Build the book: execute every chapter notebook with papermill, then render the static HTML with Jupyter Book v1.

``labscale-book`` (or ``python -m labscale.book``) is the README's book command. Each chapter in
:data:`CHAPTERS` is a jupytext MyST notebook under ``notebooks/``; it is converted to ``.ipynb``, executed by
papermill with its default parameters (plus any ``-p name value`` overrides) and written to
``book/chapters/``, which ``_toc.yml`` lists. Jupyter Book does not execute anything itself
(``execute_notebooks: off``): the book renders exactly what papermill ran, from run records.

The build's terminal shows each chapter as it starts and, while it runs, the kernel's progress bars (runs of a plan,
items and cache hits of each generation call, fine-tuning steps), relayed through a side-channel file
(:func:`labscale.progress.relay`) so that none of them lands in the executed notebooks; it ends with a table of
seconds, records written, model calls and cache hits per chapter.
"""

from __future__ import annotations

import argparse
import ast
import functools
import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from glob import escape as glob_escape
from pathlib import Path

from . import progress, records
from .config import PROJECT_ROOT, set_offline
from .data import registry
from .errors import InvalidParameter, invalid_choice

#: chapter name -> notebook source under notebooks/
CHAPTERS = {
    "domain_adaptation": "notebooks/domain_adaptation.md",
    "cost": "notebooks/cost.md",
    "bias": "notebooks/bias.md",
    "privacy": "notebooks/privacy.md",
    "hallucination": "notebooks/hallucination.md",
    "generality": "notebooks/generality.md",
    "study_outputs": "notebooks/study_outputs.md",
    "head_to_head": "notebooks/head_to_head.md",
    "structured": "notebooks/structured.md",
    "transparency": "notebooks/transparency.md",
}

#: chapter -> the chapters whose run records or adapters it reads: they run before it, in every build
NEEDS = {
    "generality": ("domain_adaptation",),  # its adapter and base runs are the domain-adaptation chapter's
    "head_to_head": ("domain_adaptation", "study_outputs"),
    "cost": ("domain_adaptation", "bias", "hallucination", "generality", "structured"),  # every runs/adapters card
    "transparency": tuple(name for name in CHAPTERS if name != "transparency"),
}


#: seconds of each chapter in a cold two-at-a-time build on 2 cores (1 thread each; measured 2026-12-07, commit a535c71)
COLD_SECONDS = {
    "domain_adaptation": 321,
    "structured": 274,
    "privacy": 232,
    "study_outputs": 219,
    "generality": 198,
    "head_to_head": 104,
    "hallucination": 98,
    "bias": 37,
    "transparency": 7,
    "cost": 4,
}


def critical_path_seconds(name: str) -> float:
    """The longest chain of cold seconds from the start of ``name`` to the end of the build: its own time plus
    that of the longest chain of chapters that need it (:data:`NEEDS`)."""
    after = [other for other, needs in NEEDS.items() if name in needs]
    return COLD_SECONDS[name] + max((critical_path_seconds(other) for other in after), default=0.0)


#: the start order of a parallel build among the chapters that are ready: the longest critical path first, so that
#: the chapters others wait for (study outputs before head to head) are not left to the end
CRITICAL_FIRST = tuple(sorted(CHAPTERS, key=critical_path_seconds, reverse=True))


def ready_chapters(pending: list[str], done: set[str], build: list[str]) -> list[str]:
    """The chapters of ``pending`` whose :data:`NEEDS` among the ``build``'s chapters are all ``done``."""
    return [n for n in pending if all(d in done or d not in build for d in NEEDS.get(n, ()))]


def build_order(chapters: list[str]) -> list[str]:
    """``chapters`` in :data:`CHAPTERS` order, each after the chapters it :data:`NEEDS` among them."""
    ordered: list[str] = []
    pending = [name for name in CHAPTERS if name in chapters]
    while pending:
        ordered.append(ready_chapters(pending, set(ordered), chapters)[0])
        pending.remove(ordered[-1])
    return ordered


def executed_notebook(name: str, root: Path) -> Path:
    """Where chapter ``name``'s executed notebook (or its placeholder page) is written under ``root``."""
    return root / "book" / "chapters" / f"{name}.ipynb"


def execute_chapter(
    name: str, *, root: Path = PROJECT_ROOT, parameters: dict | None = None, output: Path | None = None
) -> Path:
    """Execute one chapter notebook with papermill; returns the executed ``.ipynb``."""
    import jupytext
    import papermill

    source = root / CHAPTERS[name]
    output = output or executed_notebook(name, root)
    output.parent.mkdir(parents=True, exist_ok=True)
    notebook = jupytext.read(source)
    staged = output.with_suffix(".input.ipynb")
    jupytext.write(notebook, staged)
    try:
        papermill.execute_notebook(
            str(staged),
            str(output),
            parameters=parameters or {},
            cwd=str(root),
            kernel_name="python3",
            progress_bar=False,
            log_output=False,
            # the kernel's own start-up notices (e.g. "running over TCP without encryption" on a local kernel) are
            # not the chapter's: errors still reach the build's terminal
            extra_arguments=["--IPKernelApp.log_level=ERROR"],
        )
    finally:
        staged.unlink(missing_ok=True)
    return output


#: registry datasets a chapter cannot run without (it reads them in full; there is no offline substitute)
CHAPTER_DATA = {
    "study_outputs": ("study-outputs", "mts-dialog"),
    "head_to_head": ("study-outputs", "mts-dialog"),
    "structured": ("spider", "viggo"),
    "transparency": ("fmti",),
}
#: parameters that point a chapter at the user's own copy of its data instead of the registry's
_DATA_PARAMETERS = {
    "study_outputs": ("outputs_path", "data_path"),
    "head_to_head": ("outputs_path", "data_path"),
    "structured": ("data_path",),
    "transparency": ("data_path",),
}


def missing_data(name: str, parameters: dict | None = None) -> list[str]:
    """The registry datasets chapter ``name`` needs that cannot be had offline here (not in ``LABSCALE_DATA``, the
    data cache or a mirror; :func:`labscale.data.registry.available`), unless ``parameters`` point it elsewhere."""
    if any((parameters or {}).get(p) is not None for p in _DATA_PARAMETERS.get(name, ())):
        return []
    return [d for d in CHAPTER_DATA.get(name, ()) if not registry.available(d)]


def placeholder_chapter(
    name: str, missing: list[str], *, root: Path = PROJECT_ROOT, output: Path | None = None
) -> Path:
    """Write the page of a chapter whose data is missing: its label and title, and what to run to get the data.
    The book still builds (and its cross-references resolve); nothing pretends the chapter ran."""
    import nbformat

    source = (root / CHAPTERS[name]).read_text(encoding="utf-8")
    label = re.search(r"^\(([\w-]+)\)=\s*$", source, re.M)
    fetch = " ".join(missing)
    text = (
        (f"({label.group(1)})=\n" if label else "")
        + f"# {chapter_title(name, root=root)}\n\n"
        + "```{admonition} This chapter was not run in this build\n:class: warning\n"
        + f"It reads the release files of {', '.join(missing)}, which were not available offline when the book was "
        + f"built. Run `labscale-data fetch {fetch}` (or set `LABSCALE_DATA_MIRROR`), then rebuild the book or run "
        + f"`labscale-book --chapter {name}`.\n```\n"
    )
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell(text)])
    output = output or executed_notebook(name, root)
    output.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(notebook, output)
    return output


def parameters_cell(notebook, name: str):
    """The one cell of chapter ``name``'s notebook (a jupytext/nbformat notebook) tagged ``parameters``."""
    cells = [c for c in notebook.cells if "parameters" in c.metadata.get("tags", [])]
    if len(cells) != 1:
        raise InvalidParameter(f"{name}: {len(cells)} cells tagged parameters (expected one)")
    return cells[0]


def parameter_lines(source: str) -> dict[str, tuple[int, int]]:
    """Each parameter of a ``parameters`` cell -> the (first, last) line of its assignment, 1-based."""
    spans = {}
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            spans[node.targets[0].id] = (node.lineno, node.end_lineno)
    return spans


@functools.cache
def parameter_names(name: str, root: Path = PROJECT_ROOT) -> tuple[str, ...]:
    """The parameters chapter ``name`` declares in its ``parameters`` cell, in the cell's order."""
    import jupytext

    return tuple(parameter_lines(parameters_cell(jupytext.read(root / CHAPTERS[name]), name).source))


#: named sets of parameter overrides, chapter -> parameter -> value (``labscale-book --profile NAME``): "default"
#: runs every chapter as written; "large" samples at least 100 items per condition wherever a chapter samples items
#: (domain adaptation and generality already do), so that every interval is informative, at the cost of a longer
#: build (measured in the README's performance table)
PROFILES: dict[str, dict[str, dict]] = {
    "default": {},
    "large": {
        "bias": {"limit": 100, "bbq_limit": 100},
        "privacy": {"limit": 100},
        "hallucination": {"limit": 100, "squad_limit": 100, "truthfulqa_limit": 100},
        "generality": {"lm_eval_limit": 100},
        "study_outputs": {"limit": 100},
        "head_to_head": {"format_limit": 100},
        "structured": {"limit": 100},
    },
}


def chapter_overrides(
    chapters: list[str], pairs: list[tuple[str, object]], *, profile: str = "default", root: Path = PROJECT_ROOT
) -> dict[str, dict]:
    """Each chapter's parameter overrides in a build of ``chapters``: the ``profile``'s (:data:`PROFILES`), then
    those of the ``-p`` ``pairs`` in order, where a plain ``NAME`` sets that parameter in every chapter of the build
    that declares it and ``CHAPTER.NAME`` in that chapter only. A chapter gets only parameters it declares, and a
    name that no chapter of the build declares fails before anything runs, naming the valid ones."""
    if profile not in PROFILES:
        raise invalid_choice("book profile", profile, PROFILES)
    overrides = {name: dict(PROFILES[profile].get(name, {})) for name in chapters}
    for key, value in pairs:
        chapter, _, parameter = key.rpartition(".")
        if chapter:
            if chapter not in chapters:
                raise InvalidParameter(
                    f"-p {key}: {chapter!r} is not a chapter of this build; valid: {', '.join(chapters)}"
                )
            if parameter not in parameter_names(chapter, root):
                valid = ", ".join(parameter_names(chapter, root))
                raise InvalidParameter(f"-p {key}: chapter {chapter} has no parameter {parameter!r}; valid: {valid}")
            overrides[chapter][parameter] = value
            continue
        having = [name for name in chapters if parameter in parameter_names(name, root)]
        if not having:
            valid = sorted({p for name in chapters for p in parameter_names(name, root)})
            raise InvalidParameter(
                f"-p {key}: no chapter of this build ({', '.join(chapters)}) has that parameter; valid: "
                f"{', '.join(valid)}, or CHAPTER.NAME for one chapter"
            )
        for name in having:
            overrides[name][parameter] = value
    return overrides


def child_arguments(name: str, overrides: dict) -> list[str]:
    """``-p CHAPTER.NAME VALUE`` arguments that give a parallel build's child process chapter ``name``'s
    ``overrides`` (values written as YAML, which the child parses back to the same values)."""
    return [
        argument
        for parameter, value in overrides.items()
        for argument in ("-p", f"{name}.{parameter}", _yaml_text(value))
    ]


def _yaml_text(value) -> str:
    """``value`` as one line of YAML (without the end-of-document marker a plain scalar gets)."""
    import yaml

    return yaml.safe_dump(value, default_flow_style=True, width=float("inf")).removesuffix("\n...\n").strip()


def chapter_parameters(name: str, parameters: dict) -> tuple[dict, str | None]:
    """The parameters a chapter runs with in the book build, and a notice when the build changes a default.

    The hallucination chapter reads TruthfulQA from the release files by default and, run on its own, stops when
    they are missing. A book build that cannot have them offline (not in ``LABSCALE_DATA``, the data cache filled
    by ``labscale-data fetch`` or a mirror; :func:`labscale.data.registry.available`) passes ``truthfulqa_source=None``
    instead, says so in the build log, and the chapter prints that TruthfulQA was not requested; an explicit
    ``-p truthfulqa_source ...`` is always kept."""
    if (
        name == "hallucination"
        and "truthfulqa_source" not in parameters
        and "data_path" not in parameters
        and not registry.available("truthfulqa")
    ):
        return {**parameters, "truthfulqa_source": None}, (
            "TruthfulQA's release files are not available offline (run `labscale-data fetch truthfulqa`, set "
            "LABSCALE_DATA_MIRROR, or pass -p data_path ...): "
            "the hallucination chapter runs with truthfulqa_source=None, without TruthfulQA"
        )
    return parameters, None


#: the key under which an executed chapter notebook's metadata stores the fingerprint of its inputs
FINGERPRINT_KEY = "labscale_inputs"


def chapter_title(name: str, *, root: Path = PROJECT_ROOT) -> str:
    """The title of chapter ``name``: the first top-level heading of its source (its name when there is none)."""
    title = re.search(r"^# (.+)$", (root / CHAPTERS[name]).read_text(encoding="utf-8"), re.M)
    return title.group(1) if title else name


@functools.lru_cache(maxsize=1)
def _library_digest() -> str:
    """sha256 of the library's code and reference files (computed once per process: a build does not edit them)."""
    from .hashing import sha256_files

    package = Path(__file__).parent
    return sha256_files(
        f for f in package.rglob("*") if f.is_file() and f.suffix in {".py", ".csv", ".json", ".md", ".yaml"}
    )


def _path_values(value) -> list[str]:
    """Every string inside a parameter value (lists and dictionaries walked)."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _path_values(v)]
    if isinstance(value, list | tuple):
        return [s for v in value for s in _path_values(v)]
    return []


def _record_folders(name: str, parameters: dict, root: Path) -> list[Path]:
    """The run-record folders chapter ``name`` reads or writes: every ``runs/...`` path in its parameters cell and
    every folder a parameter in ``parameters`` names, each with the sibling folders derived from it
    (``runs/hallucination`` -> ``runs/hallucination_no_context``...)."""
    source = (root / CHAPTERS[name]).read_text(encoding="utf-8")
    named = set(re.findall(r"""["'](runs/[^"'\s]+)["']""", source)) | set(_path_values(parameters))
    folders = set()
    for path in named:
        base = Path(path) if Path(path).is_absolute() else root / path
        if base.parent.is_dir() and "/" in path:
            folders.update(f for f in base.parent.glob(glob_escape(base.name) + "*") if f.is_dir())
    return sorted(folders)


def chapter_fingerprint(name: str, parameters: dict, *, root: Path = PROJECT_ROOT) -> str:
    """What chapter ``name``'s executed notebook depends on, as one sha256: its source, the parameters it runs
    with, the library's code and reference files, and the run records (manifests and adapter cards: path, size,
    modification time) in the folders it names. A build keeps an executed notebook whose stored fingerprint is
    the current one instead of executing the chapter again."""
    digest = hashlib.sha256()
    digest.update((root / CHAPTERS[name]).read_bytes())
    digest.update(json.dumps(parameters, sort_keys=True, default=str).encode())
    digest.update(_library_digest().encode())
    for folder in _record_folders(name, parameters, root):
        for record in sorted([*folder.rglob("manifest.json"), *folder.rglob("labscale_card.json")]):
            stat = record.stat()
            digest.update(f"{record.relative_to(root)}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return digest.hexdigest()


def stored_fingerprint(notebook: Path) -> str | None:
    """The inputs fingerprint an executed chapter notebook was stored with (None: absent or unreadable)."""
    try:
        return json.loads(notebook.read_text(encoding="utf-8"))["metadata"].get(FINGERPRINT_KEY)
    except (OSError, ValueError, KeyError):
        return None


def store_fingerprint(notebook: Path, fingerprint: str) -> None:
    """Write ``fingerprint`` into the executed notebook's metadata (the outputs are left as papermill wrote them)."""
    import nbformat

    executed = nbformat.read(notebook, as_version=4)
    executed.metadata[FINGERPRINT_KEY] = fingerprint
    nbformat.write(executed, notebook)


def restamp_fingerprints(rows: list[dict], overrides: dict[str, dict], *, root: Path | None = None) -> list[str]:
    """At the end of a build, store each executed or kept chapter's fingerprint (with its ``overrides``, chapter ->
    parameters, :func:`chapter_overrides`) as it is now; returns the chapters whose fingerprint changed.

    A chapter's fingerprint covers whole record folders (``runs/adapters`` holds every chapter's adapters), so a
    chapter that ran or was kept early in a build sees its folders change when later chapters write theirs. Those
    later chapters are not among the ones it :data:`NEEDS` (those had finished before it was checked), so by that
    table's contract it reads nothing they wrote, and its executed notebook is as current as at its check. Without
    this, the first rebuild after a cold build executed domain adaptation, generality and structured again."""
    root = PROJECT_ROOT if root is None else root  # looked up when called, as build_chapter does
    changed = []
    for row in rows:
        name = row["chapter"]
        if name not in CHAPTERS or str(row.get("note", "")).startswith("placeholder"):
            continue
        output = executed_notebook(name, root)
        stored = stored_fingerprint(output)  # None: no notebook, or one without a stamp
        if stored is None:
            continue
        current = chapter_fingerprint(name, chapter_parameters(name, overrides.get(name, {}))[0], root=root)
        if current != stored:
            store_fingerprint(output, current)
            changed.append(name)
    return changed


def build_html(root: Path = PROJECT_ROOT) -> Path:
    """Render the static HTML book with Jupyter Book v1; returns the folder holding index.html."""
    cli = Path(sys.executable).with_name("jupyter-book")
    command = [str(cli) if cli.exists() else "jupyter-book", "build", str(root), "--keep-going"]
    subprocess.run(command, check=True, cwd=root)
    return root / "_build" / "html"


def build_activity(
    since: float, runs_root: Path = PROJECT_ROOT / "runs", *, folders: list[Path] | None = None
) -> dict[str, int]:
    """What a build step did, from the run records it wrote: records written under ``runs_root`` (or only in
    ``folders``: a chapter's own, when chapters run at once) since ``since`` (a ``time.time()`` value; reused
    records are not rewritten), and their model calls and cache hits."""
    activity = {"records written": 0, "model calls": 0, "cache hits": 0}
    roots = [f for f in (folders if folders is not None else [runs_root]) if f.is_dir()]
    for manifest in sorted(m for root in roots for m in root.rglob("manifest.json")):
        if manifest.stat().st_mtime < since:
            continue
        usage = records.read_manifest(manifest).get("usage") or {}
        activity["records written"] += 1
        activity["model calls"] += int(usage.get("model_calls", 0))
        activity["cache hits"] += int(usage.get("cache_hits", 0))
    return activity


def summary_table(rows: list[dict]) -> str:
    """The build's closing table: one line per chapter (seconds, records written, model calls, cache hits, or what
    happened instead) and a total line."""
    columns = ("chapter", "seconds", "records written", "model calls", "cache hits")
    total = {"chapter": "total", **{c: sum(r.get(c) or 0 for r in rows) for c in columns[1:]}}
    lines = []
    for row in [*rows, total]:
        cells = [str(row["chapter"]).ljust(18), f"{row['seconds']:>8.1f}"]
        cells += [f"{row[c]:>{len(c)}}" if row.get(c) is not None else "–".rjust(len(c)) for c in columns[2:]]
        lines.append("  ".join(cells) + (f"  ({row['note']})" if row.get("note") else ""))
    header = "  ".join([columns[0].ljust(18), columns[1].rjust(8), *columns[2:]])
    return "\n".join([header, *lines])


def _parse_value(raw: str):
    import yaml

    return yaml.safe_load(raw)


def build_chapter(name: str, parameters: dict, *, force: bool = False) -> dict:
    """Execute chapter ``name`` unless its executed notebook is current, or write its placeholder page when its
    data is missing; returns its row of the closing summary."""
    t0, wall0 = time.perf_counter(), time.time()
    chapter_params, notice = chapter_parameters(name, parameters)
    if notice:
        print(f"note: {notice}", flush=True)
    missing = missing_data(name, chapter_params)
    if missing:
        placeholder_chapter(name, missing)
        print(
            f"note: {name} needs {', '.join(missing)}, not available offline (`labscale-data fetch "
            f"{' '.join(missing)}` or LABSCALE_DATA_MIRROR): its page says so instead of running",
            flush=True,
        )
        return {"chapter": name, "seconds": time.perf_counter() - t0, "note": "placeholder: data missing"}
    output = executed_notebook(name, PROJECT_ROOT)
    current = chapter_fingerprint(name, chapter_params, root=PROJECT_ROOT)
    if not force and stored_fingerprint(output) == current:
        print(f"kept {name}: its source, parameters, library code and run records are unchanged", flush=True)
        return {"chapter": name, "seconds": time.perf_counter() - t0, "note": "kept: inputs unchanged"}
    with progress.relay():  # the kernel's progress bars, live on this terminal (never in the notebook)
        path = execute_chapter(name, parameters=chapter_params, output=output)
    # the fingerprint after the run, so that it covers the records the chapter wrote
    store_fingerprint(path, chapter_fingerprint(name, chapter_params, root=PROJECT_ROOT))
    seconds = time.perf_counter() - t0
    print(f"executed {name} -> {path.relative_to(PROJECT_ROOT)} in {seconds:.1f} s", flush=True)
    folders = _record_folders(name, chapter_params, PROJECT_ROOT)
    return {"chapter": name, "seconds": seconds, **build_activity(wall0, folders=folders)}


def default_jobs() -> int:
    """Chapters executed at once by default: two on a CPU with at least two cores (each kernel then computes with
    half of them), one where a CUDA GPU is present (two chapters would share its memory)."""
    import torch

    return 1 if torch.cuda.is_available() else min(2, os.cpu_count() or 1)


def build_in_parallel(
    chapters: list[str], jobs: int, arguments: dict[str, list[str]], *, program: list[str] | None = None
) -> tuple[list[dict], list[str]]:
    """Execute ``chapters`` as ``labscale-book --chapter NAME`` child processes, up to ``jobs`` at once, each one
    started once the chapters it :data:`NEEDS` have finished, the longest chain first (:data:`CRITICAL_FIRST`), every
    kernel with ``cores / jobs`` threads and each child with its chapter's ``arguments``. Returns the summary rows (in
    build order) and the chapters that failed; after a failure nothing new starts. ``program`` is the child's command
    before its arguments (default: this module run by this Python)."""
    threads = str(max(1, (os.cpu_count() or 1) // jobs))
    env = {**os.environ, "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}
    pending, done, failed = list(chapters), set(), []
    running: dict[str, tuple[subprocess.Popen, Path]] = {}
    rows: dict[str, dict] = {}
    started = 0
    with tempfile.TemporaryDirectory(prefix="labscale-book-") as reports:
        while pending or running:
            ready = sorted(ready_chapters(pending, done, chapters), key=CRITICAL_FIRST.index)
            for name in ready[: jobs - len(running)] if not failed else []:
                started += 1
                print(f"[{started}/{len(chapters)}] {name} … ({threads} thread{'s' * (threads != '1')})", flush=True)
                report = Path(reports) / f"{name}.json"
                command = [*(program or [sys.executable, "-m", "labscale.book"]), "--chapter", name, "--no-html"]
                command += ["--report", str(report), *arguments.get(name, [])]
                running[name] = (subprocess.Popen(command, env=env), report)
                pending.remove(name)
            if not running:
                break
            time.sleep(0.5)
            for name, (child, report) in list(running.items()):
                if child.poll() is None:
                    continue
                del running[name]
                done.add(name)
                if child.returncode != 0 or not report.is_file():
                    failed.append(name)
                    print(f"error: chapter {name} failed (exit status {child.returncode})", flush=True)
                else:
                    rows[name] = json.loads(report.read_text(encoding="utf-8"))[0]
    return [rows[name] for name in chapters if name in rows], failed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--chapter", action="append", choices=sorted(CHAPTERS), help="execute only these chapters (default: all)"
    )
    parser.add_argument(
        "-p",
        "--parameter",
        nargs=2,
        action="append",
        default=[],
        metavar=("NAME", "VALUE"),
        help="papermill parameter override, VALUE parsed as YAML: NAME for every chapter that declares it (-p limit "
        "10), CHAPTER.NAME for one chapter (-p structured.limit 50)",
    )
    parser.add_argument(
        "--profile",
        default="default",
        choices=sorted(PROFILES),
        help="a named set of overrides, applied before -p: 'large' samples at least 100 items per condition in "
        "every chapter (a longer build; see the README's performance table)",
    )
    parser.add_argument(
        "--online", action="store_true", help="allow Hugging Face hub access (default: HF_HUB_OFFLINE=1)"
    )
    parser.add_argument("--no-html", action="store_true", help="execute notebooks but skip the HTML build")
    parser.add_argument(
        "--force",
        action="store_true",
        help="execute every chapter, even one whose executed notebook is current (same source, parameters, "
        "library code and run records)",
    )
    parser.add_argument(
        "-j",
        "--jobs",
        type=int,
        default=None,
        help="chapters executed at once, each after the chapters it reads (default: 2 on a CPU with 2 or more "
        "cores, 1 with a CUDA GPU)",
    )
    parser.add_argument("--report", type=Path, help=argparse.SUPPRESS)  # a parallel build's child: its rows, as JSON
    args = parser.parse_args(argv)
    if args.jobs is not None and args.jobs < 1:
        parser.error(f"--jobs must be 1 or more, got {args.jobs}")
    if not args.online:
        set_offline(True)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    start = time.perf_counter()
    chapters = build_order(args.chapter or list(CHAPTERS))
    try:  # a misspelt parameter fails here, before any chapter runs
        overrides = chapter_overrides(
            chapters, [(name, _parse_value(value)) for name, value in args.parameter], profile=args.profile
        )
    except InvalidParameter as error:
        parser.error(str(error))
    jobs = 1 if len(chapters) == 1 else min(args.jobs or default_jobs(), len(chapters))
    failed: list[str] = []
    if jobs > 1:
        flags = [flag for flag, on in (("--online", args.online), ("--force", args.force)) if on]
        arguments = {name: [*child_arguments(name, overrides[name]), *flags] for name in chapters}
        summary, failed = build_in_parallel(chapters, jobs, arguments)
    else:
        summary = []
        for i, name in enumerate(chapters, 1):
            if args.report is None:  # a parallel build's parent has announced it
                print(f"[{i}/{len(chapters)}] {name} …", flush=True)
            summary.append(build_chapter(name, overrides[name], force=args.force))
    if args.report is not None:
        args.report.write_text(json.dumps(summary), encoding="utf-8")
        return 0
    restamp_fingerprints(summary, overrides)
    if failed:
        print(f"the book was not rendered: {', '.join(failed)} failed", flush=True)
        return 1
    if not args.no_html:
        t0 = time.perf_counter()
        html = build_html()
        seconds = time.perf_counter() - t0
        print(f"rendered HTML -> {html / 'index.html'} in {seconds:.1f} s", flush=True)
        summary.append({"chapter": "HTML (Jupyter Book)", "seconds": seconds})
    print(summary_table(summary), flush=True)
    print(
        f"book built in {time.perf_counter() - start:.1f} s" + (f" ({jobs} chapters at a time)" if jobs > 1 else ""),
        flush=True,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
