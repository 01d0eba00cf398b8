"""A stack deployed before the program was regrouped updates in place: nothing is replaced.

Two changes moved resources' URNs (a URN holds the resource's name and the types of all its parents):

- IAM members were named by list position (``botrunner-invoker-1``): reordering a list renamed, and
  so replaced, a live grant; and an IAM member replaced is created anew, then its old self deleted,
  which removes the binding the new one just added. They are now named by what they grant to whom
  and where, and carry their positional name as an alias.
- Storage, Data, Secrets and Registry moved into the DataStores component, the image builds from
  Services into Images, and the IAM settle wait into GrantsSettled; each carries a parent alias.

:data:`BEFORE` is every URN a stack deployed from the previous layout holds (recorded from it under
the same mocks). The engine resolves aliases, not the mocks, so ``StackRun.previous_urn`` does what the
engine does: each of them must be found, by exactly one resource. Removing a resource on purpose
means removing it here too.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable

import pulumi
import pytest

from infra import policies
from infra.components.base import Grantee, iam_member_name
from infra.components.identity import ACCOUNTS
from infra.testing import (
    BASE_CONFIG,
    IAM_TARGET_INPUTS,
    PROJECT,
    REGION,
    StackRun,
    use_mocks,
)

# qualified type (the parents' types, then the resource's) -> names, in the previous layout.
BEFORE_COMMON: dict[str, tuple[str, ...]] = {
    "askbase:infra:Apis": ("apis",),
    "askbase:infra:Apis$gcp:projects/service:Service": (
        "aiplatform", "artifactregistry", "cloudbuild", "cloudfunctions", "cloudscheduler", "eventarc",
        "firestore", "iam", "pubsub", "run", "secretmanager", "storage",
    ),
    "askbase:infra:Apis$gcp:projects/serviceIdentity:ServiceIdentity": ("pubsub-agent",),
    "askbase:infra:Apis$time:index/sleep:Sleep": ("apis-settled",),
    "askbase:infra:Data": ("data",),
    "askbase:infra:Data$gcp:firestore/backupSchedule:BackupSchedule": ("daily-backup",),
    "askbase:infra:Data$gcp:firestore/database:Database": ("firestore",),
    "askbase:infra:Data$gcp:firestore/field:Field": (
        "ttl-activity", "ttl-conversations", "ttl-interactions", "ttl-messages", "ttl-processed-updates",
        "ttl-sent-replies",
    ),
    "askbase:infra:Data$gcp:firestore/index:Index": ("conversations-history",),
    "askbase:infra:Functions": ("functions",),
    "askbase:infra:Functions$gcp:cloudfunctionsv2/function:Function": ("discord", "scrape", "telegram"),
    "askbase:infra:Functions$gcp:cloudrunv2/serviceIamMember:ServiceIamMember": (
        "discord-invoker-0", "scrape-invoker-0", "scrape-invoker-1", "telegram-invoker-0",
    ),
    "askbase:infra:Functions$gcp:storage/bucketObject:BucketObject": ("source-scrape", "source-webhooks"),
    "askbase:infra:Identity": ("identity",),
    "askbase:infra:Identity$gcp:projects/iAMMember:IAMMember": (
        "botrunner-datastore-user", "discord-fn-datastore-user", "fn-builder-logging-logWriter",
        "image-builder-logging-logWriter", "qa-aiplatform-user", "qa-datastore-user",
        "scrape-fn-datastore-user", "telegram-fn-datastore-user",
    ),
    "askbase:infra:Identity$gcp:serviceaccount/account:Account": (
        "botrunner", "discord-fn", "fn-builder", "image-builder", "pubsub-push", "qa", "scheduler-invoker",
        "scrape-fn", "telegram-fn",
    ),
    "askbase:infra:Messaging": ("messaging",),
    "askbase:infra:Messaging$gcp:pubsub/subscription:Subscription": ("jobs-dead-inbox", "jobs-push"),
    "askbase:infra:Messaging$gcp:pubsub/subscriptionIAMMember:SubscriptionIAMMember": (
        "pubsub-agent-worker-subscriber",
    ),
    "askbase:infra:Messaging$gcp:pubsub/topic:Topic": ("jobs", "jobs-dead"),
    "askbase:infra:Messaging$gcp:pubsub/topicIAMMember:TopicIAMMember": (
        "jobs-publisher-0", "jobs-publisher-1", "pubsub-agent-dead-letter-publisher",
    ),
    "askbase:infra:Messaging$gcp:serviceaccount/iAMMember:IAMMember": ("pubsub-agent-push-token-creator",),
    "askbase:infra:Registry": ("registry",),
    "askbase:infra:Registry$gcp:artifactregistry/repository:Repository": ("images",),
    "askbase:infra:Registry$gcp:artifactregistry/repositoryIamMember:RepositoryIamMember": (
        "writer-0", "writer-1",
    ),
    "askbase:infra:Schedules": ("schedules",),
    "askbase:infra:Schedules$gcp:cloudscheduler/job:Job": ("reconcile", "scrape"),
    "askbase:infra:Secrets": ("secrets",),
    "askbase:infra:Secrets$gcp:secretmanager/secret:Secret": ("session-secret", "token-key"),
    "askbase:infra:Secrets$gcp:secretmanager/secretIamMember:SecretIamMember": (
        "session-secret-accessor-0", "token-key-accessor-0",
    ),
    "askbase:infra:Secrets$gcp:secretmanager/secretVersion:SecretVersion": (
        "session-secret-v", "token-key-v",
    ),
    "askbase:infra:Secrets$random:index/randomBytes:RandomBytes": ("token-key",),
    "askbase:infra:Secrets$random:index/randomPassword:RandomPassword": ("session-secret",),
    "askbase:infra:Services": ("services",),
    "askbase:infra:Services$gcp:cloudrunv2/service:Service": ("botrunner", "qa"),
    "askbase:infra:Services$gcp:cloudrunv2/serviceIamMember:ServiceIamMember": (
        "botrunner-invoker-0", "botrunner-invoker-1", "botrunner-invoker-2", "qa-invoker-0",
    ),
    "askbase:infra:Storage": ("storage",),
    "askbase:infra:Storage$gcp:storage/bucket:Bucket": ("function-sources", "kb"),
    "askbase:infra:Storage$gcp:storage/bucketIAMMember:BucketIAMMember": (
        "kb-reader-0", "kb-writer-1", "sources-builder-2", "sources-reader-3",
    ),
    "time:index/sleep:Sleep": ("iam-settled",),
}  # fmt: skip
BEFORE_BY_BUILDER: dict[str, dict[str, tuple[str, ...]]] = {
    "docker": {"askbase:infra:Services$docker-build:index:Image": ("botrunner-image", "qa-image")},
    "cloudbuild": {
        "askbase:infra:Services$gcp:storage/bucketObject:BucketObject": (
            "botrunner-image-context", "qa-image-context",
        ),
        "askbase:infra:Services$pulumi-python:dynamic/askbase:CloudBuildImage": (
            "botrunner-image-build", "qa-image-build",
        ),
    },
}  # fmt: skip

# Every IAM member that was named by position: its name now -> its name then (its alias).
RENAMED: dict[str, str] = {
    "qa-storage-object-viewer-on-kb": "kb-reader-0",
    "scrape-fn-storage-object-user-on-kb": "kb-writer-1",
    "fn-builder-storage-object-admin-on-function-sources": "sources-builder-2",
    "image-builder-storage-object-viewer-on-function-sources": "sources-reader-3",
    "botrunner-secretmanager-secret-accessor-on-token-key": "token-key-accessor-0",
    "qa-secretmanager-secret-accessor-on-session-secret": "session-secret-accessor-0",
    "fn-builder-artifactregistry-writer-on-images": "writer-0",
    "image-builder-artifactregistry-writer-on-images": "writer-1",
    "telegram-fn-pubsub-publisher-on-jobs": "jobs-publisher-0",
    "discord-fn-pubsub-publisher-on-jobs": "jobs-publisher-1",
    "all-users-run-invoker-on-telegram": "telegram-invoker-0",
    "all-users-run-invoker-on-discord": "discord-invoker-0",
    "scheduler-invoker-run-invoker-on-scrape": "scrape-invoker-0",
    "qa-run-invoker-on-scrape": "scrape-invoker-1",
    "all-users-run-invoker-on-qa": "qa-invoker-0",
    "pubsub-push-run-invoker-on-botrunner": "botrunner-invoker-0",
    "scheduler-invoker-run-invoker-on-botrunner": "botrunner-invoker-1",
    "qa-run-invoker-on-botrunner": "botrunner-invoker-2",
}


def before(builder: str) -> set[str]:
    groups = {**BEFORE_COMMON, **BEFORE_BY_BUILDER[builder]}
    return {f"urn:pulumi:test::askbase::{t}::{name}" for t, names in groups.items() for name in names}


@pytest.fixture(scope="module", params=["docker", "cloudbuild"])
def stack(request: pytest.FixtureRequest, infra_stacks: Callable[[dict[str, str]], StackRun]) -> StackRun:
    return infra_stacks({**BASE_CONFIG, "askbase:imageBuilder": request.param})


def test_a_stack_deployed_before_finds_every_resource_it_holds(stack: StackRun) -> None:
    held = before(stack.program.image_builder)
    taken: dict[str, str] = {}
    for r in stack.resources:
        previous = stack.previous_urn(r, held)
        if previous is None:
            continue  # created: must be one of the three new components (below)
        assert previous not in taken, f"{previous}: claimed by {taken[previous]} and {stack.urn(r)}"
        taken[previous] = stack.urn(r)
        # An alias keeps the resource's type: the old resource is updated, not swapped for another kind.
        assert previous.split("::")[2].split("$")[-1] == r["type"]
    assert sorted(held - set(taken)) == []  # nothing would be deleted
    created = {stack.urn(r) for r in stack.resources} - set(taken.values())
    assert created == {
        f"urn:pulumi:test::askbase::askbase:infra:{kind}::{name}"
        for kind, name in (
            ("DataStores", "data-stores"),
            ("GrantsSettled", "grants-settled"),
            ("Images", "images"),
            # TTL policies of the feedback collections (issue 14): new resources, nothing replaced.
            ("DataStores$askbase:infra:Data$gcp:firestore/field:Field", "ttl-answers"),
            ("DataStores$askbase:infra:Data$gcp:firestore/field:Field", "ttl-votes"),
            # TTL policy of the signed-out sessions (shared/qa/revoked_sessions.py): new, nothing replaced.
            ("DataStores$askbase:infra:Data$gcp:firestore/field:Field", "ttl-revoked-sessions"),
            # The function builder's read of Cloud Functions' source copy: a new grant, nothing replaced
            # (and a new binding, so the settle wait waits once more after it).
            (
                "DataStores$askbase:infra:Storage$gcp:projects/iAMMember:IAMMember",
                "fn-builder-storage-object-admin-on-gcf-sources",
            ),
        )
    }


def test_regrouped_resources_name_their_former_parent(stack: StackRun) -> None:
    """The moved resources' URNs did change: without the aliases the test above would fail."""
    moved = {stack.urn(r) for r in stack.resources} - before(stack.program.image_builder)
    for now in (
        "askbase:infra:DataStores$askbase:infra:Storage$gcp:storage/bucket:Bucket::kb",
        "askbase:infra:GrantsSettled$time:index/sleep:Sleep::iam-settled",
    ):
        assert f"urn:pulumi:test::askbase::{now}" in moved
    for name, token in (
        ("storage", "askbase:infra:Storage"),
        ("data", "askbase:infra:Data"),
        ("secrets", "askbase:infra:Secrets"),
        ("registry", "askbase:infra:Registry"),
        ("iam-settled", "time:index/sleep:Sleep"),
    ):
        assert stack.named(name, token)["aliases"] == [{"noParent": True}], name
    services = "urn:pulumi:test::askbase::askbase:infra:Services::services"
    builds = [r for r in stack.resources if r["name"].startswith(("qa-image", "botrunner-image"))]
    assert len(builds) == {"docker": 2, "cloudbuild": 4}[stack.program.image_builder]
    assert all(r["aliases"] == [{"parentUrn": services}] for r in builds)


