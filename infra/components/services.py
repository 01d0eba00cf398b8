"""Cloud Run v2: ``qa`` (public web chat) and ``botrunner`` (private control plane and worker).

Each service runs the image reference it is given: :class:`infra.components.images.Images` builds
and pushes it (or passes a prebuilt one through), pinned by digest, so a rebuilt image rolls a new
revision and an unchanged one does not. Each service also names its start command: the image's CMD
says the same, but the spec is what decides, so an image can never start another deployable's app.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pulumi
import pulumi_gcp as gcp

from infra.components.base import Component, Grantee
from infra.components.secrets import SecretEnv


def run_url(name: str, project_number: pulumi.Input[str], region: str) -> pulumi.Output[str]:
    """A Cloud Run service's deterministic URL, known before the service exists.

    qa and botrunner each need the other's URL (and botrunner its own, as the push audience); the
    deterministic form breaks that cycle without a second deploy.
    """
    return pulumi.Output.concat("https://", name, "-", project_number, ".", region, ".run.app")


@dataclass(frozen=True)
class ServiceSpec:
    key: str  # "qa" / "botrunner"
    name: str  # Cloud Run service name
    image: pulumi.Input[str]  # the reference to run, pinned by digest (Images.refs)
    command: Sequence[str]  # argv the container starts with (the Dockerfile's CMD says the same)
    service_account: pulumi.Input[str]
    env: Mapping[str, pulumi.Input[str]]
    secret_env: Mapping[str, SecretEnv] = field(default_factory=dict)
    public: bool = False
    invokers: Sequence[Grantee] = ()  # given roles/run.invoker (private services)
    memory: str = "512Mi"
    cpu: str = "1"
    concurrency: int = 40
    max_instances: int = 3
    timeout_seconds: int = 60
    # Pinned: unset, Cloud Run "can select either the first generation or the second generation
    # environment" (its docs). The second is a microVM with a real Linux kernel, which is what every
    # figure in bench/ was measured on (qa maps its index files and runs onnxruntime and Chroma's
    # Rust bindings); the first emulates system calls in gVisor. Both are priced the same.
    execution_environment: str = "EXECUTION_ENVIRONMENT_GEN2"


@dataclass(frozen=True)
class ServicesArgs:
    project: str
    region: str
    services: Sequence[ServiceSpec]


class Services(Component):
    def __init__(
        self,
        name: str,
        args: ServicesArgs,
        depends_on: Sequence[pulumi.Resource] = (),
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("Services", name, depends_on, opts)
        self.services: dict[str, gcp.cloudrunv2.Service] = {}
        self.grants: list[pulumi.Resource] = []
        for spec in args.services:
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
                    execution_environment=spec.execution_environment,
                    max_instance_request_concurrency=spec.concurrency,
                    timeout=f"{spec.timeout_seconds}s",
                    scaling=gcp.cloudrunv2.ServiceTemplateScalingArgs(
                        min_instance_count=0, max_instance_count=spec.max_instances
                    ),
                    containers=[
                        gcp.cloudrunv2.ServiceTemplateContainerArgs(
                            image=spec.image,
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
        self.register_outputs({"urls": self.urls})
