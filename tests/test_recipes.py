"""The SkyPilot recipes (recipes/skypilot/*.yaml) linted for real.

Schema: SkyPilot's own (``sky.utils.schemas`` of the installed ``skypilot`` wheel, validated with its own
``sky.utils.validator``), applied as ``sky`` applies it: the task schema to the file, the resources schema to
``resources``, the storage schema to each bucket mount and the service schema to ``service``. The wheel is installed
without its dependencies (``make setup``; they would downgrade uvicorn), so ``import sky`` fails; the schema module is
loaded with the few modules it reads reduced to their enum classes and registries, parsed from the wheel's own source.

Project checks: spot, recovery, the checkpoint mount the run writes to, every labscale name the commands import,
the environment defaults, and vLLM with ``--enable-lora`` on the served port.
"""

from __future__ import annotations

import ast
import enum
import importlib
import importlib.util
import re
import sys
import types
import typing
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
RECIPES = ROOT / "recipes" / "skypilot"
KINDS = {"finetune": "finetune.yaml", "serve": "serve.yaml"}
GPUS = {"A40", "T4"}

#: modules sky.utils.schemas reads a few enums or registries from, reduced to those (their imports need the server)
_SKELETONS = {
    "sky.skylet.autostop_lib": "skylet/autostop_lib.py",
    "sky.data.storage": "data/storage.py",
    "sky.utils.volume": "utils/volume.py",
    "sky.serve.spot_placer": "serve/spot_placer.py",
    "sky.serve.load_balancing_policies": "serve/load_balancing_policies.py",
    "sky.server.daemons": "server/daemons.py",
}


def _skeleton(name: str, path: Path) -> types.ModuleType:
    """A module holding ``path``'s string constants, enum classes, registries (empty dicts filled with the names its
    classes register under ``name=``) and lists of ``Call(id=...)`` entries, executed from the real source."""
    tree = ast.parse(path.read_text())
    module = types.ModuleType(name)
    ns = module.__dict__
    ns.update({k: getattr(typing, k) for k in typing.__all__}, enum=enum, typing=typing)
    registries = []
    for node in tree.body:
        if not (isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name)):
            continue
        target = node.targets[0].id
        if isinstance(node.value, ast.Constant):
            ns[target] = node.value.value
        elif isinstance(node.value, ast.Dict) and not node.value.keys:
            registries.append(target)
        elif isinstance(node.value, ast.List):
            ns[target] = [
                types.SimpleNamespace(
                    **{k.arg: k.value.value for k in call.keywords if isinstance(k.value, ast.Constant)}
                )
                for call in node.value.elts
                if isinstance(call, ast.Call)
            ]
    names = []
    for node in tree.body:
        if isinstance(node, ast.ClassDef):
            if any(ast.unparse(base).endswith("Enum") for base in node.bases):
                exec(compile(ast.Module([node], []), str(path), "exec"), ns)
            names += [
                ns[k.value.id] if isinstance(k.value, ast.Name) else k.value.value
                for k in node.keywords
                if k.arg == "name"
            ]
    for registry in registries:
        ns[registry] = dict.fromkeys(names)
    return module


def _recovery_strategies(root: Path) -> list[str]:
    """The managed-job recovery strategies the wheel registers (``type_register(name=...)`` decorators)."""
    tree = ast.parse((root / "jobs" / "recovery_strategy.py").read_text())
    return [
        kw.value.value
        for node in tree.body
        if isinstance(node, ast.ClassDef)
        for dec in node.decorator_list
        if isinstance(dec, ast.Call) and ast.unparse(dec.func).endswith("type_register")
        for kw in dec.keywords
        if kw.arg == "name"
    ]


