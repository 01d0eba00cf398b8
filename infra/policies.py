"""Security rules for the askbase stack, as plain functions over registered resources.

``pulumi-policy`` needs the Pulumi CLI to run, so the rules are ordinary functions: each takes the
resources a program registered (``{"type", "name", "inputs"}`` with Pulumi's camelCase wire names, as
recorded by the test mocks or read from ``pulumi stack export``) and returns a list of violations,
empty when the stack is fine. :func:`check_all` runs them together.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

Resource = Mapping[str, Any]  # {"type": token, "name": logical name, "inputs": {...}}
PUBLIC_MEMBERS = frozenset({"allUsers", "allAuthenticatedUsers"})
BASIC_ROLES = frozenset({"roles/owner", "roles/editor", "roles/viewer"})
# Roles GCP offers on the resource itself: never acceptable project-wide in this stack.
RESOURCE_SCOPED_ROLE_PREFIXES = (
    "roles/storage.",
    "roles/pubsub.",
    "roles/secretmanager.",
    "roles/run.",
    "roles/cloudfunctions.",
    "roles/artifactregistry.",
    "roles/iam.serviceAccount",
)
_IAM_TYPE = re.compile(r"(?i)iam(member|binding|policy)$")
# IAM resource module prefix -> (kind of target, input naming the target)
_TARGETS: tuple[tuple[str, str, str], ...] = (
    ("storage/", "bucket", "bucket"),
    ("pubsub/topic", "topic", "topic"),
    ("pubsub/subscription", "subscription", "subscription"),
    ("secretmanager/", "secret", "secretId"),
    ("cloudrunv2/", "run", "name"),
    ("cloudrun/", "run", "service"),
    ("cloudfunctionsv2/", "function", "cloudFunction"),
    ("artifactregistry/", "repo", "repository"),
    ("serviceaccount/", "service-account", "serviceAccountId"),
    ("projects/", "project", "project"),
)


# A project-level grant whose IAM condition admits one bucket and its objects and nothing else: how a
# role reaches a bucket this program does not own (Cloud Functions creates gcf-v2-sources-*), which
# therefore has no IAM policy to add a member to before it exists.
_ONE_BUCKET = re.compile(
    r'resource\.name == "projects/_/buckets/(?P<a>[a-z0-9][a-z0-9._-]*)" \|\| '
    r'resource\.name\.startsWith\("projects/_/buckets/(?P<b>[a-z0-9][a-z0-9._-]*)/"\)'
)


def one_bucket_condition(bucket: str) -> str:
    """The IAM condition expression that limits a project-level grant to ``bucket`` and its objects."""
    expression = (
        f'resource.name == "projects/_/buckets/{bucket}" || '
        f'resource.name.startsWith("projects/_/buckets/{bucket}/")'
    )
    assert _ONE_BUCKET.fullmatch(expression), bucket
    return expression


def _type(r: Resource) -> str:
    return str(r["type"])


def _is(r: Resource, token: str) -> bool:
    return _type(r) == token


def is_iam(r: Resource) -> bool:
    return bool(_IAM_TYPE.search(_type(r).rsplit(":", 1)[-1]))


def iam_target(r: Resource) -> tuple[str, str]:
    """``(kind, target name)`` of an IAM resource, e.g. ``("bucket", "p-askbase-kb")``; a project grant
    conditioned to one bucket (:func:`one_bucket_condition`) is a grant on that bucket."""
    module = _type(r).split(":")[1]  # e.g. "pubsub/topicIAMMember"
    inputs = r.get("inputs", {})
    if module.startswith("projects/"):
        found = _ONE_BUCKET.fullmatch(str((inputs.get("condition") or {}).get("expression", "")))
        if found and found["a"] == found["b"]:
            return "bucket", found["a"]  # conditioned to one bucket: a grant on that bucket
    for prefix, kind, key in _TARGETS:
        if module.startswith(prefix):
            return kind, str(inputs.get(key, ""))
    return module, ""


def iam_members(r: Resource) -> list[str]:
    inputs = r.get("inputs", {})
    if "member" in inputs:
        return [str(inputs["member"])]
    if "members" in inputs:
        return [str(m) for m in inputs["members"]]
    if "policyData" in inputs:  # a whole policy: look for members by pattern
        return re.findall(
            r'"((?:allUsers|allAuthenticatedUsers|[a-zA-Z]+:[^"]+))"', str(inputs["policyData"])
        )
    return []


def grants_by_member(resources: Iterable[Resource]) -> dict[str, set[tuple[str, str, str]]]:
    """member -> {(role, kind, target)} over every IAM member/binding resource."""
    out: dict[str, set[tuple[str, str, str]]] = {}
    for r in resources:
        if not is_iam(r):
            continue
        role = str(r["inputs"].get("role", ""))
        kind, target = iam_target(r)
        for member in iam_members(r):
            out.setdefault(member, set()).add((role, kind, target))
    return out


def check_no_public_access(resources: Sequence[Resource], public_targets: Iterable[str]) -> list[str]:
    """``allUsers``/``allAuthenticatedUsers`` only as ``roles/run.invoker`` on the named public services.

    Also: no Cloud Run service may switch its IAM check off (``invokerIamDisabled``) unless public.
    """
    public = set(public_targets)
    problems = []
    for r in resources:
        if is_iam(r):
            kind, target = iam_target(r)
            role = r["inputs"].get("role", "")
            for member in iam_members(r):
                if member not in PUBLIC_MEMBERS:
                    continue
                if kind == "run" and role == "roles/run.invoker" and target in public:
                    continue
                problems.append(
                    f"{r['name']}: {member} holds {role or 'a role'} on private {kind} {target!r}"
                )
        elif (
            _is(r, "gcp:cloudrunv2/service:Service")
            and r["inputs"].get("invokerIamDisabled")
            and r["inputs"].get("name") not in public
        ):
            problems.append(f"{r['name']}: private service has invokerIamDisabled")
    return problems


def check_least_privilege(
    resources: Sequence[Resource],
    allowed: Mapping[str, Iterable[tuple[str, str, str]]],
) -> list[str]:
    """Each listed member holds exactly its listed ``(role, kind, target)`` grants, no basic role is
    granted to anyone, and resource-scoped roles are never granted project-wide."""
    actual = grants_by_member(resources)
    problems = []
    for member, grants in allowed.items():
        want, got = set(grants), actual.get(member, set())
        for extra in sorted(got - want):
            problems.append(f"{member}: unexpected grant {extra}")
        for missing in sorted(want - got):
            problems.append(f"{member}: missing grant {missing}")
    for member, grants in actual.items():
        for role, kind, target in sorted(grants):
            if role in BASIC_ROLES:
                problems.append(f"{member}: basic role {role} on {kind} {target!r}")
            if kind == "project" and role.startswith(RESOURCE_SCOPED_ROLE_PREFIXES):
                problems.append(f"{member}: {role} granted project-wide; grant it on the resource")
    return problems


def check_scheduler_oidc(resources: Sequence[Resource], invoker_email: str) -> list[str]:
    """Every Scheduler job calls over HTTPS with an OIDC token of the invoker account, and the token's
    audience is the target's URL (the URL called, or the service origin it lies under)."""
    problems = []
    for r in resources:
        if not _is(r, "gcp:cloudscheduler/job:Job"):
            continue
        target = r["inputs"].get("httpTarget") or {}
        oidc = target.get("oidcToken") or {}
        uri, audience = str(target.get("uri", "")), str(oidc.get("audience", ""))
        if not oidc:
            problems.append(f"{r['name']}: no OIDC token")
            continue
        if oidc.get("serviceAccountEmail") != invoker_email:
            problems.append(f"{r['name']}: token of {oidc.get('serviceAccountEmail')!r}, not the invoker")
        if not uri.startswith("https://"):
            problems.append(f"{r['name']}: target {uri!r} is not https")
        if not audience or not (uri == audience or uri.startswith(audience.rstrip("/") + "/")):
            problems.append(f"{r['name']}: audience {audience!r} is not the URL of target {uri!r}")
    return problems


