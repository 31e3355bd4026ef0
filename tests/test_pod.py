"""The Kubernetes manifests run from the built images, container by container, as their specs say.

No cluster can be had here, so each pod of deploy/k8s/base is played by Docker: one network namespace per pod
(a pause container on a network where the pod's Service name resolves to it), its volumes as tmpfs volumes owned
by the pod's user and fsGroup, each container with the image, command, arguments, environment (ConfigMaps and the
Secret), user, read-only root and dropped capabilities of its spec. Init containers run to completion in order,
native sidecars start before the containers, and every probe of every container is asked as the kubelet would.

One thing differs from the manifests, and on purpose: the model source is a folder on a shared volume, not the
S3 bucket of the regno-model-source ConfigMap (no S3 here; tests/test_model_source.py runs the S3 source against
moto's server). Not run: the kubelet itself, Services' load balancing, the HPA, the PDB, rolling updates.
"""

from __future__ import annotations

import json
import math
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from loadtest.containers import docker, wait_for
from loadtest.servers import ROOT
from tests.conftest import readme_curl, with_pass_id_of

pytestmark = [pytest.mark.containers, pytest.mark.slow]

BASE = ROOT / "deploy" / "k8s" / "base"
PREFIX = "regno-pod-ci"
NETWORK = f"{PREFIX}-net"
KEY = "pod-test-key"
#: The Secret the base leaves to the operator (secret.example.yaml).
PASS_ID_SECRET = "pod-test-pass-id-secret"
SECRETS = {"regno-api-secrets": {"API_KEYS": KEY, "LABEL_API_KEYS": "pod-labeller:pod-test-label-key",
                                 "PASS_ID_SECRET": PASS_ID_SECRET}}
#: The one change to the manifests: a folder source on a volume every syncer mounts, seeded below.
SOURCE_FOLDER = "/srv/published-models"
#: Pods in the order they are started: what the api pod reaches first.
WORKLOADS = ("nats", "regno-redis", "regno-pass-index", "regno-api", "regno-log-sink")
#: The image every pod's pause container runs (it has Python, to ask the HTTP and TCP probes from inside the pod).
PAUSE_IMAGE = "regno-api:0.1.0"


def _documents() -> list[dict]:
    return [document for path in sorted(BASE.glob("*.yaml")) if path.name != "kustomization.yaml"
            for document in yaml.safe_load_all(path.read_text(encoding="utf-8")) if document]


def _workload(name: str) -> dict:
    """The Deployment or StatefulSet named name."""
    return next(d for d in _documents() if d["kind"] in ("Deployment", "StatefulSet") and d["metadata"]["name"] == name)


def _config_maps() -> dict[str, dict[str, str]]:
    maps = {d["metadata"]["name"]: dict(d["data"]) for d in _documents() if d["kind"] == "ConfigMap"}
    maps["regno-model-source"]["MODEL_SOURCE"] = SOURCE_FOLDER
    return maps


def _service_name(workload: dict) -> str:
    """The Service whose selector picks the workload's pods (the name its clients dial); else its own name."""
    labels = workload["spec"]["template"]["metadata"]["labels"]
    return next((d["metadata"]["name"] for d in _documents()
                 if d["kind"] == "Service" and d["spec"]["selector"].items() <= labels.items()),
                workload["metadata"]["name"])


def _environment(container: dict) -> dict[str, str]:
    """The container's environment as the kubelet builds it: envFrom first, then env."""
    maps = _config_maps()
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        env.update(maps[source["configMapRef"]["name"]] if "configMapRef" in source
                   else SECRETS[source["secretRef"]["name"]])
    for variable in container.get("env", []):
        if "value" in variable:
            env[variable["name"]] = variable["value"]
            continue
        source = variable["valueFrom"]
        if "secretKeyRef" in source:
            ref = source["secretKeyRef"]
            value = SECRETS.get(ref["name"], {}).get(ref["key"])
            assert value is not None or ref.get("optional"), f"no secret {ref}"
            if value is not None:
                env[variable["name"]] = value
        elif "resourceFieldRef" in source:
            ref = source["resourceFieldRef"]
            limit = str(container["resources"]["limits"][ref["resource"].split(".")[1]])
            cores = float(limit[:-1]) / 1000 if limit.endswith("m") else float(limit)
            env[variable["name"]] = str(math.ceil(cores / float(ref.get("divisor", 1))))
    return env


