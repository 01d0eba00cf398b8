"""The security rules catch what they are for: each test feeds one deliberately bad resource list.

A small, hand-written "good" stack passes every rule; each test breaks one thing and expects exactly
that rule to say so. (The real program passing the rules is in tests/test_infra.py.)
"""

from __future__ import annotations

import copy

import pytest

from infra import policies

P = "proj"
QA, BOT = "askbase-qa", "askbase-botrunner"
QA_SA = "askbase-qa@proj.iam.gserviceaccount.com"
INVOKER = "askbase-scheduler@proj.iam.gserviceaccount.com"
PUSH = "askbase-pubsub-push@proj.iam.gserviceaccount.com"
BOT_URL = "https://askbase-botrunner-1.europe-west1.run.app"
SCRAPE_URL = "https://europe-west1-proj.cloudfunctions.net/askbase-scrape"


def res(type_: str, logical_name: str, /, **inputs) -> dict:
    return {"type": type_, "name": logical_name, "inputs": inputs}


RUN_IAM = "gcp:cloudrunv2/serviceIamMember:ServiceIamMember"
PROJECT_IAM = "gcp:projects/iAMMember:IAMMember"
BUCKET = "gcp:storage/bucket:Bucket"
JOB = "gcp:cloudscheduler/job:Job"
SUB = "gcp:pubsub/subscription:Subscription"


def good_stack() -> list[dict]:
    return [
        res(
            "gcp:cloudrunv2/service:Service",
            "qa",
            name=QA,
            deletionProtection=False,
            invokerIamDisabled=False,
            template={"containers": [{"image": "qa@sha256:1", "commands": ["gunicorn"], "args": ["qa"]}]},
        ),
        res(
            "gcp:cloudrunv2/service:Service",
            "bot",
            name=BOT,
            deletionProtection=False,
            template={"containers": [{"image": "bot@sha256:2", "commands": ["sh"], "args": ["-c", "bot"]}]},
        ),
        res(RUN_IAM, "qa-public", name=QA, role="roles/run.invoker", member="allUsers"),
        res(RUN_IAM, "bot-push", name=BOT, role="roles/run.invoker", member=f"serviceAccount:{PUSH}"),
        res(RUN_IAM, "bot-sched", name=BOT, role="roles/run.invoker", member=f"serviceAccount:{INVOKER}"),
        res(
            RUN_IAM,
            "scrape-sched",
            name="askbase-scrape",
            role="roles/run.invoker",
            member=f"serviceAccount:{INVOKER}",
        ),
        res(PROJECT_IAM, "qa-ds", project=P, role="roles/datastore.user", member=f"serviceAccount:{QA_SA}"),
        res(
            "gcp:storage/bucketIAMMember:BucketIAMMember",
            "qa-kb",
            bucket="kb",
            role="roles/storage.objectViewer",
            member=f"serviceAccount:{QA_SA}",
        ),
        res(
            BUCKET,
            "kb",
            name="kb",
            uniformBucketLevelAccess=True,
            publicAccessPrevention="enforced",
            versioning={"enabled": True},
            forceDestroy=False,
            lifecycleRules=[
                {
                    "action": {"type": "Delete"},
                    "condition": {"numNewerVersions": 7.0, "withState": "ARCHIVED"},
                },
                {"action": {"type": "Delete"}, "condition": {"daysSinceNoncurrentTime": 30.0}},
            ],
        ),
        res(BUCKET, "src", name="src", uniformBucketLevelAccess=True, publicAccessPrevention="enforced"),
        res(
            JOB,
            "scrape",
            httpTarget={
                "uri": SCRAPE_URL,
                "oidcToken": {"serviceAccountEmail": INVOKER, "audience": SCRAPE_URL},
            },
        ),
        res(
            JOB,
            "reconcile",
            httpTarget={
                "uri": BOT_URL + "/internal/reconcile",
                "oidcToken": {"serviceAccountEmail": INVOKER, "audience": BOT_URL},
            },
        ),
        res("gcp:pubsub/topic:Topic", "jobs", name="askbase-jobs"),
        res("gcp:pubsub/topic:Topic", "dead", name="askbase-jobs-dead"),
        res(
            SUB,
            "push",
            name="askbase-jobs-worker",
            pushConfig={
                "pushEndpoint": BOT_URL + "/worker/push",
                "oidcToken": {"serviceAccountEmail": PUSH, "audience": BOT_URL},
            },
            deadLetterPolicy={
                "deadLetterTopic": "projects/proj/topics/askbase-jobs-dead",
                "maxDeliveryAttempts": 5.0,
            },
            retryPolicy={"minimumBackoff": "10s"},
        ),
        res(
            "gcp:firestore/database:Database",
            "db",
            name="(default)",
            deletionPolicy="ABANDON",
            deleteProtectionState="DELETE_PROTECTION_ENABLED",
        ),
        res("gcp:firestore/field:Field", "ttl", collection="sent_replies", field="expire_at", ttlConfig={}),
        res("gcp:firestore/backupSchedule:BackupSchedule", "bk", dailyRecurrence={}, retention="604800s"),
    ]


