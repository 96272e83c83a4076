"""The seed's human-in-the-loop story: three programs, each the seed's code with Vow's imports.

- ``email_service`` — a worker of logic group ``email-service`` serving ``send_email``;
- ``confirm_service`` — Flask, ``POST /confirm`` resolves ``email-confirmed-{email}``;
- ``workflow_service`` — Flask, ``POST /start`` runs ``workflow`` in group ``workflow-service``.

Each reads the Redis URL from ``VOW_REDIS_URL`` (default ``redis://localhost:6379``); the two
web services read their port from ``PORT`` (defaults 5000 and 5001, as in the seed).
"""

from __future__ import annotations

__all__: list[str] = []
