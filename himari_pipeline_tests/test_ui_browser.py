"""The real Dagster UI in headless Chromium: the whole asset graph is shown, and the data job runs from it.

Starts the UI exactly as the README says (``himari ui --port P``: webserver *and* daemon) on a
temporary ``DAGSTER_HOME`` and lake, opens the global asset lineage, then launches ``data_job`` for
``SYNTH-PLANTED_1h`` from the launchpad with a two-year synthetic span and waits for it to succeed
(so the daemon's run queue really dequeued it); on exit ``himari ui`` is stopped with SIGTERM and
must leave no process behind.
Screenshots go to ``$HIMARI_UI_SCREENSHOT_DIR`` (or the test's tmp dir); their paths are printed.
Needs ``/usr/bin/chromium`` (Debian ``chromium``) and the ``playwright`` Python package (no bundled browser).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from himari_pipeline.ui_settings import settings_overrides
from himari_pipeline_tests.ui_helpers import CHROMIUM, CHROMIUM_ARGS, WORKSPACE_QUERY, graphql, running_ui

needs_chromium = pytest.mark.skipif(
    not CHROMIUM.exists(), reason=f"{CHROMIUM} missing (apt-get install chromium)"
)

KEY = "SYNTH-PLANTED_1h"
SPAN = ("2024-01-01", "2025-12-31")
SPAN_HOURS = (366 + 365) * 24  # 2024 is a leap year; the synthetic market covers both end days, hourly
RUN_TIMEOUT_S = 300
REPO = Path(__file__).resolve().parents[1]


def _screenshot_dir(tmp_path_factory) -> Path:
    d = Path(os.environ.get("HIMARI_UI_SCREENSHOT_DIR") or tmp_path_factory.mktemp("ui_screenshots"))
    d.mkdir(parents=True, exist_ok=True)
    return d


@pytest.fixture(scope="module")
def ui(tmp_path_factory):
    """``himari ui`` on a fresh instance and lake, with the dataset partition added."""
    import dagster as dg

    from himari_pipeline.instance import ensure_dagster_home

    tmp = tmp_path_factory.mktemp("ui")
    home, lake = tmp / "dagster_home", tmp / "lake"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DAGSTER_", "HIMARI_"))}
    env |= {
        "DAGSTER_HOME": str(home),
        "HIMARI_LAKE_ROOT": str(lake),
        "HIMARI_SYNTHETIC_START": SPAN[0],  # honoured once definitions use ui_settings.settings_overrides()
        "HIMARI_SYNTHETIC_END": SPAN[1],
        "HIMARI_TRUNCATION_PREFIXES": "2",
        "HIMARI_TRUNCATION_ROWS": "200",  # the row-by-row check on the newest 200 rows only
    }
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DAGSTER_HOME", str(home))
        ensure_dagster_home()  # the project's dagster.yaml, as `himari ui` writes it
        with dg.DagsterInstance.get() as instance:
            instance.add_dynamic_partitions("datasets", [KEY])
    t0 = time.monotonic()
    with running_ui(home, env, tmp / "logs") as server:
        print(f"\nUI ready in {time.monotonic() - t0:.1f}s at {server.base_url}")
        yield server
    print(f"himari ui stopped in {server.stop_seconds:.1f}s")
    assert not server.leftovers, server.leftovers


@pytest.fixture(scope="module")
def page(ui, tmp_path_factory):
    """A headless Chromium page (system browser, fresh profile, nothing downloaded)."""
    from playwright.sync_api import sync_playwright

    profile = tmp_path_factory.mktemp("chromium_profile")
    with sync_playwright() as pw:
        ctx = pw.chromium.launch_persistent_context(
            str(profile),
            executable_path=str(CHROMIUM),
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 2400, "height": 2200},  # the whole asset graph, fitted: pairs, exits, marts
        )
        ctx.set_default_timeout(30_000)
        try:
            yield ctx.new_page()
        finally:
            ctx.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    return _screenshot_dir(tmp_path_factory)


def _dismiss_welcome(page) -> None:
    """The first visit may show a 'Join the Dagster community' dialog."""
    skip = page.get_by_role("button", name="Skip")
    try:
        skip.click(timeout=3000)
    except Exception:  # noqa: BLE001 - no dialog this time
        pass


def _expected_graph():
    """Labels, groups and edges of the asset graph, from the one Definitions object."""
    from himari_pipeline.definitions import defs

    graph = defs.resolve_asset_graph()
    nodes = {k: graph.get(k) for k in graph.get_all_asset_keys()}
    labels = {k: k.path[-1] for k in nodes}
    groups = sorted({n.group_name for n in nodes.values() if n.group_name})
    edges = [(p, k) for k, n in nodes.items() for p in n.parent_keys if p in nodes]
    return labels, groups, edges


def _shown_as(label: str) -> re.Pattern:
    """The UI shortens long names in the middle (``mart_…_leaderboard``): match the full or shortened form."""
    alternatives = [re.escape(label)] + [
        re.escape(label[:i]) + "…" + re.escape(label[j:])
        for i in range(1, len(label))
        for j in range(i + 1, len(label))
    ]
    return re.compile("^(" + "|".join(alternatives) + ")$")


def _node_box(page, label: str) -> dict:
    """Bounding box of the asset node whose name is ``label`` (the smallest graph box holding it)."""
    holders = page.locator("svg foreignObject").filter(has=page.get_by_text(_shown_as(label)))
    boxes = [b for b in (holders.nth(i).bounding_box() for i in range(holders.count())) if b]
    assert boxes, f"asset {label!r} is not on the asset graph"
    return min(boxes, key=lambda b: b["width"] * b["height"])


@needs_chromium
@pytest.mark.timeout(300)
def test_asset_graph_shows_every_stage_left_to_right(ui, page, shots):
    labels, groups, edges = _expected_graph()
    assert {"raw_ohlcv", "features", "features_denoised", "regimes", "dataset_splits"} <= set(labels.values())

    page.goto(f"{ui.base_url}/asset-groups", wait_until="networkidle")
    _dismiss_welcome(page)
    page.locator("svg foreignObject").first.wait_for()  # groups (collapsed on a first visit)
    page.get_by_role("button", name="settings", exact=True).click()
    expand = page.get_by_role("menuitem", name="Expand all groups")
    if expand.count():
        expand.click()
    orientation = page.get_by_role("menuitem", name=re.compile("graph to (vertical|horizontal)"))
    assert "vertical" in orientation.inner_text(), "graph is not laid out horizontally"
    page.keyboard.press("Escape")
    page.wait_for_load_state("networkidle")
    time.sleep(1)  # let the zoom-to-fit animation settle

    path = shots / "asset_graph.png"
    page.screenshot(path=str(path))  # taken before the assertions so a failure can be looked at
    print(f"\nasset graph screenshot: {path}")
    svg = page.locator("svg").filter(has=page.locator("foreignObject")).first
    for group in groups:
        assert svg.get_by_text(group, exact=True).count() >= 1, f"group {group!r} missing"
    view = page.viewport_size
    boxes = {}
    for key, label in labels.items():
        b = _node_box(page, label)
        assert b["x"] >= 0 and b["y"] >= 0, f"{label} is off screen: {b}"
        assert b["x"] + b["width"] <= view["width"] and b["y"] + b["height"] <= view["height"], (
            f"{label} is off screen: {b}"
        )
        boxes[key] = b
    for parent, child in edges:  # lineage flows left to right
        assert boxes[parent]["x"] + boxes[parent]["width"] <= boxes[child]["x"] + 1, (
            f"{labels[parent]} is not left of {labels[child]}"
        )

    assert path.stat().st_size > 10_000


def _launch_from_launchpad(page, base_url: str) -> str:
    """Open data_job's launchpad, pick the partition, shorten the span, click Launch Run; return run id."""
    location = graphql(base_url, WORKSPACE_QUERY)["workspaceOrError"]["locationEntries"][0]["name"]
    page.goto(f"{base_url}/locations/{location}/jobs/data_job/playground", wait_until="networkidle")
    _dismiss_welcome(page)
    page.get_by_placeholder("Partition").click()
    page.get_by_text(KEY, exact=True).click()
    page.wait_for_load_state("networkidle")

    editor_value = "() => document.querySelector('.CodeMirror').CodeMirror.getValue()"
    page.wait_for_function(
        "() => document.querySelector('.CodeMirror')?.CodeMirror?.getValue().includes('settings')"
    )
    config = yaml.safe_load(page.evaluate(editor_value))
    config["resources"]["settings"]["config"].update(
        synthetic_start=SPAN[0], synthetic_end=SPAN[1], truncation_prefixes=2
    )
    config["execution"] = {"config": {"in_process": {}}}  # one process: a step subprocess costs ~20 s here
    text = yaml.safe_dump(config, sort_keys=False)
    page.locator(".CodeMirror").click()
    page.keyboard.press("Control+A")
    page.keyboard.insert_text(text)
    assert yaml.safe_load(page.evaluate(editor_value)) == config
    page.get_by_text("No errors").wait_for()

    page.get_by_role("button", name="Launch Run").click()
    page.wait_for_url(re.compile(r".*/runs/[0-9a-f-]{36}"), timeout=30_000)
    return re.search(r"/runs/([0-9a-f-]{36})", page.url).group(1)


