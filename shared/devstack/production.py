"""The production-shaped local stack: each deployable as Google Cloud runs it, on loopback.

:class:`~shared.devstack.stack.LocalStack` (``askbase dev``) runs every process with one shared
development environment. This stack runs them the way ``pulumi up`` deploys them, so a test that passes
here exercises the production code paths:

* **Each deployable gets exactly the environment infra gives it**: the settings from
  :func:`infra.envvars.plain_settings` rendered by :func:`infra.envvars.render` (the same functions the
  Pulumi program calls), secrets as the literal values Secret Manager would inject, the platform's own
  variables (``PORT``, ``K_SERVICE``, ``K_REVISION``, ``K_CONFIGURATION``, and ``FUNCTION_TARGET`` for
  functions), and nothing of this process's environment but ``PATH``/``HOME``/``LANG``.
  ``ASKBASE_ENV=production`` and ``internal_auth=google-oidc`` therefore apply everywhere.
* **What stands in for Google, and how it is wired** (each is a variable production does not have):

  ======================================  ================================================================
  ``FIRESTORE/PUBSUB/STORAGE_EMULATOR_*``  the emulators, read by the client libraries themselves
  ``GCE_METADATA_HOST``/``GCE_METADATA_IP``  the metadata server, one per service account
                                           (:class:`~shared.devstack.issuer.LocalIssuer`): each process
                                           fetches ID tokens for its own account with google-auth
  ``ASKBASE_OIDC_CERTS_URL``/``_ISSUERS``   the issuer's certificates: tokens are checked by the real
                                           verifier (:mod:`shared.idtokens`), only the keys differ
  ``SSL_CERT_FILE``                        trust in the front end's self-signed certificate
  ``ASKBASE_TELEGRAM/DISCORD_API_BASE``    the fake Telegram and Discord APIs (botrunner only)
  ``ASKBASE_DATA_DIR``                     a directory per process: on Cloud Run each instance has its
                                           own ``/tmp``; here the processes share one machine
  ======================================  ================================================================

* **Cloud Run's front end** (:class:`~shared.devstack.frontend.FrontEnd`): every public URL is
  ``https://127.0.0.1:<port>``, TLS ends there, and the container sees forwarded headers from
  127.0.0.2.
* **The functions run from the archive** ``pulumi up`` uploads (:mod:`shared.devstack.archives`),
  under functions-framework, not from the source tree.
* **Pub/Sub push is signed**: the push subscription targets a front-end route that adds the OIDC
  token Pub/Sub would mint for the push service account. Cloud Scheduler's calls are made by
  :meth:`ProductionStack.call_as` with a token for the scheduler's account.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import secrets
import signal
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from infra import deployables, envvars
from infra.commands import START_COMMANDS
from shared.devstack.archives import function_command, function_env, prepare_function_source
from shared.devstack.frontend import FrontEnd
from shared.devstack.issuer import LocalIssuer
from shared.emulators import EmulatorStack, free_port
from shared.processes import spawn_logged, stop_process_group, wait_until_serving

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]

# infra/deployables.py (what infra deploys, named once): the account id each deployable and caller runs
# as; each deployable's Cloud Run service / function name, function entry point or None, archive name;
# and its key among the stack's URLs.
ACCOUNT_IDS: dict[str, str] = {key: account.id for key, account in deployables.ACCOUNTS.items()}
DEPLOYABLES: dict[str, tuple[str, str | None, str | None]] = {
    d.key: (d.name, d.entry_point, d.archive) for d in deployables.DEPLOYABLES
}
URL_KEYS = {d.key: d.url_key for d in deployables.DEPLOYABLES}
BASE_ENV_KEYS = ("PATH", "HOME", "LANG", "LC_ALL", "TZ")
VENV_BIN = str(Path(sys.executable).parent)  # the image's /opt/venv/bin


@dataclass
class Process:
    """One deployable: its local port, public URL, command line, environment and process."""

    name: str
    port: int
    public_url: str
    argv: list[str]
    env: dict[str, str]
    cwd: Path
    health_path: str
    proc: subprocess.Popen[bytes] | None = None


@dataclass
class ProductionStack:
    """Emulators, token issuer, front end and the five deployables, each with its production env."""

    workdir: Path
    project: str = "askbase-prodshape"
    sources_json: str = "[]"
    telegram_api_base: str = "https://api.telegram.org"
    discord_api_base: str = "https://discord.com/api/v10"
    admin_emails: tuple[str, ...] = ("admin@askbase.local",)
    google_client_id: str = "askbase-local.apps.googleusercontent.com"
    emulators: EmulatorStack | None = None  # give one to share it; its other projects are untouched
    issuer: LocalIssuer = field(default_factory=LocalIssuer)
    processes: dict[str, Process] = field(default_factory=dict)
    urls: dict[str, str] = field(default_factory=dict)
    _own_emulators: bool = False
    _front: FrontEnd | None = None
    _secrets: dict[str, str] = field(default_factory=dict)
    _http: httpx.Client | None = None
    _push_relay: str = ""

    # --- identities ---------------------------------------------------------------------------------

    def email(self, account: str) -> str:
        """The service account email of ``account`` (a key of :data:`ACCOUNT_IDS`)."""
        return f"{ACCOUNT_IDS[account]}@{self.project}.iam.gserviceaccount.com"

    def bearer(self, account: str, audience: str) -> dict[str, str]:
        """``Authorization`` for a call as ``account`` (what Cloud Scheduler or Pub/Sub attach)."""
        return {"Authorization": "Bearer " + self.issuer.mint(self.email(account), audience)}

    @property
    def cert_file(self) -> Path:
        """The front end's certificate (made on first use, so clients can trust it before start)."""
        return self.front_end.cert_file

    @property
    def front_end(self) -> FrontEnd:
        if self._front is None:
            self._front = FrontEnd(self.workdir / "tls")
        return self._front

    def http(self) -> httpx.Client:
        """A client that trusts the front end's certificate (a browser that accepted it)."""
        if self._http is None:
            self._http = httpx.Client(verify=str(self.cert_file), timeout=120.0, follow_redirects=False)
        return self._http

    # --- lifecycle ----------------------------------------------------------------------------------

    def start(self, timeout: float = 120.0) -> ProductionStack:
        self.workdir.mkdir(parents=True, exist_ok=True)
        if self.emulators is None:
            self.emulators = EmulatorStack(project=self.project, workdir=self.workdir / "emulators")
            self.emulators.start()
            self._own_emulators = True
        self.issuer.start()
        self._configure()
        self.front_end.start()
        self.start_processes(timeout=timeout)
        self._wire_push_subscription()
        return self

    def _configure(self) -> None:
        front = self.front_end
        ports = {name: free_port() for name in DEPLOYABLES}
        for name, port in ports.items():
            self.urls[URL_KEYS[name]] = front.route(name, port)
        push_audience = self.urls["botrunner"]
        self._push_relay = front.signing_route(
            "pubsub-push",
            ports["botrunner"],
            lambda: self.bearer("pubsub-push", push_audience)["Authorization"],
        )
        self._secrets = {
            "session_secret": secrets.token_urlsafe(48),
            "token_key": base64.b64encode(secrets.token_bytes(32)).decode(),
        }
        plain = envvars.plain_settings(
            envvars.Deployment(
                project=self.project,
                region="europe-west1",
                bucket=f"{self.project}-askbase-kb",
                sources_json=self.sources_json,
                answerer="extractive",
                gemini_model="gemini-2.5-flash",
                google_client_id=self.google_client_id,
                allowed_domain="",
                admin_emails=self.admin_emails,
                conversation_retention_days=365,
                snapshot_keep=7,
                snapshot_compression="zstd",
                scrape_lease_seconds=1800,
                scrape_schedule="*/30 * * * *",
                urls=self.urls,
                emails={k: self.email(k) for k in ("qa", "botrunner", "pubsub-push", "scheduler-invoker")},
            )
        )
        assert self.emulators is not None
        emulator_env = {k: v for k, v in self.emulators.env().items() if k.endswith("_EMULATOR_HOST")}
        base = {k: os.environ[k] for k in BASE_ENV_KEYS if k in os.environ}
        sources: dict[str, Path] = {}
        for name, (service, target, archive) in DEPLOYABLES.items():
            port = ports[name]
            secret_values = {f: self._secrets[f] for f in envvars.NEEDS[name] & envvars.SECRET_FIELDS}
            rendered, secret_env = envvars.render(name, plain[name], secret_values)
            metadata = self.issuer.metadata_server(self.email(name), self.project)
            env = {
                **base,
                **rendered,
                **secret_env,
                "PORT": str(port),
                "K_SERVICE": service,
                "K_REVISION": f"{service}-00001-loc",
                "K_CONFIGURATION": service,
                **emulator_env,
                **self.issuer.metadata_env(metadata),
                **self.issuer.settings_env(),
                "SSL_CERT_FILE": str(front.cert_file),
                "ASKBASE_DATA_DIR": str(self.workdir / "data" / name),
            }
            if name == "botrunner":
                env["ASKBASE_TELEGRAM_API_BASE"] = self.telegram_api_base
                env["ASKBASE_DISCORD_API_BASE"] = self.discord_api_base
            if target is None:
                # Exactly the command Cloud Run runs (infra/commands.py), with this virtualenv first on
                # PATH as the image has /opt/venv/bin: it binds ${PORT} on all interfaces, as there.
                env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
                argv, cwd, health = list(START_COMMANDS[name]), REPO_ROOT, "/healthz"
            else:
                assert archive is not None
                if archive not in sources:
                    sources[archive] = prepare_function_source(self.workdir / "functions", archive)
                env["FUNCTION_TARGET"] = target
                env = function_env(sources[archive], env)
                argv, cwd, health = function_command(sources[archive], target, port), sources[archive], "/"
            self.processes[name] = Process(name, port, self.urls[URL_KEYS[name]], argv, env, cwd, health)

    def start_processes(self, names: list[str] | None = None, timeout: float = 120.0) -> None:
        chosen = [self.processes[n] for n in (names or list(self.processes))]
        for p in chosen:
            p.proc = spawn_logged(p.argv, p.env, self._log(p.name), cwd=p.cwd)
        for p in chosen:
            assert p.proc is not None
            url = f"http://127.0.0.1:{p.port}{p.health_path}"
            wait_until_serving(p.proc, url, timeout, p.name, self._log(p.name))

    def _log(self, name: str) -> Path:
        return self.workdir / "logs" / f"{name}.log"

    def _wire_push_subscription(self) -> None:
        """What Pulumi's push subscription does: jobs topic -> botrunner /worker/push, OIDC-signed, with
        the dead-letter topic and its inbox subscription."""
        import google.cloud.pubsub_v1 as pubsub_v1

        from shared.devstack.subscriptions import ensure_push_subscription

        assert self.emulators is not None
        with self.emulators.exported_env():
            ensure_push_subscription(
                self.project,
                envvars.JOBS_TOPIC,
                "askbase-worker",
                self._push_relay + "/worker/push",
                subscriber=pubsub_v1.SubscriberClient(),
                publisher=pubsub_v1.PublisherClient(),
                dead_letter_topic="askbase-jobs-dead",  # infra/components/messaging.py DEAD_LETTER_TOPIC
            )

    def kill(self, names: list[str] | None = None, sig: int = signal.SIGKILL) -> None:
        """Kill deployables (all by default): a crash or a redeploy. Emulators and the issuer stay."""
        for name in names or list(self.processes):
            stop_process_group(self.processes[name].proc, sig)
            self.processes[name].proc = None

    def stop(self) -> None:
        self.kill(sig=signal.SIGTERM)
        if self._http is not None:
            self._http.close()
        if self._front is not None:
            self._front.stop()
        self.issuer.stop()
        if self._own_emulators and self.emulators is not None:
            self.emulators.stop()

    def __enter__(self) -> ProductionStack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- what the platforms do --------------------------------------------------------------------

    def scheduler_call(self, job: str, timeout: float | None = 900.0) -> httpx.Response:
        """What Cloud Scheduler does for ``job`` (``scrape`` or ``reconcile``): POST with an OIDC token of
        the scheduler's account, audience as infra configures it. ``timeout=None`` waits however long
        the job takes (Cloud Scheduler's own attempt deadline is the function's timeout)."""
        if job == "scrape":
            url, audience = self.urls["scrape"], self.urls["scrape"]
        elif job == "reconcile":
            url, audience = self.urls["botrunner"] + "/internal/reconcile", self.urls["botrunner"]
        else:
            raise ValueError(job)
        headers = {**self.bearer("scheduler-invoker", audience), "Content-Type": "application/json"}
        return self.http().post(url, content=b"{}", headers=headers, timeout=timeout)

    def env_of(self, name: str) -> Mapping[str, str]:
        return self.processes[name].env

    def status(self) -> dict[str, Any]:
        """qa's ``/readyz`` through the front end."""
        status: dict[str, Any] = json.loads(self.http().get(self.urls["qa"] + "/readyz").content)
        return status
