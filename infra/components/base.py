"""What every askbase component shares: a type token prefix, child options, Cloud Run invoker grants."""

from __future__ import annotations

from collections.abc import Sequence

import pulumi
import pulumi_gcp as gcp

TYPE_PREFIX = "askbase:infra"
PUBLIC_MEMBER = "allUsers"


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

    def child(self, *extra: pulumi.Resource | None, **kwargs) -> pulumi.ResourceOptions:
        deps = self._deps + [r for r in extra if r is not None]
        return pulumi.ResourceOptions(parent=self, depends_on=deps or None, **kwargs)

    def grant_run_invokers(
        self,
        key: str,
        project: pulumi.Input[str],
        region: pulumi.Input[str],
        service: gcp.cloudrunv2.Service | gcp.cloudfunctionsv2.Function,
        public: bool,
        invokers: Sequence[pulumi.Input[str]],
    ) -> list[gcp.cloudrunv2.ServiceIamMember]:
        """roles/run.invoker on ``service`` for everyone (``public``) or for each of ``invokers``.

        A gen2 function is a Cloud Run service of the same name, so the same grant serves both
        (roles/cloudfunctions.invoker does not reach an HTTP gen2 function).
        """
        members = [PUBLIC_MEMBER] if public else list(invokers)
        return [
            gcp.cloudrunv2.ServiceIamMember(
                f"{key}-invoker-{n}",
                project=project,
                location=region,
                name=service.name,
                role="roles/run.invoker",
                member=member,
                opts=self.child(service),
            )
            for n, member in enumerate(members)
        ]