@needs_chromium
@pytest.mark.timeout(RUN_TIMEOUT_S + 120)
def test_data_job_launched_from_ui_succeeds(ui, page, shots):
    import dagster as dg

    from himari_pipeline.definitions import defs
    from himari_pipeline.storage.lake import Lake

    t0 = time.monotonic()
    run_id = _launch_from_launchpad(page, ui.base_url)
    state = ui.wait_run(run_id, RUN_TIMEOUT_S)
    elapsed = time.monotonic() - t0
    print(f"\nrun {run_id}: {state.get('status')} after {elapsed:.0f}s")
    assert state["status"] == "SUCCESS", f"run {run_id} ended {state}\n{ui.logs()}"
    tags = {t["key"]: t["value"] for t in state["tags"]}
    assert state["jobName"] == "data_job" and tags.get("dagster/partition") == KEY

    page.get_by_text("Success", exact=True).first.wait_for(timeout=30_000)
    page.get_by_text("RUN_SUCCESS").first.wait_for(timeout=30_000)
    path = shots / "data_job_run.png"
    page.screenshot(path=str(path))
    print(f"run page screenshot: {path}")

    # every data asset of the job got a new lake version from this very run, with the span set in the UI
    layer = defs.resolve_job_def("data_job").asset_layer
    lake = Lake(Path(ui.env["HIMARI_LAKE_ROOT"]))
    for key in layer.executable_asset_keys:
        v = lake.get_version(key.path[-1], KEY)
        assert v.run_id == run_id, f"{key.to_user_string()} was not written by the UI run"
    assert lake.get_version("raw_ohlcv", KEY).row_count == SPAN_HOURS

    # ... and every asset check of the job ran in it and passed
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DAGSTER_HOME", str(ui.home))
        with dg.DagsterInstance.get() as instance:
            records = instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION)
    evaluations = {
        (
            r.dagster_event.asset_check_evaluation_data.asset_check_key
        ): r.dagster_event.asset_check_evaluation_data.passed
        for r in records
    }
    assert set(evaluations) == set(layer.asset_graph.asset_check_keys)
    assert all(evaluations.values()), {k.name: ok for k, ok in evaluations.items() if not ok}


