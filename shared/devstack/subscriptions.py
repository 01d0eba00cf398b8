"""Push subscriptions for the local stack and tests: the emulator's stand-in for what Pulumi creates.

In production infra/components/messaging.py owns the subscriptions (with their OIDC service account and
dead-letter policy); locally something must create them, and this is the one place that does. It uses the
gRPC client library, which only the development tools install: no deployable imports this module.
"""

from __future__ import annotations

import contextlib
import os
from typing import Any

import google.cloud.pubsub_v1 as pubsub_v1
from google.api_core import exceptions as gexc


def publisher_client() -> pubsub_v1.PublisherClient:
    """A gRPC Pub/Sub publisher; the emulator when PUBSUB_EMULATOR_HOST is set."""
    return pubsub_v1.PublisherClient()


def ensure_topic(publisher: pubsub_v1.PublisherClient, project: str, topic: str) -> str:
    """Return the topic path, creating the topic only against the emulator (Pulumi owns it in production)."""
    path: str = publisher.topic_path(project, topic)
    if os.environ.get("PUBSUB_EMULATOR_HOST"):
        with contextlib.suppress(gexc.AlreadyExists):
            publisher.create_topic(name=path)
    return path


def ensure_push_subscription(
    project: str,
    topic: str,
    subscription: str,
    push_endpoint: str,
    ack_deadline_seconds: int = 90,
    subscriber: pubsub_v1.SubscriberClient | None = None,
    publisher: pubsub_v1.PublisherClient | None = None,
    dead_letter_topic: str | None = None,
    max_delivery_attempts: int = 5,
) -> str:
    """Create (or repoint) a push subscription from ``topic`` to ``push_endpoint``; return its path.

    For the local stack and tests: the Pub/Sub emulator honours ``pushConfig`` and POSTs the same
    envelope as Google does, but without an OIDC token, so the worker must run with
    ``internal_auth=none``. In production Pulumi owns the subscription (with its OIDC service account).
    The ack deadline is the production one (infra/components/messaging.py ``ACK_DEADLINE_S``: the
    worker's 90 s claim lease): longer than the worker's 60 s processing cap, which it checks only
    before each part it sends, so a slow answer is not redelivered while it is still being sent.
    """
    publisher = publisher or pubsub_v1.PublisherClient()
    subscriber = subscriber or pubsub_v1.SubscriberClient()
    topic_path = ensure_topic(publisher, project, topic)
    sub_path: str = subscriber.subscription_path(project, subscription)
    push_config = pubsub_v1.types.PushConfig(push_endpoint=push_endpoint)
    request: dict[str, Any] = {
        "name": sub_path,
        "topic": topic_path,
        "push_config": push_config,
        "ack_deadline_seconds": ack_deadline_seconds,
    }
    if dead_letter_topic:
        # As infra/components/messaging.py: after max_delivery_attempts the job goes to the dead-letter
        # topic, whose "-inbox" subscription keeps it for inspection.
        dead_path = ensure_topic(publisher, project, dead_letter_topic)
        inbox = subscriber.subscription_path(project, f"{dead_letter_topic}-inbox")
        with contextlib.suppress(gexc.AlreadyExists):
            subscriber.create_subscription(request={"name": inbox, "topic": dead_path})
        request["dead_letter_policy"] = {
            "dead_letter_topic": dead_path,
            "max_delivery_attempts": max_delivery_attempts,
        }
    try:
        subscriber.create_subscription(request=request)
    except gexc.AlreadyExists:
        with contextlib.suppress(gexc.NotFound):
            subscriber.modify_push_config(request={"subscription": sub_path, "push_config": push_config})
    return sub_path
