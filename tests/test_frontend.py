"""The local stand-in for Cloud Run's front end (shared/devstack/frontend.py): TLS ends there, the
container sees forwarded headers from a non-loopback-127.0.0.1 peer, repeated headers survive."""

from __future__ import annotations

import json
import ssl
import urllib.request
from pathlib import Path

from shared.devstack.frontend import FrontEnd
from shared.devstack.site_server import SiteServer


async def _echo(scope: dict, receive, send) -> None:  # type: ignore[no-untyped-def]
    headers = {k.decode(): v.decode() for k, v in scope["headers"]}
    body = json.dumps({"peer": scope["client"][0], "headers": headers, "path": scope["path"]}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-type", b"application/json"),
                (b"set-cookie", b"a=1; Secure"),
                (b"set-cookie", b"b=2; Secure"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def test_front_end_terminates_tls_and_forwards_from_another_loopback_address(tmp_path: Path) -> None:
    upstream = SiteServer(_echo).start()
    front = FrontEnd(tmp_path)
    public = front.route("svc", upstream.port)
    relay = front.signing_route("push", upstream.port, lambda: "Bearer minted")
    front.start()
    try:
        assert public.startswith("https://127.0.0.1:")
        context = ssl.create_default_context(cafile=str(front.cert_file))
        request = urllib.request.Request(
            public + "/hello?x=1", headers={"X-Forwarded-Proto": "http", "X-Forwarded-For": "6.6.6.6"}
        )
        with urllib.request.urlopen(request, context=context, timeout=10) as response:
            seen = json.loads(response.read())
            cookies = response.headers.get_all("Set-Cookie")
        assert seen["peer"] == "127.0.0.2"  # not the container's loopback
        assert seen["headers"]["x-forwarded-proto"] == "https"  # a client's claim is replaced
        assert seen["headers"]["x-forwarded-for"] == "6.6.6.6, 127.0.0.1"  # the real peer is last
        assert seen["headers"]["host"] == public.removeprefix("https://")
        assert seen["path"] == "/hello"
        assert cookies == ["a=1; Secure", "b=2; Secure"]
        # The Pub/Sub stand-in replaces any Authorization with the token Pub/Sub would attach.
        pushed = urllib.request.Request(relay + "/worker/push", data=b"{}", headers={"Authorization": "x"})
        with urllib.request.urlopen(pushed, timeout=10) as response:
            assert json.loads(response.read())["headers"]["authorization"] == "Bearer minted"
    finally:
        front.stop()
        upstream.stop()
