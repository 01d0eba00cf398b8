"""The Google APIs askbase uses, enabled before anything that needs them."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_gcp as gcp

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


@dataclass(frozen=True)
class ApisArgs:
    project: str
    apis: tuple[str, ...] = REQUIRED_APIS


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
        self.register_outputs({"apis": [s.service for s in self.services]})
