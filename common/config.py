"""Loading the configuration for a process or a `biplane config` command: clear errors, redacted views, schema.

A bad value stops a process before it starts anything, with a message that names the key, where the value
came from (the file or the environment variable) and what was expected."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from pydantic import SecretStr, ValidationError

from common.settings import ConfigError, Settings, read_config_file

SCHEMA_ID = "config.schema.json"
REDACTED = "**********"


def load(config: Path | None = None) -> Settings:
    """The effective settings: arguments over BIPLANE_* variables over the file (config, else BIPLANE_CONFIG)."""
    try:
        return Settings(config=config) if config is not None else Settings()
    except ValidationError as e:
        raise ConfigError(_explain(e, config)) from None


def load_or_exit(config: Path | None = None) -> Settings:
    """load() for a process entry point: a configuration error ends the process with status 2 and the reason."""
    try:
        return load(config)
    except ConfigError as e:
        print(f"biplane: configuration error: {e}", file=sys.stderr)
        raise SystemExit(2) from None


def _explain(error: ValidationError, config: Path | None) -> str:
    file = config or os.environ.get("BIPLANE_CONFIG") or None
    in_file = read_config_file(Path(file), Settings) if file else {}
    lines = []
    for err in error.errors():
        key = str(err["loc"][0]) if err["loc"] else "?"
        var = f"BIPLANE_{key.upper()}"
        origin = f"environment variable {var}" if var in os.environ else (f"{file}" if key in in_file else "default")
        field = Settings.model_fields.get(key)
        secret = field is not None and field.annotation is SecretStr
        got = "" if secret else f" (got {err['input']!r})"
        lines.append(f"`{key}` in {origin}: {err['msg']}{got}")
    return "; ".join(lines)


def redacted(settings: Settings) -> dict[str, Any]:
    """The settings as JSON values with every secret (and a password inside a URL) replaced."""
    out = settings.model_dump(mode="json")
    for name, field in Settings.model_fields.items():
        if field.annotation is SecretStr and getattr(settings, name).get_secret_value():
            out[name] = REDACTED
        elif isinstance(out[name], str) and "://" in out[name]:
            out[name] = _redact_url(out[name])
    return out


def _redact_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:{REDACTED}@{host}"))


def schema() -> dict[str, Any]:
    """common/schemas/config.schema.json: the JSON Schema of a settings file, generated from Settings."""
    doc = Settings.model_json_schema()
    props = doc["properties"]
    for name, prop in props.items():
        prop.pop("title", None)  # a title would become a type of its own in the generated model
        if prop.get("writeOnly"):
            prop.pop("default", None)  # a secret's default is no documentation
        prop["description"] = (prop.get("description", "") + f" Environment: BIPLANE_{name.upper()}.").lstrip()
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": "BiplaneConfig",
        "description": "Every setting both planes, the UI and the CLI read (a BIPLANE_CONFIG file; the environment "
        "wins). GENERATED from common/settings.py by `make codegen`.",
        "type": "object",
        "additionalProperties": False,
        "properties": props,
    }
