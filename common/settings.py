"""The one settings class (environment prefix BIPLANE_), built by entrypoints and passed down.

Values come from, highest priority first: arguments, `BIPLANE_*` environment variables, the file that
`BIPLANE_CONFIG` names (JSON, TOML or YAML, read by pydantic-settings' own sources), the defaults.
common/schemas/config.schema.json is generated from this class (`make codegen`); common/config.py loads it
for the processes and the `biplane config` commands.
"""

from __future__ import annotations

import difflib
import json
import tomllib
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    JsonConfigSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
    YamlConfigSettingsSource,
)

from common.models.config_schema import BiplaneConfig

#: The suffixes of settings files (each read by pydantic-settings' own source for the format).
SUFFIXES = (".json", ".toml", ".yaml", ".yml")


class ConfigError(ValueError):
    """The configuration cannot be used: the message names the key, where it came from and what is expected."""


class ConfigFileSource(PydanticBaseSettingsSource):
    """The settings file named by `config` (`BIPLANE_CONFIG` or an argument); lower priority than the environment.

    The file is validated against common/schemas/config.schema.json (its generated model): a key that is not a
    setting is an error, like a bad value (a typo would otherwise be ignored silently)."""

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # unused: __call__ reads the whole file

    def __call__(self) -> dict[str, Any]:
        path = self.current_state.get("config")
        if not path:
            return {}
        data = read_config_file(Path(path), self.settings_cls)
        check_config_file(data, Path(path))
        return data


def check_config_file(data: dict[str, Any], path: Path) -> None:
    """Validate a settings file's table against the config schema; ConfigError names each bad key."""
    try:
        BiplaneConfig.model_validate(data)
    except ValidationError as e:
        problems = []
        for err in e.errors():
            key = ".".join(str(part) for part in err["loc"]) or "?"
            if err["type"] == "extra_forbidden":
                near = difflib.get_close_matches(key, sorted(BiplaneConfig.model_fields), n=1)
                problems.append(
                    f"`{key}` in {path} is not a setting" + (f" (did you mean `{near[0]}`?)" if near else "")
                )
            else:
                field = BiplaneConfig.model_fields.get(key)
                got = "" if field and "SecretStr" in str(field.annotation) else f" (got {err['input']!r})"
                problems.append(f"`{key}` in {path}: {err['msg']}{got}")
        raise ConfigError("; ".join(problems)) from None


def read_config_file(path: Path, settings_cls: type[BaseSettings]) -> dict[str, Any]:
    """The top-level table of a JSON, TOML or YAML settings file, read by pydantic-settings' source for it."""
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise ConfigError(f"{path}: a settings file ends in one of {', '.join(SUFFIXES)}")
    if not path.is_file():
        raise ConfigError(f"{path}: no such settings file (BIPLANE_CONFIG)")
    source: PydanticBaseSettingsSource
    try:  # the sources read the file as they are built
        if suffix == ".json":
            source = JsonConfigSettingsSource(settings_cls, json_file=path)
        elif suffix == ".toml":
            source = TomlConfigSettingsSource(settings_cls, toml_file=path)
        else:
            source = YamlConfigSettingsSource(settings_cls, yaml_file=path)
        data = source()
    except (json.JSONDecodeError, tomllib.TOMLDecodeError, yaml.YAMLError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path} does not parse as {path.suffix.lstrip('.').upper()}: {e}") from e
    except (ValueError, TypeError) as e:  # a list or a scalar where the table of settings belongs
        raise ConfigError(f"{path}: the file must hold a table of settings") from e
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the file must hold a table of settings")
    return data


#: What a graceful stop takes beyond `stop_grace_seconds` at most: the stopped task's round ends, its job is handed
#: back to the stream and the process exits (tests/worker/test_long_work.py holds a busy worker to it).
STOP_MARGIN_SECONDS = 5.0


class Settings(BaseSettings):
    """Every knob of both planes, the UI and the CLI. Nothing reads the environment at import time."""

    model_config = SettingsConfigDict(env_prefix="BIPLANE_", extra="ignore")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return init_settings, env_settings, ConfigFileSource(settings_cls)

    # The settings file (JSON, TOML or YAML) read under the environment: BIPLANE_* variables win over it.
    config: Path | None = None

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
    api_keys: SecretStr = SecretStr("")  # comma-separated keys the control plane accepts
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

    # Script writer (generate_script): any OpenAI-compatible chat-completions server (Ollama, vLLM, llama.cpp,
    # `transformers serve`, hosted APIs). `make run` serves the demo LLM here when BIPLANE_LLM_URL is unset.
    llm_url: str = "http://127.0.0.1:8002/v1"  # base URL, up to and including /v1
    llm_model: str = ""  # model name the server knows; "" = the demo LLM's directory (demo_model_dir/llm-json)
    llm_models: str = ""  # comma-separated other models a job may name in generate_script's `model`; others fail
    llm_api_key: SecretStr = SecretStr("")  # sent as a Bearer token; most local servers ignore it
    llm_timeout_seconds: float = Field(120.0, gt=0)  # one chat completion, answer included
    llm_port: int = 8002  # where `make run` serves the demo LLM (python -m worker.llm)

    # Executor
    lease_seconds: float = Field(30.0, gt=0)  # a job's lease; renewed every third of it while a plane works
    claim_idle_seconds: float = Field(60.0, gt=0)  # XAUTOCLAIM entries idle longer than this
    max_node_attempts: int = Field(3, ge=1)
    concurrency: int = Field(0, ge=0)  # jobs handled at once; 0 = plane default (control 32, data 1)
    # jobs read together whose round is one short node share one LangGraph invocation (1 = never batch)
    batch_size: int = Field(32, ge=1, le=256)
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
        return frozenset(k.strip() for k in self.api_keys.get_secret_value().split(",") if k.strip())

    def cors_origin_list(self) -> list[str]:
        return [o.strip() for o in self.cors_origins.split(",") if o.strip()]

    def webhook_allow_list(self) -> list[str]:
        return [h.strip() for h in self.webhook_allow.split(",") if h.strip()]

    def llm_model_name(self) -> str:
        """The model generate_script asks for by default: BIPLANE_LLM_MODEL, else the demo LLM's directory."""
        return self.llm_model or str((self.demo_model_dir / "llm-json").resolve())

    def llm_allowed_models(self) -> frozenset[str]:
        """What a job may ask generate_script for: the default model and BIPLANE_LLM_MODELS (never any path or
        name the LLM server could load)."""
        return frozenset({self.llm_model_name(), *(m.strip() for m in self.llm_models.split(",") if m.strip())})

    def task_module_list(self) -> list[str]:
        return [m.strip() for m in self.task_modules.split(",") if m.strip()]
