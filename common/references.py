"""References from a job to data outside it, found by their shape and checked against the job's owner.

Every param of every node (built-in, plugin or future service) and the graph context are walked the same
way, so a new service gets the check without writing one. A reference is

- an object with a string `job` member (an `ArtifactRef`, `{"job": "<id>", "key": ...}`), or
- any string that names an object under `jobs/<id>/` (an S3 key, an `s3://` URL, a key inside a list).

Control checks a graph at submission (`check_graph`); the round checks a node again before its task starts
(`check_node`), so a record that got past submission some other way still reads nothing of another owner.
A reference to another owner's job answers exactly like one to a job that does not exist.
"""

from __future__ import annotations

import re
from typing import Any

from common import paths
from common.errors import NotFound, PlanError
from common.jobs import JobStore
from common.keys import JOB_ID
from common.models.graph_schema import GraphDocument, Node

#: `jobs/<segment>/` where it starts a key or follows a non-id character (`s3://bucket/jobs/...`).
_KEY_JOB = re.compile(rf"(?<![A-Za-z0-9_-]){paths.ROOT}/([^/\s]*)/")
#: `.`/`..` segments or backslashes: a key that could leave the folder it names.
_UNSAFE = re.compile(r"(^|/)\.{1,2}(/|$)|\\")


class InvalidReference(PlanError):
    code = "invalid_reference"


def _escape(part: str) -> str:
    return part.replace("~", "~0").replace("/", "~1")


def references(value: Any, pointer: str = "") -> dict[str, str]:
    """Job id -> JSON pointer of its first reference, for every reference in value (iterative: depth-safe).

    Raises InvalidReference for a reference that cannot name a job (a malformed id, a `..` key)."""
    found: dict[str, str] = {}
    stack: list[tuple[Any, str]] = [(value, pointer)]
    while stack:
        item, at = stack.pop()
        if isinstance(item, dict):
            job = item.get("job")
            if isinstance(job, str):
                _add(found, job, f"{at}/job")
            stack.extend((v, f"{at}/{_escape(str(k))}") for k, v in item.items() if k != "job")
        elif isinstance(item, list):
            stack.extend((v, f"{at}/{i}") for i, v in enumerate(item))
        elif isinstance(item, str) and f"{paths.ROOT}/" in item:
            matches = list(_KEY_JOB.finditer(item))
            if matches and _UNSAFE.search(item):
                raise InvalidReference("object keys may not contain '.', '..' or '\\' segments", pointer=at)
            for m in matches:
                _add(found, m.group(1), at)
    return found


def _add(found: dict[str, str], job_id: str, at: str) -> None:
    if not JOB_ID.fullmatch(job_id):
        raise InvalidReference(f"{job_id[:64]!r} is not a job id", pointer=at)
    found.setdefault(job_id, at)


def graph_references(graph: GraphDocument) -> dict[str, str]:
    """Every reference in the graph's context and its nodes' params."""
    found = references(graph.context or {}, "/context")
    for i, node in enumerate(graph.nodes):
        for job_id, at in references(node.params or {}, f"/nodes/{i}/params").items():
            found.setdefault(job_id, at)
    return found


async def check_owner(store: JobStore, owner: str | None, refs: dict[str, str], own: str | None) -> None:
    """Every referenced job (other than own, the job itself) exists and belongs to owner; else NotFound."""
    others = [j for j in refs if j != own]
    if not others:
        return
    async with store.redis.pipeline(transaction=False) as p:
        for job_id in others:
            p.hget(store.keys.job(job_id), "owner")
        owners = await p.execute()
    for job_id, found in zip(others, owners, strict=True):
        if found is None or found.decode() != (owner or ""):
            raise NotFound(f"no job {job_id}", pointer=refs[job_id])


async def check_graph(store: JobStore, owner: str, graph: GraphDocument, own: str) -> None:
    """At submission: the graph references only the owner's jobs (and itself, job id own)."""
    await check_owner(store, owner, graph_references(graph), own)


async def check_node(store: JobStore, owner: str | None, job_id: str, context: Any, node: Node) -> None:
    """Before a node's task starts: what it can read (job context, its params) is the owner's."""
    refs = references(context or {}, "/context")
    for ref, at in references(node.params or {}, "/params").items():
        refs.setdefault(ref, at)
    await check_owner(store, owner, refs, job_id)
