"""Service accounts: one per deployable, and the grants that GCP only offers project-wide.

Every other grant is made on the resource it is about, by the component that owns the resource
(bucket, topic, secret, Cloud Run service), to the :attr:`Identity.grantees` ``infra/program.py``
hands it. The complete, reviewed list of what each account may do is the tests' (``GRANTS`` in
``infra/testing.py``); ``infra/policies.py`` checks the recorded resources against it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_gcp as gcp

from infra import deployables
from infra.components.base import Component, Grantee

# key -> (account id, what it runs as): each deployable's account, then its callers' and builders'
# (infra/deployables.py).
ACCOUNTS: dict[str, tuple[str, str]] = {key: (a.id, a.description) for key, a in deployables.ACCOUNTS.items()}

# Roles with no resource-level binding for what askbase does: Firestore data access
# (roles/datastore.user is project-wide) and the builds' log writing.
PROJECT_ROLES: dict[str, tuple[str, ...]] = {
    "qa": ("roles/datastore.user",),
    "botrunner": ("roles/datastore.user",),
    "telegram-fn": ("roles/datastore.user",),
    "discord-fn": ("roles/datastore.user",),
    "scrape-fn": ("roles/datastore.user",),
    "fn-builder": ("roles/logging.logWriter",),
    "image-builder": ("roles/logging.logWriter",),
}

# Vertex AI model calls, project-wide too, and only for a stack that answers with Gemini: qa is the one
# caller (botrunner asks qa), and with no ``ASKBASE_BOT_MODELS`` (infra sets none) Settings offers bots
# the Gemini model only when it is the stack's answerer. An extractive stack's public service holds no
# Vertex AI role at all.
VERTEX_ROLES: dict[str, tuple[str, ...]] = {"qa": ("roles/aiplatform.user",)}


def project_roles(vertex_ai: bool) -> dict[str, tuple[str, ...]]:
    """Each account's project-level roles: :data:`PROJECT_ROLES`, plus :data:`VERTEX_ROLES` when the stack
    answers with Gemini."""
    if not vertex_ai:
        return PROJECT_ROLES
    return {key: roles + VERTEX_ROLES.get(key, ()) for key, roles in PROJECT_ROLES.items()}


@dataclass(frozen=True)
class IdentityArgs:
    project: str
    vertex_ai: bool = False
    """Whether the stack answers with Gemini (``askbase:answerer`` is ``gemini``): grants
    :data:`VERTEX_ROLES`."""


class Identity(Component):
    """Creates the accounts and their project-level roles; exposes ``emails`` and ``grantees``
    (each account as a :class:`Grantee`, for the grants other components make)."""

    def __init__(
        self,
        name: str,
        args: IdentityArgs,
        depends_on: Sequence[pulumi.Resource] = (),
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("Identity", name, depends_on, opts)
        self.accounts: dict[str, gcp.serviceaccount.Account] = {}
        for key, (account_id, description) in ACCOUNTS.items():
            self.accounts[key] = gcp.serviceaccount.Account(
                key,
                project=args.project,
                account_id=account_id,
                display_name=account_id,
                description=description,
                opts=self.child(),
            )
        self.emails = {k: a.email for k, a in self.accounts.items()}
        self.grantees = {k: Grantee(k, a.member) for k, a in self.accounts.items()}
        self.project_grants = [
            gcp.projects.IAMMember(
                f"{key}-{role.split('/')[1].replace('.', '-')}",
                project=args.project,
                role=role,
                member=self.grantees[key].member,
                opts=self.child(),
            )
            for key, roles in project_roles(args.vertex_ai).items()
            for role in roles
        ]
        self.register_outputs({"emails": self.emails})