def _run_args(pod: str, spec: dict, container: dict) -> list[str]:
    """`docker run` arguments for a container of the pod, from its spec."""
    security = {**spec.get("securityContext", {}), **container.get("securityContext", {})}
    args = ["--name", f"{pod}-{container['name']}", "--network", f"container:{pod}-pause"]
    if "runAsUser" in security:
        args += ["--user", f"{security['runAsUser']}:{security.get('runAsGroup', security['runAsUser'])}"]
    if security.get("readOnlyRootFilesystem"):
        args.append("--read-only")
    if security.get("allowPrivilegeEscalation") is False:
        args += ["--security-opt", "no-new-privileges"]
    for capability in security.get("capabilities", {}).get("drop", []):
        args += ["--cap-drop", capability]
    for name, value in _environment(container).items():
        args += ["--env", f"{name}={value}"]
    for mount in container.get("volumeMounts", []):
        # No copy-up of the image's folder: a pod's volume starts empty, owned by its fsGroup.
        read_only = ",readonly" if mount.get("readOnly") else ""
        args += ["--mount", f"type=volume,source={pod}-{mount['name']},target={mount['mountPath']},"
                            f"volume-nocopy{read_only}"]
    if container["name"] in ("model-sync", "model-syncer"):
        args += ["--volume", f"{PREFIX}-source:{SOURCE_FOLDER}:ro"]
    command = container.get("command", [])
    if command:
        args += ["--entrypoint", command[0]]
    return [*args, container["image"], *command[1:], *container.get("args", [])]


