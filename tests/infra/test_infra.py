"""The server-mode stack in infra/, checked here without Docker or a cluster (offline, a few seconds):

- compose.yaml against the Compose Specification schema (tests/infra/compose_spec.json, see its NOTICE); images
  pinned, build paths present, every ${VAR} in .env.example, no secret in the file, health checks that services
  wait on, and every port and service URL pointing at a port the service listens on;
- k8s/ against the Kubernetes 1.33 schemas (kubernetes-validate, strict, bundled schemas); the same images, ports
  and commands as compose; Secrets only referenced; probes; Services that select a pod and one of its ports;
- the Prefect work pool templates in prefect/: Prefect's own validation, the process worker's configuration, and
  the Kubernetes template against prefect-kubernetes' default (bundled with prefect) and as a rendered Job.

    .venv/bin/python -m pytest tests/infra -q
"""

from __future__ import annotations

import copy
import json
import re
import tomllib
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
K8S = INFRA / "k8s"
KUBERNETES_VERSION = "1.33.0"  # the oldest Kubernetes the manifests promise to work on
PLATFORM_IMAGE = "alignops-platform"
SECRET = "alignops-secrets"
NAMESPACE = "alignops"

# compose service -> the k8s workload that runs the same thing
COMPOSE_TO_K8S = {
    "postgres": "postgres",
    "minio": "minio",
    "minio-buckets": "minio-buckets",
    "mlflow": "mlflow",
    "prefect-server": "prefect-server",
    "prefect-worker": "prefect-worker",
    "dashboard": "dashboard",
}
VAR = re.compile(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)[^}]*\}")  # ${NAME}, ${NAME:?msg}, ${NAME:-x}; not $${...}
URL = re.compile(r"^[a-z0-9+]+://(?:[^@/]*@)?([a-z0-9.-]+):(\d+)")


# ---- loading -----------------------------------------------------------------------------------------------------


def compose() -> dict[str, Any]:
    return yaml.safe_load((INFRA / "compose.yaml").read_text(encoding="utf-8"))


def env_example() -> dict[str, str]:
    pairs = {}
    for line in (INFRA / ".env.example").read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            pairs[key.strip()] = value.strip()
    return pairs


def k8s_documents() -> list[dict[str, Any]]:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text(encoding="utf-8"))
    docs = []
    for name in kustomization["resources"]:
        docs += [d for d in yaml.safe_load_all((K8S / name).read_text(encoding="utf-8")) if d]
    return docs


def workloads() -> dict[str, dict[str, Any]]:
    """name -> pod spec of every Deployment, StatefulSet and Job."""
    return {
        d["metadata"]["name"]: d["spec"]["template"]["spec"]
        for d in k8s_documents()
        if d["kind"] in ("Deployment", "StatefulSet", "Job")
    }


def template(name: str) -> dict[str, Any]:
    return json.loads((INFRA / "prefect" / name).read_text(encoding="utf-8"))


def job_pod_template() -> dict[str, Any]:
    """The pod spec of the Kubernetes pool's flow-run Job, placeholders and all."""
    return template("kubernetes-gpu.json")["job_configuration"]["job_manifest"]["spec"]["template"]["spec"]


def container_ports(service: dict[str, Any]) -> set[int]:
    """Ports a compose service listens on: the container side of `ports`, and `expose`."""
    ports = {int(str(p).rsplit(":", 1)[-1]) for p in service.get("ports", [])}
    return ports | {int(p) for p in service.get("expose", [])}


def command_ports(command: list[str]) -> set[int]:
    """Ports named by --port / --address / --console-address in a command line."""
    words = " ".join(command).replace("=", " ").split()
    return {
        int(value.rsplit(":", 1)[-1])
        for flag, value in zip(words, words[1:], strict=False)
        if flag in ("--port", "--address", "--console-address")
    }


def pyproject() -> dict[str, Any]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def pinned(image: str) -> bool:
    name, _, tag = image.rpartition(":")
    return bool(name) and "/" not in tag and tag not in ("", "latest")


# ---- compose -----------------------------------------------------------------------------------------------------


def test_compose_file_follows_the_compose_specification():
    schema = json.loads((Path(__file__).parent / "compose_spec.json").read_text(encoding="utf-8"))
    validator = jsonschema.Draft201909Validator(schema)
    errors = [f"{e.json_path}: {e.message}" for e in validator.iter_errors(compose())]
    assert not errors, "infra/compose.yaml breaks the Compose Specification:\n" + "\n".join(errors)
    # the schema is strict enough to catch a misspelt key
    broken = compose()
    broken["services"]["mlflow"]["helthcheck"] = broken["services"]["mlflow"].pop("healthcheck")
    assert list(validator.iter_errors(broken))


