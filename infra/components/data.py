"""Firestore: the native-mode database, TTL policies on ``expire_at``, and a daily backup schedule."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_gcp as gcp

from infra.components.base import Component

# Collection group -> days the application puts into ``expire_at`` (docs/architecture.md). The TTL
# policy only says "delete when expire_at has passed"; the number of days is the writer's choice and
# is recorded here for the docs and the tests. None = the conversation retention setting.
TTL_POLICIES: dict[str, int | None] = {
    "processed_updates": 7,
    "sent_replies": 7,
    "activity": 30,  # bots/{id}/activity: a TTL policy applies to the whole collection group
    "interactions": 30,
    "conversations": None,
    # TTL deletes a document, not its sub-collections: messages carry their own expire_at.
    "messages": None,
    # Feedback (shared/qa/answer_log.py, shared/qa/feedback.py): answer records and votes expire with
    # the conversation retention, counted from when each was written.
    "answers": None,
    "votes": None,
    # Signed-out browser sessions (shared/qa/revoked_sessions.py): kept the qa session lifetime (plus
    # seconds) after the sign-out, as long as a copy of the cookie could still be valid.
    "revoked_sessions": 14,
}
TTL_FIELD = "expire_at"
DATABASE = "(default)"  # the app's clients open the default database


@dataclass(frozen=True)
class DataArgs:
    project: str
    location: str
    backup_retention_days: int = 7


class Data(Component):
    def __init__(
        self,
        name: str,
        args: DataArgs,
        depends_on: Sequence[pulumi.Resource] = (),
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("Data", name, depends_on, opts)
        self.database = gcp.firestore.Database(
            "firestore",
            project=args.project,
            name=DATABASE,
            location_id=args.location,
            type="FIRESTORE_NATIVE",
            # Explicit on purpose (pulumi-gcp 10 defaults to ABANDON silently): the data must survive
            # `pulumi destroy`, and the API itself refuses to delete while protection is on.
            deletion_policy="ABANDON",
            delete_protection_state="DELETE_PROTECTION_ENABLED",
            opts=self.child(),
        )
        self.ttl_fields = [
            gcp.firestore.Field(
                f"ttl-{collection.replace('_', '-')}",
                project=args.project,
                database=self.database.name,
                collection=collection,
                field=TTL_FIELD,
                ttl_config=gcp.firestore.FieldTtlConfigArgs(),
                # Exempt the TTL timestamp from single-field indexing: nothing queries it, and an
                # indexed monotonically increasing timestamp is a write hotspot.
                index_config=gcp.firestore.FieldIndexConfigArgs(indexes=[]),
                opts=self.child(self.database),
            )
            for collection in TTL_POLICIES
        ]
        self.backup_schedule = gcp.firestore.BackupSchedule(
            "daily-backup",
            project=args.project,
            database=self.database.name,
            daily_recurrence=gcp.firestore.BackupScheduleDailyRecurrenceArgs(),
            retention=f"{args.backup_retention_days * 86400}s",
            opts=self.child(self.database),
        )
        # History pages: owner ==, ordered by updated_at then id, newest first (shared/qa/conversations.py).
        # The emulator needs no index; Firestore refuses the query without this one.
        self.history_index = gcp.firestore.Index(
            "conversations-history",
            project=args.project,
            database=self.database.name,
            collection="conversations",
            query_scope="COLLECTION",
            fields=[
                gcp.firestore.IndexFieldArgs(field_path="owner", order="ASCENDING"),
                gcp.firestore.IndexFieldArgs(field_path="updated_at", order="DESCENDING"),
                gcp.firestore.IndexFieldArgs(field_path="__name__", order="DESCENDING"),
            ],
            opts=self.child(self.database),
        )
        self.register_outputs({"database": self.database.name})
