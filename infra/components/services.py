"""Cloud Run v2: ``qa`` (public web chat) and ``botrunner`` (private control plane and worker).

Images are built from the repository's Dockerfiles and pushed to Artifact Registry during
``pulumi up`` (``infra/components/images.py``: with Docker, or with Cloud Build), unless the stack
config names a prebuilt image. Services pin the image by digest, so a rebuilt image rolls a new
revision and an unchanged one does not. Each service also names its start command: the image's CMD
says the same, but the spec is what decides, so an image can never start another deployable's app.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pulumi
import pulumi_docker_build as docker_build
import pulumi_gcp as gcp

from infra.components.base import Component
from infra.components.images import CloudBuildImage, CloudBuildImageArgs, build_context


def run_url(name: str, project_number: pulumi.Input[str], region: str) -> pulumi.Output[str]:
    """A Cloud Run service's deterministic URL, known before the service exists.

    qa and botrunner each need the other's URL (and botrunner its own, as the push audience); the
    deterministic form breaks that cycle without a second deploy.
    """
    return pulumi.Output.concat("https://", name, "-", project_number, ".", region, ".run.app")


@dataclass(frozen=True)
class SecretEnv:
    secret_id: pulumi.Input[str]
    version: pulumi.Input[str]


@dataclass(frozen=True)
class ServiceSpec:
    key: str  # "qa" / "botrunner"
    name: str  # Cloud Run service name
    dockerfile: Path  # used when ``image`` is empty
    image: str  # prebuilt image reference, or "" to build
    command: Sequence[str]  # argv the container starts with (the Dockerfile's CMD says the same)
    service_account: pulumi.Input[str]
    env: Mapping[str, pulumi.Input[str]]
    secret_env: Mapping[str, SecretEnv] = field(default_factory=dict)
    public: bool = False
    invokers: Sequence[pulumi.Input[str]] = ()
    memory: str = "512Mi"
    cpu: str = "1"
    concurrency: int = 40
    max_instances: int = 3
    timeout_seconds: int = 60


@dataclass(frozen=True)
class CloudBuildArgs:
    """Where the Cloud Build path uploads the build contexts and whom the builds run as."""

    bucket: pulumi.Input[str]  # build-inputs bucket (the function-sources bucket)
    service_account: pulumi.Input[str]  # projects/<p>/serviceAccounts/<email>
    out_dir: Path  # where the context archives are written locally


@dataclass(frozen=True)
class ServicesArgs:
    project: str
    region: str
    registry_url: pulumi.Input[str]  # <region>-docker.pkg.dev/<project>/<repo>
    build_context: Path
    services: Sequence[ServiceSpec]
    builder: str = "docker"  # "docker" or "cloudbuild" (images.resolve_builder); unused if all prebuilt
    # The deployer's short-lived token (the Google provider's): the Docker push's password, or the
    # Cloud Build API call's credentials. Needed only when something is built.
    access_token: pulumi.Input[str] | None = None
    cloud_build: CloudBuildArgs | None = None


class Services(Component):
    def __init__(
        self, name: str, args: ServicesArgs, depends_on=(), opts: pulumi.ResourceOptions | None = None
    ):
        super().__init__("Services", name, depends_on, opts)
        self.images: dict[str, pulumi.Output[str]] = {}
        self.services: dict[str, gcp.cloudrunv2.Service] = {}
        self.grants: list[pulumi.Resource] = []
        for spec in args.services:
            image = self._image(args, spec)
            self.images[spec.key] = image
            envs = [
                gcp.cloudrunv2.ServiceTemplateContainerEnvArgs(name=k, value=v)
                for k, v in sorted(spec.env.items())
            ]
            envs += [
                gcp.cloudrunv2.ServiceTemplateContainerEnvArgs(
                    name=k,
                    value_source=gcp.cloudrunv2.ServiceTemplateContainerEnvValueSourceArgs(
                        secret_key_ref=gcp.cloudrunv2.ServiceTemplateContainerEnvValueSourceSecretKeyRefArgs(
                            secret=ref.secret_id, version=ref.version
                        )
                    ),
                )
                for k, ref in sorted(spec.secret_env.items())
            ]
            service = gcp.cloudrunv2.Service(
                spec.key,
                project=args.project,
                location=args.region,
                name=spec.name,
                ingress="INGRESS_TRAFFIC_ALL",  # private = IAM, not network: Pub/Sub and qa call in
                # Explicit: pulumi-gcp 10 defaults to true, which makes `pulumi destroy` fail. The
                # services hold no state (Firestore and GCS do), so they may be deleted.
                deletion_protection=False,
                invoker_iam_disabled=False,
                template=gcp.cloudrunv2.ServiceTemplateArgs(
                    service_account=spec.service_account,
                    max_instance_request_concurrency=spec.concurrency,
                    timeout=f"{spec.timeout_seconds}s",
                    scaling=gcp.cloudrunv2.ServiceTemplateScalingArgs(
                        min_instance_count=0, max_instance_count=spec.max_instances
                    ),
                    containers=[
                        gcp.cloudrunv2.ServiceTemplateContainerArgs(
                            image=image,
                            commands=list(spec.command[:1]),
                            args=list(spec.command[1:]),
                            ports=gcp.cloudrunv2.ServiceTemplateContainerPortsArgs(container_port=8080),
                            resources=gcp.cloudrunv2.ServiceTemplateContainerResourcesArgs(
                                limits={"cpu": spec.cpu, "memory": spec.memory},
                                # Request-based billing (CPU only while serving) and a CPU boost at
                                # start: qa restores a snapshot and loads the model before its first answer.
                                cpu_idle=True,
                                startup_cpu_boost=True,
                            ),
                            envs=envs,
                        )
                    ],
                ),
                opts=self.child(),
            )
            self.services[spec.key] = service
            self.grants += self.grant_run_invokers(
                spec.key, args.project, args.region, service, spec.public, spec.invokers
            )
        self.urls = {k: s.uri for k, s in self.services.items()}
        self.register_outputs({"urls": self.urls, "images": self.images})

    def _image(self, args: ServicesArgs, spec: ServiceSpec) -> pulumi.Output[str]:
        if spec.image:
            return pulumi.Output.from_input(spec.image)
        if args.builder == "cloudbuild":
            return self._cloud_build(args, spec)
        if args.builder != "docker":
            raise ValueError(f"unknown image builder {args.builder!r}")
        tag = pulumi.Output.concat(args.registry_url, "/", spec.key, ":latest")
        built = docker_build.Image(
            f"{spec.key}-image",
            context=docker_build.BuildContextArgs(location=str(args.build_context)),
            dockerfile=docker_build.DockerfileArgs(location=str(spec.dockerfile)),
            platforms=[docker_build.Platform.LINUX_AMD64],  # Cloud Run runs amd64
            tags=[tag],
            push=True,
            build_on_preview=False,
            registries=[
                docker_build.RegistryArgs(
                    address=pulumi.Output.from_input(args.registry_url).apply(lambda u: u.split("/")[0]),
                    username="oauth2accesstoken",
                    password=args.access_token,
                )
            ],
            opts=self.child(),
        )
        # ref = "<tag>@sha256:<digest>": the service changes exactly when the image does.
        return built.ref

    def _cloud_build(self, args: ServicesArgs, spec: ServiceSpec) -> pulumi.Output[str]:
        if args.cloud_build is None or args.access_token is None:
            raise ValueError("the Cloud Build path needs ServicesArgs.cloud_build and access_token")
        context = build_context(spec.key, args.build_context, spec.dockerfile, args.cloud_build.out_dir)
        source = gcp.storage.BucketObject(
            f"{spec.key}-image-context",
            bucket=args.cloud_build.bucket,
            name=context.object_name,
            content_type="application/gzip",
            source=pulumi.FileAsset(str(context.path)),  # byte for byte: its name is its content hash
            opts=self.child(),
        )
        built = CloudBuildImage(
            f"{spec.key}-image-build",
            CloudBuildImageArgs(
                project=args.project,
                location=args.region,
                bucket=source.bucket,
                object=source.name,
                dockerfile=context.dockerfile,
                image=pulumi.Output.concat(args.registry_url, "/", spec.key, ":", context.tag),
                service_account=args.cloud_build.service_account,
                access_token=args.access_token,
            ),
            opts=self.child(source),
        )
        return built.ref
