"""S3 artifacts through the minio SDK: any S3 endpoint (MinIO in Compose, SeaweedFS locally)."""

from __future__ import annotations

import hashlib
import io
import mimetypes
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import IO, Any

import structlog
import urllib3
from minio import Minio
from minio.error import S3Error
from tenacity import Retrying, retry_if_exception, stop_after_delay, wait_exponential

from common.errors import NotFound, StorageError
from common.models.artifact_schema import ArtifactMeta
from common.settings import Settings

log = structlog.get_logger(__name__)

#: Multipart part size for streamed uploads of unknown length (S3's minimum is 5 MiB).
PART_SIZE = 5 * 1024 * 1024
_SHA_META = "sha256"


def _transient(exc: BaseException) -> bool:
    """Outages and 5xx are retried; a 4xx (auth, missing key) is an answer, not an outage."""
    if isinstance(exc, S3Error):
        return exc.code in {"InternalError", "ServiceUnavailable", "SlowDown", "RequestTimeout"}
    return isinstance(exc, urllib3.exceptions.HTTPError | ConnectionError | TimeoutError)


class _HashingReader(io.RawIOBase):
    """Wraps a stream, hashing and counting what minio reads from it."""

    def __init__(self, raw: IO[bytes], limit: int | None = None) -> None:
        self.raw, self.limit = raw, limit
        self.sha, self.size = hashlib.sha256(), 0

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        data = self.raw.read(n)
        self.sha.update(data)
        self.size += len(data)
        if self.limit is not None and self.size > self.limit:
            raise StorageError(f"stream exceeds {self.limit} bytes")
        return data


