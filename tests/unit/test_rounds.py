"""Round selection is a pure function of the job record."""

import time

from common.jobs import overall_progress
from common.models.job_schema import JobRecord
from common.rounds import next_plane, ready_nodes
from tests.support.jobs import hybrid


def record(statuses: dict[str, str]) -> JobRecord:
    doc = hybrid()
    for n in doc.nodes:
        n.status = statuses.get(n.id, "pending")  # type: ignore[assignment]
    now = time.time()
    return JobRecord(job_id="j", workflow="test", status="running", graph=doc, created_at=now, updated_at=now)


def test_first_round_is_control_only() -> None:
    job = record({})
    assert [n.id for n in ready_nodes(job, "control")] == ["prep"]
    assert ready_nodes(job, "data") == []
    assert next_plane(job) == "control"


def test_data_round_takes_nodes_that_become_ready_within_it() -> None:
    job = record({"prep": "completed"})
    assert [n.id for n in ready_nodes(job, "data")] == ["a", "b", "join"]
    assert ready_nodes(job, "control") == []


def test_running_node_after_a_crash_is_ready_again_and_finished_ones_are_not() -> None:
    job = record({"prep": "completed", "a": "completed", "b": "running"})
    assert [n.id for n in ready_nodes(job, "data")] == ["b", "join"]


def test_nothing_ready_when_done() -> None:
    job = record({n: "completed" for n in ("prep", "a", "b", "join", "publish")})
    assert next_plane(job) is None


def test_overall_progress_is_weighted() -> None:
    job = record({"prep": "completed"})
    assert overall_progress(job) == 0.2
    assert abs(overall_progress(job, {"a": 0.5}) - 0.3) < 1e-9
