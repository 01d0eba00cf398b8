"""Pub/Sub: the jobs topic, its push subscription to botrunner ``/worker/push``, and a dead-letter path."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_gcp as gcp

from infra.components.base import Component, Grantee
from infra.envvars import JOBS_TOPIC  # one name for the topic, also in every deployable's env

DEAD_LETTER_TOPIC = "askbase-jobs-dead"
WORKER_PATH = "/worker/push"

# How long a job the worker answers 503 is retried (qa down, a Telegram 429 longer than the worker waits,
# Firestore unavailable, another delivery still holding the job: each uses one delivery attempt).
# Pub/Sub waits between deliveries from MIN_BACKOFF_S, growing exponentially up to MAX_BACKOFF_S (it
# documents no factor and calls the policy best effort; doubling is assumed here): 10, 20, 40, 80, 160,
# then 300 s. 12 attempts wait 310 + 6 x 300 = 2110 s (~35 min) between the first delivery and the
# last; with each attempt's own time (at most the ACK_DEADLINE_S ack deadline) at most 2110 + 12 x 90 =
# 3190 s (~53 min). That stays inside JOB_RETENTION_S: a job still failing then is dead-lettered (kept 7
# days in the inbox), not deleted unseen by the retention. The earlier 5 attempts covered 150 s.
MIN_BACKOFF_S = 10
MAX_BACKOFF_S = 300
JOB_RETENTION_S = 3600  # an answer an hour late is no answer; an unacked job older than this is deleted
MAX_DELIVERY_ATTEMPTS = 12  # Pub/Sub allows 5..100
# How long Pub/Sub waits for botrunner's answer to a push: "for push delivery, this value is used to set
# the request timeout for the call to the push endpoint" (Pub/Sub API, Subscription.ackDeadlineSeconds);
# past it the delivery counts as failed and the job is redelivered. The worker checks its 60 s processing
# budget (shared/bots/worker.py, PROCESSING_BUDGET) only before each part it sends, so a delivery runs
# that budget plus one part; what it is built to finish within is its claim lease (90 s,
# shared/bots/dedupe.py DEFAULT_LEASE), after which another delivery may take the job over. At the 60 s
# this was, a job that used its budget was cut off mid-send and redelivered, spending one of its 12
# attempts. botrunner's Cloud Run request timeout is this too (infra/program.py): a shorter one would
# answer 504 first.
ACK_DEADLINE_S = 90


def retry_window_seconds(attempts: int, minimum: int = MIN_BACKOFF_S, maximum: int = MAX_BACKOFF_S) -> int:
    """Backoff between the first and the last of ``attempts`` deliveries (doubling from ``minimum``,
    capped at ``maximum``), not counting the deliveries' own time."""
    return sum(min(minimum * 2**k, maximum) for k in range(attempts - 1))


@dataclass(frozen=True)
class MessagingArgs:
    project: str
    # The Pub/Sub service agent's member, from gcp.projects.ServiceIdentity (infra/components/apis.py).
    pubsub_agent_member: pulumi.Input[str]
    push_url: pulumi.Input[str]  # botrunner's base URL: the push endpoint's origin and the audience
    push_service_account: pulumi.Input[str]  # email whose OIDC token Pub/Sub attaches
    push_service_account_id: pulumi.Input[str]  # its resource name, for the token-creator grant
    publishers: Sequence[Grantee] = ()
    max_delivery_attempts: int = MAX_DELIVERY_ATTEMPTS
    ack_deadline_seconds: int = ACK_DEADLINE_S  # the worker asks qa, then replies part by part
    push_target: pulumi.Resource | None = None  # created first so the first pushes find it


class Messaging(Component):
    def __init__(
        self,
        name: str,
        args: MessagingArgs,
        depends_on: Sequence[pulumi.Resource] = (),
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("Messaging", name, depends_on, opts)
        pubsub_agent = args.pubsub_agent_member
        self.jobs_topic = gcp.pubsub.Topic(
            "jobs",
            project=args.project,
            name=JOBS_TOPIC,
            opts=self.child(),
        )
        self.dead_letter_topic = gcp.pubsub.Topic(
            "jobs-dead", project=args.project, name=DEAD_LETTER_TOPIC, opts=self.child()
        )
        # A topic without a subscription drops what is published to it: keep dead letters a week
        # for `gcloud pubsub subscriptions pull askbase-jobs-dead`.
        self.dead_letter_subscription = gcp.pubsub.Subscription(
            "jobs-dead-inbox",
            project=args.project,
            name=f"{DEAD_LETTER_TOPIC}-inbox",
            topic=self.dead_letter_topic.id,
            message_retention_duration="604800s",
            expiration_policy=gcp.pubsub.SubscriptionExpirationPolicyArgs(ttl=""),
            opts=self.child(),
        )
        self.push_subscription = gcp.pubsub.Subscription(
            "jobs-push",
            project=args.project,
            name=f"{JOBS_TOPIC}-worker",
            topic=self.jobs_topic.id,
            ack_deadline_seconds=args.ack_deadline_seconds,
            message_retention_duration=f"{JOB_RETENTION_S}s",
            expiration_policy=gcp.pubsub.SubscriptionExpirationPolicyArgs(ttl=""),  # never expire
            push_config=gcp.pubsub.SubscriptionPushConfigArgs(
                push_endpoint=pulumi.Output.concat(args.push_url, WORKER_PATH),
                oidc_token=gcp.pubsub.SubscriptionPushConfigOidcTokenArgs(
                    service_account_email=args.push_service_account,
                    audience=args.push_url,
                ),
            ),
            retry_policy=gcp.pubsub.SubscriptionRetryPolicyArgs(
                minimum_backoff=f"{MIN_BACKOFF_S}s", maximum_backoff=f"{MAX_BACKOFF_S}s"
            ),
            dead_letter_policy=gcp.pubsub.SubscriptionDeadLetterPolicyArgs(
                dead_letter_topic=self.dead_letter_topic.id,
                max_delivery_attempts=args.max_delivery_attempts,
            ),
            opts=self.child(args.push_target),
        )
        self.grants = self.grant_each(
            gcp.pubsub.TopicIAMMember,
            "roles/pubsub.publisher",
            args.publishers,
            target="jobs",
            legacy_label="jobs-publisher",
            project=args.project,
            topic=self.jobs_topic.name,
        )
        # Dead-lettering is done by the Pub/Sub service agent: it must publish to the dead-letter
        # topic and acknowledge (subscriber) on the source subscription, or messages never move.
        self.agent_grants = [
            gcp.pubsub.TopicIAMMember(
                "pubsub-agent-dead-letter-publisher",
                project=args.project,
                topic=self.dead_letter_topic.name,
                role="roles/pubsub.publisher",
                member=pubsub_agent,
                opts=self.child(),
            ),
            gcp.pubsub.SubscriptionIAMMember(
                "pubsub-agent-worker-subscriber",
                project=args.project,
                subscription=self.push_subscription.name,
                role="roles/pubsub.subscriber",
                member=pubsub_agent,
                opts=self.child(),
            ),
            # Minting the push OIDC token: needed in projects created before April 2021, harmless after.
            gcp.serviceaccount.IAMMember(
                "pubsub-agent-push-token-creator",
                service_account_id=args.push_service_account_id,
                role="roles/iam.serviceAccountTokenCreator",
                member=pubsub_agent,
                opts=self.child(),
            ),
        ]
        self.register_outputs(
            {"jobs_topic": self.jobs_topic.name, "dead_letter_topic": self.dead_letter_topic.name}
        )
