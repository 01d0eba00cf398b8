"""A loopback stand-in for Google's token infrastructure: the production-shaped stack's ID tokens.

Production has two token sources askbase relies on, and this module plays both on 127.0.0.1:

* **Google's signing keys.** :class:`LocalIssuer` holds an RSA key and serves its certificate at
  :attr:`LocalIssuer.certs_url` in the format of ``https://www.googleapis.com/oauth2/v1/certs``
  (``{kid: x509 PEM}``). Tokens it mints are RS256 JWTs with Google's claim set (``iss``, ``aud``,
  ``azp``, ``sub``, ``email``, ``email_verified``, ``iat``, ``exp``, and ``hd`` where asked).
  askbase's verifier (:mod:`shared.idtokens`) checks them with the real ``google.oauth2.id_token`` code;
  only ``ASKBASE_OIDC_CERTS_URL`` and ``ASKBASE_OIDC_ISSUERS`` point here.
* **The metadata server.** On Cloud Run a process gets ID tokens for its own service account from
  ``http://metadata.google.internal/computeMetadata/v1/instance/service-accounts/default/identity``.
  :meth:`LocalIssuer.metadata_server` starts one such endpoint per identity; a process started with
  ``GCE_METADATA_HOST``/``GCE_METADATA_IP`` (google-auth's documented overrides) pointing at it gets
  tokens for that identity through google-auth's own ``fetch_id_token``, as in production.

Also what Cloud Scheduler and Pub/Sub push do (mint an OIDC token for a configured service account):
tests call :meth:`LocalIssuer.mint` directly for those callers.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import secrets
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from shared.devstack.frontend import self_signed

ISSUER = "https://accounts.google.com"
TOKEN_LIFETIME_SECONDS = 3600


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


class _Quiet(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like Google's endpoints

    def log_message(self, format: str, *args: Any) -> None:
        return

    def _send(self, status: int, body: bytes, content_type: str, extra: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)


@dataclass
class _Server:
    httpd: ThreadingHTTPServer
    thread: threading.Thread

    @property
    def port(self) -> int:
        return int(self.httpd.server_address[1])

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@dataclass
class LocalIssuer:
    """An RSA signing key, its certificate endpoint and per-identity metadata servers on loopback."""

    issuer: str = ISSUER
    key_id: str = field(default_factory=lambda: secrets.token_hex(8))
    certs_requests: int = 0  # how many times the certificates were downloaded (tests read it)
    _key: rsa.RSAPrivateKey = field(init=False, repr=False)
    _cert_pem: str = field(init=False, repr=False)
    _servers: list[_Server] = field(default_factory=list, init=False, repr=False)
    _certs_server: _Server | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self._cert_pem = (
            self_signed(self._key, "askbase-local-issuer")
            .public_bytes(serialization.Encoding.PEM)
            .decode("ascii")
        )

    # --- tokens -------------------------------------------------------------------------------------

    def mint(
        self,
        email: str,
        audience: str,
        *,
        lifetime: int = TOKEN_LIFETIME_SECONDS,
        key: rsa.RSAPrivateKey | None = None,
        key_id: str | None = None,
        **claims: Any,
    ) -> str:
        """An RS256 ID token for ``email`` and ``audience``; ``claims`` override or add claims
        (``email_verified=False``, ``iss=...``, ``hd=...``). ``key``/``key_id`` forge a token."""
        now = int(time.time())
        payload: dict[str, Any] = {
            "iss": self.issuer,
            "aud": audience,
            "azp": email,
            "sub": str(int(hashlib.sha256(email.encode()).hexdigest()[:16], 16)),  # stable per account
            "email": email,
            "email_verified": True,
            "iat": now,
            "exp": now + lifetime,
        }
        payload.update(claims)
        header = {"alg": "RS256", "typ": "JWT", "kid": key_id or self.key_id}
        signing_input = (
            _b64(json.dumps(header, separators=(",", ":")).encode())
            + "."
            + _b64(json.dumps(payload, separators=(",", ":")).encode())
        )
        signer = key or self._key
        signature = signer.sign(signing_input.encode("ascii"), padding.PKCS1v15(), hashes.SHA256())
        return signing_input + "." + _b64(signature)

    # --- servers ------------------------------------------------------------------------------------

    def _serve(self, handler: type[BaseHTTPRequestHandler]) -> _Server:
        httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        httpd.daemon_threads = True
        thread = threading.Thread(target=httpd.serve_forever, name="local-issuer", daemon=True)
        thread.start()
        server = _Server(httpd, thread)
        self._servers.append(server)
        return server

    def start(self) -> LocalIssuer:
        """Serve the certificates endpoint (idempotent)."""
        if self._certs_server is not None:
            return self
        issuer = self

        class Certs(_Quiet):
            def do_GET(self) -> None:
                if urlsplit(self.path).path != "/oauth2/v1/certs":
                    self._send(404, b"{}", "application/json")
                    return
                issuer.certs_requests += 1
                body = json.dumps({issuer.key_id: issuer._cert_pem}).encode()
                self._send(200, body, "application/json", {"Cache-Control": "public, max-age=3600"})

        self._certs_server = self._serve(Certs)
        return self

    @property
    def certs_url(self) -> str:
        assert self._certs_server is not None, "call start() first"
        return f"http://127.0.0.1:{self._certs_server.port}/oauth2/v1/certs"

    def settings_env(self) -> dict[str, str]:
        """The two settings that point askbase's verifier at this issuer."""
        return {"ASKBASE_OIDC_CERTS_URL": self.certs_url, "ASKBASE_OIDC_ISSUERS": self.issuer}

    def metadata_server(self, email: str, project: str) -> str:
        """Start a metadata server that answers as service account ``email``; returns ``host:port``.

        A process gets it through ``GCE_METADATA_HOST`` and ``GCE_METADATA_IP`` (see :meth:`metadata_env`):
        ID tokens (``/identity``) and OAuth access tokens (``/token``, what Application Default
        Credentials use to call Google APIs such as Pub/Sub's REST API).
        """
        issuer = self

        class Metadata(_Quiet):
            def do_GET(self) -> None:
                flavor = {"Metadata-Flavor": "Google"}
                if self.headers.get("Metadata-Flavor") != "Google":
                    self._send(403, b"missing Metadata-Flavor header", "text/plain", flavor)
                    return
                parts = urlsplit(self.path)
                path = parts.path.rstrip("/")
                query = parse_qs(parts.query)
                base = "/computeMetadata/v1/instance/service-accounts/default"
                if path in ("", "/computeMetadata/v1"):
                    self._send(200, b"ok", "text/plain", flavor)
                elif path == base + "/identity":
                    audience = (query.get("audience") or [""])[0]
                    if not audience:
                        self._send(400, b"audience required", "text/plain", flavor)
                        return
                    self._send(200, issuer.mint(email, audience).encode(), "text/plain", flavor)
                elif path == base and query.get("recursive") == ["true"]:
                    body = json.dumps({"email": email, "aliases": ["default"], "scopes": []}).encode()
                    self._send(200, body, "application/json", flavor)
                elif path == base + "/email":
                    self._send(200, email.encode(), "text/plain", flavor)
                elif path == base + "/token":
                    # An OAuth access token, opaque as Google's are: the identity it stands for is in it
                    # so a stand-in API can tell callers apart.
                    token = f"local-access.{email}.{secrets.token_hex(8)}"
                    grant = {"access_token": token, "expires_in": 3600, "token_type": "Bearer"}
                    self._send(200, json.dumps(grant).encode(), "application/json", flavor)
                elif path == "/computeMetadata/v1/project/project-id":
                    self._send(200, project.encode(), "text/plain", flavor)
                else:
                    self._send(404, b"not found", "text/plain", flavor)

        return f"127.0.0.1:{self._serve(Metadata).port}"

    @staticmethod
    def metadata_env(host: str) -> dict[str, str]:
        """google-auth's documented overrides for the metadata server's address."""
        return {"GCE_METADATA_HOST": host, "GCE_METADATA_IP": host}

    def stop(self) -> None:
        for server in self._servers:
            with contextlib.suppress(OSError):
                server.close()
        self._servers.clear()
        self._certs_server = None

    @contextlib.contextmanager
    def running(self) -> Iterator[LocalIssuer]:
        self.start()
        try:
            yield self
        finally:
            self.stop()
