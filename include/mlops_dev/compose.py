"""Bring up docker-compose.yaml on a machine that cannot pull images (``make compose-up``).

    python -m mlops_dev.compose build                  # the offline images, when missing or stale
    python -m mlops_dev.compose up [--project P] [--env-file F] [--ephemeral-ports]
    python -m mlops_dev.compose down [--project P] [--env-file F]

``up`` builds what is missing, writes a ``.env`` with fresh secrets when there is none (never
overwriting one), renders docker-compose.yaml with include/compose/offline/offline.yaml into
``.run/compose/<project>/docker-compose.yaml`` and runs ``docker-compose up -d`` on it, then waits
until every service is healthy (or, for the one-shot jobs, has exited 0).

The images are made the way the serving images are (mlops_pipeline.deploy.images): on the
debootstrapped Debian base of serving/docker/build-base-image.sh, Python packages from a wheelhouse
downloaded on the host (serving/docker/wheelhouse.sh) and installed with no index, Debian packages
for the rest. Each image carries a label with the hash of what it is made of; an image whose label
matches is kept, so a second ``up`` builds nothing.

``--ephemeral-ports`` publishes every port on a free host port (the smoke test's way to run beside
other stacks on a shared host); ``docker-compose port`` tells which.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from mlops_pipeline.registry.auth_setup import IDENTITIES as MLFLOW_IDENTITIES  # a password each in .env

REPO = Path(__file__).resolve().parents[2]
OFFLINE = REPO / "include" / "compose" / "offline"
RUN = Path(os.environ.get("MLOPS_RUN_DIR") or REPO / ".run") / "compose"
BASE_IMAGE = os.environ.get("MLOPS_BASE_IMAGE", "mlops/base:bookworm")
SERVICES_IMAGE = "mlops-offline/services:local"
PYTHON_IMAGE = "mlops-offline/python:local"
AIRFLOW_IMAGE = "mlops-offline/airflow:local"
KEY_LABEL = "org.mlops.compose.key"
BUILD_STAGE_LABEL = "org.mlops.build-stage=compose-python"
DEFAULT_PROJECT = "mlops"
# Debian bookworm's Python: the environment markers of uv.lock are evaluated for it, not for the host.
TARGET_MARKERS = {
    "python_version": "3.11",
    "python_full_version": "3.11.2",
    "implementation_name": "cpython",
    "platform_python_implementation": "CPython",
    "sys_platform": "linux",
    "platform_system": "Linux",
    "platform_machine": "x86_64",
    "os_name": "posix",
}
# The S3 stand-in (include/compose/offline/offline.yaml): the dev group's moto, at uv.lock's version.
EXTRA_REQUIREMENTS = ("moto[server]",)
ONE_SHOT_SERVICES = {"minio-buckets", "airflow-init"}


def say(message: str) -> None:
    print(f"[compose] {message}", file=sys.stderr, flush=True)


def run(command: Sequence[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    kwargs.setdefault("check", True)
    kwargs.setdefault("text", True)
    return subprocess.run(list(command), **kwargs)


# ---------------------------------------------------------------------------------------------
# images
# ---------------------------------------------------------------------------------------------
def image_label(image: str, label: str) -> str | None:
    done = run(["docker", "image", "inspect", "--format", f'{{{{ index .Config.Labels "{label}" }}}}', image],
               check=False, capture_output=True)
    return done.stdout.strip() if done.returncode == 0 else None


def image_id(image: str) -> str:
    return run(["docker", "image", "inspect", "--format", "{{.Id}}", image], capture_output=True).stdout.strip()


def digest(*parts: bytes | str | Path) -> str:
    sha = hashlib.sha256()
    for part in parts:
        data = part.read_bytes() if isinstance(part, Path) else part.encode() if isinstance(part, str) else part
        sha.update(hashlib.sha256(data).digest())
    return sha.hexdigest()[:16]


def build_image(tag: str, dockerfile: Path, context: Path, key: str, build_args: dict[str, str]) -> None:
    """``docker build`` unless ``tag`` exists with ``key``: classic builder, host network for apt."""
    if image_label(tag, KEY_LABEL) == key:
        say(f"{tag} is up to date")
        return
    say(f"building {tag} (log: {RUN / 'build.log'})")
    command = ["docker", "build", "--network", "host", "-f", str(dockerfile), "-t", tag,
               "--label", f"{KEY_LABEL}={key}", "--label", "org.mlops.compose.offline=true"]
    for name, value in build_args.items():
        command += ["--build-arg", f"{name}={value}"]
    previous = image_id(tag) if image_label(tag, KEY_LABEL) is not None else None
    started = time.monotonic()
    with (RUN / "build.log").open("a") as log:
        done = run([*command, str(context)], check=False, stdout=log, stderr=subprocess.STDOUT,
                   env={**os.environ, "DOCKER_BUILDKIT": "0"})
    if done.returncode != 0:
        tail = (RUN / "build.log").read_text().splitlines()[-30:]
        raise SystemExit(f"building {tag} failed:\n" + "\n".join(tail))
    say(f"built {tag} in {time.monotonic() - started:.0f}s")
    if previous and previous != image_id(tag):
        # The image this build replaced, now untagged; kept by the engine while a container uses it.
        run(["docker", "image", "rm", previous], check=False, capture_output=True)
    prune_build_stages()


def prune_build_stages() -> None:
    """The untagged build stages of python.Dockerfile (wheels and all): the newest stays as the
    build cache, older ones are dead weight."""
    stages = run(["docker", "images", "-q", "--no-trunc", "--filter", "dangling=true",
                  "--filter", f"label={BUILD_STAGE_LABEL}"], capture_output=True).stdout.split()
    # `docker images` lists the newest first.
    for stage in stages[1:]:
        run(["docker", "image", "rm", stage], check=False, capture_output=True)


def uv() -> str:
    return shutil.which("uv") or str(REPO / ".run" / "uv" / "bin" / "uv")


def runtime_requirements() -> str:
    """uv.lock's runtime dependencies and moto's server, pinned, markers evaluated for bookworm's Python."""
    from packaging.requirements import Requirement

    exported = run([uv(), "export", "--frozen", "--no-dev", "--no-emit-project", "--no-hashes",
                    "--format", "requirements-txt"], cwd=REPO, capture_output=True).stdout
    dev = run([uv(), "export", "--frozen", "--only-group", "dev", "--no-emit-project", "--no-hashes",
               "--format", "requirements-txt"], cwd=REPO, capture_output=True).stdout
    pins = {Requirement(line).name: line.split(";")[0].strip() for line in dev.splitlines()
            if line and not line.startswith((" ", "#"))}
    lines = []
    for line in exported.splitlines():
        if not line or line.startswith((" ", "#")):
            continue
        requirement = Requirement(line)
        if requirement.marker is None or requirement.marker.evaluate(TARGET_MARKERS):
            requirement.marker = None
            lines.append(str(requirement))
    for extra in EXTRA_REQUIREMENTS:
        name = Requirement(extra).name
        version = pins[name].split("==", 1)[1]
        lines.append(f"{extra}=={version}")
    return "\n".join(lines) + "\n"


