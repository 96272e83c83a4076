"""Turning a URL into a redis-py client, and redis-py errors into Vow errors.

``redis://``, ``rediss://`` (TLS), ``unix://`` and ``user:password@`` (ACL) URLs are passed to
redis-py as they are. A URL pointing at any node of a Redis Cluster is detected (``INFO cluster``)
and answered with a ``RedisCluster`` client.

Retries are set deliberately: redis-py would otherwise retry a failing command many times and
surface a black-holed connection only after ~10 s. Vow retries a command at most
``COMMAND_RETRIES`` times with a short exponential backoff; every script is idempotent under such
a resend (request ids), so a retry never applies a change twice.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import redis
from redis import exceptions as redis_errors
from redis.backoff import ExponentialBackoff
from redis.cluster import RedisCluster
from redis.retry import Retry

from .errors import CorruptRecord, OutcomeUnknown, StoreConnectionError, StoreError

__all__ = ["DEFAULT_URL", "connect", "redacted", "resolve_url", "translate_errors"]

DEFAULT_URL = "redis://localhost:6379/0"
#: resends of one command after a connection error or timeout
COMMAND_RETRIES = 2
#: seconds to establish a connection
CONNECT_TIMEOUT_S = 2.0
#: seconds to wait for a reply to a non-blocking command
SOCKET_TIMEOUT_S = 5.0

T = TypeVar("T")


def resolve_url(url: str | None) -> str:
    """The explicit URL, else ``VOW_REDIS_URL``, else the default."""
    return url or os.environ.get("VOW_REDIS_URL") or DEFAULT_URL


def redacted(url: str) -> str:
    """The URL with any password replaced by ``***`` (for messages and logs)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    netloc = f"{user}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def _retry() -> Retry:
    return Retry(ExponentialBackoff(cap=0.25, base=0.02), COMMAND_RETRIES)


def connect(url: str, *, socket_timeout: float | None = SOCKET_TIMEOUT_S, single: bool = False) -> Any:
    """A client for ``url``: ``Redis`` for a standalone server, ``RedisCluster`` for a cluster.
    ``single``: a standalone client sends every command on one connection it holds (for a
    reading thread: no pool checkout per read, and ``CLIENT ID`` names the connection it reads on)."""
    options: dict[str, Any] = {
        "socket_connect_timeout": CONNECT_TIMEOUT_S,
        "socket_timeout": socket_timeout,
        "retry": _retry(),
        "health_check_interval": 30,
    }
    with translate_errors(url):
        client = redis.Redis.from_url(url, single_connection_client=single, **options)
        if url.startswith("unix://"):
            return client
        try:
            info = client.info("cluster")
        except redis.ResponseError:
            info = {}  # INFO refused by ACL: assume standalone
        if not info.get("cluster_enabled"):
            return client
        client.close()
        options.pop("health_check_interval")
        return RedisCluster.from_url(url, **options)


@contextmanager
def translate_errors(url: str, key: str | None = None, *, change: bool = False) -> Iterator[None]:
    """Re-raise redis-py errors as Vow errors (connection family, corrupt record, store error).

    ``change``: the command changes state, so a connection error after sending it leaves the
    outcome unknown (:class:`OutcomeUnknown`, naming ``key``)."""
    try:
        yield
    except (redis_errors.AuthenticationError, redis_errors.AuthorizationError) as e:
        raise StoreConnectionError(redacted(url), f"authentication failed ({e})") from e
    except redis_errors.NoPermissionError as e:
        raise StoreConnectionError(redacted(url), f"permission denied by ACL ({e})") from e
    except (redis.ConnectionError, redis.TimeoutError) as e:
        reason = str(e) or type(e).__name__
        if change and key is not None:
            raise OutcomeUnknown(redacted(url), reason, key) from e
        raise StoreConnectionError(redacted(url), reason) from e
    except redis.ResponseError as e:
        text = str(e)
        if "WRONGTYPE" in text and key is not None:
            raise CorruptRecord(key, "holds a value of the wrong Redis type") from e
        if "NOAUTH" in text or "WRONGPASS" in text:
            raise StoreConnectionError(redacted(url), f"authentication failed ({text})") from e
        raise StoreError(f"Redis refused a command: {text}") from e
    except redis.RedisError as e:
        raise StoreError(f"Redis error: {e}") from e

