"""Generates the Grafana dashboards in infra/grafana/dashboards/ (run after editing; a test checks for drift).

    python infra/grafana/dashboards.py [OUT_DIR]

Plain dicts in Grafana's dashboard JSON model (schemaVersion 39). Every expression uses only metrics that
Biplane, Traefik, cAdvisor or dcgm-exporter export; tests/infra checks each one with promtool.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

DATASOURCE = {"type": "prometheus", "uid": "prometheus"}  # provisioning/datasources/prometheus.yml
OUT = Path(__file__).resolve().parent / "dashboards"
RATE = "$__rate_interval"

Panel = dict[str, Any]


def target(expr: str, legend: str = "", ref: str = "A") -> dict[str, Any]:
    return {"datasource": DATASOURCE, "expr": expr, "legendFormat": legend or "__auto", "refId": ref}


def timeseries(title: str, targets: list[tuple[str, str]], unit: str = "short", description: str = "") -> Panel:
    return {
        "type": "timeseries",
        "title": title,
        "description": description,
        "datasource": DATASOURCE,
        "targets": [target(expr, legend, chr(ord("A") + i)) for i, (expr, legend) in enumerate(targets)],
        "fieldConfig": {"defaults": {"unit": unit, "custom": {"lineWidth": 1, "fillOpacity": 10}}, "overrides": []},
        "options": {"legend": {"displayMode": "list", "placement": "bottom"}, "tooltip": {"mode": "multi"}},
    }


def stat(title: str, expr: str, unit: str = "short", description: str = "") -> Panel:
    return {
        "type": "stat",
        "title": title,
        "description": description,
        "datasource": DATASOURCE,
        "targets": [target(expr)],
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False}, "colorMode": "value"},
    }


def quantiles(metric: str, by: str = "", qs: tuple[float, ...] = (0.5, 0.95)) -> list[tuple[str, str]]:
    """p50/p95 of a histogram, optionally per label."""
    group = f"le, {by}" if by else "le"
    suffix = f" {{{{{by}}}}}" if by else ""
    return [
        (f"histogram_quantile({q}, sum by ({group}) (rate({metric}_bucket[{RATE}])))", f"p{round(q * 100)}{suffix}")
        for q in qs
    ]


def dashboard(uid: str, title: str, rows: list[list[Panel]], description: str) -> dict[str, Any]:
    """Lays rows of panels out on Grafana's 24-column grid and numbers them."""
    panels: list[Panel] = []
    y = 0
    for row in rows:
        height = 4 if all(p["type"] == "stat" for p in row) else 8
        width = 24 // len(row)
        for i, panel in enumerate(row):
            grid = {"h": height, "w": width, "x": i * width, "y": y}
            panels.append({"id": len(panels) + 1, "gridPos": grid, **panel})
        y += height
    return {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": ["biplane"],
        "timezone": "browser",
        "schemaVersion": 39,
        "version": 1,
        "editable": False,
        "graphTooltip": 1,
        "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"},
        "templating": {"list": []},
        "annotations": {"list": []},
        "links": [{"type": "dashboards", "tags": ["biplane"], "asDropdown": True, "title": "Biplane"}],
        "panels": panels,
    }


def overview() -> dict[str, Any]:
    return dashboard(
        "biplane-overview",
        "Biplane / Overview",
        [
            [
                stat("Live workers", "max(biplane_workers_alive)", description="Workers with a fresh heartbeat"),
                stat("Workers scraped", 'sum(up{job="worker"})'),
                stat("WebSocket clients", "sum(biplane_ws_clients)"),
                stat("Jobs queued (data)", 'max(biplane_stream_length{plane="data"})'),
            ],
            [
                timeseries(
                    "Jobs submitted / min by workflow",
                    [(f"sum by (workflow) (rate(biplane_jobs_submitted_total[{RATE}])) * 60", "{{workflow}}")],
                ),
                timeseries(
                    "Jobs finished / min by status",
                    [(f"sum by (status) (rate(biplane_jobs_finished_total[{RATE}])) * 60", "{{status}}")],
                ),
            ],
            [
                timeseries(
                    "Stream length",
                    [("max by (plane) (biplane_stream_length)", "{{plane}}")],
                    description="XLEN of each job stream (acked entries stay until trimmed)",
                ),
                timeseries(
                    "Pending entries (delivered, not acked)",
                    [("max by (plane) (biplane_stream_pending)", "{{plane}}")],
                ),
            ],
            [
                timeseries("Job duration", quantiles("biplane_job_duration_seconds", "workflow"), unit="s"),
                timeseries("Node duration p95", quantiles("biplane_node_duration_seconds", "service", (0.95,)), "s"),
            ],
            [
                timeseries("WebSocket clients", [("sum(biplane_ws_clients)", "clients")]),
                timeseries(
                    "Event delivery latency (publish to WebSocket send)",
                    quantiles("biplane_event_delivery_seconds", qs=(0.5, 0.95, 0.99)),
                    unit="s",
                ),
                timeseries(
                    "WebSocket messages / s",
                    [
                        (
                            f"sum by (direction, type) (rate(biplane_ws_messages_total[{RATE}]))",
                            "{{direction}} {{type}}",
                        ),
                        (f"sum(rate(biplane_ws_send_errors_total[{RATE}]))", "send errors"),
                    ],
                ),
            ],
            [
                timeseries(
                    "Stream entries handled / s",
                    [
                        (
                            f"sum by (plane, outcome) (rate(biplane_stream_entries_total[{RATE}]))",
                            "{{plane}} {{outcome}}",
                        )
                    ],
                ),
                timeseries(
                    "Redis errors / s",
                    [(f"sum by (plane) (rate(biplane_redis_errors_total[{RATE}]))", "{{plane}}")],
                ),
            ],
        ],
        "Jobs, queues and live progress delivery",
    )


