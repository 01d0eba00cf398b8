"""``askbase dev``: the whole stack on this machine until Ctrl+C.

Starts the emulators and every askbase process (see :mod:`shared.devstack.stack`), serves the sample docs
site that ships with askbase, crawls it through the scrape function exactly as Cloud Scheduler would,
waits until the Q&A service has swapped the new snapshot in, and prints the chat URL. A small scheduler
thread repeats the scrape and bot reconciliation on their production intervals.
"""

from __future__ import annotations

import contextlib
import json
import logging
import signal
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from shared.devstack.site_server import serve_sample_site
from shared.devstack.stack import LocalStack
from shared.devstack.workdir import DEFAULT_WORKDIR, WorkdirError
from shared.devstack.workdir import claim as claim_workdir
from shared.emulators import EmulatorError
from shared.processes import ports_in_use

log = logging.getLogger(__name__)


# How often the first crawl's progress is looked up (its end is noticed at once).
PROGRESS_POLL_SECONDS = 3.0
T = TypeVar("T")


def _post(url: str, timeout: float | None) -> dict[str, Any]:
    req = urllib.request.Request(url, data=b"{}", method="POST", headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        body = resp.read()
    return json.loads(body) if body else {}


def _first_crawl(stack: LocalStack, log_file: Path) -> dict[str, Any]:
    """Call the scrape function once and wait for its answer, however long the crawl takes, printing
    its progress as it changes (:func:`_while_showing_progress`).

    A large site takes many minutes on a small machine: a client timeout here used to give up on a
    crawl that was still going and print a traceback.
    """
    try:
        return _while_showing_progress(
            stack.project, lambda: _post(stack.services["scrape"].url, timeout=None)
        )
    except urllib.error.HTTPError as exc:
        failed = f"({exc.code}): {exc.read().decode(errors='replace')[:500]}"
    except (OSError, ValueError) as exc:  # the function died or answered nonsense
        failed = f"({type(exc).__name__}): {exc}"
    raise click.ClickException(f"the first crawl failed {failed}\nsee {log_file}")


def _while_showing_progress(project: str, work: Callable[[], T]) -> T:
    """``work()`` (a call that lasts as long as a crawl), run on a thread while this one prints the
    newest scrape run's progress (from the run's document, see :mod:`shared.knowledge.run_progress`)
    each time it changes; returns what ``work`` returned or raises what it raised."""
    outcome: dict[str, Any] = {}

    def call() -> None:
        try:
            outcome["value"] = work()
        except Exception as exc:  # handed to the waiting thread, which raises it
            outcome["error"] = exc

    caller = threading.Thread(target=call, name="first-crawl", daemon=True)
    started = time.monotonic()
    caller.start()
    watch = _ProgressWatch(project)
    while caller.is_alive():
        caller.join(timeout=PROGRESS_POLL_SECONDS)  # wakes up at once when the answer comes
        line = watch.line()
        if line is not None:
            click.echo(f"    {line} ({time.monotonic() - started:.0f} s)")
    if "error" in outcome:
        raise outcome["error"]
    value: T = outcome["value"]
    return value


class _ProgressWatch:
    """The newest run's progress line, when it changed since the last call (None otherwise)."""

    def __init__(self, project: str) -> None:
        self._project = project
        self._client: Any = None
        self._last = ""

    def line(self) -> str | None:
        from shared.knowledge.run_progress import describe, latest_progress

        try:
            if self._client is None:
                from shared.gcp import firestore_client

                self._client = firestore_client(self._project)
            progress = latest_progress(self._client)
        except Exception as exc:  # showing progress must never stop the wait
            log.debug("cannot read the scrape progress: %s", exc)
            return None
        if progress is None or not progress.stages:
            return None
        line = describe(progress.stages)
        if line == self._last:
            return None
        self._last = line
        return line


def _wait_for_index(qa_url: str, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    status: dict[str, Any] = {}
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError, ValueError):
            with urllib.request.urlopen(qa_url + "/readyz", timeout=5) as resp:
                status = json.loads(resp.read())
            if status.get("snapshot_id"):
                return status
        time.sleep(0.5)
    return status


def _scheduler(stack: LocalStack, scrape_every: float, reconcile_every: float, stop: threading.Event) -> None:
    next_scrape = time.monotonic() + scrape_every
    next_reconcile = time.monotonic() + reconcile_every
    while not stop.wait(1.0):
        now = time.monotonic()
        for due, url, name in (
            (next_scrape, stack.services["scrape"].url, "scrape"),
            (next_reconcile, stack.services["botrunner"].url + "/internal/reconcile", "reconcile"),
        ):
            if now >= due:
                try:
                    _post(url, timeout=600)
                    log.info("scheduled %s done", name)
                except (OSError, ValueError) as exc:
                    log.error("scheduled %s failed: %s", name, exc)
        if now >= next_scrape:
            next_scrape = now + scrape_every
        if now >= next_reconcile:
            next_reconcile = now + reconcile_every


@click.command("dev")
@click.option(
    "--port", default=8080, show_default=True, help="Chat port; the other services use the next four."
)
@click.option(
    "--workdir",
    default=DEFAULT_WORKDIR,
    show_default=True,
    type=click.Path(path_type=Path),
    help="Logs, emulator state and data of this run. Emptied at start, so askbase dev uses only a "
    "directory it created (it leaves a marker file in it), an empty one or a new one; any other "
    "directory is refused and nothing in it is deleted.",
)
@click.option("--sources", default=None, help="ASKBASE_SOURCES JSON instead of the bundled sample site.")
@click.option("--scrape-every", default=1800.0, show_default=True, help="Seconds between scheduled scrapes.")
@click.option("--reconcile-every", default=600.0, show_default=True, help="Seconds between bot reconciles.")
@click.option("--exit-after-ready", is_flag=True, help="Stop once the chat answers (smoke test).")
@click.option(
    "--production-shape",
    is_flag=True,
    help="Run each deployable as Google Cloud does: its infra env only, HTTPS front end, ID tokens. "
    "Free ports, no scheduler: not with --port, --scrape-every or --reconcile-every.",
)
def dev_command(
    port: int,
    workdir: Path,
    sources: str | None,
    scrape_every: float,
    reconcile_every: float,
    exit_after_ready: bool,
    production_shape: bool,
) -> None:
    """Run emulators, the sample site, a first crawl, and every service until Ctrl+C."""
    if production_shape:
        # It picks free ports behind its HTTPS front end and runs no scheduler (a scrape or reconcile
        # is called as Cloud Scheduler would, by the tests): these options would be silently ignored.
        ctx = click.get_current_context()
        for name in ("port", "scrape_every", "reconcile_every"):
            flag = "--" + name.replace("_", "-")
            if ctx.get_parameter_source(name) is not click.core.ParameterSource.DEFAULT:
                raise click.UsageError(
                    f"{flag} cannot be used with --production-shape (it picks free ports and runs no "
                    "scheduler)"
                )
    if not production_shape:  # --production-shape picks free ports
        # Every port is checked before anything is touched: a service that cannot bind must not be
        # taken for up because another program (another askbase dev?) answers on its port.
        taken = ports_in_use([port + offset for offset in range(6 if sources is None else 5)])
        if taken:
            raise click.ClickException(
                f"port {taken[0]} is in use (another askbase dev?): use --port to pick other ports "
                "(askbase dev uses --port and the five after it)"
            )
    try:
        # The emulators keep data in memory: last run's files are stale, so the directory is emptied,
        # but only one askbase made (never --workdir . or ~), and not while another dev holds it.
        claimed = claim_workdir(workdir)
    except WorkdirError as exc:
        raise click.ClickException(str(exc)) from None
    try:
        if production_shape:
            _production_shape(claimed.path, sources, exit_after_ready)
        else:
            _local(claimed.path, port, sources, scrape_every, reconcile_every, exit_after_ready)
    finally:
        claimed.release()


def _local(
    workdir: Path,
    port: int,
    sources: str | None,
    scrape_every: float,
    reconcile_every: float,
    exit_after_ready: bool,
) -> None:
    """``askbase dev``: :class:`LocalStack` with the sample site, a first crawl and the scheduler."""
    site = None
    if sources is None:
        site = serve_sample_site(port + 5)
        sources = json.dumps(
            [{"name": "sample-docs", "kind": "sitemap", "url": f"http://127.0.0.1:{port + 5}/sitemap.xml"}]
        )
    stack = LocalStack(workdir=workdir, base_port=port, sources_json=sources)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        click.echo("==> starting emulators (Firestore, Pub/Sub, Cloud Storage)")
        try:
            stack.start_emulators()
        except EmulatorError as exc:
            raise click.ClickException(str(exc)) from None
        assert stack.emulators is not None
        stack.emulators.export_env()  # this process wires the push subscription itself
        stack.configure()
        cli_env = stack.write_cli_env(workdir / "env")
        click.echo("==> starting qa, botrunner and the telegram, discord and scrape functions")
        stack.start_services()
        _wire_push_subscription(stack)
        click.echo("==> crawling " + ("the sample docs site" if site else "your sources"))
        summary = _first_crawl(stack, workdir / "logs" / "scrape.log")
        click.echo(
            f"    {summary.get('status')}: {summary.get('pages_fetched', 0)} pages, "
            f"{summary.get('chunks_added', 0)} chunks, snapshot {summary.get('snapshot_id') or '-'}"
        )
        for name, source in (summary.get("sources") or {}).items():
            if source.get("error"):
                click.echo(f"    source {name}: {source['error']}", err=True)
        if summary.get("snapshot_id"):
            status = _wait_for_index(stack.services["qa"].url, timeout=60)
            click.echo(f"    index ready: snapshot {status.get('snapshot_id', '?')}")
        else:
            click.echo("    no snapshot was published: the chat says so until a crawl succeeds", err=True)
        click.echo("")
        click.echo(
            f"askbase is running: open {stack.services['qa'].url}  (dev sign-in: any email; "
            "admin@askbase.local is an admin)"
        )
        click.echo(f"CLI: source {cli_env}   (askbase bots, snapshots, scrape ... then act on this stack)")
        click.echo(f"logs: {workdir / 'logs'}   stop: Ctrl+C")
        if exit_after_ready:
            return
        threading.Thread(
            target=_scheduler,
            args=(stack, scrape_every, reconcile_every, stop),
            name="scheduler",
            daemon=True,
        ).start()
        while not stop.is_set():
            for service in stack.services.values():
                if service.proc is not None and service.proc.poll() is not None:
                    raise click.ClickException(
                        f"{service.name} exited ({service.proc.returncode}); "
                        f"see {workdir / 'logs' / (service.name + '.log')}"
                    )
            stop.wait(1.0)
    except KeyboardInterrupt:
        pass
    finally:
        stop.set()
        click.echo("==> stopping every process")
        stack.stop()
        if site is not None:
            site.stop()


def _wire_push_subscription(stack: LocalStack) -> None:
    """Pub/Sub push from the jobs topic to botrunner's worker, as the Pulumi program sets up."""
    from shared.devstack.subscriptions import ensure_push_subscription

    ensure_push_subscription(
        stack.project,
        stack.env.get("ASKBASE_JOBS_TOPIC", "askbase-jobs"),
        "askbase-worker",
        stack.services["botrunner"].url + "/worker/push",
    )


def _production_shape(workdir: Path, sources: str | None, exit_after_ready: bool) -> None:
    """``askbase dev --production-shape``: :class:`shared.devstack.production.ProductionStack`."""
    from shared.devstack.production import ProductionStack

    site = None
    if sources is None:
        site = serve_sample_site()
        sources = json.dumps([{"name": "sample-docs", "kind": "sitemap", "url": site.url("/sitemap.xml")}])
    stack = ProductionStack(workdir=workdir, sources_json=sources)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        click.echo("==> starting emulators, token issuer, HTTPS front end and the five deployables")
        try:
            stack.start()
        except (EmulatorError, RuntimeError) as exc:
            raise click.ClickException(str(exc)) from None
        click.echo("==> first crawl, called as Cloud Scheduler calls it (OIDC token of its account)")
        # No client timeout: a large first crawl takes as long as it takes; its progress is shown.
        # The progress is read from the emulated Firestore: this process's client must point at it.
        assert stack.emulators is not None
        with stack.emulators.exported_env():
            run = _while_showing_progress(stack.project, lambda: stack.scheduler_call("scrape", timeout=None))
        click.echo(f"    scrape answered {run.status_code}: {run.text[:300]}")
        snapshot = run.json().get("snapshot_id") if run.status_code == 200 else None
        deadline = time.monotonic() + 90  # qa polls every 30 s, as deployed
        while snapshot and time.monotonic() < deadline and stack.status().get("snapshot_id") != snapshot:
            time.sleep(0.5)
        click.echo("")
        for name, url in stack.urls.items():
            click.echo(f"  {name:10} {url}")
        click.echo(f"TLS certificate to trust: {stack.cert_file}")
        click.echo(
            "Sign-in is Google Sign-In only (its script is not reachable offline): the tests sign in by "
            "posting an ID token from the local issuer; use plain `askbase dev` to click around."
        )
        click.echo(f"logs: {workdir / 'logs'}   stop: Ctrl+C")
        if exit_after_ready:
            return
        while not stop.wait(1.0):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        click.echo("==> stopping every process")
        stack.stop()
        if site is not None:
            site.stop()