def test_compose_images_are_pinned_and_built_from_files_that_exist():
    services = compose()["services"]
    for name, service in services.items():
        assert pinned(service["image"]), f"service {name}: image {service['image']!r} has no pinned tag"
        if "build" in service:
            context = (INFRA / service["build"]["context"]).resolve()
            dockerfile = context / service["build"]["dockerfile"]
            assert dockerfile.is_file(), f"service {name}: {dockerfile} not found"
            assert dockerfile.with_name(dockerfile.name + ".dockerignore").is_file()
            assert service["image"].startswith(f"{PLATFORM_IMAGE}:")
    # one platform image for everything that runs project code
    assert len({s["image"] for s in services.values() if "build" in s}) == 1


def test_every_compose_variable_is_in_env_example_and_no_secret_is_written_in_the_file():
    text = (INFRA / "compose.yaml").read_text(encoding="utf-8")
    used = set(VAR.findall(text))
    example = env_example()
    assert used <= example.keys(), f"used in compose.yaml but missing from .env.example: {used - example.keys()}"
    # every entry of .env.example is used by compose or the k8s Secret references (COMPOSE_PROJECT_NAME by compose)
    referenced = used | secret_keys_referenced() | {"COMPOSE_PROJECT_NAME"}
    assert example.keys() <= referenced, f"unused in .env.example: {example.keys() - referenced}"
    for name, service in compose()["services"].items():
        for key, value in service.get("environment", {}).items():
            if re.search(r"PASSWORD|SECRET|ACCESS_KEY", key) or "@" in str(value):
                assert "${" in str(value), f"service {name}: {key} must come from infra/.env, not be written here"
    assert all(value.startswith("change-me") for key, value in example.items() if "PASSWORD" in key)


def test_long_running_services_have_health_checks_that_dependents_wait_for():
    services = compose()["services"]
    one_shots = {name for name, s in services.items() if s.get("restart") == "no"}
    assert one_shots == {"minio-buckets"}
    for name, service in services.items():
        if name not in one_shots:
            assert service.get("healthcheck", {}).get("test"), f"service {name} has no health check"
        for dependency, condition in service.get("depends_on", {}).items():
            wanted = "service_completed_successfully" if dependency in one_shots else "service_healthy"
            assert condition == {"condition": wanted}, f"service {name} must wait for {dependency}: {wanted}"
    # `up --wait` counts a one-shot's exit as success only when a long-running service waits for it
    for one_shot in one_shots:
        adopters = [n for n, s in services.items() if one_shot in s.get("depends_on", {}) and n not in one_shots]
        assert adopters, f"no long-running service waits for {one_shot}: `docker compose up --wait` would fail"


def test_compose_ports_and_service_urls_agree():
    services = compose()["services"]
    for name, service in services.items():
        ports = container_ports(service)
        for published in service.get("ports", []):
            host_ip, host_port, container_port = str(published).split(":")
            # loopback only, and the same number on both sides so that localhost:PORT in the docs is right
            assert (host_ip, host_port) == ("127.0.0.1", container_port), f"service {name}: port {published}"
        assert command_ports(service.get("command", [])) <= ports, f"service {name} listens on an undeclared port"
        health = " ".join(service.get("healthcheck", {}).get("test", []))
        for port in re.findall(r"localhost:(\d+)", health):
            assert int(port) in ports, f"service {name}: health check on port {port}, not one it declares"
        for key, value in service.get("environment", {}).items():
            for host, port in URL.findall(str(value)) if isinstance(value, str) else []:
                if host in services:
                    assert int(port) in container_ports(services[host]), f"{name}: {key} -> {host}:{port}"
    # the databases the services use are the ones the init script creates
    created = set(re.findall(r"CREATE DATABASE (\w+);", (INFRA / "postgres/init-databases.sql").read_text()))
    text = (INFRA / "compose.yaml").read_text(encoding="utf-8")
    assert set(re.findall(r"@postgres:5432/(\w+)", text)) == created == {"mlflow", "feedback", "prefect"}


