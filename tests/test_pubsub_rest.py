"""shared.pubsub.TopicPublisher: the REST publisher the webhook functions use, against the real emulator
(received through the gRPC subscriber, an independent client) and against scripted HTTP failures."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import requests
from google.cloud import pubsub_v1

from shared.devstack.issuer import LocalIssuer
from shared.emulators import EmulatorStack
from shared.pubsub import PublishError, TopicNotFound, TopicPublisher


def _pull_one(project: str, topic: str, sub_name: str, publish: Any) -> pubsub_v1.types.ReceivedMessage:
    subscriber = pubsub_v1.SubscriberClient()
    sub = subscriber.subscription_path(project, sub_name)
    subscriber.create_subscription(name=sub, topic=f"projects/{project}/topics/{topic}")
    publish()
    resp = subscriber.pull(subscription=sub, max_messages=1, timeout=30)
    assert len(resp.received_messages) == 1
    return resp.received_messages[0]


@pytest.mark.emulators
def test_publishes_data_and_attributes_and_returns_the_message_id(emulators: EmulatorStack) -> None:
    publisher = TopicPublisher(emulators.project, "rest-jobs")
    ids: list[str] = []
    # The topic does not exist yet: the publisher creates it on the emulator (Pulumi does in production);
    # create it first here so the subscription can be attached before the message is sent.
    publisher.publish(b"warm-up", {})
    received = _pull_one(
        emulators.project,
        "rest-jobs",
        "rest-pull",
        lambda: ids.append(publisher.publish(b"\x00job\xff", {"k": "v"})),
    )
    assert received.message.data == b"\x00job\xff"
    assert dict(received.message.attributes) == {"k": "v"}
    assert received.message.message_id == ids[0]


@pytest.mark.emulators
def test_recreates_the_topic_after_an_emulator_reset(emulators: EmulatorStack) -> None:
    publisher = TopicPublisher(emulators.project, "rest-reset")
    publisher.publish(b"before", {})
    emulators.reset()
    assert publisher.publish(b"after", {})


class _Scripted(requests.Session):
    """A session whose POSTs answer from a script of (status, headers) or exceptions."""

    def __init__(self, script: list[Any]) -> None:
        super().__init__()
        self.script = script
        self.posts: list[dict[str, Any]] = []

    def post(self, url: str, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        self.posts.append({"url": url, **kwargs})
        step = self.script.pop(0)
        if isinstance(step, Exception):
            raise step
        status, headers = step
        response = requests.Response()
        response.status_code = status
        response.headers.update(headers)
        response._content = json.dumps({"messageIds": ["42"]} if status == 200 else {}).encode()
        return response


@pytest.fixture
def no_sleep(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[float]]:
    waits: list[float] = []
    monkeypatch.setattr("shared.pubsub.time.sleep", waits.append)
    yield waits


def test_transient_failures_are_retried_honouring_retry_after(no_sleep: list[float]) -> None:
    session = _Scripted(
        [requests.ConnectionError("reset"), (503, {}), (429, {"Retry-After": "1.5"}), (200, {})]
    )
    publisher = TopicPublisher("p", "t", emulator_host="", session=session)
    assert publisher.publish(b"x", {"a": "b"}, timeout=60) == "42"
    assert len(session.posts) == 4
    assert no_sleep[2] == 1.5
    assert session.posts[0]["url"] == "https://pubsub.googleapis.com/v1/projects/p/topics/t:publish"
    body = session.posts[0]["json"]["messages"][0]
    assert body == {"data": "eA==", "attributes": {"a": "b"}}


def test_permanent_errors_are_not_retried(no_sleep: list[float]) -> None:
    session = _Scripted([(403, {})])
    with pytest.raises(PublishError, match="HTTP 403"):
        TopicPublisher("p", "t", emulator_host="", session=session).publish(b"x", {})
    assert no_sleep == []
    with pytest.raises(TopicNotFound):
        TopicPublisher("p", "t", emulator_host="", session=_Scripted([(404, {})])).publish(b"x", {})


def test_gives_up_at_the_deadline(no_sleep: list[float]) -> None:
    session = _Scripted([(503, {"Retry-After": "30"})])
    with pytest.raises(PublishError, match="until the deadline"):
        TopicPublisher("p", "t", emulator_host="", session=session).publish(b"x", {}, timeout=5)
    assert len(session.posts) == 1


class _RecordingPubSub(BaseHTTPRequestHandler):
    """Plays ``pubsub.googleapis.com`` for one test: records each publish's path, headers and body."""

    calls: list[dict[str, Any]] = []

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        self.calls.append({"path": self.path, "auth": self.headers.get("Authorization"), "body": body})
        reply = json.dumps({"messageIds": [str(len(self.calls))]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)


def test_production_publishes_with_the_service_accounts_access_token(
    issuer: LocalIssuer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without an emulator the publisher uses Application Default Credentials: on Cloud Run, the metadata
    server's access token for the function's service account, sent as a Bearer token (google-auth's
    real ComputeEngine credentials against the metadata stand-in; only the API endpoint is local)."""
    metadata = issuer.metadata_server("telegram-fn@proj.iam.gserviceaccount.com", "proj")
    for name, value in issuer.metadata_env(metadata).items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
    monkeypatch.delenv("PUBSUB_EMULATOR_HOST", raising=False)
    monkeypatch.setenv("CLOUDSDK_CONFIG", "/nonexistent-askbase-gcloud")  # no user ADC file
    _RecordingPubSub.calls = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _RecordingPubSub)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        endpoint = f"http://127.0.0.1:{server.server_address[1]}"
        publisher = TopicPublisher("proj", "askbase-jobs", endpoint=endpoint)
        assert publisher.publish(b"job", {"kind": "ask"}) == "1"
        assert publisher.publish(b"job2", {}) == "2"
    finally:
        server.shutdown()
        server.server_close()
    first, second = _RecordingPubSub.calls
    assert first["path"] == "/v1/projects/proj/topics/askbase-jobs:publish"
    auth = first["auth"]
    assert auth.startswith("Bearer local-access.telegram-fn@proj.iam.gserviceaccount.com.")
    assert second["auth"] == auth  # one token per process, not one per message
    assert json.loads(first["body"]) == {"messages": [{"data": "am9i", "attributes": {"kind": "ask"}}]}
