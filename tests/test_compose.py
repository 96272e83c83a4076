"""compose.yaml and the Dockerfile checked against the code (Docker is not available on CI).

compose.yaml is written in a plain subset of YAML (nested block maps; lists, maps and quoted
strings in JSON syntax; no anchors, no multi-line strings; comments on their own lines), read
here by :func:`read_compose` without PyYAML, which refuses anything outside that subset. Every
service command and healthcheck must name a real ``vow`` subcommand (resolved through the click
tree, options parsed) or a real module; the ``vow worker start`` target must load as a Scheduler
of the service's logic group; ``VOW_REDIS_URL`` must point at the Redis service; the Dockerfile
must install the project exactly as the README's production section says.

The README's troubleshooting commands are run here too, against a real server, so the error
messages the README quotes are the ones users see.
"""

from __future__ import annotations

import importlib
import json
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import click
import pytest
from click.testing import CliRunner

from tests.harness import ROOT
from vow.coordinator import RedisStore
from vow.server import ServerProcess, free_port
from vow.worker import Scheduler

COMPOSE = ROOT / "compose.yaml"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
README = ROOT / "README.md"
VOW = str(Path(sys.executable).parent / "vow")
APP_SERVICES = ["email-service", "workflow-service", "confirm-service"]
#: the services of the "metrics" profile: group gauges (vow metrics serve) and Prometheus
METRICS_SERVICES = ["metrics", "prometheus"]
PROMETHEUS_YML = ROOT / "examples" / "prometheus" / "prometheus.yml"

_KEY = re.compile(r"^(?P<indent> *)(?P<key>[A-Za-z0-9_.-]+):(?: (?P<value>.*))?$")
_PLAIN = re.compile(r"^[A-Za-z0-9_./:@+-][^#]*$")


def _scalar(text: str, where: str) -> Any:
    if text[0] in '[{"':
        return json.loads(text)
    if not _PLAIN.match(text) or text.endswith(":") or ": " in text:
        raise ValueError(f"{where}: {text!r} is outside the YAML subset compose.yaml keeps to")
    return text


def read_compose(text: str) -> dict[str, Any]:
    """Nested block maps of two-space indents whose leaves are plain or JSON scalars."""
    root: dict[str, Any] = {}
    stack: list[tuple[int, dict[str, Any]]] = [(-1, root)]
    pending: tuple[int, dict[str, Any], str] | None = None  # a "key:" awaiting its block
    for number, line in enumerate(text.splitlines(), 1):
        where = f"compose.yaml:{number}"
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        match = _KEY.match(line)
        if "\t" in line or not match or len(match["indent"]) % 2:
            raise ValueError(f"{where}: {line!r} is outside the YAML subset compose.yaml keeps to")
        indent, key, value = len(match["indent"]), match["key"], match["value"]
        if pending is not None:
            parent_indent, parent, parent_key = pending
            if indent != parent_indent + 2:
                raise ValueError(f"{where}: expected the block of {parent_key!r} indented by two more spaces")
            parent[parent_key] = {}
            stack.append((parent_indent, parent))
            stack.append((indent, parent[parent_key]))
            pending = None
        while stack[-1][0] > indent:
            stack.pop()
        if stack[-1][0] != indent:
            stack.append((indent, stack[-1][1]))
        mapping = stack[-1][1]
        if key in mapping:
            raise ValueError(f"{where}: duplicate key {key!r}")
        if value is None:
            pending = (indent, mapping, key)
        else:
            mapping[key] = _scalar(value.strip(), where)
    if pending is not None:
        raise ValueError(f"compose.yaml: {pending[2]!r} has no value")
    return root


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return read_compose(COMPOSE.read_text())


@pytest.fixture
def in_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)  # as in the image: WORKDIR holds examples/


