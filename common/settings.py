"""The one settings class (environment prefix BIPLANE_), built by entrypoints and passed down."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

#: What a graceful stop takes beyond `stop_grace_seconds` at most: the stopped task's round ends, its job is handed
#: back to the stream and the process exits (tests/worker/test_long_work.py holds a busy worker to it).
STOP_MARGIN_SECONDS = 5.0


class Settings(BaseSettings):
    """Every knob of both planes, the UI and the CLI. Nothing reads the environment at import time."""

    model_config = SettingsConfigDict(env_prefix="BIPLANE_", extra="ignore")

    # Redis
    redis_url: str = "redis://127.0.0.1:6390/0"
    key_prefix: str = "biplane"

    # S3 (any endpoint the minio SDK speaks to: MinIO, SeaweedFS, AWS)
    s3_endpoint: str = "127.0.0.1:8333"
    s3_access_key: str = "biplane"
    s3_secret_key: SecretStr = SecretStr("biplane-dev-secret")
    s3_secure: bool = False
    s3_region: str | None = None
    bucket: str = "biplane"
    presign_seconds: int = Field(900, ge=1, le=7 * 24 * 3600)
    # Retries of S3 calls (uploads, stats) before a node fails, with exponential backoff.
    s3_retry_seconds: float = Field(30.0, ge=0)

    # Auth and clients
    api_keys: str = ""  # comma-separated keys the control plane accepts
    url: str = "http://127.0.0.1:8000"  # where clients (UI, CLI) find control
    api_key: SecretStr = SecretStr("")  # the key clients send

    # Models (common/modelrefs.py): a local diffusers/transformers directory or a hub id org/name[@revision];
    # unset = a demo model built locally (no SDXL motion adapter has one).
    sd_model: str | None = None
    sdxl_model: str | None = None
    tts_model: str | None = None
    vocoder_model: str | None = None
    motion_adapter: str | None = None
    sdxl_motion_adapter: str | None = None
    base_models: str = ""  # name=family:reference,... (common/basemodels.py); "" = sd15 and sdxl from the above
    model_cache: Path | None = None  # huggingface_hub cache of hub ids; None = the hub's default (HF_HUB_CACHE)
    offline: bool = False  # cache only, never download (as HF_HUB_OFFLINE=1)
    demo_model_dir: Path = Path(".dev/demo-models")

    # Executor
    lease_seconds: float = Field(30.0, gt=0)  # a job's lease; renewed every third of it while a plane works
    claim_idle_seconds: float = Field(60.0, gt=0)  # XAUTOCLAIM entries idle longer than this
    max_node_attempts: int = Field(3, ge=1)
    concurrency: int = Field(0, ge=0)  # jobs handled at once; 0 = plane default (control 32, data 1)
    stream_maxlen: int = Field(100_000, ge=100)
    event_maxlen: int = Field(5_000, ge=100)  # replay window per job
    job_ttl_seconds: int = Field(14 * 24 * 3600, ge=60)  # how long a finished job is kept
    heartbeat_seconds: float = Field(5.0, gt=0)
    task_modules: str = ""  # extra comma-separated modules exposing a `registry` (plugins, tests)
    builtin_tasks: bool = True  # worker: register the built-in ML tasks (tests of the UI swap in doubles)

    # Long work: supervision of running nodes (common/supervisor.py)
    node_silence_seconds: float = Field(600.0, gt=0)  # watchdog: a node silent this long fails (per-service override)
    node_heartbeat_seconds: float = Field(3.0, gt=0)  # a quiet running node gets a heartbeat event this often
    stop_grace_seconds: float = Field(5.0, ge=0)  # graceful stop: time a task gets to checkpoint before a kill
    task_memory_bytes: int = Field(0, ge=0)  # memory limit of each task child process (RLIMIT_DATA); 0 = none
    scratch_dir: str = ""  # where task child processes keep temporary files; "" = the system's temp directory

    # Control-plane API
    rate_limit_per_minute: int = Field(60, ge=1)  # job submissions per API key per minute
    webhook_secret: SecretStr = SecretStr("")  # whsec_<base64>; empty = derived from the first API key
    webhook_timeout_seconds: float = 5.0
    webhook_retry_seconds: float = 60.0  # total budget of webhook retries with backoff
    cors_origins: str = ""  # comma-separated origins allowed to call the API from a browser
    s3_public_endpoint: str = ""  # host:port clients use to fetch presigned URLs (default: s3_endpoint)
    ws_max_message_bytes: int = 64 * 1024
    ws_max_subscriptions: int = 100
    ws_heartbeat_seconds: float = 15.0

    # Job estimates (common/estimate.py): a submission estimated longer than this answers with a `warnings` entry
    estimate_warn_seconds: float = Field(1800.0, gt=0)

    # Limits
    max_upload_file_bytes: int = 20 * 1024 * 1024
    max_upload_total_bytes: int = 200 * 1024 * 1024
    max_images: int = 50
    max_image_pixels: int = 64_000_000  # larger images are refused at upload (decompression bombs)
    max_clips: int = 20
    max_prompt_chars: int = 1000
    max_graph_bytes: int = 256 * 1024
    max_graph_nodes: int = 64
    max_graph_edges: int = 256

    # Security and reliability limits (docs/operations.md#security)
    max_body_bytes: int = Field(1024 * 1024, ge=1024)  # any request body but uploads (a graph is <= max_graph_bytes)
    max_json_depth: int = Field(32, ge=4, le=200)  # nesting of JSON bodies and JSON form fields
    http_header_timeout_seconds: float = Field(10.0, gt=0)  # a request's headers must arrive within this
    http_max_header_bytes: int = Field(64 * 1024, ge=4096)  # request line + headers; larger answer 400
    http_body_timeout_seconds: float = Field(30.0, gt=0)  # longest wait for the next chunk of a request body
    http_keep_alive_seconds: int = Field(5, ge=1)  # idle keep-alive connections are closed after this
    http_max_connections: int = Field(4096, ge=1)  # connections + tasks at once; more are answered 503
    webhook_allow: str = ""  # comma-separated hosts or networks (CIDR) webhooks may target although not public

    # Processes
    host: str = "127.0.0.1"
    control_port: int = 8000
    worker_port: int = 8001
    frontend_port: int = 8080
    log_json: bool = False
    instance: str = ""  # consumer name; default hostname-pid
    # copies of this plane on this host, sharing its port and consumer group (common/processes.py); 1 = this process
    processes: int = Field(1, ge=1, le=256)

    def stop_bound_seconds(self) -> float:
        """The longest a busy plane process takes to exit after SIGTERM. A deployment's own grace period must be
        longer (Kubernetes terminationGracePeriodSeconds, Compose stop_grace_period), or the checkpoint is lost."""
        return self.stop_grace_seconds + STOP_MARGIN_SECONDS

    @field_validator("base_models")
    @classmethod
    def _base_models(cls, value: str) -> str:
        from common.basemodels import parse

        parse(value)  # a bad entry stops the process at start, naming it
        return value

    @field_validator("sd_model", "sdxl_model", "tts_model", "vocoder_model", "motion_adapter", "sdxl_motion_adapter")
    @classmethod
    def _reference(cls, value: str | None) -> str | None:
        return (value or "").strip() or None

    def api_key_set(self) -> frozenset[str]:
        return frozenset(k.strip() for k in self.api_keys.split(",") if k.strip())

    def cors_origin_list(self) -> list[str]:
        return [o.strip() for o in self.cors_origins.split(",") if o.strip()]

    def webhook_allow_list(self) -> list[str]:
        return [h.strip() for h in self.webhook_allow.split(",") if h.strip()]

    def task_module_list(self) -> list[str]:
        return [m.strip() for m in self.task_modules.split(",") if m.strip()]
