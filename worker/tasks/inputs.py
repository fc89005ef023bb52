"""What a data-plane task reads: its dependencies' outputs (ctx.inputs) first, then the job-wide context."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from common import paths
from common.context import TaskContext
from common.errors import NotFound, TaskInputError
from common.params import ArtifactRef


def value(ctx: TaskContext, key: str, default: Any = None) -> Any:
    """The first dependency output that has key (in dependency order), else ctx.job_inputs[key], else default."""
    for out in ctx.inputs.values():
        if isinstance(out, dict) and out.get(key) is not None:
            return out[key]
    found = ctx.job_inputs.get(key)
    return default if found is None else found


def key_of(found: Any) -> str | None:
    """An S3 key from an output value: a plain key or an artifact dict with `key`."""
    if isinstance(found, dict):
        found = found.get("key")
    return found if isinstance(found, str) and found else None


def ref_key(ctx: TaskContext, ref: ArtifactRef | None, marker: str) -> str | None:
    """Key named by an ArtifactRef; a ref with only a job finds that job's object whose key ends in marker."""
    if ref is None:
        return None
    if ref.key:
        return ref.key
    assert ctx.storage is not None
    matches = sorted(k for k in ctx.storage.list(paths.job_prefix(ref.job or ctx.job_id)) if k.endswith("/" + marker))
    if not matches:
        raise TaskInputError(f"job {ref.job} has no {marker}")
    return matches[0]


def read(ctx: TaskContext, key: str, what: str) -> bytes:
    assert ctx.storage is not None
    try:
        return ctx.storage.get_bytes(key)
    except NotFound as e:
        raise TaskInputError(f"{what} {key} is not in storage") from e


def download_dir(ctx: TaskContext, prefix: str, dest: Path) -> Path:
    """Copy every object under prefix into dest (relative paths kept)."""
    assert ctx.storage is not None
    prefix = prefix if prefix.endswith("/") else prefix + "/"
    keys = list(ctx.storage.list(prefix))
    if not keys:
        raise TaskInputError(f"nothing stored under {prefix}")
    for key in keys:
        ctx.storage.download(key, dest / key[len(prefix) :])
    return dest