def test_iam_members_are_named_by_what_they_grant_to_whom(stack: StackRun) -> None:
    iam = [r for r in stack.resources if policies.is_iam(r)]
    assert not [r["name"] for r in iam if re.search(r"-\d+$", r["name"])]  # nothing positional
    renamed = {r["name"]: r for r in iam if r["name"] in RENAMED}
    assert set(renamed) == set(RENAMED)
    keys = {
        f"serviceAccount:{account_id}@{PROJECT}.iam.gserviceaccount.com": key
        for key, (account_id, _) in ACCOUNTS.items()
    }
    keys["allUsers"] = "all-users"
    for name, r in renamed.items():
        assert r["aliases"] == [{"name": RENAMED[name]}], name
        # <grantee>-<role>-on-<target>: the grantee and the role are the grant's own.
        target = name.rsplit("-on-", 1)[1]
        assert name == iam_member_name(keys[r["inputs"]["member"]], r["inputs"]["role"], target)


def test_the_settle_wait_follows_the_bindings_not_their_names(stack: StackRun) -> None:
    """The wait's trigger hashes its grants' ids, and Google's id of a binding names the binding
    (resource, role, member), not the Pulumi name: after the rename the trigger is what it was."""
    settled = stack.named("iam-settled")
    grants = [r for r in stack.resources if r["urn"] in settled["dependencies"]]
    assert len(grants) == 17 and all(policies.is_iam(g) for g in grants)
    bindings = sorted(
        f"{next(g['inputs'][k] for k in IAM_TARGET_INPUTS if k in g['inputs'])}/{g['inputs']['role']}/"
        f"{g['inputs']['member']}"
        for g in grants
    )
    assert settled["inputs"]["triggers"]["grants"] == hashlib.sha256("\n".join(bindings).encode()).hexdigest()


