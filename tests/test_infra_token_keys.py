"""Infra for a token-key rotation: askbase:previousTokenKeys becomes a Secret Manager secret that only
botrunner can read and receives, as ASKBASE_TOKEN_KEYS_PREVIOUS; without it nothing of the kind exists."""

from __future__ import annotations

import base64
from pathlib import Path

import pulumi
import pytest

from infra import envvars, policies
from infra.components.base import Grantee
from infra.components.secrets import PREVIOUS_TOKEN_KEYS_SECRET_ID, Secrets, SecretsArgs
from infra.testing import BASE_CONFIG, PROJECT, StackRun, expected_grants, run_stack, use_mocks
from shared.config import Settings

BOTRUNNER = Grantee("botrunner", f"serviceAccount:askbase-botrunner@{PROJECT}.iam.gserviceaccount.com")
QA = Grantee("qa", f"serviceAccount:askbase-qa@{PROJECT}.iam.gserviceaccount.com")
OLD = base64.b64encode(b"o" * 32).decode()
NEW = base64.b64encode(b"n" * 32).decode()
SECRET_SIG = pulumi.runtime.rpc._special_secret_sig
SIG_KEY = pulumi.runtime.rpc._special_sig_key


def _secret_args(previous: str | None) -> SecretsArgs:
    return SecretsArgs(
        project=PROJECT,
        previous_token_keys=None if previous is None else pulumi.Output.secret(previous),
        token_key_accessors=[BOTRUNNER],
        session_secret_accessors=[QA],
    )


def test_previous_keys_get_a_secret_only_the_token_keys_readers_can_read() -> None:
    mocks = use_mocks({"gcp:project": PROJECT})

    @pulumi.runtime.test
    def run() -> pulumi.Output:
        secrets = Secrets("secrets", _secret_args(f"{OLD}"))
        ref = secrets.previous_token_keys_ref
        assert ref is not None

        def check(values: list) -> None:
            secret_id, version = values
            assert (secret_id, version) == (PREVIOUS_TOKEN_KEYS_SECRET_ID, "1")

        return pulumi.Output.all(ref.secret_id, ref.version).apply(check)

    run()
    [secret] = [
        r
        for r in mocks.resources
        if r["type"] == "gcp:secretmanager/secret:Secret"
        and r["inputs"]["secretId"] == PREVIOUS_TOKEN_KEYS_SECRET_ID
    ]
    assert secret["inputs"]["deletionPolicy"] == "DELETE"  # a dropped old key is destroyed, not kept
    [version] = [r for r in mocks.resources if r["name"] == "token-keys-previous-v"]
    data = version["inputs"]["secretData"]
    assert data[SIG_KEY] == SECRET_SIG and data["value"] == OLD  # encrypted in the state, never printed
    readers = [
        r["inputs"]["member"]
        for r in mocks.resources
        if r["type"] == "gcp:secretmanager/secretIamMember:SecretIamMember"
        and r["inputs"]["secretId"] == PREVIOUS_TOKEN_KEYS_SECRET_ID
    ]
    assert readers == [BOTRUNNER.member]


def test_without_previous_keys_there_is_no_such_secret() -> None:
    mocks = use_mocks({"gcp:project": PROJECT})

    @pulumi.runtime.test
    def run() -> pulumi.Output:
        secrets = Secrets("secrets", _secret_args(None))
        assert secrets.previous_token_keys_ref is None
        return secrets.token_key_ref.secret_id

    run()
    ids = {r["inputs"].get("secretId") for r in mocks.resources}
    assert PREVIOUS_TOKEN_KEYS_SECRET_ID not in ids and "askbase-token-key" in ids


