"""A loopback stand-in for Cloud Run's front end, for the production-shaped local stack.

What it reproduces, because each of these has hidden a production bug before:

* **TLS terminates here.** Clients talk HTTPS to ``https://127.0.0.1:<port>`` (a self-signed
  certificate made at start, trusted by the stack's processes through ``SSL_CERT_FILE``); the
  container gets plain HTTP with ``X-Forwarded-Proto: https`` and ``X-Forwarded-For``, and the Host
  header the client used (Cloud Run keeps the service's own host).
* **The front end is not the container's loopback.** The upstream connection is made from
  ``127.0.0.2`` (binding a client socket to another loopback address works on Linux), so a server that
  trusts forwarded headers only from 127.0.0.1 (gunicorn's default ``forwarded_allow_ips``) behaves
  here as it does on Cloud Run.
* **Pub/Sub push carries an OIDC token.** The Pub/Sub emulator pushes without one; a *signing* route
  (:meth:`FrontEnd.signing_route`) adds the token Pub/Sub would mint for the push service account,
  then forwards like any other route.

Everything is buffered (requests and responses here are small); hop-by-hop headers are dropped.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from shared.devstack.site_server import SiteServer

log = logging.getLogger(__name__)

FRONT_END_ADDRESS = "127.0.0.2"
_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailers",
        "transfer-encoding",
        "upgrade",
        "content-length",
        "x-forwarded-proto",
        "x-forwarded-for",
        "x-forwarded-host",
        "forwarded",
    }
)


def self_signed(
    key: rsa.RSAPrivateKey, common_name: str, hosts: tuple[str, ...] = (), days: int = 2
) -> x509.Certificate:
    """A short-lived self-signed certificate for ``key`` (for a TLS server: names ``hosts``, IPs or DNS)."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
    )
    if hosts:
        names: list[x509.GeneralName] = []
        for host in hosts:
            try:
                names.append(x509.IPAddress(ipaddress.ip_address(host)))
            except ValueError:
                names.append(x509.DNSName(host))
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
    return builder.sign(key, hashes.SHA256())


def write_self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and localhost (and its key), valid for two days; returns the paths."""
    directory.mkdir(parents=True, exist_ok=True)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    cert = self_signed(key, "askbase local front end", ("localhost", "127.0.0.1"))
    cert_path, key_path = directory / "frontend-cert.pem", directory / "frontend-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    key_path.chmod(0o600)
    return cert_path, key_path


class FrontEnd:
    """One listener per deployable, each forwarding to that deployable's local port."""

    def __init__(self, workdir: Path, source_address: str = FRONT_END_ADDRESS) -> None:
        self.cert_file, self.key_file = write_self_signed(workdir)
        self._source = source_address
        self._servers: dict[str, SiteServer] = {}

    def route(self, name: str, upstream_port: int) -> str:
        """A public HTTPS URL that forwards to ``127.0.0.1:<upstream_port>``; bound now, served after
        :meth:`start` (so the URL can go into the environment of the process it fronts)."""
        server = SiteServer(
            self._app(name, upstream_port, extra=None),
            ssl_certfile=str(self.cert_file),
            ssl_keyfile=str(self.key_file),
        )
        self._servers[name] = server
        return server.base_url

    def signing_route(self, name: str, upstream_port: int, authorization: Callable[[], str]) -> str:
        """A plain-HTTP URL (for the Pub/Sub emulator's push) that adds ``Authorization`` the way Pub/Sub
        does for an OIDC push subscription, then forwards to ``upstream_port`` like :meth:`route`."""
        server = SiteServer(self._app(name, upstream_port, extra=authorization))
        self._servers[name] = server
        return server.base_url

    def start(self) -> FrontEnd:
        for server in self._servers.values():
            server.start()
        return self

    def stop(self) -> None:
        for server in self._servers.values():
            server.stop()

    def _app(self, name: str, upstream_port: int, extra: Callable[[], str] | None) -> Any:
        from starlette.requests import Request
        from starlette.responses import Response

        upstream = f"http://127.0.0.1:{upstream_port}"
        client_holder: dict[str, httpx.AsyncClient] = {}

        def client() -> httpx.AsyncClient:
            # Created inside the server's event loop, on first use.
            if "c" not in client_holder:
                transport = httpx.AsyncHTTPTransport(local_address=self._source, retries=0)
                client_holder["c"] = httpx.AsyncClient(transport=transport, timeout=300.0)
            return client_holder["c"]

        async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
            if scope["type"] != "http":
                return
            request = Request(scope, receive)
            body = await request.body()
            headers = [(k, v) for k, v in request.headers.items() if k.lower() not in _HOP_BY_HOP]
            peer = request.client.host if request.client else "127.0.0.1"
            # Like Google's front end: the scheme is its own, and the peer it saw is appended to any
            # X-Forwarded-For the client sent (a trusting app takes the last hop's, not the client's).
            claimed = request.headers.get("x-forwarded-for")
            forwarded_for = f"{claimed}, {peer}" if claimed else peer
            headers += [("x-forwarded-proto", "https"), ("x-forwarded-for", forwarded_for)]
            if extra is not None:
                headers = [(k, v) for k, v in headers if k.lower() != "authorization"]
                headers.append(("authorization", extra()))
            url = upstream + request.url.path + (f"?{request.url.query}" if request.url.query else "")
            try:
                answer = await client().request(request.method, url, headers=headers, content=body)
            except httpx.HTTPError as exc:
                log.warning("front end %s: upstream %s failed: %s", name, url, type(exc).__name__)
                response = Response(b"upstream unavailable", status_code=503)
            else:
                response = Response(answer.content, status_code=answer.status_code)
                # Raw pairs keep repeated headers (several Set-Cookie); httpx decoded the body already.
                response.raw_headers = [
                    (k.lower().encode("latin-1"), v.encode("latin-1"))
                    for k, v in answer.headers.multi_items()
                    if k.lower() not in _HOP_BY_HOP and k.lower() != "content-encoding"
                ] + [(b"content-length", str(len(answer.content)).encode())]
            await response(scope, receive, send)

        return app
