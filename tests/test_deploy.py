"""Static checks of deploy/: no container engine runs here, so these check that the compose
file and Kubernetes manifests hang together and point at code that exists. The flows they run
are tested for real in tests/orchestration."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"


def load_all(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def test_compose_stack() -> None:
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    services = compose["services"]
    assert set(services) == {
        "prefect-server", "dask-scheduler", "dask-worker", "deploy", "prefect-worker"
    }  # fmt: skip
    assert services["dask-worker"]["deploy"]["replicas"] == 2
    assert "tcp://dask-scheduler:8786" in services["dask-worker"]["command"]
    worker_env = services["prefect-worker"]["environment"]
    assert worker_env["DASK_SCHEDULER_ADDRESS"] == "tcp://dask-scheduler:8786"
    assert worker_env["PREFECT_API_URL"] == "http://prefect-server:4200/api"
    assert "--pool mmpipe-process" in services["prefect-worker"]["command"]
    assert "deploy/prefect.yaml" in services["deploy"]["command"]
    for name, service in services.items():
        assert service["image"] == "mmpipe:0.1.0", name
        assert "data:/opt/mmpipe/data" in service["volumes"], name


def test_kubernetes_manifests() -> None:
    kustomization = yaml.safe_load((DEPLOY / "k8s" / "kustomization.yaml").read_text())
    docs = [doc for name in kustomization["resources"] for doc in load_all(DEPLOY / "k8s" / name)]
    by_kind = {doc["kind"]: doc for doc in docs}
    cluster = by_kind["DaskCluster"]
    assert cluster["apiVersion"] == "kubernetes.dask.org/v1"
    assert cluster["spec"]["worker"]["replicas"] == 2
    # The operator names the scheduler Service <cluster>-scheduler.
    service = f"{cluster['metadata']['name']}-scheduler"
    settings = by_kind["ConfigMap"]["data"]
    assert settings["DASK_SCHEDULER_ADDRESS"].startswith(f"tcp://{service}.")
    worker = by_kind["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    assert worker["command"][:3] == ["prefect", "worker", "start"]
    assert "mmpipe-process" in worker["command"]
    images = {worker["image"]}
    for role in ("worker", "scheduler"):
        images |= {c["image"] for c in cluster["spec"][role]["spec"]["containers"]}
    assert len(images) == 1


def test_dockerfile_copies_what_exists() -> None:
    repo = DEPLOY.parent
    for line in (DEPLOY / "Dockerfile").read_text().splitlines():
        if line.startswith("COPY "):
            for source in line.split()[1:-1]:
                assert (repo / source).exists(), source


def test_worker_image_sets_the_allocator_like_local_clusters() -> None:
    from mmpipe.cluster import worker_environ

    config = yaml.safe_load((DEPLOY / "dask.yaml").read_text())
    environ = config["distributed"]["nanny"]["pre-spawn-environ"]
    assert environ["GLIBC_TUNABLES"] == worker_environ({})["GLIBC_TUNABLES"]
    assert "cp deploy/dask.yaml /etc/dask/" in (DEPLOY / "Dockerfile").read_text()


def test_deployments_point_at_the_flow_their_config_names() -> None:
    from flows.apply import mmpipe_apply
    from flows.pipeline import mmpipe_fit
    from mmpipe.config import load_config

    flows = {"fit": ("flows/pipeline.py", mmpipe_fit), "apply": ("flows/apply.py", mmpipe_apply)}
    declared = yaml.safe_load((DEPLOY / "prefect.yaml").read_text())
    seen = set()
    for deployment in declared["deployments"]:
        config = load_config(deployment["parameters"]["config"])  # valid, or it raises
        path, name = deployment["entrypoint"].split(":")
        expected_path, flow = flows[config.flow]
        assert (path, name) == (expected_path, flow.fn.__name__), deployment["name"]
        assert (DEPLOY.parent / path).is_file()
        assert deployment["work_pool"]["name"] == "mmpipe-process"
        seen.add(config.flow)
    assert seen == set(flows)  # a scheduled fit and a scheduled apply