def test_iam_member_name_is_readable_bounded_and_deterministic() -> None:
    assert iam_member_name("qa", "roles/storage.objectViewer", "kb") == "qa-storage-object-viewer-on-kb"
    assert iam_member_name("all-users", "roles/run.invoker", "qa") == "all-users-run-invoker-on-qa"
    custom = iam_member_name("a_b", "projects/p/roles/custom.Role", "x y")
    assert custom == "a-b-projects-p-roles-custom-role-on-x-y"
    role = "roles/secretmanager.secretVersionManager"
    long_a = iam_member_name("image-builder", role, "a-very-long-target")
    long_b = iam_member_name("image-builder", role, "a-very-long-targeT")
    assert max(len(long_a), len(long_b)) <= 63 and long_a != long_b  # cut, told apart by a hash
    assert long_a == iam_member_name("image-builder", role, "a-very-long-target")
    assert re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", long_a)


# --- reordering a list of grantees -------------------------------------------------------------------


def registry_grants(writers: list[Grantee]) -> list[dict]:
    """The IAM members a Registry declares for ``writers``, under fresh mocks."""
    from infra.components.registry import Registry, RegistryArgs

    mocks = use_mocks(BASE_CONFIG)

    @pulumi.runtime.test
    def run():
        return Registry("registry", RegistryArgs(project=PROJECT, region=REGION, writers=writers)).url

    run()
    return [r for r in mocks.resources if policies.is_iam(r)]


