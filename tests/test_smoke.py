"""``askbase smoke`` against the production-shaped stack (shared/devstack/production.py).

The command runs as a user runs it, in its own process (``python -m shared.cli smoke``), reading the
stack outputs from a file shaped like ``pulumi stack output --json``, trusting the front end's
certificate with ``--ca-cert``, and finding Pub/Sub through ``PUBSUB_EMULATOR_HOST``. Its scrape
trigger gets its ID token from google-auth's ``fetch_id_token``; the process's metadata server (google-
auth's documented ``GCE_METADATA_HOST``/``GCE_METADATA_IP``) is the local issuer's, answering as the
scheduler's account: the same way every deployable of the stack gets its tokens, no askbase seam.

One stack for the module (~20 s to start), with its own project so no other module's snapshots or bots
are in it. The last test kills qa.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from shared.cli import smoke, smoke_checks, smoke_scrape, smoke_targets
from shared.devstack.production import REPO_ROOT, ProductionStack
from shared.devstack.site_server import serve_sample_site
from shared.emulators import EmulatorStack, free_port
from tests.fakes.discord_api import FakeDiscord
from tests.fakes.telegram_api import FakeTelegram

pytestmark = pytest.mark.emulators

PROJECT = "askbase-smoke"
DEAD_TOPIC = "askbase-jobs-dead"
ROW = re.compile(rf"^(.{{{smoke.NAME_WIDTH}}})  (PASS|FAIL)\s+(.*)$")


# --- no stack needed -------------------------------------------------------------------------------


def test_names_match_infra() -> None:
    from infra.components.identity import ACCOUNTS
    from infra.components.messaging import DEAD_LETTER_TOPIC
    from infra.program import FUNCTION_NAMES

    assert f"{DEAD_LETTER_TOPIC}-inbox" == smoke_targets.DEAD_LETTER_SUBSCRIPTION
    # Both sides read infra/deployables.py now; what is pinned here is the deployed names themselves:
    # renaming a function moves its URL (every bot's webhook, the Scheduler's target).
    assert smoke_targets.TELEGRAM_FUNCTION == FUNCTION_NAMES["telegram"] == "askbase-telegram-webhook"
    assert smoke_targets.SCRAPE_FUNCTION == FUNCTION_NAMES["scrape"] == "askbase-scrape"
    assert ACCOUNTS["scheduler-invoker"][0] == smoke_scrape.SCHEDULER_ACCOUNT


def test_header_names_match_the_platforms() -> None:
    from shared.bots.platforms import discord, telegram

    assert telegram.SECRET_HEADER == smoke_checks.TELEGRAM_SECRET_HEADER
    assert discord.SIGNATURE_HEADER == smoke_checks.DISCORD_SIGNATURE_HEADER
    assert discord.TIMESTAMP_HEADER == smoke_checks.DISCORD_TIMESTAMP_HEADER


def test_scrape_url_comes_from_the_option_an_output_or_the_telegram_function_url() -> None:
    from infra.components.functions import function_url

    telegram = function_url("askbase-telegram-webhook", "proj", "europe-west1")
    assert smoke_targets.derive_scrape_url(telegram) == function_url("askbase-scrape", "proj", "europe-west1")
    assert smoke_targets.derive_scrape_url("https://127.0.0.1:8443") is None
    outputs = {"telegramWebhookBaseUrl": telegram, "chatUrl": "https://qa.example/"}
    common = dict(qa=None, botrunner=None, telegram=None, discord=None, project=None)
    targets = smoke_targets.resolve_targets(outputs, scrape=None, dead_letter_subscription="d", **common)
    assert targets.scrape == "https://europe-west1-proj.cloudfunctions.net/askbase-scrape"
    assert targets.qa == "https://qa.example"
    with_output = smoke_targets.resolve_targets(
        {**outputs, "scrapeUrl": "https://s.example"}, scrape=None, dead_letter_subscription="d", **common
    )
    assert with_output.scrape == "https://s.example"
    explicit = smoke_targets.resolve_targets(
        outputs, scrape="https://x.example", dead_letter_subscription="d", **common
    )
    assert explicit.scrape == "https://x.example"


def test_outputs_and_project_come_from_the_pulumi_cli(tmp_path: Path) -> None:
    """Without --outputs or the URL options, `pulumi stack output --json` and `pulumi config get
    gcp:project` are asked (a stand-in pulumi on PATH); nothing listens there: FAIL rows, exit 1."""
    from click.testing import CliRunner

    from shared.cli import cli

    ports = {key: free_port() for key in ("chatUrl", "botrunnerUrl", "telegramWebhookBaseUrl")}
    outputs = {key: f"https://127.0.0.1:{port}" for key, port in ports.items()}
    fake = tmp_path / "pulumi"
    fake.write_text(
        "#!/bin/sh\n"
        'case "$*" in\n'
        f"  'stack output --json --stack dev') echo '{json.dumps(outputs)}' ;;\n"
        "  'config get gcp:project --stack dev') echo from-pulumi ;;\n"
        '  *) echo "unexpected: $*" >&2; exit 3 ;;\n'
        "esac\n"
    )
    fake.chmod(0o755)
    env = {
        "PATH": f"{tmp_path}:{os.environ['PATH']}",
        "GOOGLE_CLOUD_PROJECT": None,
        "PUBSUB_EMULATOR_HOST": f"127.0.0.1:{free_port()}",
    }
    result = CliRunner().invoke(cli, ["smoke", "--stack", "dev", "--timeout", "3"], env=env)
    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert f"cannot connect (GET https://127.0.0.1:{ports['chatUrl']}/readyz)" in result.output
    assert f"https://127.0.0.1:{ports['botrunnerUrl']}/api/bots" in result.output
    assert f"https://127.0.0.1:{ports['telegramWebhookBaseUrl']}/smoke-" in result.output
    assert "discordWebhookBaseUrl is not in the outputs; pass --discord-url" in result.output
    assert "projects/from-pulumi/subscriptions/askbase-jobs-dead-inbox: " in result.output
    assert "6 of 6 checks FAILED" in result.output


def test_without_pulumi_on_path_smoke_says_so(tmp_path: Path) -> None:
    """No pulumi and neither --outputs nor every URL option: one message saying what to pass, not six
    rows each saying an output is missing."""
    from click.testing import CliRunner

    from shared.cli import cli

    env = {"PATH": str(tmp_path), "PUBSUB_EMULATOR_HOST": f"127.0.0.1:{free_port()}"}  # no pulumi there
    result = CliRunner().invoke(cli, ["smoke", "--qa-url", "https://127.0.0.1:1", "--timeout", "3"], env=env)
    assert result.exit_code != 0 and isinstance(result.exception, SystemExit), result.output
    assert "pulumi was not found on PATH" in result.output
    for option in ("--outputs", "--botrunner-url", "--telegram-url", "--discord-url"):
        assert option in result.output
    assert "--qa-url" not in result.output  # it was given
    assert "is not in the outputs" not in result.output


def test_a_run_with_an_incomplete_source_fails_the_scrape_check() -> None:
    """The function answers 200 with ok: false and incomplete_sources when a source could not be fully
    crawled (functions/scrape.py); the smoke check reports that, with the run's error."""
    run = {
        "ok": False,
        "id": "r9",
        "status": "unchanged",
        "snapshot_id": None,
        "incomplete_sources": ["docs"],
        "error": "docs: robots.txt unavailable (503)",
    }

    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/readyz":
            return httpx.Response(200, json={"status": "ready", "snapshot_id": "s1"})
        return httpx.Response(200, json=run)

    client = httpx.Client(transport=httpx.MockTransport(answer))
    with pytest.raises(smoke_checks.CheckFailed) as failed:
        smoke_scrape.check_scrape(
            client, "https://qa.example", "https://scrape.example", lambda aud: "t", 10, 10
        )
    assert (
        "run r9 ended unchanged, sources not fully crawled (docs): docs: robots.txt unavailable (503)"
        in str(failed.value)
    )


