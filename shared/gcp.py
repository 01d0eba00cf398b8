"""Google Cloud clients, built once per process from settings.

The client libraries read FIRESTORE_EMULATOR_HOST and STORAGE_EMULATOR_HOST themselves, so the same
code talks to the emulators locally and to Google Cloud in production. (Pub/Sub is published over REST by
shared/pubsub.py, which reads PUBSUB_EMULATOR_HOST the same way.)

Each client library is imported by the function that builds its client: importing the gRPC clients costs
0.75 s, and the qa service's cold start (restore the index, answer) needs only Cloud Storage first.
"""

from __future__ import annotations

import contextlib
import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import google.cloud.storage as storage
    from google.cloud import firestore


# Seconds a service asks a client to wait (Retry-After) after answering 503 for one of these errors.
UNAVAILABLE_RETRY_AFTER_S = 5


def unavailable_errors() -> tuple[type[Exception], ...]:
    """Google API errors that mean "try again shortly", not a bug: an outage, a timeout, or lock
    contention that outlasted :mod:`shared.transactions`' retries. The services answer them 503 with
    ``Retry-After`` (Pub/Sub redelivers a worker's 503; a browser or script asks again)."""
    from google.api_core import exceptions as gexc

    return (
        gexc.ServiceUnavailable,
        gexc.DeadlineExceeded,
        gexc.InternalServerError,
        gexc.RetryError,
        gexc.Aborted,
    )


def _emulated(var: str) -> bool:
    return bool(os.environ.get(var))


def firestore_client(project: str, emulator_host: str | None = None) -> firestore.Client:
    """A Firestore client for ``project``: the emulator when FIRESTORE_EMULATOR_HOST is set, or at
    ``emulator_host`` when given (a scratch emulator beside the configured one)."""
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import firestore

    if not emulator_host:
        return firestore.Client(project=project)
    client = firestore.Client(project=project, credentials=AnonymousCredentials())
    # The client reads the variable once, at construction; its channel is built on first use.
    client._emulator_host = emulator_host
    return client


def storage_client(project: str) -> storage.Client:
    """A Cloud Storage client; anonymous against the emulator, ADC in production."""
    import google.cloud.storage as storage
    from google.auth.credentials import AnonymousCredentials

    if _emulated("STORAGE_EMULATOR_HOST"):
        return storage.Client(project=project, credentials=AnonymousCredentials())
    return storage.Client(project=project)


def ensure_bucket(client: storage.Client, name: str) -> storage.Bucket:
    """Return the bucket, creating it only against the emulator (Pulumi owns it in production)."""
    from google.api_core import exceptions as gexc

    bucket = client.bucket(name)
    if _emulated("STORAGE_EMULATOR_HOST"):
        with contextlib.suppress(gexc.Conflict):
            client.create_bucket(name)
    return bucket
