"""A Hugging Face hub cache seeded from a local model directory, laid out the way huggingface_hub writes it
(models--org--name/{blobs,snapshots/<commit>,refs/<branch>}), so hub ids resolve offline with no network."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

from huggingface_hub.file_download import _create_symlink, repo_folder_name


def seed_hub_cache(cache: Path, repo_id: str, source: Path, branch: str = "main") -> str:
    """Copy source into cache as repo_id's snapshot at a made-up commit that `branch` points to; the commit."""
    storage = cache / repo_folder_name(repo_id=repo_id, repo_type="model")
    commit = hashlib.sha1(f"{repo_id}:{branch}".encode()).hexdigest()
    for file in sorted(p for p in source.rglob("*") if p.is_file()):
        sha = hashlib.sha256(file.read_bytes()).hexdigest()
        blob = storage / "blobs" / sha
        blob.parent.mkdir(parents=True, exist_ok=True)
        if not blob.exists():
            shutil.copyfile(file, blob)
        link = storage / "snapshots" / commit / file.relative_to(source)
        link.parent.mkdir(parents=True, exist_ok=True)
        _create_symlink(str(blob), str(link), new_blob=False)
    (storage / "refs").mkdir(parents=True, exist_ok=True)
    (storage / "refs" / branch).write_text(commit)
    return commit
