"""The run grid: bad input fails before Ray starts; on a local Ray cluster of two CPU workers against a real
``transformers serve``, the grid records the same runs as one process, and an interrupted grid resumes."""

from __future__ import annotations

import json
import shutil
import sqlite3

import pytest

from labscale.errors import InvalidParameter
from labscale.grid import Cell, GridFailed, grid_specs, run_grid
from labscale.records import find_runs, read_manifest, read_run

ray = pytest.importorskip("ray")

DEAD = "openai:/models/m?base_url=http://127.0.0.1:9/v1&max_retries=1&timeout=5"  # no server: nothing is sent
TASKS, SHOTS, LIMIT = ["fact_checking", "entity_resolution"], [0, 1], 5


# -- bad input fails before Ray starts ------------------------------------------------------------------------
@pytest.mark.parametrize(
    "models, tasks, shots, options, pattern",
    [
        ([DEAD], ["entity_matching"], [0], {}, r"unknown task 'entity_matching'; valid choices: 'entity_resolution'"),
        ([DEAD], ["fact_checking"], [0, 4], {}, r"shots=4 is out of range; valid range: \[0, 3\]"),
        (["gpt-5"], ["fact_checking"], [0], {}, r"unknown model 'gpt-5'; valid choices: .*'smollm2-135m'"),
        ([DEAD], ["fact_checking"], [0], {"limit": 0}, r"limit=0 is out of range"),
        ([DEAD], ["fact_checking"], [0], {"source": "web"}, r"'web'; valid choices: .*'offline'"),
        ([DEAD], ["fact_checking"], [], {}, r"the grid has no cells"),
    ],
)
def test_bad_cells_fail_before_ray_starts(models, tasks, shots, options, pattern, tmp_path):
    assert not ray.is_initialized()
    cells = grid_specs(models, tasks, shots, output_dir=tmp_path, **options)
    with pytest.raises(InvalidParameter, match=pattern):
        run_grid(cells, cache_path=tmp_path / "c.sqlite", progress=False)
    assert not ray.is_initialized()
    assert not find_runs(tmp_path)


def test_bad_grid_arguments_name_the_valid_ones(tmp_path):
    with pytest.raises(InvalidParameter, match=r"unknown grid keyword 'cache'; valid keywords: .*'?limit"):
        grid_specs([DEAD], ["fact_checking"], [0], cache=tmp_path / "c.sqlite")
    cells = grid_specs([DEAD], ["fact_checking"], [0], output_dir=tmp_path)
    with pytest.raises(InvalidParameter, match=r"workers must be an integer, got 1.5"):
        run_grid(cells, workers=1.5, cache_path=tmp_path / "c.sqlite")
    with pytest.raises(InvalidParameter, match=r"workers=0 is out of range"):
        run_grid(cells, workers=0, cache_path=tmp_path / "c.sqlite")
    # two cells writing one record folder: a cell twice, or the same run with another seed
    for other in (cells[0], Cell(DEAD, "fact_checking", 0, {**cells[0].options, "seed": 1})):
        with pytest.raises(InvalidParameter, match=r"grid cells .* both write .*fact_checking/0shot"):
            run_grid([*cells, other], cache_path=tmp_path / "c.sqlite", progress=False)
    assert not ray.is_initialized()