def vow_command(args: list[str]) -> click.Command:
    """The click command ``vow ARGS`` runs, its arguments and options parsed (nothing invoked)."""
    from vow.cli.main import cli

    command: click.Command = cli
    context = cli.make_context("vow", [], resilient_parsing=True)
    rest = list(args)
    while isinstance(command, click.Group):
        assert rest, f"vow {' '.join(args)}: no subcommand after {command.name!r}"
        name = rest.pop(0)
        sub = command.get_command(context, name)
        assert sub is not None, f"vow {' '.join(args)}: {name!r} is not a subcommand of {command.name!r}"
        if isinstance(sub, click.Group):
            context = sub.make_context(name, [], parent=context, resilient_parsing=True)
        else:
            with sub.make_context(name, rest, parent=context):
                pass  # parsed: the arguments and options are the command's own
        command = sub
    return command


def commands(compose: dict[str, Any]) -> Iterator[tuple[str, str, list[str]]]:
    for name, service in compose["services"].items():
        if name == "prometheus":
            continue  # its own image's arguments: checked in test_prometheus_scrapes_every_metrics_port
        yield name, "command", service["command"]
        yield name, "healthcheck", service["healthcheck"]["test"][1:]


def test_compose_reader_refuses_what_it_does_not_understand() -> None:
    assert read_compose('a:\n  b: ["x", 1]\n  c: plain:text\nd: "q"\n') == {
        "a": {"b": ["x", 1], "c": "plain:text"}, "d": "q"
    }
    for bad in ["a: &anchor x\n", "a: |\n  text\n", "a:\n   b: 1\n", "a: x # comment\n", "- item\n", "a: 'x'\n",
                "a: 1\na: 2\n", "a:\n"]:
        with pytest.raises(ValueError):
            read_compose(bad)


