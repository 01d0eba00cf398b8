"""Cloud Storage: the knowledge-base bucket (snapshots) and the bucket for function source archives."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_gcp as gcp

from infra.components.base import Component, Grantee, iam_member_name
from infra.policies import one_bucket_condition


@dataclass(frozen=True)
class StorageArgs:
    project: str
    region: str
    kb_bucket: str
    sources_bucket: str
    # Noncurrent generations of each object kept by the lifecycle rule. LATEST.json is replaced on
    # every publish (compare-and-swap on its generation), so its old generations are the rollback trail.
    keep_generations: int = 7
    noncurrent_days: int = 30
    kb_readers: Sequence[Grantee] = ()  # restore snapshots
    kb_writers: Sequence[Grantee] = ()  # publish/prune snapshots
    # The function build. Google documents objectAdmin for a custom build account (it reads the source
    # and may write build metadata next to it); granted on this build-inputs bucket, where `pulumi up`
    # uploads each archive, and on ``function_build_bucket`` below, where the build reads it.
    sources_builders: Sequence[Grantee] = ()
    # gcf-v2-sources-<project number>-<region>: Cloud Functions (2nd gen) copies each function's source
    # archive into this bucket of its own and the build fetches it from there, so a custom build account
    # needs read access to it. Evidence: Google's "Building functions" page (the uploaded source "is
    # stored in a separate source bucket", gcf-v2-sources-PROJECT_NUMBER-REGION); the build failure
    # quoted in hashicorp/terraform-provider-google#20571 (a function whose storage_source is the
    # user's own bucket: "failed to download archive gs://gcf-v2-sources-<number>-us-central1/...:
    # Access to bucket gcf-v2-sources-... denied. You must grant Storage Object Viewer permission to"
    # its build account); Google's role list for a build account (Storage Object Admin, "for retrieving
    # the function source from the Cloud Storage bucket", cloud.google.com/run/docs/configuring/
    # services/build-service-account) and its Terraform example cloudfunctions2_basic_builder, which
    # grants it project-wide. Cloud Functions creates the bucket at the first deploy, so it has no IAM
    # policy to add a member to beforehand: the role is granted on the project, with an IAM condition
    # that admits that bucket and its objects only (infra/policies.py counts it as a bucket grant).
    function_build_bucket: pulumi.Input[str] | None = None
    # The image builds, which only read their uploaded build context.
    sources_readers: Sequence[Grantee] = ()


class Storage(Component):
    """Both buckets are private by construction: uniform bucket-level access (no object ACLs to leak
    through) and public access prevention enforced (an ``allUsers`` grant is refused by GCS itself)."""

    def __init__(
        self,
        name: str,
        args: StorageArgs,
        depends_on: Sequence[pulumi.Resource] = (),
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("Storage", name, depends_on, opts)
        self.kb_bucket = gcp.storage.Bucket(
            "kb",
            name=args.kb_bucket,
            project=args.project,
            location=args.region,
            storage_class="STANDARD",
            uniform_bucket_level_access=True,
            public_access_prevention="enforced",
            versioning=gcp.storage.BucketVersioningArgs(enabled=True),
            lifecycle_rules=[
                # Keep the newest N noncurrent generations of every object...
                gcp.storage.BucketLifecycleRuleArgs(
                    action=gcp.storage.BucketLifecycleRuleActionArgs(type="Delete"),
                    condition=gcp.storage.BucketLifecycleRuleConditionArgs(
                        num_newer_versions=args.keep_generations, with_state="ARCHIVED"
                    ),
                ),
                # ...and none older than a month: rollback is for recent mistakes.
                gcp.storage.BucketLifecycleRuleArgs(
                    action=gcp.storage.BucketLifecycleRuleActionArgs(type="Delete"),
                    condition=gcp.storage.BucketLifecycleRuleConditionArgs(
                        days_since_noncurrent_time=args.noncurrent_days, with_state="ARCHIVED"
                    ),
                ),
            ],
            # The knowledge base outlives the stack: `pulumi destroy` forgets the bucket, never
            # deletes it, and GCS refuses to delete a non-empty bucket anyway.
            force_destroy=False,
            deletion_policy="ABANDON",
            opts=self.child(),
        )
        self.sources_bucket = gcp.storage.Bucket(
            "function-sources",
            name=args.sources_bucket,
            project=args.project,
            location=args.region,
            uniform_bucket_level_access=True,
            public_access_prevention="enforced",
            # Build inputs only (function sources, image build contexts): regenerated by every
            # `pulumi up`, safe to delete with the stack.
            force_destroy=True,
            deletion_policy="DELETE",
            opts=self.child(),
        )
        self.grants: list[pulumi.CustomResource] = []
        # Legacy names were numbered across these four lists, in this order (see grant_each).
        numbered = 0
        kb, sources = (self.kb_bucket, "kb"), (self.sources_bucket, "function-sources")
        for (bucket, target), role, grantees, legacy_label in (
            (kb, "roles/storage.objectViewer", args.kb_readers, "kb-reader"),
            (kb, "roles/storage.objectUser", args.kb_writers, "kb-writer"),
            (sources, "roles/storage.objectAdmin", args.sources_builders, "sources-builder"),
            (sources, "roles/storage.objectViewer", args.sources_readers, "sources-reader"),
        ):
            self.grants += self.grant_each(
                gcp.storage.BucketIAMMember,
                role,
                grantees,
                target=target,
                legacy_label=legacy_label,
                legacy_start=numbered,
                bucket=bucket.name,
            )
            numbered += len(grantees)
        if args.function_build_bucket is not None:
            condition = pulumi.Output.from_input(args.function_build_bucket).apply(one_bucket_condition)
            self.grants += [
                gcp.projects.IAMMember(
                    iam_member_name(grantee.key, "roles/storage.objectAdmin", "gcf-sources"),
                    project=args.project,
                    role="roles/storage.objectAdmin",
                    member=grantee.member,
                    condition=gcp.projects.IAMMemberConditionArgs(
                        title="gcf-v2-sources bucket only",
                        description="The copy of each function's source that its build reads",
                        expression=condition,
                    ),
                    opts=self.child(),
                )
                for grantee in args.sources_builders
            ]
        self.register_outputs({"kb_bucket": self.kb_bucket.name, "sources_bucket": self.sources_bucket.name})