ALLOWED = {
    f"serviceAccount:{QA_SA}": {
        ("roles/datastore.user", "project", P),
        ("roles/storage.objectViewer", "bucket", "kb"),
    },
    f"serviceAccount:{PUSH}": {("roles/run.invoker", "run", BOT)},
    f"serviceAccount:{INVOKER}": {
        ("roles/run.invoker", "run", BOT),
        ("roles/run.invoker", "run", "askbase-scrape"),
    },
}


def check(resources: list[dict]) -> list[str]:
    return policies.check_all(
        resources,
        public_targets={QA},
        allowed_grants=ALLOWED,
        invoker_email=INVOKER,
        push_email=PUSH,
        versioned_buckets={"kb"},
        ttl_collections={"sent_replies"},
    )


def find(resources: list[dict], name: str) -> dict:
    return next(r for r in resources if r["name"] == name)


def test_the_good_stack_passes() -> None:
    assert check(good_stack()) == []


# --- public access -------------------------------------------------------------------------------


def test_all_users_on_a_private_service_is_caught() -> None:
    bad = [*good_stack(), res(RUN_IAM, "oops", name=BOT, role="roles/run.invoker", member="allUsers")]
    problems = policies.check_no_public_access(bad, {QA})
    assert problems == [f"oops: allUsers holds roles/run.invoker on private run '{BOT}'"]


def test_all_authenticated_users_on_a_bucket_is_caught() -> None:
    bad = [
        *good_stack(),
        res(
            "gcp:storage/bucketIAMMember:BucketIAMMember",
            "leak",
            bucket="kb",
            role="roles/storage.objectViewer",
            member="allAuthenticatedUsers",
        ),
    ]
    assert any("allAuthenticatedUsers" in p and "bucket 'kb'" in p for p in check(bad))


def test_public_binding_with_members_list_is_caught() -> None:
    bad = [
        *good_stack(),
        res(
            "gcp:pubsub/topicIAMBinding:TopicIAMBinding",
            "b",
            topic="askbase-jobs",
            role="roles/pubsub.publisher",
            members=["allUsers"],
        ),
    ]
    assert any("allUsers holds roles/pubsub.publisher on private topic" in p for p in check(bad))


def test_public_role_other_than_invoker_on_a_public_service_is_caught() -> None:
    bad = [*good_stack(), res(RUN_IAM, "admin", name=QA, role="roles/run.admin", member="allUsers")]
    assert any("roles/run.admin" in p for p in check(bad))


def test_private_service_with_iam_check_disabled_is_caught() -> None:
    bad = good_stack()
    find(bad, "bot")["inputs"]["invokerIamDisabled"] = True
    assert check(bad) == ["bot: private service has invokerIamDisabled"]


# --- least privilege -----------------------------------------------------------------------------