def build_context() -> Path:
    """.run/compose/context: the requirements, the wheelhouse (hard links) and this package's wheel."""
    context = RUN / "context"
    context.mkdir(parents=True, exist_ok=True)
    requirements = context / "requirements.txt"
    text = runtime_requirements()
    if not requirements.is_file() or requirements.read_text() != text:
        requirements.write_text(text)
    wheelhouse = Path(run(["bash", str(REPO / "serving/docker/wheelhouse.sh")], capture_output=True, env={
        **os.environ, "MLOPS_WHEELHOUSE": str(RUN / "wheelhouse"), "MLOPS_SERVING_REQUIREMENTS": str(requirements),
    }).stdout.strip().splitlines()[-1])
    linked = context / "wheelhouse"
    shutil.rmtree(linked, ignore_errors=True)
    linked.mkdir()
    for wheel in wheelhouse.glob("*.whl"):
        os.link(wheel, linked / wheel.name)
    project = context / "project"
    shutil.rmtree(project, ignore_errors=True)
    # hatchling's wheels are reproducible: the same sources give the same bytes, so the same key.
    run([uv(), "build", "--wheel", "--quiet", "-o", str(project)], cwd=REPO, capture_output=True)
    shutil.copy2(OFFLINE / "airflow-entrypoint.sh", context / "airflow-entrypoint.sh")
    return context


