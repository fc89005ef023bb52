"""Every S3 object key of a job, built in one place: `jobs/<id>/inputs/...`, `jobs/<id>/<node>/...`, the manifest."""

from __future__ import annotations

from typing import Literal

#: The top folder of every job's objects.
ROOT = "jobs"
#: The job's published list of results (written by publish_artifacts).
MANIFEST = "manifest.json"
#: Under a job: the uploads the submission stored.
INPUTS = "inputs"
#: Under a node: resumable training state.
CHECKPOINTS = "checkpoints"
#: Folders that hold inputs or resumable state, not results.
NOT_RESULTS = (INPUTS, CHECKPOINTS)


def job_prefix(job_id: str) -> str:
    """The folder of every object of the job, with its trailing slash."""
    return f"{ROOT}/{job_id}/"


def job_key(job_id: str, name: str) -> str:
    """The key of `name`, a path relative to the job folder (`train_lora/samples/0001.png`)."""
    return job_prefix(job_id) + name


def node_key(job_id: str, node_id: str, name: str) -> str:
    """Where a node stores what it makes: `jobs/<job>/<node>/<name>`."""
    return job_key(job_id, f"{node_id}/{name}")


def input_key(job_id: str, kind: Literal["images", "clips"], index: int, ext: str) -> str:
    """An uploaded file of a submission: `jobs/<job>/inputs/images/000.png`."""
    return job_key(job_id, f"{INPUTS}/{kind}/{index:03d}.{ext}")


def manifest_key(job_id: str) -> str:
    return job_key(job_id, MANIFEST)


def relative(job_id: str, key: str) -> str | None:
    """The key's path relative to the job folder, None when the key lies outside it."""
    prefix = job_prefix(job_id)
    return key[len(prefix) :] if key.startswith(prefix) else None


def is_result(name: str) -> bool:
    """Whether `name` (relative to the job folder) is a result, not an input or a checkpoint."""
    return not any(f"/{folder}/" in f"/{name}" for folder in NOT_RESULTS)
