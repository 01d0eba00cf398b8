"""Pulumi mocks for unit tests of the program: record every registered resource, synthesize outputs.

There is no Pulumi CLI or provider plugin on the test machines, so the program runs against
``pulumi.runtime.set_mocks``. Inputs arrive with Pulumi's camelCase wire names; outputs the cloud
would compute (emails, members, URLs, resource names) are made up here in their real formats, so
values that flow from one resource into another look as they would in a real deployment.

Also here, because only the tests use them: the reviewed grant table (:data:`GRANTS`,
:func:`expected_grants`), and the engine's URN and alias rules (:meth:`StackRun.urn`,
:meth:`StackRun.previous_urn`), with which the tests show that a stack deployed from an earlier layout
of the program finds every resource it holds.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import threading
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pulumi

from infra.components.identity import ACCOUNTS
from infra.components.registry import REPOSITORY
from infra.components.secrets import PREVIOUS_TOKEN_KEYS_SECRET_ID, SESSION_SECRET_ID, TOKEN_KEY_SECRET_ID
from infra.envvars import JOBS_TOPIC

if TYPE_CHECKING:
    from pulumi.runtime.proto import alias_pb2, resource_pb2

    from infra.config import InfraConfig

PROJECT = "askbase-prod-1"
PROJECT_NUMBER = "123456789012"
REGION = "europe-west1"
SOURCES_JSON = '[{"name":"docs","kind":"sitemap","url":"https://docs.example.com/"}]'

# Config the program reads, set with set_all_config before the program is imported or built.
BASE_CONFIG: dict[str, str] = {
    "gcp:project": PROJECT,
    "gcp:region": REGION,
    "askbase:sources": SOURCES_JSON,
    "askbase:answerer": "gemini",
    "askbase:geminiModel": "gemini-2.5-flash",
    "askbase:googleClientId": "1234-abc.apps.googleusercontent.com",
    "askbase:allowedDomain": "example.com",
    "askbase:adminEmails": '["Admin@Example.com", "ops@example.com"]',
    "askbase:conversationRetentionDays": "90",
    # Explicit: "auto" would probe this machine's Docker, and the recording must not depend on it.
    "askbase:imageBuilder": "docker",
}


# The input that names what an IAM member resource grants on, most specific first.
IAM_TARGET_INPUTS = (
    "bucket", "topic", "subscription", "secretId", "repository", "serviceAccountId", "name", "project",
)  # fmt: skip


class RecordingMonitor(pulumi.runtime.mocks.MockMonitor):
    """The mock monitor, noting each registration's URN, dependencies (``depends_on`` and the
    resources its inputs came from), parent and aliases for :class:`RecordingMocks` to record."""

    def __init__(self, mocks: RecordingMocks) -> None:
        super().__init__(mocks)
        self.current = threading.local()

    def RegisterResource(
        self, request: resource_pb2.RegisterResourceRequest
    ) -> resource_pb2.RegisterResourceResponse:
        self.current.registration = {
            "urn": self.make_urn(request.parent, request.type, request.name),
            "dependencies": sorted(set(request.dependencies)),
            "parent": request.parent,
            "aliases": [_alias(a) for a in request.aliases],
        }
        try:
            # Named, not super(): mypy exempts an unannotated callee by its name (pyproject.toml).
            response: resource_pb2.RegisterResourceResponse = (
                pulumi.runtime.mocks.MockMonitor.RegisterResource(self, request)
            )
            return response
        finally:
            self.current.registration = None


def _alias(alias: alias_pb2.Alias) -> dict[str, Any]:
    """An alias as the SDK sent it: ``{"urn"}``, or the spec's fields (empty ones left out)."""
    if alias.WhichOneof("alias") == "urn":
        return {"urn": alias.urn}
    spec = alias.spec
    fields = ("name", "type", "stack", "project", "parentUrn", "noParent")
    return {f: getattr(spec, f) for f in fields if getattr(spec, f)}


