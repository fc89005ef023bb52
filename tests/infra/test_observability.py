"""Prometheus config, alert rules and Grafana dashboards, checked with promtool and against a real Prometheus."""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest
import yaml
from prometheus_client import REGISTRY

from infra.dev.devstack import free_port, stop_process, wait_until
from tests.infra.tools import INFRA, run, system_tool
from tests.support.processes import Plane

PROM = INFRA / "prometheus"
GRAFANA = INFRA / "grafana"

# The metric catalogue (docs/operations.md): the only biplane_* names dashboards and alerts may use.
COMMON = {
    "biplane_jobs_finished_total",
    "biplane_job_duration_seconds",
    "biplane_nodes_total",
    "biplane_node_duration_seconds",
    "biplane_stream_entries_total",
    "biplane_stream_length",
    "biplane_stream_pending",
    "biplane_executor_busy",
    "biplane_redis_errors_total",
}
CONTROL = {
    "biplane_http_requests_total",
    "biplane_http_request_duration_seconds",
    "biplane_jobs_submitted_total",
    "biplane_ws_clients",
    "biplane_ws_messages_total",
    "biplane_ws_send_errors_total",
    "biplane_event_delivery_seconds",
    "biplane_workers_alive",
}
WORKER = {
    "biplane_train_steps_total",
    "biplane_train_step_seconds",
    "biplane_gpu_memory_bytes",
    "biplane_node_peak_memory_bytes",
    "biplane_gpu_utilization_ratio",
}
OTHER_PREFIXES = ("DCGM_FI_DEV_", "traefik_", "container_")
INTERVALS = ("$__rate_interval", "$__interval", "$__range")


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("biplane_dashboards", GRAFANA / "dashboards.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _panels() -> Iterator[tuple[str, dict[str, Any]]]:
    for path in sorted((GRAFANA / "dashboards").glob("*.json")):
        for panel in json.loads(path.read_text())["panels"]:
            yield path.stem, panel


def _dashboard_rules() -> dict[str, Any]:
    """Every panel query as a recording rule, Grafana's interval variables replaced by 1m."""
    rules = []
    for board, panel in _panels():
        for t in panel["targets"]:
            expr = t["expr"]
            for var in INTERVALS:
                expr = expr.replace(var, "1m")
            assert "$" not in expr, f"{board} panel {panel['title']!r} uses an unknown variable: {expr}"
            rules.append({"record": f"dashboard:{board}:panel{panel['id']}:{t['refId']}", "expr": expr})
    return {"groups": [{"name": "dashboards", "rules": rules}]}


def _metric_names(expr: str) -> set[str]:
    words = set(re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", re.sub(r'"[^"]*"|\{[^}]*\}|\[[^\]]*\]', " ", expr)))
    names = {w for w in words if w.startswith(("biplane_", *OTHER_PREFIXES))}
    return {re.sub(r"_(bucket|count|sum)$", "", n) if n.startswith("biplane_") else n for n in names}


def test_promtool_checks_config_and_rules() -> None:
    promtool = system_tool("promtool")
    config = run([promtool, "check", "config", str(PROM / "prometheus.yml")])
    assert config.returncode == 0, config.stdout + config.stderr
    assert "1 rule files found" in config.stdout  # the config loads alerts.yml
    rules = run([promtool, "check", "rules", str(PROM / "alerts.yml")])
    assert rules.returncode == 0, rules.stdout + rules.stderr
    alerts = yaml.safe_load((PROM / "alerts.yml").read_text())["groups"][0]["rules"]
    names = {r["alert"] for r in alerts}
    assert {
        "BiplaneNoLiveWorker",
        "BiplaneDataBacklogGrowing",
        "BiplaneJobFailureRatio",
        "BiplaneWebSocketSendErrors",
        "BiplaneGpuMemoryNearFull",
        "BiplaneTargetDown",
    } <= names
    for rule in alerts:
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], rule["alert"]
        assert rule["labels"]["severity"] in ("warning", "critical"), rule["alert"]
    docs = (INFRA.parent / "docs" / "operations.md").read_text()
    undocumented = sorted(n for n in names if n not in docs)
    assert not undocumented, f"alerts missing from docs/operations.md: {undocumented}"


def test_alerts_fire_on_their_situation() -> None:
    """promtool unit tests (infra/prometheus/alerts.test.yml): each alert fires, with its text, and only then."""
    result = run([system_tool("promtool"), "test", "rules", "alerts.test.yml"], cwd=PROM)
    assert result.returncode == 0, result.stdout + result.stderr
    tested = set(re.findall(r"alertname: (\w+)", (PROM / "alerts.test.yml").read_text()))
    declared = {r["alert"] for r in yaml.safe_load((PROM / "alerts.yml").read_text())["groups"][0]["rules"]}
    assert declared == tested, f"alerts without a unit test: {sorted(declared - tested)}"


