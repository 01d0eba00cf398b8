"""The data-status page on the emulators: index facts, recent runs with errors, next run, and the
admin-only "refresh now" that calls the scrape function (a loopback fake here) or runs locally."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from shared.config import Settings
from shared.gcp import firestore_client
from shared.qa.live_index import LiveIndex
from tests.qa_support import make_app, sign_in

pytestmark = pytest.mark.emulators


def _runs(settings: Settings) -> None:
    db = firestore_client(settings.project_id)
    now = datetime.now(UTC)
    db.collection("scrape_runs").document("r1").set(
        {
            "started_at": now - timedelta(hours=1),
            "ended_at": now - timedelta(minutes=58),
            "status": "succeeded",
            "pages_fetched": 12,
            "chunks_added": 40,
            "snapshot_id": "s1",
        }
    )
    db.collection("scrape_runs").document("r2").set(
        {
            "started_at": now - timedelta(minutes=30),
            "ended_at": now - timedelta(minutes=29),
            "status": "failed",
            "pages_fetched": 0,
            "error": "docs.example.com answered 503 <b>twice</b>",
        }
    )


def test_status_page_shows_index_runs_errors_and_schedule(
    emulators, settings: Settings, live: LiveIndex
) -> None:
    _runs(settings)
    client = make_app(settings, live).test_client()
    sign_in(client, "viewer@example.com")
    html = client.get("/status").get_data(as_text=True)
    assert "<code>s1</code>" in html  # snapshot served
    assert "<td>docs</td>" in html and '<td class="num">3</td>' in html  # chunks per source
    assert "failed" in html and "succeeded" in html
    # A run's error text (it can name buckets and service accounts) is for admins; others see one was kept.
    assert "answered 503" not in html and "recorded (admins see it)" in html
    assert "pages fetched: 12" in html
    assert "*/30 * * * *" in html and "Next scheduled" in html
    assert "Refresh now" not in html  # not an admin
    admin = make_app(settings, live, admin_emails=["boss@example.com"]).test_client()
    sign_in(admin, "boss@example.com")
    assert "answered 503 &lt;b&gt;twice&lt;/b&gt;" in admin.get("/status").get_data(as_text=True)  # escaped


def test_status_page_survives_no_runs(emulators, settings: Settings, live: LiveIndex) -> None:
    client = make_app(settings, live).test_client()
    sign_in(client, "viewer@example.com")
    response = client.get("/status")
    assert response.status_code == 200 and "none yet" in response.get_data(as_text=True)


class _ScrapeFake(BaseHTTPRequestHandler):
    calls: list[dict] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        type(self).calls.append(
            {"body": json.loads(body or b"{}"), "auth": self.headers.get("Authorization")}
        )
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args: object) -> None:
        pass


def test_refresh_is_admin_only_and_calls_the_scrape_function(
    emulators, settings: Settings, live: LiveIndex
) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _ScrapeFake)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    _ScrapeFake.calls = []
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/scrape"
        app = make_app(settings, live, scrape_url=url, admin_emails=["boss@example.com"])
        viewer = app.test_client()
        token = sign_in(viewer, "viewer@example.com")
        assert viewer.post("/status/refresh", data={"csrf_token": token}).status_code == 403
        assert _ScrapeFake.calls == []

        boss = app.test_client()
        token = sign_in(boss, "boss@example.com")
        assert "Refresh now" in boss.get("/status").get_data(as_text=True)
        response = boss.post("/status/refresh", data={"csrf_token": token})
        assert response.status_code == 302
        assert _ScrapeFake.calls == [{"body": {"trigger": "manual"}, "auth": None}]
        assert "Refresh started" in boss.get("/status").get_data(as_text=True)
    finally:
        server.shutdown()


def test_local_refresh_runs_the_scrape_in_the_background(
    emulators, settings: Settings, live: LiveIndex, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shared.knowledge.scrape as scrape

    ran = threading.Event()
    monkeypatch.setattr(scrape, "run_scrape", lambda s, progress=None: ran.set())
    app = make_app(settings, live, scrape_url="", admin_emails=["boss@example.com"])
    boss = app.test_client()
    token = sign_in(boss, "boss@example.com")
    assert boss.post("/status/refresh", data={"csrf_token": token}).status_code == 302
    assert ran.wait(5)


def test_status_page_shows_each_sources_completeness_and_error(
    emulators, settings: Settings, live: LiveIndex
) -> None:
    now = datetime.now(UTC)
    firestore_client(settings.project_id).collection("scrape_runs").document("r3").set(
        {
            "started_at": now - timedelta(minutes=5),
            "ended_at": now - timedelta(minutes=4),
            "status": "unchanged",
            "incomplete_sources": ["docs"],
            "error": "incomplete: docs",
            "sources": {
                "docs": {"complete": False, "error": "sitemap <i>https://x/s.xml</i> unavailable (404)"},
                "blog": {"complete": True, "error": "", "over_max_pages": 7},
            },
        }
    )
    client = make_app(settings, live).test_client()
    sign_in(client, "viewer@example.com")
    html = client.get("/status").get_data(as_text=True)
    assert '<tr class="run-unchanged run-incomplete">' in html
    assert '<li class="source-incomplete">docs: incomplete' in html
    assert "sitemap &lt;i&gt;https://x/s.xml&lt;/i&gt; unavailable (404)" in html  # escaped
    assert '<li class="source-complete">blog: complete' in html and "7 URLs over max_pages" in html


def test_refresh_without_an_id_token_says_it_could_not_start_not_a_500(
    emulators, settings: Settings, live: LiveIndex, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In production the scrape function is called with an ID token from the metadata server. When
    that fails (google-auth raises its own errors, not RuntimeError), the admin got the 500 page; the
    status page says the refresh could not start, as for any other failure, and nothing is called."""
    import socket

    server = ThreadingHTTPServer(("127.0.0.1", 0), _ScrapeFake)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    _ScrapeFake.calls = []
    with socket.socket() as closed:  # a metadata server address nothing listens on
        closed.bind(("127.0.0.1", 0))
        metadata = f"127.0.0.1:{closed.getsockname()[1]}"
    monkeypatch.setenv("GCE_METADATA_HOST", metadata)
    monkeypatch.setenv("GCE_METADATA_IP", metadata)
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/scrape"
        app = make_app(
            settings,
            live,
            scrape_url=url,
            internal_auth="google-oidc",
            admin_emails=["boss@example.com"],
        )
        boss = app.test_client()
        token = sign_in(boss, "boss@example.com")
        response = boss.post("/status/refresh", data={"csrf_token": token})
        assert response.status_code == 302
        page = boss.get("/status").get_data(as_text=True)
        assert "Refresh could not start: no ID token for the scrape job" in page
        assert _ScrapeFake.calls == []
    finally:
        server.shutdown()


def test_refresh_that_never_reached_the_scrape_job_is_not_reported_started(
    emulators, settings: Settings, live: LiveIndex, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A timeout while reading the answer means the function got the request and is crawling; a timeout
    while connecting means it got nothing, and the admin was told "Refresh started" all the same."""
    import httpx

    def unreachable(url: str, **kwargs: object) -> httpx.Response:
        raise httpx.ConnectTimeout("timed out", request=httpx.Request("POST", url))

    monkeypatch.setattr(httpx, "post", unreachable)  # a connect timeout: no loopback server can stage it
    app = make_app(settings, live, scrape_url="https://scrape.invalid/", admin_emails=["boss@example.com"])
    boss = app.test_client()
    token = sign_in(boss, "boss@example.com")
    assert boss.post("/status/refresh", data={"csrf_token": token}).status_code == 302
    page = boss.get("/status").get_data(as_text=True)
    assert "Refresh could not start: could not reach the scrape job: ConnectTimeout" in page
    assert "Refresh started" not in page