class RecordingMocks(pulumi.runtime.Mocks):
    """Records ``{"type", "name", "inputs", "state", "custom", "urn", "dependencies", "parent",
    "aliases"}`` for every resource registered (``dependencies``: URNs it waits for; ``urn`` and
    ``parent`` as the mocks spell URNs, see :meth:`StackRun.urn`)."""

    def __init__(self) -> None:
        self.resources: list[dict[str, Any]] = []
        self.calls: list[str] = []
        self.monitor = RecordingMonitor(self)

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        t, inputs = args.typ, dict(args.inputs)
        state: dict[str, Any] = dict(inputs)
        name = str(inputs.get("name") or args.name)
        project = inputs.get("project", PROJECT)
        loc = inputs.get("location") or inputs.get("region") or REGION
        rid = f"{args.name}_id"
        if t == "gcp:serviceaccount/account:Account":
            email = f"{inputs['accountId']}@{project}.iam.gserviceaccount.com"
            rid = f"projects/{project}/serviceAccounts/{email}"
            state.update(email=email, member=f"serviceAccount:{email}", name=rid, uniqueId="1000")
        elif t == "gcp:storage/bucket:Bucket":
            rid = name
            state.update(url=f"gs://{name}", selfLink=f"https://www.googleapis.com/storage/v1/b/{name}")
        elif t == "gcp:storage/bucketObject:BucketObject":
            rid = f"{inputs['bucket']}-{inputs['name']}"
        elif t == "gcp:cloudrunv2/service:Service":
            rid = f"projects/{project}/locations/{loc}/services/{name}"
            state.update(uri=f"https://{name}-{PROJECT_NUMBER}.{loc}.run.app", urls=[])
        elif t == "gcp:cloudfunctionsv2/function:Function":
            rid = f"projects/{project}/locations/{loc}/functions/{name}"
            service_config = dict(inputs.get("serviceConfig") or {})
            service_config.update(
                uri=f"https://{name}-{PROJECT_NUMBER}.{loc}.run.app",
                service=f"projects/{project}/locations/{loc}/services/{name}",
            )
            state.update(
                url=f"https://{loc}-{project}.cloudfunctions.net/{name}", serviceConfig=service_config
            )
        elif t == "gcp:pubsub/topic:Topic":
            rid = f"projects/{project}/topics/{name}"
        elif t == "gcp:pubsub/subscription:Subscription":
            rid = f"projects/{project}/subscriptions/{name}"
        elif t == "gcp:secretmanager/secret:Secret":
            rid = f"projects/{project}/secrets/{inputs['secretId']}"
            state["name"] = f"projects/{PROJECT_NUMBER}/secrets/{inputs['secretId']}"
        elif t == "gcp:secretmanager/secretVersion:SecretVersion":
            rid = f"{inputs['secret']}/versions/1"
            state.update(version="1", name=rid)
        elif t == "gcp:artifactregistry/repository:Repository":
            rid = f"projects/{project}/locations/{loc}/repositories/{inputs['repositoryId']}"
            state["name"] = inputs["repositoryId"]
        elif t == "gcp:firestore/database:Database":
            rid = f"projects/{project}/databases/{name}"
        elif t == "random:index/randomBytes:RandomBytes":
            raw = hashlib.sha256(args.name.encode()).digest()[: int(inputs.get("length", 32))]
            state.update(base64=base64.b64encode(raw).decode(), hex=raw.hex())
        elif t == "random:index/randomPassword:RandomPassword":
            state["result"] = "p" * int(inputs.get("length", 16))
        elif t == "docker-build:index:Image":
            digest = "sha256:" + hashlib.sha256(args.name.encode()).hexdigest()
            state.update(digest=digest, ref=f"{inputs['tags'][0]}@{digest}")
        elif t == "pulumi-python:dynamic/askbase:CloudBuildImage":
            digest = "sha256:" + hashlib.sha256(str(inputs["object"]).encode()).hexdigest()
            rid = f"build-{args.name}"
            state.update(
                digest=digest,
                ref=f"{inputs['image'].split('@')[0]}@{digest}",
                buildId=rid,
                logUrl=f"https://console.cloud.google.com/cloud-build/builds/{rid}",
            )
        elif t == "gcp:projects/serviceIdentity:ServiceIdentity":
            agent = str(inputs["service"]).split(".")[0]
            email = f"service-{PROJECT_NUMBER}@gcp-sa-{agent}.iam.gserviceaccount.com"
            rid = f"projects/{project}/services/{inputs['service']}"
            state.update(email=email, member=f"serviceAccount:{email}")
        elif t == "time:index/sleep:Sleep":
            rid = "2020-01-01T00:00:00Z"  # the provider's id is the creation time
        elif t.lower().endswith("iammember"):
            # A binding's id names the binding (resource, role, member), never the Pulumi name.
            on = next(inputs[k] for k in IAM_TARGET_INPUTS if k in inputs)
            rid = f"{on}/{inputs['role']}/{inputs['member']}"
        registration = getattr(self.monitor.current, "registration", None) or {}
        self.resources.append(
            {
                "type": t,
                "name": args.name,
                "inputs": inputs,
                "state": state,
                "custom": bool(args.custom),
                "urn": registration.get("urn", ""),
                "dependencies": registration.get("dependencies", []),
                "parent": registration.get("parent", ""),
                "aliases": registration.get("aliases", []),
            }
        )
        return rid, state

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict[str, Any], list[tuple[str, str]] | None]:
        """The invoke's result, and no check failures."""
        return self._result(args.token), []

    def _result(self, invoke: str) -> dict[str, Any]:
        """``invoke``: the function's token, e.g. gcp:organizations/getProject:getProject."""
        self.calls.append(invoke)
        if invoke.endswith("/getProject:getProject"):
            return {
                "number": PROJECT_NUMBER,
                "projectId": PROJECT,
                "name": PROJECT,
                "id": f"projects/{PROJECT}",
            }
        if invoke.endswith("/getClientConfig:getClientConfig"):
            return {
                "accessToken": "ya29.test",
                "project": PROJECT,
                "region": REGION,
                "id": "cfg",
                "zone": "",
            }
        raise NotImplementedError(f"unexpected invoke {invoke}")