def _docker(*args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run([docker(), *args], capture_output=True, text=True, timeout=timeout)
    if check and done.returncode != 0:
        raise AssertionError(f"docker {' '.join(args[:3])}...: {done.stderr.strip()[-1500:]}")
    return done


def _pod_volumes(pod: str, spec: dict, workload: dict) -> list[str]:
    """The pod's volumes (and a StatefulSet's claims) as tmpfs volumes owned by its user and fsGroup."""
    security = spec.get("securityContext", {})
    owner = f"uid={security.get('runAsUser', 0)},gid={security.get('fsGroup', security.get('runAsGroup', 0))}"
    names = [volume["name"] for volume in spec.get("volumes", [])]
    names += [claim["metadata"]["name"] for claim in workload["spec"].get("volumeClaimTemplates", [])]
    for name in names:
        _docker("volume", "create", "--driver", "local", "--opt", "type=tmpfs", "--opt", "device=tmpfs",
                "--opt", f"o={owner},mode=0770", f"{pod}-{name}")
    return [f"{pod}-{name}" for name in names]


def _probe(pod: str, container: dict, probe: dict) -> bool:
    """Ask one probe as the kubelet would: exec in the container, HTTP and TCP from inside the pod."""
    ports = {port["name"]: port["containerPort"] for port in container.get("ports", [])}
    if "exec" in probe:
        command = probe["exec"]["command"]
        return _docker("exec", f"{pod}-{container['name']}", *command, check=False).returncode == 0
    if "httpGet" in probe:
        port = ports.get(probe["httpGet"]["port"], probe["httpGet"]["port"])
        program = (f"import urllib.request; urllib.request.urlopen('http://127.0.0.1:{port}"
                   f"{probe['httpGet']['path']}', timeout=3)")
    else:
        port = ports.get(probe["tcpSocket"]["port"], probe["tcpSocket"]["port"])
        program = f"import socket; socket.create_connection(('127.0.0.1', {port}), timeout=3)"
    return _docker("exec", f"{pod}-pause", "python", "-c", program, check=False).returncode == 0


def _wait_for_probes(pod: str, container: dict, kinds=("startupProbe", "readinessProbe", "livenessProbe")) -> None:
    """Every probe of the container passes within a minute (it may be starting)."""
    for kind in kinds:
        if kind in container:
            wait_for(lambda: _probe(pod, container, container[kind]), 90, f"{pod}/{container['name']} {kind}",
                     every_s=2)


def _start_pod(name: str, started: list[str]) -> None:
    """Start the pod: pause container, volumes, init containers in order, then its containers; probes pass."""
    workload = _workload(name)
    spec = workload["spec"]["template"]["spec"]
    volumes = _pod_volumes(name, spec, workload)
    started += [f"volume:{volume}" for volume in volumes]
    # The pause container holds every volume for the pod's life, as the kubelet keeps an emptyDir: a tmpfs
    # volume Docker unmounts when no container uses it would lose what an init container wrote. No copy-up:
    # the volume keeps the owner the pod's fsGroup gave it.
    holds = [arg for volume in volumes
             for arg in ("--mount", f"type=volume,source={volume},target=/pod/{volume},volume-nocopy")]
    _docker("run", "--detach", "--name", f"{name}-pause", "--network", NETWORK, "--network-alias",
            _service_name(workload), "--no-healthcheck", *holds, "--entrypoint", "python", PAUSE_IMAGE, "-c",
            "import time; time.sleep(1e9)")
    started.append(f"{name}-pause")
    for container in spec.get("initContainers", []):
        if container.get("restartPolicy") == "Always":  # a native sidecar: started, then on to the next
            _docker("run", "--detach", *_run_args(name, spec, container))
            started.append(f"{name}-{container['name']}")
            _wait_for_probes(name, container, kinds=("startupProbe",))
        else:
            done = _docker("run", *_run_args(name, spec, container), timeout=180, check=False)
            started.append(f"{name}-{container['name']}")
            assert done.returncode == 0, f"init container {container['name']}: {done.stderr[-1500:]}"
    for container in spec["containers"]:
        _docker("run", "--detach", *_run_args(name, spec, container))
        started.append(f"{name}-{container['name']}")
    sidecars = [container for container in spec.get("initContainers", []) if container.get("restartPolicy")]
    for container in sidecars + spec["containers"]:
        _wait_for_probes(name, container)


@pytest.fixture(scope="module")
def pods(images):
    """Every workload of the base running from the built images; all of it removed after."""
    started: list[str] = []
    _docker("network", "rm", NETWORK, check=False)
    _docker("network", "create", NETWORK)
    try:
        _docker("volume", "create", f"{PREFIX}-source")
        started.append(f"volume:{PREFIX}-source")
        # The team publishes the bundled model into the source, as regno-model does it (the sync image).
        _docker("run", "--rm", "--volume", f"{PREFIX}-source:{SOURCE_FOLDER}", "--env", f"MODEL_SOURCE={SOURCE_FOLDER}",
                "regno-api-sync:0.1.0", "regno-model", "publish", "/opt/regno/model/regno_model.cbm", "--current")
        for name in WORKLOADS:
            _start_pod(name, started)
        yield
    finally:
        containers = [item for item in started if not item.startswith("volume:")]
        if containers:
            _docker("rm", "--force", "--volumes", *containers, check=False, timeout=180)
        volumes = [item.removeprefix("volume:") for item in started if item.startswith("volume:")]
        if volumes:
            _docker("volume", "rm", "--force", *volumes, check=False)
        _docker("network", "rm", NETWORK, check=False)


def _state(name: str) -> dict:
    return json.loads(_docker("inspect", "--format", "{{json .State}}", name).stdout)


def test_every_container_of_every_pod_runs_and_passes_its_probes(pods):
    """Each container the base declares is running (init containers exited 0) with its probes passing."""
    for name in WORKLOADS:
        spec = _workload(name)["spec"]["template"]["spec"]
        for container in spec.get("initContainers", []) + spec["containers"]:
            state = _state(f"{name}-{container['name']}")
            if "restartPolicy" not in container and container in spec.get("initContainers", []):
                assert state["Status"] == "exited" and state["ExitCode"] == 0, (name, container["name"], state)
            else:
                assert state["Status"] == "running", (name, container["name"], state)
                for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
                    if kind in container:
                        assert _probe(name, container, container[kind]), (name, container["name"], kind)


def test_the_pod_answers_the_readme_curl_through_its_proxy(pods):
    """Inside the api pod, the proxy on 8080 answers the README's record exactly, with the pod's Secret key."""
    record, answer = readme_curl()
    program = ("import json, sys, urllib.request; request = urllib.request.Request('http://127.0.0.1:8080/reg/', "
               f"data=sys.stdin.buffer.read(), headers={{'content-type': 'application/json', 'x-api-key': '{KEY}'}})"
               "; print(urllib.request.urlopen(request, timeout=10).read().decode())")
    done = subprocess.run([docker(), "exec", "-i", "regno-api-pause", "python", "-c", program],
                          input=json.dumps(record), capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == with_pass_id_of(answer, record, PASS_ID_SECRET)


def test_the_sidecars_and_init_containers_use_files_the_image_holds(pods):
    """nginx.conf was rendered by the init container into the shared run folder, the syncers verified the model
    into the shared models volume, and the proxy's preStop hook (a shell and nginx from its image) stops it."""
    conf = _docker("exec", "regno-api-proxy", "cat", "/run/regno/nginx.conf").stdout
    assert "daemon off;" in conf and "unix:/run/regno/gunicorn.sock" in conf
    models = _docker("exec", "regno-api-api", "cat", "/models/current").stdout
    assert models.strip()
    assert _docker("exec", "regno-api-model-syncer", "regno-sync", "--check", check=False).returncode == 0
    pre_stop = next(c for c in _workload("regno-api")["spec"]["template"]["spec"]["containers"]
                    if c["name"] == "proxy")["lifecycle"]["preStop"]["exec"]["command"]
    started = time.monotonic()
    hook = _docker("exec", "regno-api-proxy", *pre_stop, timeout=60, check=False)
    # The hook ends with its container: nginx, PID 1, quits gracefully (exit 0), and Docker ends the exec with it.
    assert hook.returncode in (0, 137) and "signal process started" in hook.stderr, hook
    assert time.monotonic() - started >= 5  # its pause, so endpoints stop sending first
    state = wait_for(lambda: (found := _state("regno-api-proxy"))["Status"] == "exited" and found, 30,
                     "nginx gone after its preStop")
    assert state["ExitCode"] == 0


def test_the_sync_image_opens_each_kind_of_source(images):
    """The syncer's image carries boto3 and MLflow's client: an s3:// and a models:/ source open there."""
    program = ("from model.sources import SourceOptions, open_source; options = SourceOptions(mlflow_tracking_uri="
               "'http://127.0.0.1:9'); print(open_source('s3://bucket/prefix', options).kind, "
               "open_source('models:/plates', options).kind)")
    done = _docker("run", "--rm", "--env", "AWS_DEFAULT_REGION=eu-west-1", "regno-api-sync:0.1.0", "python", "-c",
                   program, check=False)
    assert done.returncode == 0 and done.stdout.split() == ["s3", "mlflow"], done.stderr
