"""Artifact Registry: one Docker repository for the service images and the function builds."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_gcp as gcp

from infra.components.base import Component, Grantee

REPOSITORY = "askbase"


@dataclass(frozen=True)
class RegistryArgs:
    project: str
    region: str
    writers: Sequence[Grantee] = ()  # push images and function builds
    keep_versions: int = 10


class Registry(Component):
    def __init__(
        self,
        name: str,
        args: RegistryArgs,
        depends_on: Sequence[pulumi.Resource] = (),
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("Registry", name, depends_on, opts)
        self.repository = gcp.artifactregistry.Repository(
            "images",
            project=args.project,
            location=args.region,
            repository_id=REPOSITORY,
            format="DOCKER",
            cleanup_policy_dry_run=False,  # a dry-run policy only logs what it would delete
            # Every deploy pushes new images; without cleanup the repository (billed per GB) only grows.
            cleanup_policies=[
                gcp.artifactregistry.RepositoryCleanupPolicyArgs(
                    id="keep-recent",
                    action="KEEP",
                    most_recent_versions=gcp.artifactregistry.RepositoryCleanupPolicyMostRecentVersionsArgs(
                        keep_count=args.keep_versions
                    ),
                ),
                gcp.artifactregistry.RepositoryCleanupPolicyArgs(
                    id="delete-old",
                    action="DELETE",
                    condition=gcp.artifactregistry.RepositoryCleanupPolicyConditionArgs(
                        older_than="2592000s"
                    ),
                ),
            ],
            opts=self.child(),
        )
        self.url = pulumi.Output.concat(args.region, "-docker.pkg.dev/", args.project, "/", REPOSITORY)
        self.grants = self.grant_each(
            gcp.artifactregistry.RepositoryIamMember,
            "roles/artifactregistry.writer",
            args.writers,
            target="images",
            legacy_label="writer",
            project=args.project,
            location=args.region,
            repository=self.repository.name,
        )
        self.register_outputs({"url": self.url})
