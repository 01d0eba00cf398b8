"""``askbase emulators up|down|status``: the local Firestore, Pub/Sub and Cloud Storage emulators."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import click

from shared.emulators import EmulatorError, EmulatorStack

STATE_FILE = Path(".askbase/emulators.json")


@click.group("emulators")
def emulators_group() -> None:
    """Start, stop or inspect the local emulators."""


@emulators_group.command("up")
@click.option("--project", default="askbase-local", show_default=True)
@click.option("--foreground", is_flag=True, help="Stay attached; Ctrl+C stops the emulators.")
def up(project: str, foreground: bool) -> None:
    """Start the emulators and print the environment variables that point clients at them."""
    existing = EmulatorStack.load(STATE_FILE)
    if existing and any(e.alive() for e in existing.processes()):
        raise click.ClickException("emulators are already running; `askbase emulators down` first")
    stack = EmulatorStack(
        project=project, workdir=STATE_FILE.parent.resolve() / "emulators", attached=foreground
    )
    try:
        stack.start()
    except EmulatorError as exc:
        raise click.ClickException(str(exc)) from None
    for key, value in stack.env().items():
        click.echo(f"export {key}={value}")
    click.echo(
        f"# started in {max(stack.start_seconds.values()):.1f}s: "
        + ", ".join(f"{k} {v:.1f}s" for k, v in stack.start_seconds.items()),
        err=True,
    )
    if not foreground:
        stack.save(STATE_FILE)
        click.echo("# running in the background; stop with: askbase emulators down", err=True)
        return
    stop = False

    def _stop(*_: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, _stop)
    try:
        while not stop and all(e.alive() for e in stack.processes()):
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        stack.stop()
        click.echo("# emulators stopped", err=True)


@emulators_group.command("down")
def down() -> None:
    """Stop emulators started with ``askbase emulators up``."""
    stack = EmulatorStack.load(STATE_FILE)
    if stack is None:
        click.echo("no emulators recorded in " + str(STATE_FILE))
        return
    stack.stop()
    STATE_FILE.unlink(missing_ok=True)
    click.echo("emulators stopped")


@emulators_group.command("status")
def status() -> None:
    """Show which emulators are running and where."""
    stack = EmulatorStack.load(STATE_FILE)
    if stack is None:
        from shared.devstack.workdir import DEFAULT_WORKDIR, holder

        dev_pid = holder(DEFAULT_WORKDIR)
        if dev_pid is not None:
            click.echo(
                f"emulators: run by askbase dev (pid {dev_pid}); point the CLI at its stack with: "
                f"source {DEFAULT_WORKDIR / 'env'}"
            )
            raise SystemExit(0)
        click.echo("emulators: not running")
        raise SystemExit(1)
    running = True
    for item in stack.describe():
        state = "running" if item["alive"] else "stopped"
        running = running and bool(item["alive"])
        click.echo(f"{item['name']:<10} 127.0.0.1:{item['port']:<6} pid {item['pid']:<8} {state}")
    raise SystemExit(0 if running else 1)
