"""``vow console``: a web page over the store, served by the CLI (the ``console`` extra).

Pages: the Inbox of human waits (resolve or reject each), Promises (search, a promise's record,
values, call tree and timeline), Streams (figures, throughput, dead letters with Requeue) and
Schedules. ``command.py`` is the click command; ``app.py`` the Flask application and its safety
rules; ``views.py`` the pages; ``present.py`` what they compute; ``throughput.py`` the in-process
sampler; ``server.py`` serving it with waitress. Flask and waitress are imported only when the
command runs, so the rest of the CLI works without the extra.
"""

from __future__ import annotations

from .command import console

__all__ = ["console"]
