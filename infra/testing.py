"""Pulumi mocks for unit tests of the program: record every registered resource, synthesize outputs.

There is no Pulumi CLI or provider plugin on the test machines, so the program runs against
``pulumi.runtime.set_mocks``. Inputs arrive with Pulumi's camelCase wire names; outputs the cloud
would compute (emails, members, URLs, resource names) are made up here in their real formats, so
values that flow from one resource into another look as they would in a real deployment.
"""

from __future__ import annotations

import base64
import hashlib
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi

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


class RecordingMonitor(pulumi.runtime.mocks.MockMonitor):
    """The mock monitor, noting each registration's URN and dependencies (``depends_on`` and the
    resources its inputs came from) for :class:`RecordingMocks` to record."""

    def __init__(self, mocks: RecordingMocks) -> None:
        super().__init__(mocks)
        self.current = threading.local()

    def RegisterResource(self, request):
        self.current.registration = {
            "urn": self.make_urn(request.parent, request.type, request.name),
            "dependencies": sorted(set(request.dependencies)),
        }
        try:
            return super().RegisterResource(request)
        finally:
            self.current.registration = None


class RecordingMocks(pulumi.runtime.Mocks):
    """Records ``{"type", "name", "inputs", "state", "custom", "urn", "dependencies"}`` for every
    resource registered (``dependencies``: URNs it waits for)."""

    def __init__(self) -> None:
        self.resources: list[dict[str, Any]] = []
        self.calls: list[str] = []
        self.monitor = RecordingMonitor(self)

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict]:
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
            }
        )
        return rid, state

    def call(self, args: pulumi.runtime.MockCallArgs) -> dict:
        invoke = args.token  # the function's token, e.g. gcp:organizations/getProject:getProject
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


def use_mocks(config: dict[str, str]) -> RecordingMocks:
    """Fresh mocks and config; call before building (the config namespace is the mocks' project)."""
    pulumi.runtime.set_all_config(config)
    mocks = RecordingMocks()
    pulumi.runtime.set_mocks(mocks, project="askbase", stack="test", preview=False, monitor=mocks.monitor)
    return mocks


def run_stack(config: dict[str, str], build_dir: Path) -> StackRun:
    """Build the whole program under mocks and wait until every resource is registered.

    ``@pulumi.runtime.test`` waits for the returned Output *and* for every outstanding RPC, so when
    ``_run()`` returns the recording is complete and plain asserts on it are real asserts.
    """
    mocks = use_mocks(config)
    from infra.config import load_config
    from infra.program import build

    captured: dict[str, Any] = {}

    @pulumi.runtime.test
    def _run():
        program = build(load_config(), build_dir=build_dir)
        captured["program"] = program
        return pulumi.Output.all(**program.outputs).apply(lambda values: captured.update(outputs=values))

    _run()
    assert "outputs" in captured, "the program's outputs never resolved"
    return StackRun(
        resources=mocks.resources, outputs=captured["outputs"], program=captured["program"], calls=mocks.calls
    )