@pytest.fixture(scope="module")
def sky() -> dict[str, typing.Any]:
    """SkyPilot's task, resources, storage and service schemas, its validator class and recovery strategies."""
    spec = importlib.util.find_spec("sky")
    if spec is None or spec.origin is None:
        pytest.skip("skypilot is not installed: `make setup` (pip install --no-deps skypilot==0.14.1)")
    root = Path(spec.origin).parent
    saved = {k: v for k, v in sys.modules.items() if k == "sky" or k.startswith("sky.")}
    try:
        for package in ("sky", "sky.skylet", "sky.utils", "sky.data", "sky.serve", "sky.server", "sky.setup_files"):
            module = types.ModuleType(package)
            module.__path__ = [str(root.joinpath(*package.split(".")[1:]))]
            sys.modules[package] = module
        version = re.search(r"__version__ = '([^']+)'", (root / "__init__.py").read_text()).group(1)
        sys.modules["sky"].__version__ = version
        for name, rel in _SKELETONS.items():
            sys.modules[name] = _skeleton(name, root / rel)
        schemas = importlib.import_module("sky.utils.schemas")
        validator = importlib.import_module("sky.utils.validator")
        return {
            "version": version,
            "task": schemas.get_task_schema(),
            "resources": schemas.get_resources_schema(),
            "storage": schemas.get_storage_schema(),
            "service": schemas.get_service_schema(),
            "validator": validator.get_schema_validator(),
            "strategies": _recovery_strategies(root),
        }
    finally:
        for k in [k for k in sys.modules if k == "sky" or k.startswith("sky.")]:
            del sys.modules[k]
        sys.modules.update(saved)


def sky_errors(config: dict, sky: dict) -> list[str]:
    """SkyPilot's schema errors for a task file, each prefixed with where it applies (empty: valid)."""
    checks = [("task", {k: v for k, v in config.items() if v is not None}, sky["task"])]
    if isinstance(config.get("resources"), dict):
        checks.append(("resources", config["resources"], sky["resources"]))
    for path, mount in (config.get("file_mounts") or {}).items():
        if isinstance(mount, dict):
            checks.append((f"file_mounts[{path}]", mount, sky["storage"]))
    if config.get("service") is not None:
        checks.append(("service", config["service"], sky["service"]))
    errors = []
    for where, obj, schema in checks:
        validator = sky["validator"](schema)
        for error in validator.iter_errors(obj):  # an anyOf failure names its branches' errors (the bad key)
            causes = "; ".join(c.message for c in error.context or [])
            errors.append(f"{where}: {error.message}" + (f" ({causes})" if causes else ""))
    return errors


def _labscale_imports(command: str) -> list[tuple[str, str]]:
    """(module, name) of every ``from labscale... import a, b`` in a shell command's embedded Python."""
    found = []
    for module, names in re.findall(r"from (labscale[\w.]*) import ([\w, ]+)", command):
        found += [(module, n.strip()) for n in names.split(",") if n.strip()]
    return found