def test_services_and_redis_settings(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert sorted(services) == sorted(["redis", *APP_SERVICES, *METRICS_SERVICES])
    redis = services["redis"]
    args = " ".join(redis["command"])
    assert redis["command"][0] == "redis-server"
    for setting in ["--appendonly yes", "--appendfsync everysec", "--maxmemory-policy noeviction"]:
        assert setting in args
    assert redis["volumes"] == ["redis-data:/data"] and "redis-data" in compose["volumes"]
    assert redis["healthcheck"]["test"] == ["CMD", "redis-cli", "ping"]


@pytest.mark.parametrize("name", [*APP_SERVICES, "metrics"])
def test_app_services_are_built_here_and_point_at_redis(compose: dict[str, Any], name: str) -> None:
    service = compose["services"][name]
    assert service["build"] == "."
    url = urlsplit(service["environment"]["VOW_REDIS_URL"])
    assert url.scheme == "redis" and url.port == 6379
    assert url.hostname in compose["services"] and compose["services"][url.hostname]["image"].startswith("redis:")
    assert service["depends_on"] == {url.hostname: {"condition": "service_healthy"}}
    assert service["healthcheck"]["test"][0] == "CMD"
    assert {"interval", "timeout", "retries"} <= set(service["healthcheck"])
    if "PORT" in service["environment"]:
        port = service["environment"]["PORT"]
        assert service["ports"] == [f"{port}:{port}"]
        assert f"('localhost', {port})" in service["healthcheck"]["test"][-1]
        assert service.get("init") == "true"  # PID 1 would ignore SIGTERM without a handler


def test_every_command_names_real_code(compose: dict[str, Any], in_root: None) -> None:
    from vow.cli.worker import load_scheduler

    checked = 0
    for name, kind, argv in commands(compose):
        if argv[0] == "vow":
            command = vow_command(argv[1:])
            if argv[1:3] == ["worker", "start"]:
                assert command.name == "start"
                assert load_scheduler(argv[3]).group == name  # the service is named after its logic group
        elif argv[:2] == ["python", "-m"]:
            with Scheduler.deferred_serving():
                module = importlib.import_module(argv[2])
            assert callable(module.main) and module.app.__class__.__name__ == "Flask"
        elif argv[:2] == ["python", "-c"]:
            compile(argv[2], f"{name} {kind}", "exec")
        else:
            assert name == "redis" and argv in (["redis-server", *argv[1:]], ["redis-cli", "ping"])
        checked += 1
    assert checked == 10


def metrics_ports(compose: dict[str, Any]) -> dict[str, int]:
    """Service -> the port its command serves Prometheus metrics on."""
    found: dict[str, int] = {}
    for name, service in compose["services"].items():
        argv = service["command"]
        if argv[:3] == ["vow", "worker", "start"] and "--metrics-port" in argv:
            found[name] = int(argv[argv.index("--metrics-port") + 1])
        elif argv[:3] == ["vow", "metrics", "serve"]:
            found[name] = int(argv[argv.index("--port") + 1]) if "--port" in argv else 9465
    return found


def test_prometheus_scrapes_every_metrics_port(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name in METRICS_SERVICES:
        assert services[name]["profiles"] == ["metrics"]  # optional: only with --profile metrics
    assert "profiles" not in services["email-service"]
    prometheus = services["prometheus"]
    assert prometheus["image"].startswith("prom/prometheus:")
    assert "--config.file=/etc/prometheus/prometheus.yml" in prometheus["command"]
    mount = "./examples/prometheus/prometheus.yml:/etc/prometheus/prometheus.yml:ro"
    assert mount in prometheus["volumes"]
    assert Path(ROOT, mount.split(":")[0]).resolve() == PROMETHEUS_YML
    assert set(prometheus["depends_on"]) <= set(services)
    assert prometheus["healthcheck"]["test"][0] == "CMD"
    config = read_compose(PROMETHEUS_YML.read_text())
    targets = sorted(t for job in config["scrape_configs"] for c in job["static_configs"] for t in c["targets"])
    served = sorted(f"{name}:{port}" for name, port in metrics_ports(compose).items())
    assert targets == served == ["email-service:9464", "metrics:9465"]


def dockerfile_install() -> list[str]:
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    runs = [line[4:] for line in text.splitlines() if line.startswith("RUN ")]
    installs = [cmd for run in runs for cmd in run.split("&&") if "pip install" in cmd]
    assert len(installs) == 1, installs
    return [arg for arg in shlex.split(installs[0]) if arg != "--no-cache-dir"]


def readme_region(name: str) -> str:
    text = README.read_text()
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    return text[text.index(start) + len(start):text.index(end)]


def test_dockerfile_installs_the_project_as_the_readme_says() -> None:
    install = dockerfile_install()
    region = readme_region("production")
    shown = [shlex.split(line) for line in re.findall(r"^(python -m pip install .*)$", region, re.M)]
    assert install in shown, f"the Dockerfile runs {install}, the README shows {shown}"
    lines = DOCKERFILE.read_text().splitlines()
    assert "WORKDIR /app" in lines and "COPY . ." in lines  # examples/ lands where the commands import it
    ignored = {line.strip().rstrip("/") for line in DOCKERIGNORE.read_text().splitlines()
               if line.strip() and not line.startswith("#")}
    assert {".venv", ".vow", ".git"} <= ignored
    needed = {"pyproject.toml", "README.md", "coordinator", "worker", "cli", "examples"}
    assert not needed & ignored


def test_readme_production_commands_match_compose(compose: dict[str, Any]) -> None:
    region = readme_region("production")
    for service in APP_SERVICES:
        assert " ".join(compose["services"][service]["command"]) in region
    assert "appendfsync everysec" in region and "maxmemory-policy noeviction" in region


# -- the README's troubleshooting, run for real ---------------------------------------------------------------


@dataclass
class Ran:
    returncode: int
    stdout: str
    stderr: str


def vow(*args: str, url: str) -> Ran:
    """``vow ARGS`` in this process (click's CliRunner), with ``VOW_REDIS_URL=url``."""
    from vow.cli.main import cli

    result = CliRunner().invoke(cli, list(args), env={"VOW_REDIS_URL": url}, prog_name="vow")
    return Ran(result.exit_code, result.stdout, result.stderr)


def test_troubleshooting_redis_unreachable() -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    done = vow("streams", "ls", url=url)
    assert done.returncode == 5
    assert done.stderr.startswith(f"Error: Redis unreachable at {url}")


def test_troubleshooting_worker_module_not_found(tmp_path: Path, redis_url: str) -> None:
    done = subprocess.run([VOW, "worker", "start", "examples.email_verification.email_service:resonate"],
                          env={**os.environ, "VOW_REDIS_URL": redis_url}, capture_output=True, text=True,
                          timeout=60, cwd=tmp_path)
    assert done.returncode == 2
    assert "module 'examples.email_verification.email_service' not found" in done.stderr


def test_troubleshooting_already_resolved(redis_url: str) -> None:
    assert vow("promises", "create", "email-confirmed-alice@example.com", url=redis_url).returncode == 0
    first = vow("promises", "resolve", "email-confirmed-alice@example.com", "--data", "true", url=redis_url)
    assert first.returncode == 0, first.stderr
    again = vow("promises", "resolve", "email-confirmed-alice@example.com", "--data", "true", url=redis_url)
    assert again.returncode == 4
    assert "is already completed (state RESOLVED)" in again.stderr
    missing = vow("promises", "resolve", "email-confirmed-bob@example.com", "--data", "true", url=redis_url)
    assert missing.returncode == 3 and "not found" in missing.stderr
    listed = vow("promises", "search", "email-confirmed-*", url=redis_url)
    assert listed.returncode == 0 and "email-confirmed-alice@example" in listed.stdout


def test_troubleshooting_resolve_retried_with_an_idempotency_key(redis_url: str) -> None:
    assert vow("promises", "create", "email-confirmed-alice@example.com", url=redis_url).returncode == 0
    command = ["promises", "resolve", "email-confirmed-alice@example.com", "--data", "true", "--ikey", "click-alice"]
    for _ in range(2):
        done = vow(*command, url=redis_url)
        assert done.returncode == 0, done.stderr
        assert "RESOLVED" in done.stdout


def test_troubleshooting_no_worker_serves_the_group(redis_url: str) -> None:
    with Scheduler.deferred_serving():
        app = importlib.import_module("examples.email_verification.workflow_service")
    store = RedisStore(redis_url)
    try:
        starter = Scheduler(store, logic_group="workflow-service", serve=False)
        starter.registry = app.resonate.registry
        starter.run("workflow-alice@example.com", "workflow", "alice@example.com")
    finally:
        store.close()
    done = vow("streams", "ls", "workflow-service", url=redis_url)
    assert done.returncode == 0, done.stderr
    assert re.search(r"^workflow-service +1 +0 +1 +0 +0$", done.stdout, re.M), done.stdout


def test_troubleshooting_eviction_policy_warning(tmp_path: Path) -> None:
    with ServerProcess(directory=tmp_path, extra_args=["--maxmemory-policy", "allkeys-lru"]) as server:
        process = subprocess.Popen(
            [VOW, "worker", "start", "examples.email_verification.email_service:resonate"],
            env={**os.environ, "VOW_REDIS_URL": server.url}, cwd=ROOT, stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE, text=True,
        )
        lines: list[str] = []
        try:
            assert process.stderr is not None
            for line in process.stderr:  # bounded: the worker logs its start-up lines at once
                lines.append(line)
                if "serving group" in line and " INFO " in line:
                    break
        finally:
            process.terminate()
            process.communicate(timeout=20)
    warning = "WARNING vow.worker maxmemory-policy is allkeys-lru: Redis may evict promises and tasks; set noeviction"
    assert any(warning in line for line in lines), lines


def test_troubleshooting_server_binary_missing(tmp_path: Path) -> None:
    missing = str(tmp_path / "redis-server")
    done = subprocess.run([VOW, "demo"], env={**os.environ, "VOW_REDIS_SERVER": missing}, cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert f"VOW_REDIS_SERVER={missing!r} is not an executable file" in done.stderr