@dataclass
class StackRun:
    """One run of the program under mocks: what it registered and what it exported."""

    resources: list[dict[str, Any]]
    outputs: dict[str, Any]
    program: Any
    calls: list[str] = field(default_factory=list)

    def of_type(self, token: str) -> list[dict[str, Any]]:
        return [r for r in self.resources if r["type"] == token]

    def one(self, token: str, **inputs: Any) -> dict[str, Any]:
        found = [r for r in self.of_type(token) if all(r["inputs"].get(k) == v for k, v in inputs.items())]
        assert len(found) == 1, f"expected one {token} with {inputs}, found {len(found)}"
        return found[0]

    def named(self, name: str, token: str | None = None) -> dict[str, Any]:
        found = [r for r in self.resources if r["name"] == name and token in (None, r["type"])]
        assert len(found) == 1, f"expected one resource named {name!r}, found {len(found)}"
        return found[0]

    def waits_for(self, resource: dict[str, Any], other: dict[str, Any]) -> bool:
        """Whether ``resource`` was registered depending on ``other`` (directly)."""
        return other["urn"] in resource["dependencies"]

    # --- URNs and aliases, as the engine resolves them ---------------------------------------------

    def parent(self, resource: dict[str, Any]) -> dict[str, Any] | None:
        """The component ``resource`` was declared in; None at the top (the stack)."""
        urn = resource.get("parent", "")
        if not urn or _qualified_type(urn) == STACK_TYPE:
            return None
        return next(r for r in self.resources if r["urn"] == urn)

    def urn(self, resource: dict[str, Any]) -> str:
        """The URN the engine gives ``resource``: the types of all its parents, then its own.

        (The mock monitor's URNs keep only the parent's own type, so they cannot show a component
        moving under another one.)
        """
        parent = self.parent(resource)
        qualified = resource["type"]
        if parent is not None:
            qualified = f"{_qualified_type(self.urn(parent))}${qualified}"
        stack, project = resource["urn"].split("::")[:2]
        return f"{stack}::{project}::{qualified}::{resource['name']}"

    def previous_urn(self, resource: dict[str, Any], before: Collection[str]) -> str | None:
        """The URN under which the engine finds ``resource`` in a stack that holds ``before``: its own
        URN, else the first of its aliases found there; None when it would be created."""
        urn = self.urn(resource)
        if urn in before:
            return urn
        return next((alias for alias in self._aliases(resource, before) if alias in before), None)

    def _aliases(self, resource: dict[str, Any], before: Collection[str]) -> list[str]:
        """The engine's ``generateAliases``: the resource's own aliases; and when its parent was found
        under an alias, its current and aliased names under that parent's old URN."""
        own = [self._collapse(resource, alias, before) for alias in resource.get("aliases", [])]
        parent = self.parent(resource)
        if parent is None:
            return own
        found_as = self.previous_urn(parent, before)
        if found_as is None or found_as == self.urn(parent):
            return own
        return own + [
            _inherited_child_alias(urn, parent["name"], found_as) for urn in (self.urn(resource), *own)
        ]

    def _collapse(self, resource: dict[str, Any], alias: dict[str, Any], before: Collection[str]) -> str:
        """The engine's ``collapseAliasToUrn``: unset fields are the resource's own; no parent given,
        its current parent; a parent given that was itself found under an alias, that alias."""
        if "urn" in alias:
            urn: str = alias["urn"]
            return urn
        stack, project = resource["urn"].split("::")[:2]
        stack = f"urn:pulumi:{alias['stack']}" if alias.get("stack") else stack
        project = alias.get("project") or project
        parent = self.parent(resource)
        parent_urn = self.urn(parent) if parent else ""
        if alias.get("parentUrn"):
            parent_urn = alias["parentUrn"]
            named = next((r for r in self.resources if self.urn(r) == parent_urn), None)
            if named is not None:
                parent_urn = self.previous_urn(named, before) or parent_urn
        if alias.get("noParent") or (parent_urn and _qualified_type(parent_urn) == STACK_TYPE):
            parent_urn = ""
        qualified = alias.get("type") or resource["type"]
        if parent_urn:
            qualified = f"{_qualified_type(parent_urn)}${qualified}"
        return f"{stack}::{project}::{qualified}::{alias.get('name') or resource['name']}"