def test_service_account_with_an_extra_role_is_caught() -> None:
    bad = [
        *good_stack(),
        res(
            "gcp:secretmanager/secretIamMember:SecretIamMember",
            "extra",
            secretId="askbase-session-secret",
            role="roles/secretmanager.secretAccessor",
            member=f"serviceAccount:{PUSH}",
        ),
    ]
    assert check(bad) == [
        f"serviceAccount:{PUSH}: unexpected grant "
        "('roles/secretmanager.secretAccessor', 'secret', 'askbase-session-secret')"
    ]


def test_missing_grant_is_caught() -> None:
    bad = [r for r in good_stack() if r["name"] != "qa-kb"]
    assert check(bad) == [
        f"serviceAccount:{QA_SA}: missing grant ('roles/storage.objectViewer', 'bucket', 'kb')"
    ]


def test_resource_role_granted_project_wide_is_caught_even_if_listed() -> None:
    allowed = copy.deepcopy(ALLOWED)
    allowed[f"serviceAccount:{QA_SA}"].add(("roles/storage.objectViewer", "project", P))
    bad = [
        *good_stack(),
        res(
            PROJECT_IAM,
            "wide",
            project=P,
            role="roles/storage.objectViewer",
            member=f"serviceAccount:{QA_SA}",
        ),
    ]
    problems = policies.check_least_privilege(bad, allowed)
    assert problems == [
        f"serviceAccount:{QA_SA}: roles/storage.objectViewer granted project-wide; grant it on the resource"
    ]


@pytest.mark.parametrize(
    ("expression", "counts_as"),
    [
        # One bucket and its objects: a grant on that bucket (how a role reaches a bucket GCP creates).
        (
            policies.one_bucket_condition("gcf-v2-sources-1-europe-west1"),
            ("bucket", "gcf-v2-sources-1-europe-west1"),
        ),
        # Anything wider stays a project-wide grant.
        ('resource.name.startsWith("projects/_/buckets/gcf-v2-sources-")', ("project", P)),
        (
            'resource.name == "projects/_/buckets/a" || resource.name.startsWith("projects/_/buckets/b/")',
            ("project", P),
        ),
        (
            policies.one_bucket_condition("kb") + ' || resource.name.startsWith("projects/_/buckets/")',
            ("project", P),
        ),
    ],
)
def test_a_project_grant_conditioned_to_one_bucket_is_a_grant_on_that_bucket(
    expression: str, counts_as
) -> None:
    grant = res(
        PROJECT_IAM,
        "conditioned",
        project=P,
        role="roles/storage.objectAdmin",
        member=f"serviceAccount:{QA_SA}",
        condition={"title": "t", "expression": expression},
    )
    assert policies.iam_target(grant) == counts_as
    allowed = copy.deepcopy(ALLOWED)
    allowed[f"serviceAccount:{QA_SA}"].add(("roles/storage.objectAdmin", *counts_as))
    problems = policies.check_least_privilege([*good_stack(), grant], allowed)
    wide = [
        f"serviceAccount:{QA_SA}: roles/storage.objectAdmin granted project-wide; grant it on the resource"
    ]
    assert problems == ([] if counts_as[0] == "bucket" else wide)


def test_basic_role_is_caught_for_anyone() -> None:
    bad = [
        *good_stack(),
        res(PROJECT_IAM, "ed", project=P, role="roles/editor", member="user:someone@example.com"),
    ]
    assert check(bad) == ["user:someone@example.com: basic role roles/editor on project 'proj'"]


# --- scheduler -----------------------------------------------------------------------------------


def test_scheduler_job_without_oidc_is_caught() -> None:
    bad = good_stack()
    del find(bad, "scrape")["inputs"]["httpTarget"]["oidcToken"]
    assert check(bad) == ["scrape: no OIDC token"]


def test_scheduler_job_with_another_account_is_caught() -> None:
    bad = good_stack()
    find(bad, "reconcile")["inputs"]["httpTarget"]["oidcToken"]["serviceAccountEmail"] = QA_SA
    assert check(bad) == [f"reconcile: token of '{QA_SA}', not the invoker"]


