"""The configuration layer: a BIPLANE_CONFIG file (JSON, TOML, YAML) under BIPLANE_* variables, its schema,
clear errors that stop control and worker, and `biplane config check` / `show` as real processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from common.config import load, redacted, schema
from common.settings import ConfigError, Settings
from tests.support.processes import ROOT

BIPLANE = str(Path(sys.executable).parent / "biplane")

GOOD = {
    "redis_url": "redis://:hunter2@redis.internal:6390/1",
    "key_prefix": "fromfile",
    "max_node_attempts": 5,
    "s3_secret_key": "file-s3-secret",
    "api_keys": "file-key-a,file-key-b",
    "presign_seconds": 600,
}


def write(path: Path, values: dict) -> Path:
    if path.suffix == ".json":
        path.write_text(json.dumps(values))
    elif path.suffix == ".toml":
        path.write_text("".join(f"{k} = {json.dumps(v)}\n" for k, v in values.items()))
    else:
        path.write_text("".join(f"{k}: {json.dumps(v)}\n" for k, v in values.items()))
    return path


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [n for n in os.environ if n.startswith("BIPLANE_")]:
        monkeypatch.delenv(name)


@pytest.mark.parametrize("suffix", [".json", ".toml", ".yaml", ".yml"])
def test_file_merged_under_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, suffix: str) -> None:
    monkeypatch.setenv("BIPLANE_CONFIG", str(write(tmp_path / f"biplane{suffix}", GOOD)))
    monkeypatch.setenv("BIPLANE_KEY_PREFIX", "fromenv")
    monkeypatch.setenv("BIPLANE_PRESIGN_SECONDS", "120")
    s = Settings()
    assert s.key_prefix == "fromenv" and s.presign_seconds == 120, "the environment wins over the file"
    assert s.max_node_attempts == 5 and s.redis_url == GOOD["redis_url"], "the file wins over the defaults"
    assert s.s3_secret_key.get_secret_value() == "file-s3-secret" and s.api_key_set() == {"file-key-a", "file-key-b"}
    assert s.bucket == "biplane", "what neither sets keeps its default"
    assert Settings(key_prefix="arg").key_prefix == "arg", "arguments win over both"


def test_no_file_is_the_environment_and_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BIPLANE_MAX_NODE_ATTEMPTS", "9")
    s = load()
    assert s.config is None and s.max_node_attempts == 9 and s.key_prefix == "biplane"


@pytest.mark.parametrize(
    ("content", "suffix", "expected"),
    [
        ({"presign_seconds": 0}, ".toml", "`presign_seconds` in {file}: Input should be greater than or equal to 1"),
        ({"max_node_attempts": "many"}, ".yaml", "`max_node_attempts` in {file}: Input should be a valid integer"),
        ({"redis_ur": "redis://x"}, ".json", "`redis_ur` in {file} is not a setting (did you mean `redis_url`?)"),
        ({"s3_secure": [1]}, ".json", "`s3_secure` in {file}: Input should be a valid boolean"),
        ("key_prefix = [", ".toml", "{file} does not parse as TOML"),
        ("- a\n- b\n", ".yaml", "{file}: the file must hold a table of settings"),
        ("{}", ".ini", "{file}: a settings file ends in one of .json, .toml, .yaml, .yml"),
    ],
)
def test_bad_file_names_key_file_and_expectation(tmp_path: Path, content: object, suffix: str, expected: str) -> None:
    path = tmp_path / f"bad{suffix}"
    if isinstance(content, dict):
        write(path, content)
    else:
        path.write_text(str(content))
    with pytest.raises(ConfigError) as e:
        load(path)
    assert expected.format(file=path) in str(e.value)


def test_bad_environment_value_names_the_variable(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("BIPLANE_CONFIG", str(write(tmp_path / "ok.toml", {"presign_seconds": 60})))
    monkeypatch.setenv("BIPLANE_PRESIGN_SECONDS", "-1")
    with pytest.raises(ConfigError, match="`presign_seconds` in environment variable BIPLANE_PRESIGN_SECONDS"):
        load()
    monkeypatch.setenv("BIPLANE_CONFIG", str(tmp_path / "missing.yaml"))
    with pytest.raises(ConfigError, match="no such settings file"):
        load()


def test_secrets_never_leave_in_errors_or_show(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as e:
        load(write(tmp_path / "s.json", {"s3_secret_key": ["sekrit-value"]}))
    assert "`s3_secret_key`" in str(e.value) and "sekrit-value" not in str(e.value)
    shown = json.dumps(redacted(load(write(tmp_path / "good.json", GOOD))))
    for secret in ("hunter2", "file-s3-secret", "file-key-a"):
        assert secret not in shown
    assert "redis://:**********@redis.internal:6390/1" in shown and '"key_prefix": "fromfile"' in shown


def test_schema_is_generated_from_the_settings_class() -> None:
    """Drift: common/schemas/config.schema.json is what `make codegen` writes from Settings (the model generated
    from the schema is checked by test_codegen), so the schema, the model and Settings cannot disagree."""
    committed = json.loads((ROOT / "common" / "schemas" / "config.schema.json").read_text())
    assert committed == schema(), "config.schema.json drifted from common/settings.py; run `make codegen`"
    assert set(committed["properties"]) == set(Settings.model_fields)
    assert committed["properties"]["presign_seconds"]["maximum"] == 7 * 24 * 3600
    assert committed["properties"]["s3_secret_key"]["writeOnly"] is True


def _cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("BIPLANE_")} | env
    return subprocess.run([BIPLANE, *args], env=clean, cwd=ROOT, capture_output=True, text=True, timeout=60)


def test_cli_check_and_show(tmp_path: Path) -> None:
    good = write(tmp_path / "good.yaml", GOOD)
    ok = _cli("config", "check", str(good))
    assert ok.returncode == 0 and f"ok: {good}" in ok.stdout, ok.stderr
    bad = write(tmp_path / "bad.toml", {**GOOD, "presign_seconds": 10**9})
    refused = _cli("config", "check", str(bad))
    assert refused.returncode == 2
    assert f"`presign_seconds` in {bad}: Input should be less than or equal to 604800" in refused.stderr
    via_env = _cli("config", "check", BIPLANE_CONFIG=str(bad))
    assert via_env.returncode == 2 and "`presign_seconds`" in via_env.stderr
    shown = _cli("config", "show", str(good), BIPLANE_BUCKET="envbucket")
    assert shown.returncode == 0, shown.stderr
    effective = json.loads(shown.stdout)
    assert effective["bucket"] == "envbucket" and effective["key_prefix"] == "fromfile"
    assert effective["s3_secret_key"] == "**********" and "hunter2" not in shown.stdout


@pytest.mark.parametrize("module", ["control", "worker"])
def test_bad_file_stops_the_plane_with_the_reason(tmp_path: Path, module: str) -> None:
    bad = write(tmp_path / "bad.toml", {"max_node_attempts": 0, "key_prefix": "x"})
    env = {k: v for k, v in os.environ.items() if not k.startswith("BIPLANE_")}
    env |= {"BIPLANE_CONFIG": str(bad), "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-m", module], env=env, cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert f"configuration error: `max_node_attempts` in {bad}: Input should be greater than or equal to 1" in (
        proc.stderr
    )