def test_only_botrunner_may_be_given_the_previous_keys() -> None:
    refs = {"token_key": "t", "session_secret": "s", "token_keys_previous": "p"}
    assert envvars.secret_refs("botrunner", refs) == {"token_key": "t", "token_keys_previous": "p"}
    assert envvars.secret_refs("qa", refs) == {"session_secret": "s"}
    assert envvars.secret_refs("botrunner", {"token_key": "t"}) == {"token_key": "t"}
    plain = {f: "x" for f in envvars.NEEDS["botrunner"] - envvars.SECRET_FIELDS}
    _, secret = envvars.render("botrunner", plain, {"token_key": "t", "token_keys_previous": "p"})
    assert secret == {"ASKBASE_TOKEN_KEY": "t", "ASKBASE_TOKEN_KEYS_PREVIOUS": "p"}
    qa_plain = {f: "x" for f in envvars.NEEDS["qa"] - envvars.SECRET_FIELDS}
    with pytest.raises(ValueError, match=r"not declared for qa.*token_keys_previous"):
        envvars.render("qa", qa_plain, {"session_secret": "s", "token_keys_previous": "p"})
    assert all("token_keys_previous" not in envvars.NEEDS[d] for d in envvars.DEPLOYABLES)  # optional


# --- the whole program, mid-rotation ------------------------------------------------------------------

ROTATING = {**BASE_CONFIG, "askbase:tokenKey": NEW, "askbase:previousTokenKeys": f"{OLD}"}


@pytest.fixture(scope="module")
def rotating(infra_build_dir: Path) -> StackRun:
    return run_stack(ROTATING, infra_build_dir)  # the secret keys marked, as `--secret` sets them


def _secret_env(stack: StackRun) -> dict[str, dict[str, str]]:
    """Deployable -> {secret env var: the Secret Manager secret it points at}."""
    from infra.program import BOTRUNNER_SERVICE, FUNCTION_NAMES, QA_SERVICE

    out: dict[str, dict[str, str]] = {}
    for key, name in (("qa", QA_SERVICE), ("botrunner", BOTRUNNER_SERVICE)):
        service = stack.one("gcp:cloudrunv2/service:Service", name=name)["inputs"]
        envs = service["template"]["containers"][0]["envs"]
        out[key] = {e["name"]: e["valueSource"]["secretKeyRef"]["secret"] for e in envs if "valueSource" in e}
    for key, fn in (("telegram-fn", "telegram"), ("discord-fn", "discord"), ("scrape-fn", "scrape")):
        config = stack.one("gcp:cloudfunctionsv2/function:Function", name=FUNCTION_NAMES[fn])["inputs"]
        refs = config["serviceConfig"].get("secretEnvironmentVariables", [])
        out[key] = {r["key"]: r["secret"] for r in refs}
    return out


def test_mid_rotation_botrunner_alone_gets_the_previous_keys(rotating: StackRun) -> None:
    env = _secret_env(rotating)
    name = Settings.env_name("token_keys_previous")
    assert env["botrunner"] == {
        "ASKBASE_TOKEN_KEY": "askbase-token-key",
        name: PREVIOUS_TOKEN_KEYS_SECRET_ID,
    }
    assert [d for d, secrets in env.items() if name in secrets] == ["botrunner"]
    [version] = [r for r in rotating.resources if r["name"] == "token-keys-previous-v"]
    assert version["inputs"]["secretData"]["value"] == OLD
    [current] = [r for r in rotating.resources if r["name"] == "token-key-v"]
    assert current["inputs"]["secretData"]["value"] == NEW


def test_mid_rotation_grants_stay_least_privilege(rotating: StackRun) -> None:
    cfg = rotating.program.cfg
    grants = expected_grants(cfg)
    read_previous = ("roles/secretmanager.secretAccessor", "secret", PREVIOUS_TOKEN_KEYS_SECRET_ID)
    holders = [member for member, held in grants.items() if read_previous in held]
    assert holders == [f"serviceAccount:askbase-botrunner@{PROJECT}.iam.gserviceaccount.com"]
    assert policies.check_least_privilege(rotating.resources, grants) == []
    # The grant is one a start checks: revisions wait for it like for the token key's.
    settled = rotating.named("iam-settled", "time:index/sleep:Sleep")
    [grant] = [
        r
        for r in rotating.resources
        if r["type"] == "gcp:secretmanager/secretIamMember:SecretIamMember"
        and r["inputs"]["secretId"] == PREVIOUS_TOKEN_KEYS_SECRET_ID
    ]
    assert rotating.waits_for(settled, grant)
