"""The emulator harness itself: real clients against real emulators, isolation, clean teardown."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
from google.api_core import exceptions as gexc
from google.cloud import firestore, pubsub_v1

from shared import gcp
from shared.devstack import subscriptions
from shared.emulators import EmulatorStack
from shared.processes import pid_alive

pytestmark = pytest.mark.emulators


def test_firestore_transaction(emulators: EmulatorStack) -> None:
    db = gcp.firestore_client(emulators.project)
    ref = db.collection("counters").document("c")
    ref.set({"n": 0})

    @firestore.transactional
    def bump(tx: firestore.Transaction) -> None:
        snap = ref.get(transaction=tx)
        tx.update(ref, {"n": snap.get("n") + 1})

    for _ in range(3):
        bump(db.transaction())
    assert ref.get().to_dict() == {"n": 3}


def test_gcs_create_only_precondition_is_412(emulators: EmulatorStack) -> None:
    client = gcp.storage_client(emulators.project)
    bucket = gcp.ensure_bucket(client, "harness-bucket")
    blob = bucket.blob("pointer.json")
    blob.upload_from_string(b"{}", if_generation_match=0)
    with pytest.raises(gexc.PreconditionFailed):
        bucket.blob("pointer.json").upload_from_string(b"{}", if_generation_match=0)
    blob.reload()
    with pytest.raises(gexc.PreconditionFailed):
        bucket.blob("pointer.json").upload_from_string(b"{}", if_generation_match=blob.generation + 1)
    bucket.blob("pointer.json").upload_from_string(b'{"v":2}', if_generation_match=blob.generation)
    assert bucket.blob("pointer.json").download_as_bytes() == b'{"v":2}'


def test_pubsub_publish_and_pull(emulators: EmulatorStack) -> None:
    publisher = subscriptions.publisher_client()
    topic = subscriptions.ensure_topic(publisher, emulators.project, "harness-jobs")
    subscriber = pubsub_v1.SubscriberClient()
    sub = subscriber.subscription_path(emulators.project, "harness-pull")
    subscriber.create_subscription(name=sub, topic=topic)
    publisher.publish(topic, b"job-1", kind="test").result(timeout=30)
    resp = subscriber.pull(subscription=sub, max_messages=1, timeout=30)
    assert [m.message.data for m in resp.received_messages] == [b"job-1"]
    assert resp.received_messages[0].message.attributes["kind"] == "test"


def test_reset_isolation_first_writes(emulators: EmulatorStack) -> None:
    db = gcp.firestore_client(emulators.project)
    db.collection("isolation").document("left-behind").set({"by": "first"})
    bucket = gcp.ensure_bucket(gcp.storage_client(emulators.project), "isolation-bucket")
    bucket.blob("x").upload_from_string("x")
    subscriptions.ensure_topic(subscriptions.publisher_client(), emulators.project, "isolation-topic")
    emulators.reset()
    assert list(db.collection("isolation").stream()) == []
    assert list(gcp.storage_client(emulators.project).list_buckets()) == []
    assert list(subscriptions.publisher_client().list_topics(project=f"projects/{emulators.project}")) == []


def test_reset_isolation_second_sees_nothing(emulators: EmulatorStack) -> None:
    # Runs after the test above (file order): the fixture's reset must have emptied everything.
    db = gcp.firestore_client(emulators.project)
    db.collection("isolation").document("probe").set({"by": "second"})
    assert [d.id for d in db.collection("isolation").stream()] == ["probe"]


def test_no_process_survives_teardown(tmp_path) -> None:
    stack = EmulatorStack(project="askbase-teardown", workdir=tmp_path)
    stack.start()
    pids = [e.pid for e in stack.processes()]
    assert len(pids) == 3 and all(pid_alive(p) for p in pids)
    stack.stop()
    assert not any(pid_alive(p) for p in pids)


def test_no_process_survives_a_killed_parent(tmp_path) -> None:
    # A parent that dies without cleaning up (SIGKILL, a crashed test run) takes its emulators along.
    script = textwrap.dedent(f"""
        import os, sys, time
        from pathlib import Path
        from shared.emulators import EmulatorStack
        stack = EmulatorStack(project="askbase-orphans", workdir=Path({str(tmp_path)!r}))
        stack.start()
        print(" ".join(str(e.pid) for e in stack.processes()), flush=True)
        os.kill(os.getpid(), 9)
    """)
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, env=os.environ.copy()
    )
    pids = [int(p) for p in out.stdout.split()]
    assert len(pids) == 3, out.stderr
    import time

    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(pid_alive(p) for p in pids):
        time.sleep(0.1)
    assert not any(pid_alive(p) for p in pids)
