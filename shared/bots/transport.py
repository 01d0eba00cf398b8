"""HTTP plumbing of botrunner's and qa's outgoing calls: keep-alive httpx clients with TCP_NODELAY.

* :func:`http_client` returns the process-wide ``httpx.Client`` the Discord API client uses (the
  Telegram client has PTB's pool, with the same :data:`SOCKET_OPTIONS`). It is keyed by PID: gunicorn
  forks workers after import and a pool inherited across ``fork`` shares sockets between processes.
* :func:`new_http_client` builds one more, for a client with its own timeouts (the Q&A client, the
  control-plane client, long polling, tests).

The webhook functions import nothing of this module (their deployable holds no httpx): what a failed
platform call looks like is :mod:`shared.bots.platforms.errors`.
"""

from __future__ import annotations

import socket

import httpx

from shared.processes import PerProcess

# Without TCP_NODELAY the request body (a second write) waits for the delayed ACK of the headers (Nagle
# + delayed ACK): ~40 ms per call on loopback, measured on the dev machine.
SOCKET_OPTIONS = [(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)]
DEFAULT_TIMEOUT = httpx.Timeout(15.0, connect=5.0)
# Discord requires "DiscordBot ($url, $versionNumber)" of every bot's API client
# (discord.com/developers/docs/reference, "User Agent") and may block other clients at its edge, which a
# bot would then see as a 403 on a good token. Telegram reads none of it.
USER_AGENT = "DiscordBot (https://github.com/askbase, 0.1.0) askbase-bots"


def new_http_client(timeout: httpx.Timeout | float = DEFAULT_TIMEOUT) -> httpx.Client:
    """A fresh keep-alive client with TCP_NODELAY (tests and long-polling use their own)."""
    transport = httpx.HTTPTransport(socket_options=SOCKET_OPTIONS, retries=0)
    return httpx.Client(
        transport=transport,
        timeout=timeout,
        limits=httpx.Limits(max_connections=50, max_keepalive_connections=20, keepalive_expiry=60),
        headers={"User-Agent": USER_AGENT},
    )


_shared = PerProcess(new_http_client)


def http_client() -> httpx.Client:
    """The shared client of this process (built on first use, again in a forked child)."""
    return _shared.get()