def project_problems(config: dict, kind: str, sky: dict) -> list[str]:
    """What makes a recipe wrong for labscale even when SkyPilot accepts it (empty: fine)."""
    from labscale.backends import parse_model_spec
    from labscale.finetune import FinetuneConfig
    from labscale.tasks import ALL_TASK_NAMES, SOURCES

    problems = []
    resources = config.get("resources") or {}
    envs = config.get("envs") or {}
    setup, run = config.get("setup") or "", config.get("run") or ""
    if resources.get("use_spot") is not True:
        problems.append(f"resources.use_spot={resources.get('use_spot')!r}; must be true")
    accelerators = resources.get("accelerators")
    if not isinstance(accelerators, dict) or not accelerators or set(accelerators) - GPUS:
        problems.append(f"resources.accelerators={accelerators!r}; valid GPUs: {sorted(GPUS)}, one each")
    elif set(accelerators.values()) != {1}:
        problems.append(f"resources.accelerators={accelerators!r}: one GPU per instance")
    mounts = {p: m for p, m in (config.get("file_mounts") or {}).items() if isinstance(m, dict) and m.get("name")}
    if "/runs" not in mounts:
        problems.append(f"no bucket mounted at /runs (bucket mounts: {sorted(mounts)})")
    if envs.get("RUNS_BUCKET", "") is not None:
        problems.append(f"envs.RUNS_BUCKET={envs.get('RUNS_BUCKET')!r}; must be null (required at launch)")
    if "pip install -q -e ." not in setup and "pip install -e ." not in setup:
        problems.append("setup does not install the project (pip install -e .)")
    if re.search(r"pip install[^\n]*\btorch\b", setup):
        problems.append("setup installs torch: it would replace the image's CUDA build")
    for var in sorted(set(re.findall(r"\$\{?([A-Z_][A-Z0-9_]*)", setup + run)) - set(envs) - {"BASE", "SLUG"}):
        problems.append(f"${var} is used but not in envs (envs: {sorted(envs)})")
    for var in sorted(set(re.findall(r"os\.environ\['(\w+)'\]", run)) - set(envs)):
        problems.append(f"os.environ[{var!r}] is read but not in envs (envs: {sorted(envs)})")
    for module, name in _labscale_imports(setup + run):
        try:
            found = hasattr(importlib.import_module(module), name)
        except ImportError:
            found = False
        if not found:
            problems.append(f"{module}.{name} does not exist")
    if "TASK" in envs and envs["TASK"] not in ALL_TASK_NAMES:
        problems.append(f"envs.TASK={envs['TASK']!r}; valid tasks: {', '.join(ALL_TASK_NAMES)}")
    if "SOURCE" in envs and envs["SOURCE"] not in SOURCES:
        problems.append(f"envs.SOURCE={envs['SOURCE']!r}; valid sources: {', '.join(SOURCES)}")
    if kind == "finetune":
        recovery = resources.get("job_recovery")
        if not isinstance(recovery, dict) or recovery.get("strategy") not in sky["strategies"]:
            problems.append(f"resources.job_recovery={recovery!r}; strategy must be one of {sky['strategies']}")
        else:
            known = sky["resources"]["properties"]["job_recovery"]["anyOf"][1]["properties"]
            problems += [
                f"unknown job_recovery key {k!r}; valid: {sorted(known)}" for k in sorted(set(recovery) - set(known))
            ]
            if not recovery.get("max_restarts_on_errors"):
                problems.append("job_recovery.max_restarts_on_errors is not set: a crash would not be retried")
        if mounts.get("/runs", {}).get("mode") != "MOUNT_CACHED":
            problems.append(f"/runs mode {mounts.get('/runs', {}).get('mode')!r}; checkpoints need MOUNT_CACHED")
        if "output_root='/runs/" not in run:
            problems.append("the run does not write its adapters and checkpoints under the /runs mount")
        if envs.get("PRESET") not in FinetuneConfig.PRESETS:
            problems.append(f"envs.PRESET={envs.get('PRESET')!r}; valid presets: {FinetuneConfig.PRESETS}")
        parse_model_spec(envs.get("MODEL", ""))
    else:
        service = config.get("service") or {}
        probe = service.get("readiness_probe")
        if (probe.get("path") if isinstance(probe, dict) else probe) != "/health":
            problems.append(f"service.readiness_probe={probe!r}; vLLM's readiness path is /health")
        for flag in ("vllm serve", "--enable-lora", "--lora-modules", "--port 8000"):
            if flag not in run:
                problems.append(f"the run lacks {flag!r}")
        if str(resources.get("ports")) != "8000":
            problems.append(f"resources.ports={resources.get('ports')!r}; vLLM listens on 8000")
        if "/runs/adapters/" not in run:
            problems.append("the served adapter is not read from the /runs mount")
        parse_model_spec(envs.get("BASE_MODEL", ""))
    return problems


def load(kind: str) -> dict:
    return yaml.safe_load((RECIPES / KINDS[kind]).read_text())


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_recipe_passes_skypilot_schema(kind, sky):
    assert sky["version"] == "0.14.1"
    assert sky_errors(load(kind), sky) == []


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_recipe_passes_project_checks(kind, sky):
    assert project_problems(load(kind), kind, sky) == []


