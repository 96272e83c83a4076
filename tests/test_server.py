"""Finding the server binary, and starting/stopping servers without leaving a process behind."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
import redis

from tests.harness import process_alive
from vow.coordinator.errors import ServerNotFound, ServerStartError
from vow.server import ServerProcess, find_server_binary, port_is_taken


@pytest.fixture
def binary(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.delenv("VOW_REDIS_SERVER", raising=False)
    try:
        return find_server_binary()
    except ServerNotFound as e:
        pytest.skip(str(e))


def test_env_var_names_the_binary(binary: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    link = tmp_path / "my-server"
    link.symlink_to(binary)
    monkeypatch.setenv("VOW_REDIS_SERVER", str(link))
    assert find_server_binary() == str(link)


def test_env_var_may_name_a_command_on_path(binary: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "vow-test-server").symlink_to(binary)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ.get('PATH', '')}")
    monkeypatch.setenv("VOW_REDIS_SERVER", "vow-test-server")
    assert find_server_binary() == str(tmp_path / "vow-test-server")


@pytest.mark.parametrize("kind", ["missing", "directory", "not executable"])
def test_bad_env_var_is_server_not_found(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str) -> None:
    path = tmp_path / "nope"
    if kind == "directory":
        path.mkdir()
    elif kind == "not executable":
        path.write_text("#!/bin/sh\n")
        path.chmod(stat.S_IRUSR | stat.S_IWUSR)
    monkeypatch.setenv("VOW_REDIS_SERVER", str(path))
    with pytest.raises(ServerNotFound) as info:
        find_server_binary()
    assert str(path) in str(info.value)


def test_start_and_stop_leave_no_process(binary: str) -> None:
    server = ServerProcess(binary=binary)
    directory = server.directory
    server.start()
    assert server.process is not None
    pid = server.process.pid
    client = server.client()
    assert client.ping()
    client.close()
    server.stop()
    assert not process_alive(pid)
    assert not port_is_taken(server.port)
    assert not directory.exists()
    server.stop()  # stopping twice is harmless


def test_context_manager_and_kill(binary: str) -> None:
    with ServerProcess(binary=binary) as server:
        assert server.process is not None
        pid = server.process.pid
        assert redis.Redis(host=server.host, port=server.port).ping()
        server.kill()
        assert not process_alive(pid)
    assert server.process is None


def test_a_binary_that_exits_is_a_start_error(tmp_path: Path) -> None:
    fake = tmp_path / "fake-server"
    fake.write_text("#!/bin/sh\necho no >&2\nexit 3\n")
    fake.chmod(0o755)
    server = ServerProcess(binary=str(fake))
    with pytest.raises(ServerStartError) as info:
        server.start(timeout=10)
    assert "exited with code 3" in str(info.value)
    server.stop()
    assert server.process is None