STACK_TYPE = "pulumi:pulumi:Stack"


def _qualified_type(urn: str) -> str:
    return urn.split("::")[2]


def _inherited_child_alias(child_urn: str, parent_name: str, parent_alias: str) -> str:
    """The engine's ``inheritedChildAlias``: a child's URN under its parent's former URN. A child
    named ``<parent name>-...`` is renamed along with its parent."""
    name = child_urn.split("::", 3)[3]
    if name.startswith(parent_name):
        name = parent_alias.split("::", 3)[3] + name[len(parent_name) :]
    stack, project, parent_type = parent_alias.split("::")[:3]
    child_type = _qualified_type(child_urn).split("$")[-1]
    return f"{stack}::{project}::{parent_type}${child_type}::{name}"


def use_mocks(config: dict[str, str], secret_keys: Collection[str] | None = None) -> RecordingMocks:
    """Fresh mocks and config; call before building (the config namespace is the mocks' project).

    ``secret_keys``: the keys set with ``pulumi config set --secret``; by default every key infra reads
    as a secret (``infra.config.SECRET_KEYS``) that ``config`` holds, as an operator following
    docs/deploy.md sets them (infra refuses them in plain text)."""
    if secret_keys is None:
        from infra.config import SECRET_KEYS

        secret_keys = [k for k in config if k.startswith("askbase:") and k.split(":", 1)[1] in SECRET_KEYS]
    pulumi.runtime.set_all_config(config, secret_keys=list(secret_keys))
    mocks = RecordingMocks()
    # Pulumi's runtime asks asyncio.get_event_loop() for this thread's loop. A test that ran asyncio.run()
    # earlier in the process (the crawler's do) leaves none: asyncio.run ends with set_event_loop(None),
    # after which get_event_loop() raises "There is no current event loop". Give the thread one then.
    try:
        asyncio.get_event_loop_policy().get_event_loop()
    except RuntimeError:
        asyncio.set_event_loop(asyncio.new_event_loop())
    pulumi.runtime.set_mocks(mocks, project="askbase", stack="test", preview=False, monitor=mocks.monitor)
    return mocks


def run_stack(config: dict[str, str], build_dir: Path) -> StackRun:
    """Build the whole program under mocks and wait until every resource is registered.

    ``pulumi.runtime.test(_run)()`` waits for the returned Output *and* for every outstanding RPC, so
    when it returns the recording is complete and plain asserts on it are real asserts.
    """
    mocks = use_mocks(config)
    from infra.config import load_config
    from infra.program import build

    captured: dict[str, Any] = {}

    def _run() -> pulumi.Output[None]:
        program = build(load_config(), build_dir=build_dir)
        captured["program"] = program
        return pulumi.Output.all(**program.outputs).apply(lambda values: captured.update(outputs=values))

    # Called, not used as a decorator: the decorator is unannotated, and would make _run untyped.
    pulumi.runtime.test(_run)()
    assert "outputs" in captured, "the program's outputs never resolved"
    return StackRun(
        resources=mocks.resources, outputs=captured["outputs"], program=captured["program"], calls=mocks.calls
    )


# --- the reviewed grant table -------------------------------------------------------------------------