def test_recovery_strategies_are_read_from_skypilot(sky):
    assert set(sky["strategies"]) == {"FAILOVER", "EAGER_NEXT_REGION"}


@pytest.mark.parametrize(
    ("kind", "edit", "expected"),
    [
        ("finetune", lambda c: c["resources"].update(use_spots=True), "'use_spots' was unexpected"),
        ("finetune", lambda c: c.update(setpu=c.pop("setup")), "'setpu' was unexpected"),
        ("finetune", lambda c: c["resources"]["job_recovery"].update(max_restarts_on_errors=-1), "-1 is less than"),
        ("finetune", lambda c: c["file_mounts"]["/runs"].update(mode="CACHED"), "'CACHED' is not one of"),
        ("serve", lambda c: c["service"].update(readiness_probe={"paht": "/health"}), "'path' is a required"),
        ("serve", lambda c: c["service"]["replica_policy"].update(min_replica=1), "'min_replica' was unexpected"),
    ],
)
def test_broken_recipe_is_rejected_by_skypilot_naming_the_key(kind, edit, expected, sky, tmp_path):
    config = load(kind)
    edit(config)
    path = tmp_path / f"{kind}.yaml"
    path.write_text(yaml.safe_dump(config))
    errors = sky_errors(yaml.safe_load(path.read_text()), sky)
    assert any(expected in e for e in errors), errors


@pytest.mark.parametrize(
    ("kind", "edit", "expected"),
    [
        ("finetune", lambda c: c["resources"].update(use_spot=False), "resources.use_spot=False"),
        ("finetune", lambda c: c["resources"].update(accelerators={"A100": 1}), "valid GPUs: ['A40', 'T4']"),
        ("finetune", lambda c: c["resources"]["job_recovery"].update(strategy="RETRY"), "strategy must be one of"),
        ("finetune", lambda c: c["resources"]["job_recovery"].update(max_restart=3), "unknown job_recovery key"),
        ("finetune", lambda c: c["file_mounts"].update({"/ckpt": c["file_mounts"].pop("/runs")}), "no bucket mounted"),
        ("finetune", lambda c: c["envs"].update(PRESET="fast"), "envs.PRESET='fast'"),
        ("finetune", lambda c: c["envs"].update(SOURCE="web"), "envs.SOURCE='web'"),
        ("finetune", lambda c: c["envs"].update(TASK="sentiment"), "envs.TASK='sentiment'"),
        ("finetune", lambda c: c.update(run=c["run"].replace("finetune_tasks", "finetune_all")), "finetune_all"),
        ("finetune", lambda c: c.update(setup=c["setup"] + "pip install torch==2.5.0\n"), "installs torch"),
        ("serve", lambda c: c.update(run=c["run"].replace(" --enable-lora", "")), "'--enable-lora'"),
        ("serve", lambda c: c["service"].update(readiness_probe="/"), "readiness path is /health"),
        ("serve", lambda c: c["envs"].pop("ADAPTER_NAME"), "$ADAPTER_NAME is used but not in envs"),
    ],
)
def test_broken_recipe_fails_project_checks(kind, edit, expected, sky, tmp_path):
    config = load(kind)
    edit(config)
    path = tmp_path / f"{kind}.yaml"
    path.write_text(yaml.safe_dump(config))
    problems = project_problems(yaml.safe_load(path.read_text()), kind, sky)
    assert any(expected in p for p in problems), problems
    assert sky_errors(config, sky) == []  # SkyPilot alone would have accepted every one of these


def test_run_commands_import_only_existing_labscale_names():
    imports = {(m, n) for kind in KINDS for m, n in _labscale_imports(load(kind)["run"])}
    assert ("labscale.finetune", "finetune_tasks") in imports
    assert ("labscale.backends.embedded", "ensure_converted") in imports
    for module, name in imports:
        assert hasattr(importlib.import_module(module), name), f"{module}.{name}"
