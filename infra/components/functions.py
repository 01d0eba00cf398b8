"""Cloud Functions gen2: Telegram webhook and Discord interactions (public), scrape (private).

Sources are zips built by ``infra/archive.py`` during ``pulumi up`` and uploaded under a name that is
their content hash: the function's build input changes exactly when the code, the pins or the vendored
files do.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pulumi
import pulumi_gcp as gcp

from infra.archive import ArchiveSpec, BuiltArchive
from infra.components.base import Component, Grantee
from infra.components.secrets import SecretEnv


def function_url(name: str, project: str, region: str) -> str:
    """A gen2 function's deterministic HTTPS trigger URL (what its ``url`` output will be), known
    before the function exists: the scrape function's own audience is in its environment, and
    botrunner registers webhooks at the webhook functions' URLs."""
    return f"https://{region}-{project}.cloudfunctions.net/{name}"


@dataclass(frozen=True)
class FunctionSpec:
    key: str  # logical name: "telegram", "discord", "scrape"
    name: str  # the function (and its Cloud Run service) name
    entry_point: str
    archive: str  # which archive: functions with the same one share an object
    service_account: pulumi.Input[str]
    env: Mapping[str, pulumi.Input[str]]
    secret_env: Mapping[str, SecretEnv] = field(default_factory=dict)
    public: bool = False
    invokers: Sequence[Grantee] = ()  # given roles/run.invoker (private functions)
    memory: str = "512Mi"
    cpu: str = ""  # empty: the platform's default for the memory size
    timeout_seconds: int = 60
    max_instances: int = 10


@dataclass(frozen=True)
class FunctionsArgs:
    project: str
    # Secret references name the secret's project by number: the API stores and returns the number,
    # so an id there would read back as a change on every `pulumi up` (a perpetual diff).
    project_number: pulumi.Input[str]
    region: str
    sources_bucket: pulumi.Input[str]
    build_service_account: pulumi.Input[str]  # projects/<p>/serviceAccounts/<email>
    docker_repository: pulumi.Input[str]  # projects/<p>/locations/<r>/repositories/<repo>
    archives: Sequence[ArchiveSpec]
    functions: Sequence[FunctionSpec]
    build_dir: Path
    runtime: str = "python311"


class Functions(Component):
    def __init__(
        self,
        name: str,
        args: FunctionsArgs,
        depends_on: Sequence[pulumi.Resource] = (),
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("Functions", name, depends_on, opts)
        self.archives: dict[str, BuiltArchive] = {}
        self.objects: dict[str, gcp.storage.BucketObject] = {}
        for spec in args.archives:
            built = spec.build(args.build_dir)
            self.archives[spec.name] = built
            self.objects[spec.name] = gcp.storage.BucketObject(
                f"source-{spec.name}",
                bucket=args.sources_bucket,
                name=built.object_name,
                content_type="application/zip",
                # The zip is uploaded byte for byte (FileAsset, not an Archive the engine would
                # re-pack): its name already is its content hash.
                source=pulumi.FileAsset(str(built.path)),
                opts=self.child(),
            )
        self.functions: dict[str, gcp.cloudfunctionsv2.Function] = {}
        self.grants: list[pulumi.Resource] = []
        for fn in args.functions:
            obj = self.objects[fn.archive]
            function = gcp.cloudfunctionsv2.Function(
                fn.key,
                project=args.project,
                location=args.region,
                name=fn.name,
                build_config=gcp.cloudfunctionsv2.FunctionBuildConfigArgs(
                    runtime=args.runtime,
                    entry_point=fn.entry_point,
                    service_account=args.build_service_account,
                    docker_repository=args.docker_repository,
                    source=gcp.cloudfunctionsv2.FunctionBuildConfigSourceArgs(
                        storage_source=gcp.cloudfunctionsv2.FunctionBuildConfigSourceStorageSourceArgs(
                            bucket=obj.bucket, object=obj.name
                        )
                    ),
                ),
                service_config=gcp.cloudfunctionsv2.FunctionServiceConfigArgs(
                    service_account_email=fn.service_account,
                    available_memory=fn.memory,
                    available_cpu=fn.cpu or None,
                    timeout_seconds=fn.timeout_seconds,
                    min_instance_count=0,
                    max_instance_count=fn.max_instances,
                    ingress_settings="ALLOW_ALL",  # Telegram, Discord and Scheduler call from outside
                    all_traffic_on_latest_revision=True,
                    environment_variables=dict(fn.env),
                    secret_environment_variables=[
                        gcp.cloudfunctionsv2.FunctionServiceConfigSecretEnvironmentVariableArgs(
                            key=key,
                            project_id=args.project_number,
                            secret=ref.secret_id,
                            version=ref.version,
                        )
                        for key, ref in sorted(fn.secret_env.items())
                    ],
                ),
                opts=self.child(obj),
            )
            self.functions[fn.key] = function
            self.grants += self.grant_run_invokers(
                fn.key, args.project, args.region, function, fn.public, fn.invokers
            )
        self.urls = {k: f.url for k, f in self.functions.items()}
        self.register_outputs({"urls": self.urls})