def test_dockerfile_installs_the_pinned_torch_and_the_server_extra():
    dockerfile = (INFRA / "Dockerfile").read_text(encoding="utf-8")
    assert re.search(r"^FROM python:3\.11-slim$", dockerfile, re.M)
    torch_pin = next(d for d in pyproject()["project"]["dependencies"] if d.startswith("torch=="))
    assert f'pip install --index-url "${{TORCH_INDEX_URL}}" {torch_pin}' in dockerfile
    assert "download.pytorch.org/whl/cpu" in dockerfile  # CPU by default
    assert "['optional-dependencies']['server']" in dockerfile and "-c requirements/constraints.txt" in dockerfile


def test_server_extra_has_what_the_stack_needs():
    """The image and a CLI in server mode install the `server` extra: Postgres for MLflow and the preference store,
    boto3 for the MLflow server's S3 artifact store, dvc-s3 for the DVC remote on MinIO."""
    server = " ".join(pyproject()["project"]["optional-dependencies"]["server"])
    for package in ("psycopg[binary]", "boto3", "dvc-s3"):
        assert package in server, f"pyproject's `server` extra needs {package} for the stack in infra/"


# ---- kubernetes --------------------------------------------------------------------------------------------------


def secret_keys_referenced() -> set[str]:
    refs = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if "secretKeyRef" in node:
                assert node["secretKeyRef"]["name"] == SECRET
                refs.add(node["secretKeyRef"]["key"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(k8s_documents())
    walk(template("kubernetes-gpu.json"))
    return refs


def test_k8s_manifests_are_valid_kubernetes_objects():
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text(encoding="utf-8"))
    listed = set(kustomization["resources"])
    assert listed == {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}, "a manifest is not in kustomization"
    assert kustomization["namespace"] == NAMESPACE
    for doc in k8s_documents():
        where = f"{doc['kind']}/{doc['metadata']['name']}"
        try:
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            path = ".".join(str(p) for p in exc.path)
            pytest.fail(
                f"infra/k8s {where} is not a valid Kubernetes {KUBERNETES_VERSION} object: {path}: {exc.message}"
            )
        assert doc["kind"] != "Secret", f"{where}: secrets are referenced (alignops-secrets), never written here"
        if doc["kind"] != "Namespace":
            assert doc["metadata"]["namespace"] == NAMESPACE, where


def test_k8s_runs_the_same_images_ports_and_commands_as_compose():
    services = compose()["services"]
    pods = workloads()
    assert set(pods) == set(COMPOSE_TO_K8S.values())
    prefect_pin = next(d for d in pyproject()["project"]["dependencies"] if d.startswith("prefect=="))
    for compose_name, k8s_name in COMPOSE_TO_K8S.items():
        service, pod = services[compose_name], pods[k8s_name]
        container = pod["containers"][0]
        ports = {p["containerPort"] for p in container.get("ports", [])}
        assert ports == container_ports(service), f"{k8s_name}: ports {ports} differ from compose {compose_name}"
        if k8s_name == "prefect-worker":
            # the Kubernetes worker is Prefect's own image with prefect-kubernetes, at the project's Prefect version;
            # the platform image only creates the pool, in the init container
            version = prefect_pin.removeprefix("prefect==")
            assert container["image"] == f"prefecthq/prefect:{version}-python3.11-kubernetes"
            assert pod["initContainers"][0]["image"] == service["image"]
            continue
        assert container["image"] == service["image"], f"{k8s_name}: image differs from compose {compose_name}"
        same = container.get("args") == service.get("command")
        assert same, f"{k8s_name}: command differs from compose {compose_name}"
    for doc in k8s_documents():
        for container in doc.get("spec", {}).get("template", {}).get("spec", {}).get("containers", []):
            assert pinned(container["image"]), f"{doc['metadata']['name']}: image {container['image']} not pinned"


def test_k8s_secrets_are_references_and_env_references_resolve():
    example = env_example()
    missing = secret_keys_referenced() - example.keys()
    assert not missing, f"keys of the Secret {SECRET} that .env.example does not define: {missing}"
    pods = {**workloads(), "the flow-run Job of prefect/kubernetes-gpu.json": job_pod_template()}
    for name, pod in pods.items():
        for container in pod.get("initContainers", []) + pod["containers"]:
            defined: set[str] = set()
            for var in container.get("env", []):
                value = var.get("value", "")
                # $(VAR) expands only variables defined above it in the same list
                assert set(re.findall(r"\$\(([A-Z_]+)\)", value)) <= defined, f"{name}: {var['name']} = {value}"
                if re.search(r"PASSWORD|SECRET|ACCESS_KEY", var["name"]):
                    assert "secretKeyRef" in var.get("valueFrom", {}), (
                        f"{name}: {var['name']} must come from the Secret"
                    )
                if "@" in value:
                    assert re.search(r"://\$\([A-Z_]+\):\$\([A-Z_]+\)@", value), f"{name}: credentials in {var['name']}"
                defined.add(var["name"])


def test_k8s_probes_services_and_config_agree():
    docs = k8s_documents()
    pods = workloads()
    labels = {
        d["metadata"]["name"]: d["spec"]["template"]["metadata"]["labels"]
        for d in docs
        if d["kind"] in ("Deployment", "StatefulSet")
    }
    for name, pod in pods.items():
        if name in labels:  # long-running: probed
            assert "livenessProbe" in pod["containers"][0], f"{name} has no liveness probe"
    for service in (d for d in docs if d["kind"] == "Service"):
        name = service["metadata"]["name"]
        targets = [w for w, lab in labels.items() if service["spec"]["selector"].items() <= lab.items()]
        assert targets == [name], f"Service {name} selects {targets}"
        container = pods[name]["containers"][0]
        assert "readinessProbe" in container, f"{name} receives traffic and needs a readiness probe"
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in {p["containerPort"] for p in container["ports"]}
    # the same init script in both stacks
    init = next(d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "postgres-init")
    assert init["data"]["init-databases.sql"] == (INFRA / "postgres/init-databases.sql").read_text(encoding="utf-8")
    # the cluster's client settings are compose's, less the secrets
    config = next(d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "alignops-config")
    client_env = compose()["services"]["prefect-worker"]["environment"]
    for key, value in config["data"].items():
        assert client_env[key] == value, f"alignops-config {key}={value} differs from compose ({client_env[key]})"
    from_secret = {var["name"] for var in job_pod_template()["containers"][0]["env"]}
    client_keys = {k for k in client_env if k != "PREFECT_WORKER_WEBSERVER_PORT"}
    assert client_keys <= config["data"].keys() | from_secret, "a flow run on Kubernetes would miss a setting"


# ---- prefect work pools ------------------------------------------------------------------------------------------


def _prefect_default(worker_type: str) -> dict[str, Any]:
    """The worker type's own default template: the installed worker's, else the copy bundled with prefect's server
    (prefect-kubernetes is not installed here)."""
    import prefect
    from prefect.workers.base import BaseWorker

    worker = BaseWorker.get_worker_class_from_type(worker_type)
    if worker is not None:
        return worker.get_default_base_job_template()
    views = Path(prefect.__file__).parent / "server/api/collections_data/views/aggregate-worker-metadata.json"
    metadata = json.loads(views.read_text(encoding="utf-8"))
    return metadata[f"prefect-{worker_type}"][worker_type]["default_base_job_configuration"]


def _render(base: dict[str, Any], values: dict[str, Any] | None = None) -> dict[str, Any]:
    """job_configuration with the variables' defaults (and values) filled in, as a worker renders it."""
    from prefect.utilities.templating import apply_values
    from prefect.workers.base import BaseJobConfiguration

    variables = BaseJobConfiguration._get_base_config_defaults(base["variables"]["properties"])
    return apply_values(copy.deepcopy(base["job_configuration"]), {**variables, **(values or {})})


def _accepted_by_prefect(base: dict[str, Any], worker_type: str) -> None:
    from prefect.server.schemas.actions import WorkPoolCreate
    from prefect.utilities.schema_tools import validate

    WorkPoolCreate(name="check", type=worker_type, base_job_template=base)  # placeholders are declared variables
    defaults = {k: v["default"] for k, v in base["variables"]["properties"].items() if "default" in v}
    assert not validate(defaults, base["variables"], ignore_required=True), "a default breaks its own schema"
    reference = _prefect_default(worker_type)
    # the same fields as the worker's own template, and every variable it offers, with the same types
    assert base["job_configuration"].keys() == reference["job_configuration"].keys()
    for name, spec in reference["variables"]["properties"].items():
        ours = base["variables"]["properties"][name]
        assert ours.get("type") == spec.get("type") and ours.get("anyOf") == spec.get("anyOf"), name


def test_process_pool_template_runs_flows_in_the_image_repository():
    from prefect.workers.process import ProcessJobConfiguration, ProcessWorker

    base = template("process.json")
    _accepted_by_prefect(base, "process")
    assert base["job_configuration"] == ProcessWorker.get_default_base_job_template()["job_configuration"]
    configuration = ProcessJobConfiguration(**_render(base))
    dockerfile = (INFRA / "Dockerfile").read_text(encoding="utf-8")
    # flow runs start in the repository baked into the image, where prefect.yaml's pull step also goes
    where = configuration.working_dir
    assert f"WORKDIR {where}" in dockerfile, f"process.json runs flows in {where}, not the image's WORKDIR"
    assert f"ALIGNOPS_REPO_DIR={where}" in dockerfile, f"ALIGNOPS_REPO_DIR (prefect.yaml's pull step) is not {where}"


def test_kubernetes_pool_template_is_a_valid_gpu_job():
    base = template("kubernetes-gpu.json")
    _accepted_by_prefect(base, "kubernetes")
    reference = _prefect_default("kubernetes")["job_configuration"]["job_manifest"]

    def fixed_leaves(node: Any, path: tuple = ()) -> list[tuple[tuple, Any]]:
        if isinstance(node, dict):
            return [leaf for key, value in node.items() for leaf in fixed_leaves(value, (*path, key))]
        if isinstance(node, list):
            return [leaf for i, value in enumerate(node) for leaf in fixed_leaves(value, (*path, i))]
        return [] if isinstance(node, str) and "{{" in node else [(path, node)]

    # prefect-kubernetes refuses a manifest that changes what its default fixes (Job kind, one pod that is never
    # restarted, the container called prefect-job)
    ours = base["job_configuration"]["job_manifest"]
    for path, value in fixed_leaves(reference):
        node = ours
        for key in path:
            node = node[key]
        assert node == value, f"job_manifest {'/'.join(map(str, path))} must stay {value!r}"

    configuration = _render(base, {"command": "prefect flow-run execute", "name": "weekly-training"})
    manifest = configuration["job_manifest"]
    pod = manifest["spec"]["template"]["spec"]
    container = pod["containers"][0]
    # what the worker does before creating the Job: its env first, the command split into args
    prefect_env = configuration.get("env") or {}  # PREFECT_API_URL and the deployment's env, set at run time
    container["env"] = [{"name": k, "value": v} for k, v in prefect_env.items()] + container["env"]
    container["args"] = container["args"].split()
    manifest["metadata"]["labels"] = configuration.get("labels") or {}
    assert (
        container["resources"]["limits"]["nvidia.com/gpu"] == 1 == container["resources"]["requests"]["nvidia.com/gpu"]
    )
    assert manifest["metadata"]["namespace"] == NAMESPACE
    platform = compose()["services"]["mlflow"]["image"]
    assert container["image"] == f"{platform}-gpu", "the job runs the GPU build of the platform image"
    assert container["envFrom"] == [{"configMapRef": {"name": "alignops-config"}}]

    # Kubernetes' own schema, once the two fields prefect-kubernetes insists on and the API server drops
    # (parallelism and completions belong to the Job, not the pod) and the unset (null) fields are taken out
    def without_nulls(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: without_nulls(v) for k, v in node.items() if v is not None}
        if isinstance(node, list):
            return [without_nulls(v) for v in node]
        return node

    job = without_nulls(manifest)
    for field in ("parallelism", "completions"):
        job["spec"]["template"]["spec"].pop(field)
    job["metadata"]["generateName"] = "weekly-training-"
    try:
        kubernetes_validate.validate(job, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as exc:
        pytest.fail(f"the rendered flow-run Job is invalid: {'.'.join(map(str, exc.path))}: {exc.message}")


def test_pool_names_agree_with_prefect_yaml_and_the_workers():
    deployments = yaml.safe_load((ROOT / "prefect.yaml").read_text(encoding="utf-8"))["deployments"]
    worker_command = " ".join(compose()["services"]["prefect-worker"]["command"])
    k8s_worker = workloads()["prefect-worker"]
    assert "--pool alignops-process --type process" in worker_command
    assert "--base-job-template infra/prefect/process.json" in worker_command
    assert {"alignops-k8s", "--base-job-template=infra/prefect/kubernetes-gpu.json"} <= set(
        k8s_worker["initContainers"][0]["args"]
    )
    assert "--pool=alignops-k8s" in k8s_worker["containers"][0]["args"]
    assert {d["work_pool"]["name"] for d in deployments} <= {"alignops-process", "alignops-k8s"}