def test_settings_overrides_read_only_what_is_set():
    assert settings_overrides({}) == {}
    env = {"HIMARI_SYNTHETIC_START": "2024-01-01", "HIMARI_SYNTHETIC_END": "2025-12-31"}
    assert settings_overrides(env) == {"synthetic_start": "2024-01-01", "synthetic_end": "2025-12-31"}
    assert settings_overrides({"HIMARI_TRUNCATION_PREFIXES": "3"}) == {"truncation_prefixes": 3}


@pytest.mark.parametrize(
    "env",
    [
        {"HIMARI_SYNTHETIC_START": "2024-13-01"},
        {"HIMARI_SYNTHETIC_START": "2025-01-01", "HIMARI_SYNTHETIC_END": "2024-01-01"},
        {"HIMARI_TRUNCATION_PREFIXES": "0"},
        {"HIMARI_TRUNCATION_PREFIXES": "two"},
    ],
)
def test_settings_overrides_reject_bad_values(env):
    with pytest.raises(ValueError, match="HIMARI_"):
        settings_overrides(env)


def test_definitions_take_settings_from_environment():
    """The code location (as the webserver loads it) builds PipelineSettings from the environment."""
    code = (
        "from himari_pipeline.definitions import defs; s = defs.resources['settings']; "
        "print(s.synthetic_start, s.synthetic_end, s.truncation_prefixes)"
    )
    env = dict(
        os.environ,
        HIMARI_SYNTHETIC_START=SPAN[0],
        HIMARI_SYNTHETIC_END=SPAN[1],
        HIMARI_TRUNCATION_PREFIXES="2",
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == [SPAN[0], SPAN[1], "2"]
