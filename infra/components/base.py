"""What every askbase component shares: a type token prefix, child options, and IAM member grants.

IAM member resources are named by what they grant to whom and where (:func:`iam_member_name`), never
by their position in a list: reordering a list of callers must not rename, and so replace, a live
grant. Grants that used to be named by position carry their old name as an alias (see
:meth:`Component.grant_each`), so a stack deployed before the rename updates them in place.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import pulumi
import pulumi_gcp as gcp

TYPE_PREFIX = "askbase:infra"
# Resource names stay within the 63 characters most GCP ids allow, and readable in `pulumi preview`.
MAX_NAME_LENGTH = 63


@dataclass(frozen=True)
class Grantee:
    """Whom a role is granted to. ``key`` names the grant's resource (``member`` is often an Output,
    e.g. a service account's ``member``, unknown while the program declares)."""

    key: str  # e.g. the account key "scheduler-invoker"
    member: pulumi.Input[str]  # "serviceAccount:<email>", "allUsers", ...


EVERYONE = Grantee("all-users", "allUsers")


def iam_member_name(grantee: str, role: str, target: str) -> str:
    """``<grantee>-<role>-on-<target>``: what a grant gives to whom, and where.

    Lower-case, hyphenated (``roles/storage.objectViewer`` → ``storage-object-viewer``), e.g.
    ``qa-storage-object-viewer-on-kb``. A name longer than :data:`MAX_NAME_LENGTH` is cut and ends in a
    hash of the full name, so it stays unique and the same on every run.
    """
    raw = f"{grantee}-{role.removeprefix('roles/')}-on-{target}"
    name = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "-", raw).lower()
    name = re.sub(r"[^a-z0-9]+", "-", name).strip("-")
    if len(name) <= MAX_NAME_LENGTH:
        return name
    digest = hashlib.sha256(raw.encode()).hexdigest()[:8]
    return f"{name[: MAX_NAME_LENGTH - 9].rstrip('-')}-{digest}"


class Component(pulumi.ComponentResource):
    """A component whose children all wait for ``depends_on`` (e.g. the enabled APIs).

    Pulumi does not pass a component's ``depends_on`` down to its children, so each child is created
    with :meth:`child` instead of a bare ``ResourceOptions(parent=self)``.
    """

    def __init__(
        self,
        kind: str,
        name: str,
        depends_on: Sequence[pulumi.Resource] = (),
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__(f"{TYPE_PREFIX}:{kind}", name, None, opts)
        self._deps = list(depends_on)

    def child(
        self,
        *extra: pulumi.Resource | None,
        aliases: Sequence[pulumi.Input[str | pulumi.Alias]] | None = None,
    ) -> pulumi.ResourceOptions:
        deps = self._deps + [r for r in extra if r is not None]
        return pulumi.ResourceOptions(parent=self, depends_on=deps or None, aliases=aliases)

    def grant_each(
        self,
        iam_member: Callable[..., pulumi.CustomResource],
        role: str,
        grantees: Sequence[Grantee],
        *,
        target: str,
        legacy_label: str,
        legacy_start: int = 0,
        after: pulumi.Resource | None = None,
        **on: pulumi.Input[str],
    ) -> list[pulumi.CustomResource]:
        """One ``iam_member`` resource per grantee: ``role`` on the resource ``on`` names.

        ``target`` is that resource's logical name, for :func:`iam_member_name`. Each grant also gets
        the alias ``<legacy_label>-<legacy_start + position>``: the name it had when grants were
        numbered by list position. Renaming changes a resource's URN, and for an IAM member Pulumi
        would create the new one, then delete the old one, which removes the very binding the new
        one just added; with the alias, a stack deployed under the old names updates in place. The
        alias is only read for such stacks, so the lists keep the order they had then (and the alias
        can go once every stack has been updated).
        """
        names = [iam_member_name(g.key, role, target) for g in grantees]
        if len(set(names)) != len(names):
            raise ValueError(f"{role} on {target}: a grantee is listed twice ({names})")
        return [
            iam_member(
                name,
                role=role,
                member=grantee.member,
                **on,
                opts=self.child(after, aliases=[pulumi.Alias(name=f"{legacy_label}-{legacy_start + n}")]),
            )
            for n, (name, grantee) in enumerate(zip(names, grantees, strict=True))
        ]

    def grant_run_invokers(
        self,
        key: str,
        project: pulumi.Input[str],
        region: pulumi.Input[str],
        service: gcp.cloudrunv2.Service | gcp.cloudfunctionsv2.Function,
        public: bool,
        invokers: Sequence[Grantee],
    ) -> list[pulumi.CustomResource]:
        """roles/run.invoker on ``service`` for everyone (``public``) or for each of ``invokers``.

        A gen2 function is a Cloud Run service of the same name, so the same grant serves both
        (roles/cloudfunctions.invoker does not reach an HTTP gen2 function).
        """
        return self.grant_each(
            gcp.cloudrunv2.ServiceIamMember,
            "roles/run.invoker",
            [EVERYONE] if public else list(invokers),
            target=key,
            legacy_label=f"{key}-invoker",
            after=service,
            project=project,
            location=region,
            name=service.name,
        )