def check_push_oidc_and_dlq(
    resources: Sequence[Resource], push_email: str, min_attempts: int = 5
) -> list[str]:
    """Every push subscription authenticates with an OIDC token of the push account (audience = the
    endpoint's service), retries with backoff and dead-letters after a bounded number of attempts."""
    problems = []
    topics = {str(r["inputs"].get("name")) for r in resources if _is(r, "gcp:pubsub/topic:Topic")}
    for r in resources:
        if not _is(r, "gcp:pubsub/subscription:Subscription"):
            continue
        push = r["inputs"].get("pushConfig")
        if not push:
            continue
        oidc = push.get("oidcToken") or {}
        endpoint = str(push.get("pushEndpoint", ""))
        if not oidc:
            problems.append(f"{r['name']}: push without an OIDC token")
        else:
            if oidc.get("serviceAccountEmail") != push_email:
                problems.append(
                    f"{r['name']}: token of {oidc.get('serviceAccountEmail')!r}, not the push account"
                )
            audience = str(oidc.get("audience", ""))
            if not audience or not endpoint.startswith(audience.rstrip("/") + "/"):
                problems.append(f"{r['name']}: audience {audience!r} does not match endpoint {endpoint!r}")
        if not endpoint.startswith("https://"):
            problems.append(f"{r['name']}: endpoint {endpoint!r} is not https")
        dlq = r["inputs"].get("deadLetterPolicy") or {}
        dead_topic = str(dlq.get("deadLetterTopic", ""))
        if not dead_topic:
            problems.append(f"{r['name']}: no dead-letter topic")
        elif dead_topic.rsplit("/", 1)[-1] not in topics:
            problems.append(f"{r['name']}: dead-letter topic {dead_topic!r} is not in the stack")
        attempts = dlq.get("maxDeliveryAttempts")
        # Numbers cross the Pulumi wire as floats: 5 arrives as 5.0.
        if not isinstance(attempts, int | float) or not min_attempts <= attempts <= 100:
            problems.append(f"{r['name']}: maxDeliveryAttempts {attempts!r} not in {min_attempts}..100")
        if not r["inputs"].get("retryPolicy"):
            problems.append(f"{r['name']}: no retry policy (immediate redelivery storms)")
    return problems


