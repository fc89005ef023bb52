"""Prometheus metrics shared by both planes (low-cardinality labels only; never a job id).

A gauge states how copies of a plane on one host (BIPLANE_PROCESSES, common/processes.py) add up."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

JOBS_FINISHED = Counter("biplane_jobs_finished_total", "Jobs that reached a final status", ["workflow", "status"])
JOB_DURATION = Histogram(
    "biplane_job_duration_seconds",
    "Submit to final status",
    ["workflow"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200),
)
NODES = Counter("biplane_nodes_total", "Node runs by outcome", ["plane", "service", "status"])
NODE_DURATION = Histogram(
    "biplane_node_duration_seconds",
    "Node run time",
    ["plane", "service"],
    buckets=(0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600),
)
BATCH_SIZE = Histogram(
    "biplane_batch_size", "Jobs per batched round", ["plane"], buckets=(2, 4, 8, 16, 32, 64, 128, 256)
)
ENTRIES = Counter("biplane_stream_entries_total", "Stream entries handled", ["plane", "outcome"])
STREAM_LENGTH = Gauge(
    "biplane_stream_length",
    "Entries waiting in a job stream (group lag: not yet delivered)",
    ["plane"],
    multiprocess_mode="livemostrecent",
)
STREAM_PENDING = Gauge(
    "biplane_stream_pending", "Entries delivered but not acked", ["plane"], multiprocess_mode="livemostrecent"
)
BUSY = Gauge("biplane_executor_busy", "Jobs the plane's processes work on", ["plane"], multiprocess_mode="livesum")
REDIS_ERRORS = Counter("biplane_redis_errors_total", "Redis calls that failed (connection lost)", ["plane"])
