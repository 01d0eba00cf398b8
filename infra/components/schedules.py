"""Cloud Scheduler: scrape every 30 minutes, reconcile bots every 10, each with an OIDC token."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_gcp as gcp

from infra.components.base import Component


@dataclass(frozen=True)
class JobSpec:
    key: str
    name: str
    schedule: str
    url: pulumi.Input[str]  # what is called
    audience: pulumi.Input[str]  # the target service's URL: what its IAM check expects
    attempt_deadline: str = "180s"
    retry_count: int = 0


@dataclass(frozen=True)
class SchedulesArgs:
    project: str
    region: str
    invoker_email: pulumi.Input[str]  # the dedicated scheduler-invoker account
    jobs: Sequence[JobSpec]
    time_zone: str = "Etc/UTC"


class Schedules(Component):
    def __init__(
        self,
        name: str,
        args: SchedulesArgs,
        depends_on: Sequence[pulumi.Resource] = (),
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("Schedules", name, depends_on, opts)
        self.jobs = {
            job.key: gcp.cloudscheduler.Job(
                job.key,
                project=args.project,
                region=args.region,
                name=job.name,
                schedule=job.schedule,
                time_zone=args.time_zone,
                attempt_deadline=job.attempt_deadline,
                retry_config=gcp.cloudscheduler.JobRetryConfigArgs(retry_count=job.retry_count),
                http_target=gcp.cloudscheduler.JobHttpTargetArgs(
                    uri=job.url,
                    http_method="POST",
                    oidc_token=gcp.cloudscheduler.JobHttpTargetOidcTokenArgs(
                        service_account_email=args.invoker_email, audience=job.audience
                    ),
                ),
                opts=self.child(),
            )
            for job in args.jobs
        }
        self.register_outputs({"jobs": {k: j.name for k, j in self.jobs.items()}})