def test_reordering_grantees_keeps_every_name_and_moves_only_the_aliases() -> None:
    a = Grantee("fn-builder", f"serviceAccount:askbase-fn-builder@{PROJECT}.iam.gserviceaccount.com")
    b = Grantee("image-builder", f"serviceAccount:askbase-image-builder@{PROJECT}.iam.gserviceaccount.com")
    first, reordered = registry_grants([a, b]), registry_grants([b, a])

    def by_name(grants: list[dict]) -> dict[str, tuple[str, str]]:
        return {g["name"]: (g["inputs"]["member"], g["inputs"]["role"]) for g in grants}

    assert by_name(first) == by_name(reordered)  # same names, each for the same member and role
    assert set(by_name(first)) == {
        "fn-builder-artifactregistry-writer-on-images",
        "image-builder-artifactregistry-writer-on-images",
    }
    # The aliases are the positional names of the list as given: what a stack deployed with that
    # order holds.
    assert {g["name"]: g["aliases"] for g in first} == {
        "fn-builder-artifactregistry-writer-on-images": [{"name": "writer-0"}],
        "image-builder-artifactregistry-writer-on-images": [{"name": "writer-1"}],
    }
    assert {g["name"]: g["aliases"] for g in reordered} == {
        "fn-builder-artifactregistry-writer-on-images": [{"name": "writer-1"}],
        "image-builder-artifactregistry-writer-on-images": [{"name": "writer-0"}],
    }


def test_a_grantee_listed_twice_is_refused() -> None:
    a = Grantee("fn-builder", "serviceAccount:a@p.iam.gserviceaccount.com")
    with pytest.raises(ValueError, match="listed twice"):
        registry_grants([a, a])