def check_bucket_hardening(
    resources: Sequence[Resource], versioned: Iterable[str], keep: int = 7
) -> list[str]:
    """Every bucket: uniform access and public access prevention enforced. Buckets in ``versioned``:
    object versioning plus a lifecycle that keeps ``keep`` noncurrent generations and ages out the rest."""
    want_versioned = set(versioned)
    problems = []
    for r in resources:
        if not _is(r, "gcp:storage/bucket:Bucket"):
            continue
        inputs, name = r["inputs"], str(r["inputs"].get("name", r["name"]))
        if inputs.get("uniformBucketLevelAccess") is not True:
            problems.append(f"{name}: uniform bucket-level access is off")
        if inputs.get("publicAccessPrevention") != "enforced":
            problems.append(f"{name}: public access prevention is not enforced")
        if name not in want_versioned:
            continue
        if not (inputs.get("versioning") or {}).get("enabled"):
            problems.append(f"{name}: object versioning is off")
        conditions = [
            (rule.get("condition") or {})
            for rule in inputs.get("lifecycleRules") or []
            if (rule.get("action") or {}).get("type") == "Delete"
        ]
        if not any(c.get("numNewerVersions") == keep for c in conditions):
            problems.append(f"{name}: no lifecycle rule keeping {keep} noncurrent generations")
        if not any(c.get("daysSinceNoncurrentTime") for c in conditions):
            problems.append(f"{name}: no lifecycle rule deleting old noncurrent generations")
        if inputs.get("forceDestroy"):
            problems.append(f"{name}: force_destroy would delete the knowledge base with the stack")
    return problems


