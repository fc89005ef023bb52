"""Every Redis key, stream and channel name, built in one place from the settings' key prefix."""

from __future__ import annotations

from dataclasses import dataclass

from common.models.graph_schema import Plane

#: The consumer group on both job streams.
GROUP = "planes"


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
        return f"{self.prefix}:job:{job_id}"

    def job_events(self, job_id: str) -> str:
        """Capped stream of the job's events, entry id `<seq>-0`, for replay."""
        return f"{self.prefix}:job:{job_id}:events"

    def job_seq(self, job_id: str) -> str:
        return f"{self.prefix}:job:{job_id}:seq"

    def lease(self, job_id: str) -> str:
        """Per-job lease: only one consumer of either plane works on a job at a time."""
        return f"{self.prefix}:job:{job_id}:lease"

    def cancel(self, job_id: str) -> str:
        return f"{self.prefix}:job:{job_id}:cancel"

    def handoff(self, job_id: str, plane: Plane, token: str) -> str:
        """Dedupe key of one handoff: the same job state is pushed to a plane once."""
        return f"{self.prefix}:job:{job_id}:handoff:{plane}:{token}"

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
