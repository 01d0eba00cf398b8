"""The whole askbase stack as local processes: what ``askbase dev`` and the restart tests run.

Production runs each deployable on Cloud Run or Cloud Functions; here each one is a child process on a
loopback port with the same entry point (gunicorn for the Flask services, functions-framework for the
functions), configured by the same environment variables. The emulators stand in for Google's managed
services, which is why :meth:`LocalStack.kill_services` (a crash or redeploy of askbase) leaves them up.
"""

from __future__ import annotations

import base64
import logging
import os
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from shared.emulators import EmulatorStack, free_port
from shared.processes import spawn_logged, stop_process_group, wait_until_serving

log = logging.getLogger(__name__)
QA_GUNICORN_CONF = Path(__file__).resolve().parents[2] / "services" / "qa" / "gunicorn.conf.py"


@dataclass
class Service:
    """One askbase process: its name, port, command line and (when running) its process."""

    name: str
    port: int
    argv: list[str]
    health_path: str = "/healthz"
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def _venv_bin(name: str) -> str:
    candidate = Path(sys.executable).with_name(name)
    return str(candidate) if candidate.exists() else (shutil.which(name) or name)


@dataclass
class LocalStack:
    """Emulators + qa + botrunner + the three functions, wired together by environment variables."""

    workdir: Path
    project: str = "askbase-local"
    base_port: int = 0  # 0: pick free ports
    sources_json: str = "[]"
    extra_env: dict[str, str] = field(default_factory=dict)
    emulators: EmulatorStack | None = None
    services: dict[str, Service] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)

    def _port(self, offset: int) -> int:
        return self.base_port + offset if self.base_port else free_port()

    def start_emulators(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.emulators = EmulatorStack(project=self.project, workdir=self.workdir / "emulators")
        self.emulators.start()

    def configure(self) -> dict[str, str]:
        """Decide ports and build the environment every askbase process gets."""
        assert self.emulators is not None
        ports = {
            name: self._port(i) for i, name in enumerate(["qa", "botrunner", "telegram", "discord", "scrape"])
        }
        self.services = {
            "qa": Service(
                "qa",
                ports["qa"],
                # The container's own gunicorn settings, so the local stack serves qa the same way.
                [*self._gunicorn("services.qa.wsgi:app", ports["qa"]), "--config", str(QA_GUNICORN_CONF)],
                health_path="/healthz",
            ),
            "botrunner": Service(
                "botrunner",
                ports["botrunner"],
                [*self._gunicorn("services.botrunner.wsgi:app", ports["botrunner"]), "--threads", "16"],
            ),
            "telegram": Service(
                "telegram",
                ports["telegram"],
                self._function("telegram_webhook", ports["telegram"]),
                health_path="/",
            ),
            "discord": Service(
                "discord",
                ports["discord"],
                self._function("discord_interactions", ports["discord"]),
                health_path="/",
            ),
            "scrape": Service(
                "scrape", ports["scrape"], self._function("scrape", ports["scrape"]), health_path=""
            ),
        }
        data_dir = self.workdir / "data"
        self.env = {
            **self.emulators.env(),
            "ASKBASE_ENV": "local",
            "ASKBASE_DEV_SIGN_IN": "true",
            "ASKBASE_BUCKET": "askbase-local",
            "ASKBASE_DATA_DIR": str(data_dir),
            "ASKBASE_SOURCES": self.sources_json,
            "ASKBASE_SESSION_SECRET": secrets.token_urlsafe(48),
            "ASKBASE_TOKEN_KEY": base64.b64encode(secrets.token_bytes(32)).decode(),
            "ASKBASE_SNAPSHOT_POLL_SECONDS": "5",
            "ASKBASE_QA_URL": self.services["qa"].url,
            "ASKBASE_BOTRUNNER_URL": self.services["botrunner"].url,
            "ASKBASE_TELEGRAM_WEBHOOK_URL": self.services["telegram"].url,
            "ASKBASE_DISCORD_WEBHOOK_URL": self.services["discord"].url,
            "ASKBASE_SCRAPE_URL": self.services["scrape"].url,
            "ASKBASE_ADMIN_EMAILS": "admin@askbase.local",
            **self.extra_env,
        }
        return self.env

    # What the askbase CLI needs to act on this stack (askbase bots, snapshots, scrape, gaps, export, ask
    # --url): the emulators, the project, the bucket, the token key, the sources and the services' URLs.
    CLI_ENV_KEYS = (
        "ASKBASE_ENV",
        "ASKBASE_BUCKET",
        "ASKBASE_TOKEN_KEY",
        "ASKBASE_SOURCES",
        "ASKBASE_QA_URL",
        "ASKBASE_BOTRUNNER_URL",
        "ASKBASE_TELEGRAM_WEBHOOK_URL",
        "ASKBASE_DISCORD_WEBHOOK_URL",
        "ASKBASE_SCRAPE_URL",
    )

    def write_cli_env(self, path: Path) -> Path:
        """``export`` lines that point the askbase CLI at this stack (``source`` the file), mode 0600:
        it holds the bot token key."""
        assert self.emulators is not None
        values = {**self.emulators.env(), **{k: self.env[k] for k in self.CLI_ENV_KEYS if k in self.env}}
        text = "# askbase dev: point the askbase CLI at this stack with `source` this file\n" + "".join(
            f"export {key}={shlex.quote(value)}\n" for key, value in values.items()
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            os.fchmod(out.fileno(), 0o600)  # an existing file keeps its mode through O_CREAT
            out.write(text)
        return path

    def _gunicorn(self, app: str, port: int) -> list[str]:
        # One worker with threads, as on Cloud Run; the command-line --bind wins over a config file's.
        return [_venv_bin("gunicorn"), "--bind", f"127.0.0.1:{port}", "--workers", "1", app]

    def _function(self, target: str, port: int) -> list[str]:
        source = Path(__file__).resolve().parents[2] / "functions" / "main.py"
        return [
            _venv_bin("functions-framework"),
            "--source",
            str(source),
            "--target",
            target,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ]

    def start_services(self, names: list[str] | None = None, timeout: float = 90.0) -> None:
        """Start the askbase processes (all by default) and wait until each answers."""
        env = {**os.environ, **self.env}
        chosen = [self.services[n] for n in (names or list(self.services))]
        for service in chosen:
            service.proc = spawn_logged(service.argv, env, self._log(service.name))
        for service in chosen:
            assert service.proc is not None
            wait_until_serving(
                service.proc,
                service.url + service.health_path,
                timeout,
                service.name,
                self._log(service.name),
            )

    def _log(self, name: str) -> Path:
        return self.workdir / "logs" / f"{name}.log"

    def kill_services(self, sig: int = signal.SIGKILL) -> None:
        """Kill every askbase process (not the emulators): a crash, or a redeploy, of the whole app."""
        for service in self.services.values():
            stop_process_group(service.proc, sig)
            service.proc = None

    def stop(self) -> None:
        self.kill_services(signal.SIGTERM)
        if self.emulators is not None:
            self.emulators.stop()