class Storage:
    """Bucket-scoped artifact store. Calls block; async code runs them with asyncio.to_thread."""

    def __init__(self, settings: Settings) -> None:
        self.bucket = settings.bucket
        self.presign = timedelta(seconds=settings.presign_seconds)
        self.retry_seconds = settings.s3_retry_seconds
        http = urllib3.PoolManager(
            timeout=urllib3.Timeout(connect=3, read=60),
            retries=urllib3.Retry(total=0),  # retries are ours (tenacity), with a time budget
            maxsize=16,
        )
        self.client = Minio(
            settings.s3_endpoint,
            access_key=settings.s3_access_key,
            secret_key=settings.s3_secret_key.get_secret_value(),
            secure=settings.s3_secure,
            region=settings.s3_region,
            http_client=http,
        )
        # Presigned URLs are bound to the host the client will use; an explicit region means signing never
        # has to ask the server for it.
        self.presigner = Minio(
            settings.s3_public_endpoint or settings.s3_endpoint,
            access_key=settings.s3_access_key,
            secret_key=settings.s3_secret_key.get_secret_value(),
            secure=settings.s3_secure,
            region=settings.s3_region or "us-east-1",
        )

    def _retrying(self) -> Retrying:
        return Retrying(
            retry=retry_if_exception(_transient),
            wait=wait_exponential(multiplier=0.25, max=4),
            stop=stop_after_delay(self.retry_seconds),
            reraise=True,
            before_sleep=lambda rs: log.warning(
                "s3 retry", attempt=rs.attempt_number, error=repr(rs.outcome.exception() if rs.outcome else None)
            ),
        )

    def _call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            for attempt in self._retrying():
                with attempt:
                    return fn(*args, **kwargs)
        except S3Error as e:
            if e.code in {"NoSuchKey", "NoSuchBucket"}:
                raise NotFound(f"no object {args[1] if len(args) > 1 else ''}") from e
            raise StorageError(f"S3 {e.code}: {e.message}") from e
        except Exception as e:
            if _transient(e):  # the detail names the endpoint: logged, never put in job errors or answers
                log.warning("s3 unreachable", error=repr(e))
                raise StorageError(f"S3 unreachable after {self.retry_seconds:.0f}s") from e
            raise
        raise AssertionError("unreachable")

    def ensure_bucket(self) -> None:
        """Create the (private) bucket when missing."""
        if not self._call(self.client.bucket_exists, self.bucket):
            try:
                self._call(self.client.make_bucket, self.bucket)
            except StorageError as e:
                if "BucketAlreadyOwnedByYou" not in str(e) and "BucketAlreadyExists" not in str(e):
                    raise

    def ping(self) -> bool:
        """True when the endpoint answers and the bucket exists (for /ready)."""
        try:
            return bool(self.client.bucket_exists(self.bucket))
        except Exception as e:  # readiness reports any failure as not ready
            log.warning("s3 not ready", error=repr(e))
            return False

    def put_bytes(self, key: str, data: bytes, content_type: str | None = None) -> ArtifactMeta:
        """Upload bytes, retrying outages with backoff for s3_retry_seconds."""
        kind = content_type or _guess(key)
        return self._call(lambda: self._put_once(key, io.BytesIO(data), kind, len(data)))

    def put_file(self, key: str, path: Path, content_type: str | None = None) -> ArtifactMeta:
        def upload() -> ArtifactMeta:  # reopened on each retry: a half-read stream cannot be resent
            with path.open("rb") as f:
                return self._put_once(key, f, content_type or _guess(key), path.stat().st_size)

        return self._call(upload)

    def put_stream(
        self,
        key: str,
        stream: IO[bytes],
        content_type: str | None = None,
        length: int = -1,
        limit: int | None = None,
    ) -> ArtifactMeta:
        """Upload a stream once (no retry: it cannot be rewound in general), hashing as it goes."""
        try:
            return self._put_once(key, stream, content_type or _guess(key), length, limit)
        except S3Error as e:
            raise StorageError(f"S3 {e.code}: {e.message}") from e
        except urllib3.exceptions.HTTPError as e:
            log.warning("s3 unreachable", error=repr(e))
            raise StorageError("S3 unreachable") from e

    def _put_once(
        self,
        key: str,
        stream: IO[bytes],
        content_type: str,
        length: int,
        limit: int | None = None,
    ) -> ArtifactMeta:
        if length >= 0 and length <= PART_SIZE:
            # Small: hash first so the sha256 can travel as object metadata in the same request.
            data = stream.read()
            if limit is not None and len(data) > limit:
                raise StorageError(f"stream exceeds {limit} bytes")
            sha = hashlib.sha256(data).hexdigest()
            self.client.put_object(
                self.bucket,
                key,
                io.BytesIO(data),
                len(data),
                content_type=content_type,
                metadata={_SHA_META: sha},
            )
            return ArtifactMeta(key=key, size=len(data), sha256=sha, content_type=content_type, created=time.time())
        reader = _HashingReader(stream, limit)
        self.client.put_object(
            self.bucket,
            key,
            reader,  # type: ignore[arg-type]
            -1,
            content_type=content_type,
            part_size=PART_SIZE,
        )
        sha = reader.sha.hexdigest()
        # The hash is known only after the body went up: record it with a server-side self-copy.
        from minio.commonconfig import REPLACE, CopySource

        self.client.copy_object(
            self.bucket,
            key,
            CopySource(self.bucket, key),
            metadata={_SHA_META: sha},
            metadata_directive=REPLACE,
        )
        return ArtifactMeta(key=key, size=reader.size, sha256=sha, content_type=content_type, created=time.time())

    def stat(self, key: str) -> ArtifactMeta:
        st = self._call(self.client.stat_object, self.bucket, key)
        meta = {k.lower(): v for k, v in (st.metadata or {}).items()}
        sha = meta.get(f"x-amz-meta-{_SHA_META}", "")
        if not sha:
            raise StorageError(f"object {key} has no sha256 metadata")
        created = st.last_modified.timestamp() if st.last_modified else time.time()
        return ArtifactMeta(
            key=key,
            size=st.size or 0,
            sha256=sha,
            content_type=st.content_type or "application/octet-stream",
            created=created,
        )

    def get_bytes(self, key: str) -> bytes:
        def get() -> bytes:
            resp = self.client.get_object(self.bucket, key)
            try:
                return resp.read()
            finally:
                resp.close()
                resp.release_conn()

        return self._call(get)

    def download(self, key: str, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._call(self.client.fget_object, self.bucket, key, str(path))
        return path

    def list(self, prefix: str) -> Iterator[str]:
        """Keys under prefix, recursively."""
        for obj in self._call(lambda: list(self.client.list_objects(self.bucket, prefix=prefix, recursive=True))):
            if obj.object_name:
                yield obj.object_name

    def delete(self, key: str) -> None:
        self._call(self.client.remove_object, self.bucket, key)

    def presigned_get(self, key: str, expires: timedelta | None = None) -> str:
        return str(self.presigner.presigned_get_object(self.bucket, key, expires=expires or self.presign))


def _guess(key: str) -> str:
    return mimetypes.guess_type(key)[0] or "application/octet-stream"
