"""Where askbase keeps things: the buckets, Firestore, the secrets and the image registry, each with
the grants of the accounts that use it.

State migration: :class:`~infra.components.storage.Storage`, :class:`~infra.components.data.Data`,
:class:`~infra.components.secrets.Secrets` and :class:`~infra.components.registry.Registry` were
top-level components before :class:`DataStores` held them. Pulumi puts a resource's parent chain into
its URN (``askbase:infra:DataStores$askbase:infra:Storage$gcp:storage/bucket:Bucket::kb``), so each
of the four carries ``Alias(parent=ROOT_STACK_RESOURCE)``; Pulumi gives every child the aliases its
parent's aliases imply, so a stack deployed before finds the knowledge-base bucket, the database, the
secrets and the repository (and their grants) under their old URNs and updates them in place.
Without the aliases Pulumi would see new resources and old ones to delete: a new random token key
(every stored bot token unreadable), buckets, a database and secrets whose names are taken, and
grants removed when their old resources are deleted.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pulumi

from infra.components.base import Component
from infra.components.data import Data, DataArgs
from infra.components.registry import Registry, RegistryArgs
from infra.components.secrets import Secrets, SecretsArgs
from infra.components.storage import Storage, StorageArgs


@dataclass(frozen=True)
class DataStoresArgs:
    storage: StorageArgs
    data: DataArgs
    secrets: SecretsArgs
    registry: RegistryArgs


class DataStores(Component):
    """The four stores; :attr:`startup_grants` are their grants that a build or a start checks."""

    def __init__(
        self,
        name: str,
        args: DataStoresArgs,
        depends_on: Sequence[pulumi.Resource] = (),
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("DataStores", name, depends_on, opts)
        self.storage = Storage("storage", args.storage, self._deps, self._formerly_top_level())
        self.data = Data("data", args.data, self._deps, self._formerly_top_level())
        self.secrets = Secrets("secrets", args.secrets, self._deps, self._formerly_top_level())
        self.registry = Registry("registry", args.registry, self._deps, self._formerly_top_level())
        # The build accounts read sources and push images, the runtimes read their secrets, all at start.
        self.startup_grants = [*self.storage.grants, *self.registry.grants, *self.secrets.grants]
        self.register_outputs({})

    def _formerly_top_level(self) -> pulumi.ResourceOptions:
        return pulumi.ResourceOptions(parent=self, aliases=[pulumi.Alias(parent=pulumi.ROOT_STACK_RESOURCE)])