def test_grid_specs_is_the_product_with_absolute_folders(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cells = grid_specs(["a", "b"], TASKS, SHOTS, limit=3, output_dir="runs/x")
    assert [(c.model, c.task, c.shots) for c in cells][:3] == [
        ("a", "fact_checking", 0),
        ("a", "fact_checking", 1),
        ("a", "entity_resolution", 0),
    ]
    assert len(cells) == 8 and {c.options["limit"] for c in cells} == {3}
    assert cells[0].options["output_dir"] == str(tmp_path / "runs" / "x")


# -- a real server, a local Ray cluster of two CPU workers ----------------------------------------------------
@pytest.fixture(scope="module")
def cluster():
    ray.init(num_cpus=2, include_dashboard=False, ignore_reinit_error=True, log_to_driver=False)
    yield ray.cluster_resources()
    ray.shutdown()


@pytest.fixture(scope="module")
def ray_grid(server, cluster, tmp_path_factory):
    """The grid run once on Ray: (its cells, output folder, cache file, metrics table)."""
    root = tmp_path_factory.mktemp("ray-grid")
    model = f"openai:{server.model}?base_url={server.base_url}"
    cells = grid_specs([model], TASKS, SHOTS, limit=LIMIT, output_dir=root / "runs")
    table = run_grid(cells, cache_path=root / "responses.sqlite", progress=False)
    return cells, root / "runs", root / "responses.sqlite", table


def replies(run_dir) -> list[tuple[str, str]]:
    predictions = read_run(run_dir)["predictions"]
    return list(zip(predictions["id"], predictions["reply"], strict=True))


def cache_rows(path) -> int:
    with sqlite3.connect(path) as conn:
        return conn.execute("SELECT COUNT(*) FROM responses").fetchone()[0]


@pytest.mark.slow
def test_ray_grid_records_what_one_process_records(ray_grid, server, tmp_path):
    cells, out, cache_file, table = ray_grid
    assert ray.cluster_resources()["CPU"] == 2
    runs = find_runs(out)
    assert [str(r.relative_to(out)).split("/", 1)[1] for r in runs] == [
        "entity_resolution/0shot",
        "entity_resolution/1shot",
        "fact_checking/0shot",
        "fact_checking/1shot",
    ]
    for run in runs:  # every item generated once, by the server, into the shared cache
        usage = read_manifest(run)["usage"]
        assert (usage["requests"], usage["cache_hits"], usage["model_calls"]) == (LIMIT, 0, LIMIT)
    assert cache_rows(cache_file) == len(cells) * LIMIT

    one = [Cell(c.model, c.task, c.shots, {**c.options, "output_dir": str(tmp_path / "runs")}) for c in cells]
    single = run_grid(one, use_ray=False, cache_path=tmp_path / "responses.sqlite", progress=False)
    columns = ["model", "task", "shots", "metric", "value", "ci_low", "ci_high", "n"]
    key = ["task", "shots", "metric"]
    assert len(table) == len(single) > 0
    ray_rows = table[columns].sort_values(key).reset_index(drop=True)
    assert ray_rows.equals(single[columns].sort_values(key).reset_index(drop=True))
    for run in runs:
        twin = tmp_path / "runs" / run.relative_to(out)
        assert replies(run) == replies(twin) and len(replies(run)) == LIMIT
        assert json.loads((run / "params.json").read_text()) == json.loads((twin / "params.json").read_text())
    assert cache_rows(tmp_path / "responses.sqlite") == cache_rows(cache_file)


@pytest.mark.slow
def test_interrupted_grid_resumes(ray_grid, tmp_path):
    cells, out, cache_file, _ = ray_grid
    shutil.copytree(out, tmp_path / "runs")
    shutil.copy(cache_file, tmp_path / "responses.sqlite")
    runs = find_runs(tmp_path / "runs")
    cut = runs[1]  # an interrupted cell: no record, and one of its items never answered
    before = {run: (run / "manifest.json").read_bytes() for run in runs}
    lost = read_manifest(cut)["example_messages"]
    shutil.rmtree(cut)
    with sqlite3.connect(tmp_path / "responses.sqlite") as conn:
        rows = conn.execute("SELECT key, request FROM responses").fetchall()
        keys = [k for k, request in rows if json.loads(request)["messages"] == lost]
        assert len(keys) == 1
        conn.execute("DELETE FROM responses WHERE key = ?", keys)
    assert cache_rows(tmp_path / "responses.sqlite") == len(cells) * LIMIT - 1

    moved = [Cell(c.model, c.task, c.shots, {**c.options, "output_dir": str(tmp_path / "runs")}) for c in cells]
    table = run_grid(moved, cache_path=tmp_path / "responses.sqlite", progress=False)
    assert set(table["run"]) == {str(r) for r in runs}
    for run in runs:
        if run != cut:  # finished cells: their records reused as they were
            assert (run / "manifest.json").read_bytes() == before[run]
    usage = read_manifest(cut)["usage"]  # the cut cell: its finished items from the cache, the lost one asked again
    assert (usage["requests"], usage["cache_hits"], usage["model_calls"]) == (LIMIT, LIMIT - 1, 1)
    assert replies(cut) == replies(out / cut.relative_to(tmp_path / "runs"))
    assert cache_rows(tmp_path / "responses.sqlite") == len(cells) * LIMIT


@pytest.mark.slow
def test_a_failed_cell_leaves_the_others_recorded(ray_grid, tmp_path):
    cells, out, cache_file, _ = ray_grid
    shutil.copytree(out, tmp_path / "runs")
    shutil.copy(cache_file, tmp_path / "responses.sqlite")
    options = {**cells[0].options, "output_dir": str(tmp_path / "runs")}
    good = [Cell(c.model, c.task, c.shots, options) for c in cells]
    before = {run: (run / "manifest.json").read_bytes() for run in find_runs(tmp_path / "runs")}
    with pytest.raises(GridFailed, match=r"1 of 5 grid cells failed \(openai:/models/m.* fact_checking 0-shot: "):
        run_grid([*good, Cell(DEAD, "fact_checking", 0, options)], cache_path=tmp_path / "responses.sqlite")
    after = {run: (run / "manifest.json").read_bytes() for run in find_runs(tmp_path / "runs")}
    assert after == before  # the good cells were reused, and the failed one wrote nothing
    assert cache_rows(tmp_path / "responses.sqlite") == len(cells) * LIMIT
