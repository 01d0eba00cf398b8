"""The Google APIs askbase uses, enabled before anything that needs them, and the service agents
askbase grants roles to.

On a fresh project an API answers "has not been used in project ... or it is disabled" for a while
after ``services.enable`` returns, and a just-created service agent is not yet known to IAM. So
nothing else starts until a settle wait (pulumiverse-time ``Sleep``) after both: :attr:`Apis.ready` is
what every other component depends on. The wait runs again only when the list of APIs changes.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_gcp as gcp
import pulumiverse_time as pulumi_time

from infra.components.base import Component

REQUIRED_APIS: tuple[str, ...] = (
    "run.googleapis.com",
    "cloudfunctions.googleapis.com",
    "cloudbuild.googleapis.com",
    "artifactregistry.googleapis.com",
    "firestore.googleapis.com",
    "pubsub.googleapis.com",
    "cloudscheduler.googleapis.com",
    "secretmanager.googleapis.com",
    "storage.googleapis.com",
    "iam.googleapis.com",
    "aiplatform.googleapis.com",
    "eventarc.googleapis.com",
)


# Service agents created explicitly (instead of lazily, on the API's first use) so their e-mail is an
# output: the Pub/Sub agent dead-letters and mints push tokens, and gets roles for it (messaging.py).
SERVICE_AGENTS: tuple[str, ...] = ("pubsub.googleapis.com",)
SETTLE_AFTER_ENABLE = "60s"


@dataclass(frozen=True)
class ApisArgs:
    project: str
    apis: tuple[str, ...] = REQUIRED_APIS
    agents: tuple[str, ...] = SERVICE_AGENTS
    settle: str = SETTLE_AFTER_ENABLE


class Apis(Component):
    """``projects.Service`` per API. ``disable_on_destroy=False``: tearing askbase down must never
    switch off an API that something else in the project may use."""

    def __init__(self, name: str, args: ApisArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("Apis", name, opts=opts)
        self.services = [
            gcp.projects.Service(
                api.split(".")[0],
                project=args.project,
                service=api,
                disable_on_destroy=False,
                disable_dependent_services=False,
                opts=self.child(),
            )
            for api in args.apis
        ]
        by_api = dict(zip(args.apis, self.services, strict=True))
        self.agents = {
            api.split(".")[0]: gcp.projects.ServiceIdentity(
                f"{api.split('.')[0]}-agent",
                project=args.project,
                service=api,
                opts=self.child(by_api.get(api)),
            )
            for api in args.agents
        }
        # "serviceAccount:service-<number>@gcp-sa-<api>.iam.gserviceaccount.com", as Google reports it.
        self.agent_members = {k: a.member for k, a in self.agents.items()}
        self.settled = pulumi_time.Sleep(
            "apis-settled",
            create_duration=args.settle,
            # Static: a later `pulumi up` waits again only when an API or agent is added.
            triggers={"apis": ",".join(sorted(args.apis)), "agents": ",".join(sorted(args.agents))},
            opts=self.child(*self.services, *self.agents.values()),
        )
        self.ready: list[pulumi.Resource] = [self.settled]
        self.register_outputs({"apis": [s.service for s in self.services]})
