"""Container images for the Cloud Run services: built with Docker on the deployer's machine, or by
Cloud Build in the project (no Docker needed), or given prebuilt.

Docker path: pulumi-docker-build builds ``services/<name>/Dockerfile`` against the repository root
(``.dockerignore`` decides what is sent) and pushes to Artifact Registry.

Cloud Build path (``askbase:imageBuilder: cloudbuild``, or ``auto`` without a usable Docker):

1. :func:`infra.build_context.build_context` packs exactly what a Dockerfile ``COPY``\\ s (plus the
   Dockerfile and ``.dockerignore``, with ``.dockerignore`` applied) into a deterministic ``.tar.gz``
   named by its content hash, one per service: a service's archive changes exactly when its inputs do.
2. The archive is uploaded to the build-inputs bucket (``gcp.storage.BucketObject``, like the function
   sources).
3. :class:`CloudBuildImage` runs one Cloud Build build of that object (``docker build -f <Dockerfile>``)
   as the image-builder service account, waits for it, and returns ``<image>@sha256:<digest>``.
   pulumi-gcp 10 has no resource that *runs* a build (``gcp.cloudbuild`` offers triggers and worker
   pools only), so this one is a Pulumi dynamic resource calling the Cloud Build REST API with the
   Google provider's own access token. A new source object (= changed inputs) replaces it, i.e.
   builds again; anything else is no change.

Either way the service pins the image by digest: a rebuilt image rolls a new revision, an unchanged
one does not. :class:`Images` is the component that picks the path and declares the builds.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pulumi
import pulumi.dynamic
import pulumi_docker_build as docker_build
import pulumi_gcp as gcp

from infra.build_context import build_context
from infra.components.base import TYPE_PREFIX, Component

IMAGE_BUILDERS = ("auto", "docker", "cloudbuild")
CLOUD_BUILD_DOCKER = "gcr.io/cloud-builders/docker"
BUILD_TIMEOUT_SECONDS = 1800

# --- which builder ---------------------------------------------------------------------------------


def docker_usable(timeout: float = 15.0) -> bool:
    """True when a Docker daemon answers and buildx is installed (what pulumi-docker-build needs).

    A ``docker`` client alone is not enough: without a daemon (or with Docker Desktop stopped) the
    build would fail halfway through ``pulumi up``.
    """
    if shutil.which("docker") is None:
        return False
    for argv in (["docker", "info", "--format", "{{.ServerVersion}}"], ["docker", "buildx", "version"]):
        try:
            done = subprocess.run(argv, capture_output=True, timeout=timeout, check=False)
        except (OSError, subprocess.TimeoutExpired):
            return False
        if done.returncode != 0 or not done.stdout.strip():
            return False
    return True


def resolve_builder(setting: str, probe: Callable[[], bool] = docker_usable) -> str:
    """``docker`` or ``cloudbuild`` for the ``askbase:imageBuilder`` setting (``auto`` probes Docker)."""
    if setting not in IMAGE_BUILDERS:
        raise ValueError(f"askbase:imageBuilder must be one of {', '.join(IMAGE_BUILDERS)}")
    if setting == "auto":
        return "docker" if probe() else "cloudbuild"
    return setting


# --- the build ----------------------------------------------------------------------------------------


class CloudBuildProvider(pulumi.dynamic.ResourceProvider):
    """Runs one Cloud Build build per resource. Pulumi serializes this class into the state (dill) and
    runs it in a separate process, so it is self-contained: no module-level helpers, imports inside
    the methods. Its ``__module__`` (and its methods') is ``__main__``, so dill stores it by value and
    the provider process never imports ``infra`` (tests/test_infra.py proves it)."""

    serialize_as_secret_always = False  # nothing secret in the code; the token input is a secret itself

    def check(self, _olds: dict[str, Any], news: dict[str, Any]) -> pulumi.dynamic.CheckResult:
        import pulumi.dynamic as dyn

        keys = ("project", "location", "bucket", "object", "dockerfile", "image", "serviceAccount")
        failures = [dyn.CheckFailure(k, f"{k} is required") for k in keys if news.get(k) in (None, "")]
        return dyn.CheckResult(news, failures)

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> pulumi.dynamic.DiffResult:
        import pulumi.dynamic as dyn

        keys = ("project", "location", "bucket", "object", "dockerfile", "image", "serviceAccount")
        changed = [k for k in keys if olds.get(k) != news.get(k)]
        return dyn.DiffResult(changes=bool(changed), replaces=changed, delete_before_replace=False)

    def create(self, props: dict[str, Any]) -> pulumi.dynamic.CreateResult:
        import time as _time

        import pulumi.dynamic as dyn
        import requests

        api = "https://cloudbuild.googleapis.com/v1/"
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {props['accessToken']}"

        def call(method: str, url: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
            response = session.request(method, url, json=body, timeout=60)
            if response.status_code >= 400:
                raise RuntimeError(
                    f"Cloud Build API {method} {url}: HTTP {response.status_code}: {response.text}"
                )
            operation: dict[str, Any] = response.json()  # every answer of these calls is an Operation object
            return operation

        timeout = int(props.get("timeoutSeconds") or 1800)
        build = {
            "source": {"storageSource": {"bucket": props["bucket"], "object": props["object"]}},
            "steps": [
                {
                    "name": props["builderImage"],
                    "env": ["DOCKER_BUILDKIT=1"],
                    "args": ["build", "--file", props["dockerfile"], "--tag", props["image"], "."],
                }
            ],
            "images": [props["image"]],
            "serviceAccount": props["serviceAccount"],
            # A build account chosen by the caller needs an explicit log destination.
            "options": {"logging": "CLOUD_LOGGING_ONLY"},
            "timeout": f"{timeout}s",
            "tags": ["askbase"],
        }
        parent = f"projects/{props['project']}/locations/{props['location']}"
        operation = call("POST", f"{api}{parent}/builds", build)
        meta = (operation.get("metadata") or {}).get("build") or {}
        build_id, log_url = meta.get("id", ""), meta.get("logUrl", "")
        deadline = _time.monotonic() + timeout + 300
        while not operation.get("done"):
            if _time.monotonic() > deadline:
                raise RuntimeError(f"Cloud Build {build_id} did not finish in time; logs: {log_url}")
            _time.sleep(10)
            operation = call("GET", f"{api}{operation['name']}")
        result = operation.get("response") or {}
        if operation.get("error") or result.get("status") != "SUCCESS":
            why = result.get("statusDetail") or (operation.get("error") or {}).get("message", "")
            status = result.get("status", "FAILURE")
            raise RuntimeError(f"Cloud Build {build_id} {status}: {why}; logs: {log_url}")
        digests = [i.get("digest", "") for i in (result.get("results") or {}).get("images") or []]
        if not digests or not digests[0]:
            raise RuntimeError(f"Cloud Build {build_id} pushed no image; logs: {log_url}")
        image = props["image"].split("@")[0]
        # The token is not kept in the outputs (the state): it expires, and only create needs it.
        outs = {k: v for k, v in props.items() if k != "accessToken"}
        outs.update(buildId=build_id, logUrl=log_url, digest=digests[0], ref=f"{image}@{digests[0]}")
        return dyn.CreateResult(id_=build_id or props["image"], outs=outs)

    def delete(self, _id: str, _props: dict[str, Any]) -> None:
        # A build is history; its image stays until the repository's cleanup policy removes it.
        return None


# Stored by value (see the class docstring): dill pickles a class or function by reference when it can
# find it under its __module__ and __qualname__, and by value when it cannot; nothing of this name
# lives in the program's __main__.
CloudBuildProvider.__module__ = "__main__"
for _member in vars(CloudBuildProvider).values():
    if callable(_member) and hasattr(_member, "__module__"):
        _member.__module__ = "__main__"
del _member


@dataclass(frozen=True)
class CloudBuildImageArgs:
    project: pulumi.Input[str]
    location: pulumi.Input[str]
    bucket: pulumi.Input[str]
    object: pulumi.Input[str]  # the uploaded context archive
    dockerfile: str  # inside the archive
    image: pulumi.Input[str]  # <registry>/<name>:<tag>
    service_account: pulumi.Input[str]  # projects/<p>/serviceAccounts/<email>
    access_token: pulumi.Input[str]  # the Google provider's token (gcp.organizations.get_client_config)
    timeout_seconds: int = BUILD_TIMEOUT_SECONDS


class CloudBuildImage(pulumi.dynamic.Resource, module="askbase", name="CloudBuildImage"):
    """One Cloud Build build of a Dockerfile; ``ref`` is ``<image>@sha256:<digest>`` once pushed."""

    ref: pulumi.Output[str]
    digest: pulumi.Output[str]
    buildId: pulumi.Output[str]
    logUrl: pulumi.Output[str]

    def __init__(self, name: str, args: CloudBuildImageArgs, opts: pulumi.ResourceOptions | None = None):
        props = {
            "project": args.project,
            "location": args.location,
            "bucket": args.bucket,
            "object": args.object,
            "dockerfile": args.dockerfile,
            "image": args.image,
            "serviceAccount": args.service_account,
            "accessToken": pulumi.Output.secret(args.access_token),
            "timeoutSeconds": args.timeout_seconds,
            "builderImage": CLOUD_BUILD_DOCKER,
            "ref": None,
            "digest": None,
            "buildId": None,
            "logUrl": None,
        }
        super().__init__(CloudBuildProvider(), name, props, opts)


# --- the component ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ImageSpec:
    key: str  # the service it is for ("qa" / "botrunner"), and its name in the registry
    dockerfile: Path
    prebuilt: str = ""  # an image reference to run as it is, instead of building one


@dataclass(frozen=True)
class CloudBuildArgs:
    """Where the Cloud Build path uploads the build contexts and whom the builds run as."""

    bucket: pulumi.Input[str]  # build-inputs bucket (the function-sources bucket)
    service_account: pulumi.Input[str]  # projects/<p>/serviceAccounts/<email>
    out_dir: Path  # where the context archives are written locally


@dataclass(frozen=True)
class ImagesArgs:
    project: str
    region: str
    registry_url: pulumi.Input[str]  # <region>-docker.pkg.dev/<project>/<repo>
    context: Path  # what every Dockerfile is built against: the repository root
    images: Sequence[ImageSpec]
    builder: str = "auto"  # the askbase:imageBuilder setting: one of IMAGE_BUILDERS
    cloud_build: CloudBuildArgs | None = None  # needed when the Cloud Build path builds


# The build resources' parent before images were a component of their own (see Images).
FORMER_PARENT = ("Services", "services")


class Images(Component):
    """Each service's image, as the reference its Cloud Run service runs (:attr:`refs`): prebuilt, or
    built and pushed during ``pulumi up`` by :attr:`builder` ("docker" or "cloudbuild"; "prebuilt"
    when every image is given).

    State migration: the build resources were children of the ``Services`` component ("services")
    until images became a concern of their own. Pulumi puts a resource's parent chain into its URN,
    so each one carries ``Alias(parent=<that component's URN>)``: a stack deployed before finds its
    images and build contexts under the old URNs and keeps them, instead of building again.
    """

    def __init__(
        self,
        name: str,
        args: ImagesArgs,
        depends_on: Sequence[pulumi.Resource] = (),
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("Images", name, depends_on, opts)
        kind, former_name = FORMER_PARENT
        self._from_services = pulumi.Alias(parent=pulumi.create_urn(former_name, f"{TYPE_PREFIX}:{kind}"))
        to_build = [spec for spec in args.images if not spec.prebuilt]
        self.builder = resolve_builder(args.builder, probe=docker_usable) if to_build else "prebuilt"
        access_token: pulumi.Output[str] | None = None
        if to_build:
            # Short-lived token of whoever runs `pulumi up` (the Google provider's): for the Docker push
            # or the Cloud Build API call only.
            token: pulumi.Output[str] = gcp.organizations.get_client_config_output().access_token
            access_token = pulumi.Output.secret(token)
        self.refs: dict[str, pulumi.Output[str]] = {}
        for spec in args.images:
            if spec.prebuilt:
                self.refs[spec.key] = pulumi.Output.from_input(spec.prebuilt)
                continue
            assert access_token is not None  # set above: this image is one of to_build
            if self.builder == "cloudbuild":
                self.refs[spec.key] = self._cloud_build(args, spec, access_token)
            else:
                self.refs[spec.key] = self._docker_build(args, spec, access_token)
        self.register_outputs({"refs": self.refs})

    def _docker_build(
        self, args: ImagesArgs, spec: ImageSpec, access_token: pulumi.Input[str]
    ) -> pulumi.Output[str]:
        tag = pulumi.Output.concat(args.registry_url, "/", spec.key, ":latest")
        built = docker_build.Image(
            f"{spec.key}-image",
            context=docker_build.BuildContextArgs(location=str(args.context)),
            dockerfile=docker_build.DockerfileArgs(location=str(spec.dockerfile)),
            platforms=[docker_build.Platform.LINUX_AMD64],  # Cloud Run runs amd64
            tags=[tag],
            push=True,
            build_on_preview=False,
            registries=[
                docker_build.RegistryArgs(
                    address=pulumi.Output.from_input(args.registry_url).apply(lambda u: u.split("/")[0]),
                    username="oauth2accesstoken",
                    password=access_token,
                )
            ],
            opts=self.child(aliases=[self._from_services]),
        )
        # ref = "<tag>@sha256:<digest>": the service changes exactly when the image does.
        return built.ref

    def _cloud_build(
        self, args: ImagesArgs, spec: ImageSpec, access_token: pulumi.Input[str]
    ) -> pulumi.Output[str]:
        if args.cloud_build is None:
            raise ValueError("the Cloud Build path needs ImagesArgs.cloud_build")
        context = build_context(spec.key, args.context, spec.dockerfile, args.cloud_build.out_dir)
        source = gcp.storage.BucketObject(
            f"{spec.key}-image-context",
            bucket=args.cloud_build.bucket,
            name=context.object_name,
            content_type="application/gzip",
            source=pulumi.FileAsset(str(context.path)),  # byte for byte: its name is its content hash
            opts=self.child(aliases=[self._from_services]),
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
                access_token=access_token,
            ),
            opts=self.child(source, aliases=[self._from_services]),
        )
        return built.ref
