"""Secret Manager: the bot-token encryption key, the older token keys of a rotation, the session secret.

Values are generated (pulumi-random) unless the operator sets them with
``pulumi config set --secret askbase:tokenKey ...`` / ``askbase:sessionSecret`` (``infra/config.py``
refuses them set without ``--secret``). Either way they are Pulumi secrets: encrypted in the state,
never printed.

``askbase:previousTokenKeys`` (comma-separated, set only during a key rotation: docs/operations.md) gets
its own secret, readable by the token key's accessors (botrunner) alone and given to botrunner as
``ASKBASE_TOKEN_KEYS_PREVIOUS``. Unlike the current key's it is deleted with its version when the key
is removed from the config: an old key is dropped because it should no longer exist anywhere.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_gcp as gcp
import pulumi_random as random

from infra.components.base import Component, Grantee

TOKEN_KEY_SECRET_ID = "askbase-token-key"  # noqa: S105 (a name, not a value)
SESSION_SECRET_ID = "askbase-session-secret"  # noqa: S105
PREVIOUS_TOKEN_KEYS_SECRET_ID = "askbase-token-keys-previous"  # noqa: S105


@dataclass(frozen=True)
class SecretEnv:
    """A secret environment variable's source: a Secret Manager secret, pinned to one version.

    Cloud Run and Cloud Functions resolve it when an instance starts; the value is never in a spec.
    """

    secret_id: pulumi.Input[str]
    version: pulumi.Input[str]


@dataclass(frozen=True)
class SecretsArgs:
    project: str
    token_key: pulumi.Input[str] | None = None
    session_secret: pulumi.Input[str] | None = None
    # Older token keys, comma-separated (askbase:previousTokenKeys); None: no secret at all.
    previous_token_keys: pulumi.Input[str] | None = None
    # Who may read the token key, and the previous keys when there are some.
    token_key_accessors: Sequence[Grantee] = ()
    session_secret_accessors: Sequence[Grantee] = ()


class Secrets(Component):
    def __init__(
        self,
        name: str,
        args: SecretsArgs,
        depends_on: Sequence[pulumi.Resource] = (),
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("Secrets", name, depends_on, opts)
        token_value = args.token_key
        if token_value is None:
            # AES-256-GCM key: 32 random bytes, base64-encoded (what shared/bots/secrets.py decodes).
            # Changing this resource's inputs would generate a new key and leave every stored bot
            # token unreadable: never edit them; supply askbase:tokenKey to move a key instead.
            token_value = random.RandomBytes("token-key", length=32, opts=self.child()).base64
        session_value = args.session_secret
        if session_value is None:
            session_value = random.RandomPassword(
                "session-secret", length=48, special=False, opts=self.child()
            ).result

        self.token_key = self._new_secret(args.project, TOKEN_KEY_SECRET_ID, "token-key", keep=True)
        self.token_key_version = self._new_version("token-key", self.token_key, token_value, keep=True)
        self.session_secret = self._new_secret(args.project, SESSION_SECRET_ID, "session-secret")
        self.session_secret_version = self._new_version("session-secret", self.session_secret, session_value)
        # What a deployable's secret environment variables point at.
        self.token_key_ref = SecretEnv(self.token_key.secret_id, self.token_key_version.version)
        self.session_secret_ref = SecretEnv(
            self.session_secret.secret_id, self.session_secret_version.version
        )
        readable = [
            ("token-key", self.token_key, args.token_key_accessors),
            ("session-secret", self.session_secret, args.session_secret_accessors),
        ]
        self.previous_token_keys_ref: SecretEnv | None = None
        if args.previous_token_keys is not None:
            previous = self._new_secret(args.project, PREVIOUS_TOKEN_KEYS_SECRET_ID, "token-keys-previous")
            version = self._new_version("token-keys-previous", previous, args.previous_token_keys)
            self.previous_token_keys_ref = SecretEnv(previous.secret_id, version.version)
            readable.append(("token-keys-previous", previous, args.token_key_accessors))
        self.grants = [
            grant
            for target, secret, grantees in readable
            for grant in self.grant_each(
                gcp.secretmanager.SecretIamMember,
                "roles/secretmanager.secretAccessor",
                grantees,
                target=target,
                legacy_label=f"{target}-accessor",
                project=args.project,
                secret_id=secret.secret_id,
            )
        ]
        self.register_outputs(
            {"token_key_secret": self.token_key.secret_id, "session_secret": self.session_secret.secret_id}
        )

    def _new_secret(
        self, project: str, secret_id: str, name: str, keep: bool = False
    ) -> gcp.secretmanager.Secret:
        return gcp.secretmanager.Secret(
            name,
            project=project,
            secret_id=secret_id,
            replication=gcp.secretmanager.SecretReplicationArgs(
                auto=gcp.secretmanager.SecretReplicationAutoArgs()
            ),
            # The token key encrypts data that outlives the stack (Firestore is kept on destroy):
            # the secret is kept too, so a re-created stack can still read the stored tokens.
            deletion_policy="ABANDON" if keep else "DELETE",
            opts=self.child(),
        )

    def _new_version(
        self, name: str, secret: gcp.secretmanager.Secret, value: pulumi.Input[str], keep: bool = False
    ) -> gcp.secretmanager.SecretVersion:
        return gcp.secretmanager.SecretVersion(
            f"{name}-v",
            secret=secret.id,
            secret_data=pulumi.Output.secret(value),
            deletion_policy="ABANDON" if keep else "DELETE",
            opts=self.child(),
        )