def build_images() -> None:
    RUN.mkdir(parents=True, exist_ok=True)
    run(["bash", str(REPO / "serving/docker/ensure-engine.sh")])
    run(["bash", str(REPO / "serving/docker/build-base-image.sh")], stdout=subprocess.DEVNULL)
    base = image_id(BASE_IMAGE)
    build_image(SERVICES_IMAGE, OFFLINE / "services.Dockerfile", OFFLINE,
                digest(base, OFFLINE / "services.Dockerfile", OFFLINE / "postgres-entrypoint.sh"),
                {"BASE_IMAGE": BASE_IMAGE})
    context = build_context()
    build_image(PYTHON_IMAGE, OFFLINE / "python.Dockerfile", context,
                digest(base, OFFLINE / "python.Dockerfile", context / "requirements.txt"),
                {"BASE_IMAGE": BASE_IMAGE})
    wheels = sorted((context / "project").glob("*.whl"))
    build_image(AIRFLOW_IMAGE, OFFLINE / "airflow.Dockerfile", context,
                digest(image_id(PYTHON_IMAGE), OFFLINE / "airflow.Dockerfile", OFFLINE / "airflow-entrypoint.sh", *wheels),
                {"PYTHON_ENV_IMAGE": PYTHON_IMAGE})


# ---------------------------------------------------------------------------------------------
# .env, the rendered file, up / down
# ---------------------------------------------------------------------------------------------
def write_env(path: Path, data_dir: Path) -> None:
    """A .env with fresh secrets, when there is none: an existing one is the user's and is kept."""
    if path.exists():
        return
    fernet = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()
    values = {
        "POSTGRES_PASSWORD": secrets.token_urlsafe(24),
        "MINIO_ROOT_USER": "mlops",
        "MINIO_ROOT_PASSWORD": secrets.token_urlsafe(24),
        "MLOPS_BUCKET": "mlops",
        "AIRFLOW_FERNET_KEY": fernet,
        "AIRFLOW_JWT_SECRET": secrets.token_urlsafe(48),
        "AIRFLOW_ADMIN_PASSWORD": secrets.token_urlsafe(18),
        "GRAFANA_ADMIN_PASSWORD": secrets.token_urlsafe(18),
        "MLFLOW_ADMIN_PASSWORD": secrets.token_urlsafe(18),
        "MLFLOW_SECRET_KEY": secrets.token_urlsafe(32),
        **{f"MLOPS_MLFLOW_{identity.upper()}_PASSWORD": secrets.token_urlsafe(18) for identity in MLFLOW_IDENTITIES},
        "DOCKER_GID": str(os.stat("/var/run/docker.sock").st_gid),
        "MLOPS_DATA_DIR": str(data_dir),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write("# Generated by `python -m mlops_dev.compose up`: secrets of this host's stack; never commit it.\n")
        handle.writelines(f"{name}={value}\n" for name, value in values.items())
    say(f"wrote {path} with fresh secrets")


def read_env(path: Path) -> dict[str, str]:
    values = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#") and "=" in line:
            name, value = line.split("=", 1)
            values[name.strip()] = value.strip()
    return values


def render(project: str, ephemeral_ports: bool) -> Path:
    """docker-compose.yaml with include/compose/offline/offline.yaml merged in, minus the services
    that cannot be had offline (and every depends_on on them). Variables stay unexpanded, so the
    rendered file holds no secret (``docker-compose config`` cannot leave them unexpanded here: its
    --no-interpolate refuses the ``${MLOPS_DATA_DIR}`` bind mount)."""
    spec = yaml.safe_load((REPO / "docker-compose.yaml").read_text())
    override = yaml.safe_load((OFFLINE / "offline.yaml").read_text())
    without = set(override.get("x-offline-without") or [])
    for name, changes in (override.get("services") or {}).items():
        spec["services"][name] = merge_service(spec["services"][name], changes)
    for name in without:
        spec["services"].pop(name, None)
    for service in spec["services"].values():
        depends = service.get("depends_on")
        if isinstance(depends, dict):
            for name in without:
                depends.pop(name, None)
        if ephemeral_ports and service.get("ports"):
            service["ports"] = [_ephemeral(port) for port in service["ports"]]
    used = {str(volume).split(":")[0] for service in spec["services"].values() for volume in service.get("volumes") or []}
    spec["volumes"] = {name: value for name, value in (spec.get("volumes") or {}).items() if name in used}
    spec = {key: value for key, value in spec.items() if not key.startswith("x-")}
    target = RUN / project / "docker-compose.yaml"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text("# Rendered by `python -m mlops_dev.compose`; edit docker-compose.yaml and "
                      "include/compose/offline/offline.yaml instead.\n" + yaml.safe_dump(spec, sort_keys=False))
    return target


def merge_service(service: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """An override's service on the base's, as docker-compose merges them for the keys offline.yaml
    uses: mappings (environment, healthcheck) key by key, everything else replaced."""
    merged = dict(service)
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = {**merged[key], **value}
        else:
            merged[key] = value
    return merged


def _ephemeral(port: Any) -> Any:
    if isinstance(port, dict):
        return {key: value for key, value in port.items() if key != "published"}
    host_ip, _, container = str(port).rpartition(":")
    host_ip = host_ip.rpartition(":")[0] if host_ip.count(":") else host_ip
    return f"{host_ip}::{container}" if host_ip else container


def compose_command(project: str, env_file: Path) -> list[str]:
    return ["docker-compose", "--project-name", project, "--project-directory", str(REPO),
            "--env-file", str(env_file), "-f", str(RUN / project / "docker-compose.yaml")]


def containers(project: str) -> list[dict[str, Any]]:
    ids = run(["docker", "ps", "-aq", "--filter", f"label=com.docker.compose.project={project}"],
              capture_output=True).stdout.split()
    if not ids:
        return []
    return json.loads(run(["docker", "inspect", *ids], capture_output=True).stdout)


def service_states(project: str) -> dict[str, str]:
    """Each service's state: its health, or for a one-shot job exited(<code>), or its status."""
    states: dict[str, str] = {}
    for container in containers(project):
        service = container["Config"]["Labels"].get("com.docker.compose.service", container["Name"])
        state = container["State"]
        if state.get("Health"):
            states[service] = state["Health"]["Status"]
        elif state["Status"] == "exited":
            states[service] = f"exited({state['ExitCode']})"
        else:
            states[service] = state["Status"]
    return states


def wait_healthy(project: str, expected: set[str], timeout: float) -> dict[str, str]:
    deadline = time.monotonic() + timeout
    last: dict[str, str] = {}
    while True:
        states = service_states(project)
        if states != last:
            say("states: " + ", ".join(f"{name}={state}" for name, state in sorted(states.items())))
            last = states
        ready = {name for name, state in states.items()
                 if state == "healthy" or (name in ONE_SHOT_SERVICES and state == "exited(0)")}
        failed = {name: state for name, state in states.items()
                  if state == "unhealthy" or (state.startswith("exited") and state != "exited(0)")}
        if expected <= ready:
            return states
        if failed:
            raise SystemExit(f"services failed: {failed}; see `docker-compose -p {project} logs`")
        if time.monotonic() > deadline:
            raise SystemExit(f"not healthy after {timeout:.0f}s: { {n: states.get(n, 'absent') for n in expected - ready} }")
        time.sleep(5)


def up(project: str, env_file: Path, ephemeral_ports: bool, timeout: float) -> dict[str, str]:
    started = time.monotonic()
    build_images()
    data_dir = RUN / project / "data" if env_file != REPO / ".env" else Path("/var/lib/mlops")
    write_env(env_file, data_dir)
    Path(read_env(env_file).get("MLOPS_DATA_DIR") or "/var/lib/mlops").mkdir(parents=True, exist_ok=True)
    compose_file = render(project, ephemeral_ports)
    expected = set(yaml.safe_load(compose_file.read_text())["services"])
    run([*compose_command(project, env_file), "up", "-d"])
    states = wait_healthy(project, expected, timeout)
    say(f"{len(expected)} services up and healthy in {time.monotonic() - started:.0f}s")
    return states


def down(project: str, env_file: Path) -> None:
    compose_file = RUN / project / "docker-compose.yaml"
    if not compose_file.is_file():
        render(project, ephemeral_ports=False)
    run([*compose_command(project, env_file), "down", "--volumes", "--remove-orphans"])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mlops_dev.compose", description=__doc__.split("\n")[0])
    parser.add_argument("action", choices=["build", "up", "down", "render"])
    parser.add_argument("--project", default=DEFAULT_PROJECT, help="compose project name (default %(default)s)")
    parser.add_argument("--env-file", type=Path, default=REPO / ".env",
                        help="secrets; written with fresh ones when missing (default: .env of the checkout)")
    parser.add_argument("--ephemeral-ports", action="store_true", help="publish on free host ports")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds to wait for health")
    args = parser.parse_args(argv)
    if args.action == "build":
        build_images()
    elif args.action == "render":
        print(render(args.project, args.ephemeral_ports))
    elif args.action == "up":
        up(args.project, args.env_file.resolve(), args.ephemeral_ports, args.timeout)
    else:
        down(args.project, args.env_file.resolve())
    return 0


if __name__ == "__main__":
    sys.exit(main())