def test_scheduler_job_with_a_foreign_audience_is_caught() -> None:
    bad = good_stack()
    find(bad, "scrape")["inputs"]["httpTarget"]["oidcToken"]["audience"] = BOT_URL
    assert check(bad) == [f"scrape: audience '{BOT_URL}' is not the URL of target '{SCRAPE_URL}'"]


def test_scheduler_job_over_plain_http_is_caught() -> None:
    bad = good_stack()
    target = find(bad, "scrape")["inputs"]["httpTarget"]
    target["uri"] = target["oidcToken"]["audience"] = "http://example.com/run"
    assert check(bad) == ["scrape: target 'http://example.com/run' is not https"]


# --- push subscription ---------------------------------------------------------------------------


def test_push_without_oidc_is_caught() -> None:
    bad = good_stack()
    del find(bad, "push")["inputs"]["pushConfig"]["oidcToken"]
    assert check(bad) == ["push: push without an OIDC token"]


def test_push_without_dead_letter_topic_is_caught() -> None:
    bad = good_stack()
    del find(bad, "push")["inputs"]["deadLetterPolicy"]
    problems = check(bad)
    assert "push: no dead-letter topic" in problems
    assert any("maxDeliveryAttempts" in p for p in problems)


def test_push_dead_lettering_to_a_topic_outside_the_stack_is_caught() -> None:
    bad = good_stack()
    find(bad, "push")["inputs"]["deadLetterPolicy"]["deadLetterTopic"] = "projects/x/topics/elsewhere"
    assert check(bad) == ["push: dead-letter topic 'projects/x/topics/elsewhere' is not in the stack"]


def test_push_with_wrong_account_or_audience_or_no_retry_policy_is_caught() -> None:
    bad = good_stack()
    push = find(bad, "push")["inputs"]
    push["pushConfig"]["oidcToken"] = {"serviceAccountEmail": QA_SA, "audience": "https://other.example"}
    del push["retryPolicy"]
    problems = check(bad)
    assert len(problems) == 3
    assert any("not the push account" in p for p in problems)
    assert any("does not match endpoint" in p for p in problems)
    assert any("no retry policy" in p for p in problems)


# --- buckets and data ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("publicAccessPrevention", "inherited", "kb: public access prevention is not enforced"),
        ("uniformBucketLevelAccess", False, "kb: uniform bucket-level access is off"),
        ("versioning", {"enabled": False}, "kb: object versioning is off"),
        ("lifecycleRules", [], "kb: no lifecycle rule keeping 7 noncurrent generations"),
        ("forceDestroy", True, "kb: force_destroy would delete the knowledge base with the stack"),
    ],
)
def test_bucket_hardening_gaps_are_caught(field: str, value, message: str) -> None:
    bad = good_stack()
    find(bad, "kb")["inputs"][field] = value
    assert message in check(bad)


def test_unversioned_buckets_still_need_public_access_prevention() -> None:
    bad = good_stack()
    del find(bad, "src")["inputs"]["publicAccessPrevention"]
    assert check(bad) == ["src: public access prevention is not enforced"]


def test_firestore_gaps_are_caught() -> None:
    bad = [r for r in good_stack() if r["name"] not in ("ttl", "bk")]
    find(bad, "db")["inputs"]["deletionPolicy"] = "DELETE"
    assert check(bad) == [
        "db: deletion policy 'DELETE' deletes data",
        "no TTL policy on sent_replies.expire_at",
        "no daily Firestore backup schedule with a retention",
    ]


def test_implicit_deletion_protection_is_caught() -> None:
    bad = good_stack()
    del find(bad, "qa")["inputs"]["deletionProtection"]
    assert check(bad) == ["qa: deletion_protection left to the provider default"]


def test_container_without_an_explicit_command_is_caught() -> None:
    bad = good_stack()
    del find(bad, "bot")["inputs"]["template"]["containers"][0]["commands"]
    assert check(bad) == ["bot: container 0 leaves its command to the image"]
    find(bad, "qa")["inputs"]["template"] = {}
    assert check(bad) == [
        "qa: no container in the template",
        "bot: container 0 leaves its command to the image",
    ]