# account key -> {(role, where)}. "where" is "project" or "<kind>:<logical name>". What each account
# may do, reviewed; the program's wiring (infra/program.py) must grant exactly this.
GRANTS: dict[str, frozenset[tuple[str, str]]] = {
    "qa": frozenset(
        {
            ("roles/datastore.user", "project"),
            ("roles/storage.objectViewer", "bucket:kb"),
            ("roles/secretmanager.secretAccessor", "secret:session-secret"),
            # No token key: the bot pages call botrunner's control API, which holds it.
            ("roles/run.invoker", "run:botrunner"),  # bot pages call the control plane
            ("roles/run.invoker", "run:scrape"),  # admin "scrape now"
        }
    ),
    "botrunner": frozenset(
        {
            ("roles/datastore.user", "project"),
            ("roles/secretmanager.secretAccessor", "secret:token-key"),
        }
    ),
    "telegram-fn": frozenset(
        {
            ("roles/datastore.user", "project"),
            ("roles/pubsub.publisher", "topic:jobs"),
        }
    ),
    "discord-fn": frozenset(
        {
            ("roles/datastore.user", "project"),
            ("roles/pubsub.publisher", "topic:jobs"),
        }
    ),
    "scrape-fn": frozenset(
        {
            ("roles/datastore.user", "project"),
            ("roles/storage.objectUser", "bucket:kb"),
        }
    ),
    "scheduler-invoker": frozenset(
        {
            ("roles/run.invoker", "run:botrunner"),
            ("roles/run.invoker", "run:scrape"),
        }
    ),
    "pubsub-push": frozenset({("roles/run.invoker", "run:botrunner")}),
    "fn-builder": frozenset(
        {
            ("roles/logging.logWriter", "project"),
            ("roles/storage.objectAdmin", "bucket:function-sources"),  # `pulumi up` uploads here
            ("roles/storage.objectAdmin", "bucket:gcf-sources"),  # the copy the build reads
            ("roles/artifactregistry.writer", "repo:askbase"),
        }
    ),
    # The image builds when Cloud Build builds them (askbase:imageBuilder cloudbuild/auto): read the
    # uploaded build context, push the image, write the build log. Unused with Docker builds.
    "image-builder": frozenset(
        {
            ("roles/logging.logWriter", "project"),
            ("roles/storage.objectViewer", "bucket:function-sources"),
            ("roles/artifactregistry.writer", "repo:askbase"),
        }
    ),
}


# Added to GRANTS for a stack whose answerer is Gemini (infra/components/identity.py, VERTEX_ROLES).
GEMINI_GRANTS: dict[str, frozenset[tuple[str, str]]] = {
    "qa": frozenset({("roles/aiplatform.user", "project")}),
}

# Added to GRANTS while a token-key rotation keeps older keys (askbase:previousTokenKeys): botrunner,
# the token key's one reader, reads them too (infra/components/secrets.py).
PREVIOUS_TOKEN_KEYS_GRANTS: dict[str, frozenset[tuple[str, str]]] = {
    "botrunner": frozenset({("roles/secretmanager.secretAccessor", "secret:token-keys-previous")}),
}


def expected_grants(
    cfg: InfraConfig, project_number: str = PROJECT_NUMBER
) -> dict[str, set[tuple[str, str, str]]]:
    """:data:`GRANTS` with logical places resolved: member -> {(role, kind, target name)}.
    ``project_number``: the mocks' by default; a real project's for its stack export.

    The shape :func:`infra.policies.check_least_privilege` takes; a stack export can be checked
    against it as well as the mocks' recording.
    """
    from infra.program import BOTRUNNER_SERVICE, FUNCTION_NAMES  # after the test has set the config

    extra = [GEMINI_GRANTS] if cfg.answerer == "gemini" else []
    if cfg.previous_token_keys is not None:
        extra.append(PREVIOUS_TOKEN_KEYS_GRANTS)

    where = {
        "project": ("project", cfg.project),
        "bucket:kb": ("bucket", cfg.kb_bucket),
        "bucket:function-sources": ("bucket", cfg.sources_bucket),
        # Cloud Functions' own bucket (infra/components/storage.py, StorageArgs.function_build_bucket).
        "bucket:gcf-sources": ("bucket", f"gcf-v2-sources-{project_number}-{cfg.region}"),
        "secret:token-key": ("secret", TOKEN_KEY_SECRET_ID),
        "secret:session-secret": ("secret", SESSION_SECRET_ID),
        "secret:token-keys-previous": ("secret", PREVIOUS_TOKEN_KEYS_SECRET_ID),
        "topic:jobs": ("topic", JOBS_TOPIC),
        "run:botrunner": ("run", BOTRUNNER_SERVICE),
        "run:scrape": ("run", FUNCTION_NAMES["scrape"]),
        "repo:askbase": ("repo", REPOSITORY),
    }
    return {
        f"serviceAccount:{ACCOUNTS[key][0]}@{cfg.project}.iam.gserviceaccount.com": {
            (role, *where[place])
            for role, place in grants.union(*(more.get(key, frozenset()) for more in extra))
        }
        for key, grants in GRANTS.items()
    }
