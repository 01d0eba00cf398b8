"""What every askbase component shares: a type token prefix and child options."""

from __future__ import annotations

from collections.abc import Sequence

import pulumi

TYPE_PREFIX = "askbase:infra"


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