def check_firestore(
    resources: Sequence[Resource], ttl_collections: Iterable[str], ttl_field: str
) -> list[str]:
    """The database is protected from deletion, every TTL policy exists, and a backup schedule is set."""
    problems = []
    dbs = [r for r in resources if _is(r, "gcp:firestore/database:Database")]
    if not dbs:
        problems.append("no Firestore database")
    for db in dbs:
        if db["inputs"].get("deletionPolicy") not in ("ABANDON", "PREVENT"):
            problems.append(
                f"{db['name']}: deletion policy {db['inputs'].get('deletionPolicy')!r} deletes data"
            )
        if db["inputs"].get("deleteProtectionState") != "DELETE_PROTECTION_ENABLED":
            problems.append(f"{db['name']}: delete protection is off")
    ttl = {
        r["inputs"].get("collection")
        for r in resources
        if _is(r, "gcp:firestore/field:Field")
        and r["inputs"].get("field") == ttl_field
        and "ttlConfig" in r["inputs"]
    }
    for collection in ttl_collections:
        if collection not in ttl:
            problems.append(f"no TTL policy on {collection}.{ttl_field}")
    backups = [r for r in resources if _is(r, "gcp:firestore/backupSchedule:BackupSchedule")]
    if not any(
        b["inputs"].get("dailyRecurrence") is not None and b["inputs"].get("retention") for b in backups
    ):
        problems.append("no daily Firestore backup schedule with a retention")
    return problems


def check_explicit_deletion_settings(resources: Sequence[Resource]) -> list[str]:
    """pulumi-gcp 10 defaults that surprise: say them out loud on every service and database."""
    problems = []
    for r in resources:
        if _is(r, "gcp:cloudrunv2/service:Service") and "deletionProtection" not in r["inputs"]:
            problems.append(f"{r['name']}: deletion_protection left to the provider default")
        if _is(r, "gcp:firestore/database:Database") and "deletionPolicy" not in r["inputs"]:
            problems.append(f"{r['name']}: deletion_policy left to the provider default")
    return problems


def check_explicit_start_commands(resources: Sequence[Resource]) -> list[str]:
    """Every Cloud Run container names the command it starts with: what runs is decided by the service
    spec, not by whichever image it points at (a wrong image then fails to start instead of serving
    another deployable's app)."""
    problems = []
    for r in resources:
        if not _is(r, "gcp:cloudrunv2/service:Service"):
            continue
        containers = (r["inputs"].get("template") or {}).get("containers") or []
        if not containers:
            problems.append(f"{r['name']}: no container in the template")
        for n, container in enumerate(containers):
            if not container.get("commands"):
                problems.append(f"{r['name']}: container {n} leaves its command to the image")
    return problems


def check_all(
    resources: Sequence[Resource],
    *,
    public_targets: Iterable[str],
    allowed_grants: Mapping[str, Iterable[tuple[str, str, str]]],
    invoker_email: str,
    push_email: str,
    versioned_buckets: Iterable[str],
    ttl_collections: Iterable[str],
    ttl_field: str = "expire_at",
    keep_generations: int = 7,
) -> list[str]:
    """Every rule at once; an empty list means the stack passes."""
    return [
        *check_no_public_access(resources, public_targets),
        *check_least_privilege(resources, allowed_grants),
        *check_scheduler_oidc(resources, invoker_email),
        *check_push_oidc_and_dlq(resources, push_email),
        *check_bucket_hardening(resources, versioned_buckets, keep_generations),
        *check_firestore(resources, ttl_collections, ttl_field),
        *check_explicit_deletion_settings(resources),
        *check_explicit_start_commands(resources),
    ]