def workers() -> dict[str, Any]:
    return dashboard(
        "biplane-workers",
        "Biplane / Workers & GPU",
        [
            [
                stat("Busy workers", 'sum(biplane_executor_busy{plane="data"} > bool 0)'),
                stat("Workers scraped", 'sum(up{job="worker"})'),
                stat("Training steps / s", f"sum(rate(biplane_train_steps_total[{RATE}]))"),
            ],
            [
                timeseries(
                    "Jobs in progress per worker",
                    [('sum by (instance) (biplane_executor_busy{plane="data"})', "{{instance}}")],
                ),
                timeseries(
                    "Data-plane nodes / min by service and status",
                    [
                        (
                            f'sum by (service, status) (rate(biplane_nodes_total{{plane="data"}}[{RATE}])) * 60',
                            "{{service}} {{status}}",
                        )
                    ],
                ),
            ],
            [
                timeseries(
                    "Training steps / s",
                    [(f"sum by (service) (rate(biplane_train_steps_total[{RATE}]))", "{{service}}")],
                ),
                timeseries("Training step time", quantiles("biplane_train_step_seconds", "service"), unit="s"),
            ],
            [
                timeseries(
                    "GPU memory (torch)",
                    [("max by (instance, kind) (biplane_gpu_memory_bytes)", "{{instance}} {{kind}}")],
                    unit="bytes",
                ),
                timeseries(
                    "GPU memory used (dcgm)",
                    [
                        ("max by (instance, gpu) (DCGM_FI_DEV_FB_USED) * 1024 * 1024", "gpu {{gpu}} used"),
                        (
                            "max by (instance, gpu) (DCGM_FI_DEV_FB_USED + DCGM_FI_DEV_FB_FREE) * 1024 * 1024",
                            "gpu {{gpu}} total",
                        ),
                    ],
                    unit="bytes",
                    description="dcgm-exporter reports MiB",
                ),
            ],
            [
                timeseries(
                    "GPU utilisation",
                    [
                        ("max by (instance) (biplane_gpu_utilization_ratio)", "{{instance}} (worker)"),
                        ("max by (instance, gpu) (DCGM_FI_DEV_GPU_UTIL) / 100", "gpu {{gpu}} (dcgm)"),
                    ],
                    unit="percentunit",
                ),
                timeseries(
                    "Peak memory per node run",
                    [("max by (service) (biplane_node_peak_memory_bytes)", "{{service}}")],
                    unit="bytes",
                ),
            ],
            [
                timeseries(
                    "Container CPU (cAdvisor, debug profile)",
                    [
                        (
                            f'sum by (name) (rate(container_cpu_usage_seconds_total{{name=~"biplane-.+"}}[{RATE}]))',
                            "{{name}}",
                        )
                    ],
                    unit="cores",
                ),
                timeseries(
                    "Container memory (cAdvisor, debug profile)",
                    [('sum by (name) (container_memory_working_set_bytes{name=~"biplane-.+"})', "{{name}}")],
                    unit="bytes",
                ),
            ],
        ],
        "Data-plane workers, training throughput and GPUs",
    )


def api() -> dict[str, Any]:
    return dashboard(
        "biplane-api",
        "Biplane / API",
        [
            [
                stat("Requests / s", f"sum(rate(biplane_http_requests_total[{RATE}]))", "reqps"),
                stat(
                    "5xx ratio",
                    f'sum(rate(biplane_http_requests_total{{status=~"5.."}}[{RATE}]))'
                    f" / sum(rate(biplane_http_requests_total[{RATE}]))",
                    "percentunit",
                ),
                stat("p95 latency", quantiles("biplane_http_request_duration_seconds", qs=(0.95,))[0][0], "s"),
            ],
            [
                timeseries(
                    "Requests / s by route",
                    [(f"sum by (route, method) (rate(biplane_http_requests_total[{RATE}]))", "{{method}} {{route}}")],
                    unit="reqps",
                ),
                timeseries(
                    "Latency p95 by route",
                    quantiles("biplane_http_request_duration_seconds", "route", (0.95,)),
                    unit="s",
                ),
            ],
            [
                timeseries(
                    "Errors / s by route and status",
                    [
                        (
                            f'sum by (route, status) (rate(biplane_http_requests_total{{status=~"[45].."}}[{RATE}]))',
                            "{{status}} {{route}}",
                        )
                    ],
                    unit="reqps",
                ),
                timeseries(
                    "Traefik requests / s by service and code",
                    [
                        (
                            f"sum by (service, code) (rate(traefik_service_requests_total[{RATE}]))",
                            "{{service}} {{code}}",
                        )
                    ],
                    unit="reqps",
                ),
            ],
            [
                timeseries(
                    "Traefik request duration p95 by service",
                    quantiles("traefik_service_request_duration_seconds", "service", (0.95,)),
                    unit="s",
                ),
                timeseries(
                    "Traefik open connections by entry point",
                    [("sum by (entrypoint) (traefik_open_connections)", "{{entrypoint}}")],
                ),
            ],
        ],
        "Control-plane REST API and the Traefik edge",
    )


DASHBOARDS = {"overview.json": overview, "workers.json": workers, "api.json": api}


def render() -> dict[str, str]:
    """File name -> JSON text of every dashboard."""
    return {name: json.dumps(build(), indent=2, sort_keys=True) + "\n" for name, build in DASHBOARDS.items()}


def main(out: Path = OUT) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for name, text in render().items():
        (out / name).write_text(text)
        print(f"wrote {out / name}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else OUT)
