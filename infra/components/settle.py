"""A wait for IAM to apply the grants that builds and new revisions check when they start.

Google documents IAM changes as visible "typically within 60 seconds", occasionally longer, and Cloud
Build, Cloud Functions and Cloud Run check them at start: the build accounts' access to the sources,
the registry and the logs, each runtime account's access to its secrets. Whatever starts a build or a
revision depends on :attr:`GrantsSettled.wait`, so a first ``pulumi up`` on a fresh project does not
race its own grants.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumiverse_time as pulumi_time

from infra.components.base import Component

IAM_SETTLE = "90s"


@dataclass(frozen=True)
class GrantsSettledArgs:
    grants: Sequence[pulumi.CustomResource]  # every grant a build or a start checks
    duration: str = IAM_SETTLE


class GrantsSettled(Component):
    """One ``Sleep`` after ``grants``. Its trigger is the set of those grants: a later ``pulumi up``
    waits again only when one of them changes.

    State migration: the ``Sleep`` was a top-level resource ("iam-settled") before this component
    held it. Pulumi puts a resource's parent chain into its URN, so it carries
    ``Alias(parent=ROOT_STACK_RESOURCE)``: a stack deployed before keeps its wait instead of replacing
    it (and waiting again).
    """

    def __init__(
        self, name: str, args: GrantsSettledArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("GrantsSettled", name, args.grants, opts)
        self.wait = pulumi_time.Sleep(
            "iam-settled",
            create_duration=args.duration,
            triggers={
                "grants": pulumi.Output.all(*[g.id for g in args.grants]).apply(
                    lambda ids: hashlib.sha256("\n".join(sorted(ids)).encode()).hexdigest()
                )
            },
            opts=self.child(aliases=[pulumi.Alias(parent=pulumi.ROOT_STACK_RESOURCE)]),
        )
        self.register_outputs({})