def test_dashboards_are_generated_and_current(tmp_path: Path) -> None:
    generated = _generator().render()
    committed = {p.name: p.read_text() for p in (GRAFANA / "dashboards").glob("*.json")}
    assert set(generated) == set(committed) == {"overview.json", "workers.json", "api.json"}
    stale = sorted(name for name in generated if generated[name] != committed[name])
    assert not stale, f"run `python infra/grafana/dashboards.py`: {stale} differ from the generator"
    datasource = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text())
    uid = datasource["datasources"][0]["uid"]
    provider = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "biplane.yml").read_text())
    assert provider["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"  # docker-compose.yml mount
    uids = set()
    for name, text in committed.items():
        board = json.loads(text)
        uids.add(board["uid"])
        ids = [p["id"] for p in board["panels"]]
        assert len(ids) == len(set(ids)), name
        for panel in board["panels"]:
            assert panel["datasource"]["uid"] == uid and panel["targets"], (name, panel["title"])
            assert all(t["datasource"]["uid"] == uid and t["expr"] for t in panel["targets"]), panel["title"]
            assert panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24, panel["title"]
    assert len(uids) == 3


def test_dashboard_expressions_pass_promtool(tmp_path: Path) -> None:
    rules = tmp_path / "dashboards.rules.yml"
    rules.write_text(yaml.safe_dump(_dashboard_rules()))
    result = run([system_tool("promtool"), "check", "rules", str(rules)])
    assert result.returncode == 0, result.stdout + result.stderr
    count = len(_dashboard_rules()["groups"][0]["rules"])
    assert count >= 30 and f"SUCCESS: {count} rules found" in result.stdout


def test_only_catalogued_metrics_are_used_and_control_exports_them() -> None:
    exprs = [t["expr"] for _, panel in _panels() for t in panel["targets"]]
    exprs += [r["expr"] for r in yaml.safe_load((PROM / "alerts.yml").read_text())["groups"][0]["rules"]]
    used = set().union(*(_metric_names(e) for e in exprs))
    biplane = {n for n in used if n.startswith("biplane_")}
    unknown = sorted(biplane - COMMON - CONTROL - WORKER)
    assert not unknown, f"not in the metric catalogue: {unknown}"
    assert COMMON | CONTROL | WORKER <= biplane, f"catalogued but on no panel: {(COMMON | CONTROL | WORKER) - biplane}"
    # Every catalogued metric is registered by the modules the planes import.
    import common.metrics  # noqa: F401
    import control.metrics  # noqa: F401
    import worker.metrics  # noqa: F401

    registered = {m.name for m in REGISTRY.collect()}
    registered |= {f"{m.name}_total" for m in REGISTRY.collect() if m.type == "counter"}
    missing = sorted((COMMON | CONTROL | WORKER) - registered)
    assert not missing, f"used on dashboards/alerts but not exported: {missing}"


@pytest.fixture
def prometheus(control: Plane, tmp_path: Path) -> Iterator[str]:
    """The Debian Prometheus with the repo's rules and the dashboards as recording rules, scraping control."""
    config = yaml.safe_load((PROM / "prometheus.yml").read_text())
    config["global"].update(scrape_interval="1s", evaluation_interval="1s")
    config["rule_files"] = ["alerts.yml", "dashboards.rules.yml"]
    config["scrape_configs"] = [
        {"job_name": "control", "static_configs": [{"targets": [control.url.removeprefix("http://")]}]}
    ]
    shutil.copy(PROM / "alerts.yml", tmp_path / "alerts.yml")
    (tmp_path / "dashboards.rules.yml").write_text(yaml.safe_dump(_dashboard_rules()))
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    log = tmp_path / "prometheus.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                system_tool("prometheus"),
                f"--config.file={tmp_path / 'prometheus.yml'}",
                f"--storage.tsdb.path={tmp_path / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--log.level=warn",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: httpx.get(f"{url}/-/ready").status_code == 200, 15, "prometheus", proc)
    except Exception as err:
        stop_process(proc)
        raise AssertionError(f"{err}\n{log.read_text()[-3000:]}") from err
    yield url
    stop_process(proc)


def _query(url: str, expr: str) -> list[dict[str, Any]]:
    r = httpx.get(f"{url}/api/v1/query", params={"query": expr})
    assert r.status_code == 200, r.text
    return r.json()["data"]["result"]


def test_prometheus_scrapes_control_and_evaluates_rules(prometheus: str, control: Plane) -> None:
    api = httpx.Client(base_url=control.url, headers={"Authorization": "Bearer test-key-1"})
    deadline = time.monotonic() + 30
    while not _query(prometheus, 'up{job="control"} == 1'):
        assert time.monotonic() < deadline, "control never scraped with up == 1"
        time.sleep(0.5)
    names = {s["metric"]["__name__"] for s in _query(prometheus, '{__name__=~"biplane_.+", job="control"}')}
    expected = {"biplane_stream_length", "biplane_stream_pending", "biplane_http_requests_total", "biplane_ws_clients"}
    assert expected <= names, names
    # Traffic turns into a dashboard panel's recording rule (rate over two scrapes).
    deadline = time.monotonic() + 30
    while True:
        assert api.get("/api/workflows").status_code == 200
        rows = _query(prometheus, 'dashboard:api:panel4:A{route="/api/workflows"} > 0')
        if rows:
            break
        assert time.monotonic() < deadline, "the API dashboard's request-rate rule never saw /api/workflows"
        time.sleep(0.5)
    rules = httpx.get(f"{prometheus}/api/v1/rules").json()["data"]["groups"]
    health = {r["name"]: r["health"] for g in rules for r in g["rules"]}
    assert health and all(h == "ok" for h in health.values()), {n: h for n, h in health.items() if h != "ok"}
    # Only control is scraped: no worker target, so the no-worker alert is on its way.
    firing = httpx.get(f"{prometheus}/api/v1/alerts").json()["data"]["alerts"]
    alerts = {a["labels"]["alertname"]: a["state"] for a in firing}
    assert alerts.get("BiplaneNoLiveWorker") in ("pending", "firing"), alerts
