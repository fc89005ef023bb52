"""Every Redis key, stream and channel name, built in one place from the settings' key prefix."""

from __future__ import annotations

import re
from dataclasses import dataclass

from common.errors import NotFound
from common.models.graph_schema import Plane

#: The consumer group on both job streams.
GROUP = "planes"

#: What a job id may look like (new ids are uuid4 hex). Checked before any key is built from an id, so a
#: client's `<id>:events` never names another key of the job (a stream: WRONGTYPE) or anything else.
JOB_ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
JOB_ID = re.compile(JOB_ID_PATTERN)
#: The largest event seq a client may name (`since`): a job's event entry ids are `<seq>-0`, 64-bit.
MAX_SEQ = 2**63 - 1


def check_job_id(job_id: str) -> str:
    """job_id when well-formed; NotFound otherwise (a malformed id names no job: the answer is the same)."""
    if not JOB_ID.fullmatch(job_id):
        raise NotFound(f"no job {job_id[:64]}")
    return job_id


@dataclass(frozen=True)
class Keys:
    prefix: str

    def stream(self, plane: Plane) -> str:
        """The job stream a plane consumes: `<prefix>:jobs:control` or `<prefix>:jobs:data`."""
        return f"{self.prefix}:jobs:{plane}"

    def dead_letter(self, plane: Plane) -> str:
        return f"{self.prefix}:jobs:{plane}:dead"

    def job(self, job_id: str) -> str:
        """Hash holding the job record (graph + per-node state fields)."""
        return f"{self.prefix}:job:{check_job_id(job_id)}"

    def job_events(self, job_id: str) -> str:
        """Capped stream of the job's events, entry id `<seq>-0`, for replay."""
        return f"{self.prefix}:job:{check_job_id(job_id)}:events"

    def job_seq(self, job_id: str) -> str:
        return f"{self.prefix}:job:{check_job_id(job_id)}:seq"

    def lease(self, job_id: str) -> str:
        """Per-job lease: only one consumer of either plane works on a job at a time."""
        return f"{self.prefix}:job:{check_job_id(job_id)}:lease"

    def cancel(self, job_id: str) -> str:
        return f"{self.prefix}:job:{check_job_id(job_id)}:cancel"

    def handoff(self, job_id: str, plane: Plane, token: str) -> str:
        """Dedupe key of one handoff: the same job state is pushed to a plane once."""
        return f"{self.prefix}:job:{check_job_id(job_id)}:handoff:{plane}:{token}"

    def webhook_claim(self, job_id: str, status: str) -> str:
        """Set once by the control process that delivers the job's webhook for this status."""
        return f"{self.prefix}:job:{check_job_id(job_id)}:webhook:{status}"

    def jobs_index(self) -> str:
        """Sorted set of every job id by creation time."""
        return f"{self.prefix}:jobs"

    def owner_index(self, owner: str) -> str:
        """Sorted set of one owner's job ids by creation time."""
        return f"{self.prefix}:owner:{owner}:jobs"

    def idempotency(self, owner: str, key: str) -> str:
        return f"{self.prefix}:idem:{owner}:{key}"

    def rate(self, owner: str, window: int) -> str:
        return f"{self.prefix}:rate:{owner}:{window}"

    def events_channel(self) -> str:
        """The one Pub/Sub channel every event is published on (the hub holds one subscription)."""
        return f"{self.prefix}:events"

    def heartbeats(self) -> str:
        """Hash instance -> manifest JSON of live workers; staleness is judged by the manifest's ts."""
        return f"{self.prefix}:heartbeats"