def test_the_swap_wait_is_bounded_and_says_what_qa_served() -> None:
    now = [0.0]
    served = httpx.Client(
        transport=httpx.MockTransport(
            lambda request: httpx.Response(200, json={"status": "ready", "snapshot_id": "old"})
        )
    )
    with pytest.raises(smoke_checks.CheckFailed) as failed:
        smoke_scrape.wait_for_snapshot(
            served,
            "https://qa.example",
            "new",
            timeout=10,
            clock=lambda: now[0],
            sleep=lambda s: now.__setitem__(0, now[0] + s),
        )
    assert "published new, but qa still served snapshot old after 10s" in str(failed.value)


# --- against the production-shaped stack ------------------------------------------------------------


class _AcceptEverything(BaseHTTPRequestHandler):
    """A server that says 200 to anything: what a webhook without verification looks like."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", "11")
        self.end_headers()
        self.wfile.write(b'{"ok":true}')

    do_GET = do_POST

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def deployed(
    emulator_stack: EmulatorStack, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Any]]:
    site = serve_sample_site()
    sources = json.dumps([{"name": "sample-docs", "kind": "sitemap", "url": site.url("/sitemap.xml")}])
    workdir = tmp_path_factory.mktemp("smoke")
    stack = ProductionStack(workdir=workdir, project=PROJECT, sources_json=sources, emulators=emulator_stack)
    with pytest.MonkeyPatch.context() as mp:  # the fakes call the HTTPS front end (see test_production_shape)
        mp.setenv("SSL_CERT_FILE", str(stack.cert_file))
        tg, dc = FakeTelegram().start(), FakeDiscord().start()
    stack.telegram_api_base, stack.discord_api_base = tg.base_url, dc.base_url
    permissive = ThreadingHTTPServer(("127.0.0.1", 0), _AcceptEverything)
    threading.Thread(target=permissive.serve_forever, daemon=True).start()
    try:
        stack.start()
        bots = _register_bots(stack, tg, dc)
        outputs = workdir / "outputs.json"
        outputs.write_text(
            json.dumps(
                {  # infra/program.py's outputs, as `pulumi stack output --json` prints them
                    "chatUrl": stack.urls["qa"],
                    "telegramWebhookBaseUrl": stack.urls["telegram"],
                    "discordWebhookBaseUrl": stack.urls["discord"],
                    "bucketName": f"{PROJECT}-askbase-kb",
                    "botrunnerUrl": stack.urls["botrunner"],
                    "jobsTopic": "askbase-jobs",
                }
            )
        )
        yield {
            "stack": stack,
            "outputs": outputs,
            "bots": bots,
            "permissive": f"http://127.0.0.1:{permissive.server_address[1]}",
        }
    finally:
        permissive.shutdown()
        stack.stop()
        tg.stop()
        dc.stop()
        site.stop()


def _register_bots(stack: ProductionStack, tg: FakeTelegram, dc: FakeDiscord) -> dict[str, str]:
    """One running bot per platform, registered through botrunner's control API as qa's bot pages do."""
    botrunner = stack.urls["botrunner"]
    as_qa = {**stack.bearer("qa", botrunner), "X-Askbase-User": "ops@example.com"}
    http = stack.http()
    app = dc.add_application()
    bodies = {
        "telegram": {"platform": "telegram", "name": "Smoke", "token": tg.add_bot(username="smoke_bot")},
        "discord": {
            "platform": "discord",
            "name": "Smoke",
            "application_id": app.id,
            "public_key": app.public_key,
            "bot_token": app.bot_token,
        },
    }
    ids = {}
    for platform, body in bodies.items():
        created = http.post(botrunner + "/api/bots", json={**body, "start": True}, headers=as_qa)
        assert created.status_code == 201, created.text
        ids[platform] = created.json()["id"]
    return ids


def _smoke(deployed: dict[str, Any], *args: str, account: str = "scheduler-invoker", ca: bool = True) -> Any:
    """Run ``askbase smoke`` in its own process; returns (exit code, {row name: (result, detail)}, output)."""
    stack: ProductionStack = deployed["stack"]
    drop = ("GCE_METADATA_", "GOOGLE_APPLICATION_CREDENTIALS", "SSL_CERT_", "K_SERVICE")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    env["GOOGLE_CLOUD_PROJECT"] = PROJECT
    env["PUBSUB_EMULATOR_HOST"] = stack.env_of("qa")["PUBSUB_EMULATOR_HOST"]
    # The ambient identity: a metadata server answering as `account` (see the module docstring).
    env.update(stack.issuer.metadata_env(stack.issuer.metadata_server(stack.email(account), PROJECT)))
    argv = [sys.executable, "-m", "shared.cli", "smoke", "--outputs", str(deployed["outputs"])]
    argv += ["--ca-cert", str(stack.cert_file)] if ca else []
    done = subprocess.run(
        [*argv, *args], env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=600, check=False
    )
    output = done.stdout + done.stderr
    assert "Traceback" not in output, output
    rows = {}
    for line in done.stdout.splitlines():
        match = ROW.match(line)
        if match:
            rows[match.group(1).strip()] = (match.group(2), match.group(3))
    return done.returncode, rows, output


CHECKS = {
    "qa /readyz",
    "qa sign-in login_uri",
    "telegram: wrong secret",
    "discord: bad signature",
    "botrunner: no token",
    "pubsub: dead letters",
}
SCRAPE = "scrape: new snapshot served"


def test_healthy_stack_passes_every_check_and_a_scrape_is_served(deployed: dict[str, Any]) -> None:
    stack: ProductionStack = deployed["stack"]
    bots = deployed["bots"]
    code, rows, output = _smoke(
        deployed,
        "--scrape-url",
        stack.urls["scrape"],  # not a stack output
        "--telegram-bot-id",
        bots["telegram"],
        "--discord-bot-id",
        bots["discord"],
        "--trigger-scrape",
    )
    assert set(rows) == CHECKS | {SCRAPE}, output
    assert all(result == "PASS" for result, _ in rows.values()), output
    assert code == 0, output
    assert rows["qa sign-in login_uri"][1].startswith("login_uri " + stack.urls["qa"] + "/signin/google")
    assert (
        "HTTP 403" in rows["telegram: wrong secret"][1]
        and bots["telegram"] in rows["telegram: wrong secret"][1]
    )
    assert "HTTP 401" in rows["discord: bad signature"][1]
    assert rows["botrunner: no token"][1] == "no token refused: /api/bots 401, /internal/reconcile 401"
    assert rows["pubsub: dead letters"][1] == "askbase-jobs-dead-inbox: empty"
    # The stack had no snapshot: the scrape published the first, and qa serves it now.
    published = re.search(r"published (\S+); qa swapped it in", rows[SCRAPE][1])
    assert published, rows[SCRAPE]
    assert stack.status()["snapshot_id"] == published.group(1)
    assert "all 7 checks passed" in output


def test_without_bot_ids_unknown_bots_are_refused(deployed: dict[str, Any]) -> None:
    code, rows, output = _smoke(deployed)
    assert set(rows) == CHECKS and code == 0, output
    assert "unknown bot smoke-" in rows["telegram: wrong secret"][1]
    assert (
        "HTTP 404" in rows["discord: bad signature"][1]
        and "--discord-bot-id" in rows["discord: bad signature"][1]
    )
    assert "--trigger-scrape" in output


def test_what_is_wrong_is_a_fail_row_and_a_nonzero_exit(deployed: dict[str, Any]) -> None:
    from google.cloud import pubsub_v1

    stack: ProductionStack = deployed["stack"]
    permissive = deployed["permissive"]
    publisher = pubsub_v1.PublisherClient()
    job = {"job_id": "telegram:b1:42", "platform": "telegram", "bot_id": "b1", "kind": "ask"}
    publisher.publish(publisher.topic_path(PROJECT, DEAD_TOPIC), b"{}", **job).result(timeout=30)
    code, rows, output = _smoke(
        deployed,
        "--telegram-url",
        permissive,  # a webhook that lets a wrong secret in
        "--discord-url",
        permissive,
        "--botrunner-url",
        permissive,
        "--scrape-url",
        stack.urls["scrape"],
        "--trigger-scrape",
        account="telegram-fn",  # an account the scrape function does not accept
    )
    assert code == 1, output
    assert rows["qa /readyz"][0] == "PASS" and rows["qa sign-in login_uri"][0] == "PASS", output
    assert rows["telegram: wrong secret"] == ("FAIL", rows["telegram: wrong secret"][1])
    assert "ACCEPTED (HTTP 200)" in rows["telegram: wrong secret"][1]
    assert rows["discord: bad signature"][0] == "FAIL" and "ACCEPTED" in rows["discord: bad signature"][1]
    assert rows["botrunner: no token"][0] == "FAIL" and "ACCEPTED" in rows["botrunner: no token"][1]
    dead = rows["pubsub: dead letters"]
    assert dead[0] == "FAIL" and "1 dead-lettered job(s)" in dead[1] and "telegram:b1:42" in dead[1], dead
    assert rows[SCRAPE][0] == "FAIL" and "refused the token (HTTP 403)" in rows[SCRAPE][1], rows[SCRAPE]
    assert "5 of 7 checks FAILED" in output
    # The check did not acknowledge the dead letter: it is still there for whoever investigates.
    subscriber = pubsub_v1.SubscriberClient()
    path = subscriber.subscription_path(PROJECT, smoke_targets.DEAD_LETTER_SUBSCRIPTION)
    pulled = subscriber.pull(request={"subscription": path, "max_messages": 10}, timeout=30)
    assert [m.message.attributes["job_id"] for m in pulled.received_messages] == ["telegram:b1:42"]
    subscriber.acknowledge(
        request={"subscription": path, "ack_ids": [m.ack_id for m in pulled.received_messages]}
    )
    subscriber.close()


def test_an_untrusted_certificate_is_a_fail_row(deployed: dict[str, Any]) -> None:
    code, rows, output = _smoke(deployed, ca=False)
    assert code == 1, output
    assert rows["qa /readyz"][0] == "FAIL" and "TLS certificate not trusted" in rows["qa /readyz"][1], output
    assert "--ca-cert" in rows["qa /readyz"][1]


def test_qa_down_fails_its_rows_and_the_scrape_is_not_triggered(deployed: dict[str, Any]) -> None:
    stack: ProductionStack = deployed["stack"]
    stack.kill(["qa"])
    code, rows, output = _smoke(
        deployed, "--scrape-url", stack.urls["scrape"], "--trigger-scrape", "--timeout", "5"
    )
    assert code == 1, output
    assert rows["qa /readyz"][0] == "FAIL" and "HTTP 503" in rows["qa /readyz"][1], output
    assert rows["qa sign-in login_uri"][0] == "FAIL"
    assert rows[SCRAPE][0] == "FAIL" and "scrape not triggered" in rows[SCRAPE][1], rows[SCRAPE]
    assert rows["botrunner: no token"][0] == "PASS"  # the rest of the stack is still checked
    # Nothing answers at all: a connection error, still a row.
    code, rows, output = _smoke(
        deployed, "--botrunner-url", f"https://127.0.0.1:{free_port()}", "--timeout", "5"
    )
    assert code == 1 and rows["botrunner: no token"][0] == "FAIL", output
    assert "cannot connect" in rows["botrunner: no token"][1]
