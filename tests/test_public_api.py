"""The package's public API: every name in ``labscale.__all__`` resolves, and ``import labscale`` stays cheap."""

from __future__ import annotations

import json
import subprocess
import sys
import types

import pytest

import labscale
from labscale import errors
from labscale.core import SCENARIOS, SOURCES, SPLITS, Scenario, Source, Split


@pytest.mark.parametrize("name", labscale.__all__)
def test_every_public_name_resolves(name):
    value = getattr(labscale, name)
    assert value is not None
    if name in labscale.SUBMODULES:
        assert isinstance(value, types.ModuleType) and value.__name__ == f"labscale.{name}"


def test_public_functions_are_the_modules_own():
    from labscale import records, runner, tasks

    assert labscale.plan_experiment is runner.plan_experiment
    assert labscale.get_task is tasks.get_task
    assert labscale.read_run is records.read_run
    assert labscale.InvalidParameter is errors.InvalidParameter
    assert set(labscale.__all__) <= set(dir(labscale))
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        labscale.nope  # noqa: B018


def test_import_labscale_does_not_import_torch_or_pandas():
    code = (
        "import json, sys; import labscale; "
        "print(json.dumps(sorted(m for m in ('torch', 'pandas', 'transformers', 'datasets') if m in sys.modules)))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert json.loads(result.stdout.strip().splitlines()[-1]) == []


def test_one_error_base_class():
    from labscale.api_finetune import FineTuneError, FineTuneTimeout

    for cls in (errors.InvalidParameter, errors.DataUnavailable, FineTuneError, FineTuneTimeout):
        assert issubclass(cls, errors.LabscaleError)
    # the standard bases stay, so existing ``except ValueError`` / ``except RuntimeError`` still catch them
    assert issubclass(errors.InvalidParameter, ValueError) and issubclass(errors.DataUnavailable, RuntimeError)
    assert issubclass(FineTuneTimeout, TimeoutError)


def test_enums_have_the_record_strings():
    assert SOURCES == ("offline", "local", "hub") and tuple(Source) == SOURCES
    assert SPLITS == ("train", "validation", "test") and tuple(Split) == SPLITS
    assert SCENARIOS == ("0-shot", "1-shot", "2-shot", "3-shot", "fine-tuned") and tuple(Scenario) == SCENARIOS
    assert Scenario.of(2) == "2-shot" and Scenario.of(0, tuned=True) is Scenario.FINE_TUNED
    assert json.dumps({Source.HUB: Scenario.ONE_SHOT}) == '{"hub": "1-shot"}'
    with pytest.raises(errors.InvalidParameter, match="no scenario for 7 shots"):
        Scenario.of(7)


def test_a_source_member_loads_like_its_string():
    task = labscale.get_task("medqa_tf")
    sizes = {"train": 6, "validation": 2, "test": 2}
    by_member, by_string = task.load(Source.OFFLINE, sizes=sizes), task.load("offline", sizes=sizes)
    assert by_member.content_hash == by_string.content_hash
    assert type(by_member.source) is str and by_member.source == "offline"
