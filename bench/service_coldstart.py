"""qa and botrunner cold start: the development virtualenv against each service's runtime set alone.

    .venv/bin/python bench/service_coldstart.py              # 5 runs per row, 465 chunks for qa
    .venv/bin/python bench/service_coldstart.py --runs 7 --size 465

Each run spawns the service's container command (its Dockerfile CMD, ``--bind`` to a loopback port) in
a new process on the emulators, and times:

- qa: ``gunicorn --config services/qa/gunicorn.conf.py services.qa.wsgi:app`` (1 worker, 8 threads);
  spawn → the first ``POST /api/ask`` answered 200 with sources, as bench/qa_latency.py's cold-start row
  (same settings, a new data directory each run: restore of the published snapshot from the GCS
  emulator, unpack, open, load the embedder from the cached ONNX graph, search, answer, Firestore write).
- botrunner: ``gunicorn --workers 1 --threads 16 --worker-class gthread --timeout 0 --graceful-timeout 20
  services.botrunner.wsgi:app``; spawn → the first ``GET /healthz`` 200, then → the first
  ``GET /api/bots`` 200 (header ``X-Askbase-User``: a Firestore query on the emulator, the client built on
  that first use). Local settings: ``internal_auth=none`` (no OIDC verification), a token key from the
  environment; the start-up reconcile runs as deployed (one bot, stopped).
- the CPU time (user + system) the service's processes had used at that moment, the gunicorn master and
  its worker, with their children (qa restores in a child process): wall times on a loaded 2-core machine
  follow the load, CPU time much less.

Two variants per service, interleaved run by run so the machine's load falls on both alike:

- ``dev venv``: ``.venv/bin/gunicorn``, cwd and ``PYTHONPATH`` the checkout (what qa_latency.py measures);
- ``runtime set``: a virtualenv holding only the service's pinned set, ``deploy/requirements/<name>.txt``
  (qa: plus ``nodeps.txt``, the model package, as its image installs it), its files linked from ``.venv``
  by ``infra.deployable_env.link_environment``; that virtualenv's ``gunicorn``; the code as the image holds it
  (``shared/``, ``services/__init__.py``, ``services/<name>/``, symlinked into a directory that is the cwd
  and on the path by a ``.pth`` file), no ``PYTHONPATH``.

Both variants read the same files (the set's are symlinks to the development virtualenv's), bytecode
included, so the difference is what the interpreter finds on its path, not the disk cache. One untimed
start per row comes first. Median (min-max).

``--compare DIR`` measures code instead of sets: this checkout against another one (e.g. ``git archive
HEAD | tar -x -C /tmp/before``), both from the development virtualenv, interleaved the same way. Each
tree gets its own ``XDG_CACHE_HOME`` holding the ONNX graph its own code builds (built before timing, as
the image build does), since two graph versions in one cache would each delete the other. With
``--runtime-set`` both trees run from the service's runtime set instead (one linked virtualenv per tree,
each tree's code as the image holds it): the deployed form, before and after a change.
"""

from __future__ import annotations

import argparse
import base64
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import httpx  # noqa: E402
from qa_latency import BOT, PROJECT, QUESTIONS, ask, publish, service_env  # noqa: E402

from infra import deployable_env  # noqa: E402
from shared.emulators import free_port, running_stack  # noqa: E402
from shared.gcp import firestore_client  # noqa: E402

QA_ARGS = ["--config", "services/qa/gunicorn.conf.py", "services.qa.wsgi:app"]
BOTRUNNER_ARGS = [
    "--workers", "1", "--threads", "16", "--worker-class", "gthread",
    "--timeout", "0", "--graceful-timeout", "20", "services.botrunner.wsgi:app",
]  # fmt: skip
USER = "bench@example.com"
LOG_DIR = [Path(tempfile.gettempdir())]  # where the services' output goes (main() sets it)
TOKEN_KEY = base64.b64encode(os.urandom(32)).decode()  # a throwaway key for this run


@dataclass
class Variant:
    service: str  # "qa" or "botrunner"
    name: str  # "dev venv" or "runtime set"
    gunicorn: Path
    cwd: Path
    env: dict[str, str]


def linked_variant(service: str, tmp: Path, base_env: dict[str, str]) -> Variant:
    source = deployable_env.image_source(tmp, service)
    envdir = tmp / f"env-{service}"
    python = deployable_env.link_environment(deployable_env.installed_names(service), envdir, source=source)
    # Really only the set: the project's code comes from the image source, a dev tool is not importable.
    probe = subprocess.run(
        [str(python), "-c", "import sys, shared, gunicorn, importlib.util as u; "
         "print(sys.prefix, shared.__file__, gunicorn.__file__, u.find_spec('pytest'))"],
        cwd=source, env=_clean(base_env), capture_output=True, text=True, check=True,
    )  # fmt: skip
    prefix, shared_file, gunicorn_file, pytest_spec = probe.stdout.split()
    assert Path(prefix) == envdir and shared_file.startswith(str(source)), probe.stdout
    assert gunicorn_file.startswith(str(envdir)) and pytest_spec == "None", probe.stdout
    env = _clean(base_env) | {"PATH": f"{envdir / 'bin'}:{os.environ.get('PATH', '')}"}
    return Variant(service, "runtime set", envdir / "bin" / "gunicorn", source, env)


def dev_variant(service: str, base_env: dict[str, str]) -> Variant:
    env = base_env | {"PYTHONPATH": str(ROOT)}
    return Variant(service, "dev venv", Path(sys.executable).parent / "gunicorn", ROOT, env)


def tree_variant(
    service: str, name: str, tree: Path, base_env: dict[str, str], cache: Path, linked_in: Path | None = None
) -> Variant:
    """``tree``'s code with its ONNX graph built into ``cache``: from the development virtualenv, or
    (``linked_in``, a scratch directory) from the service's runtime set, the code laid out as its image
    holds it (what :func:`linked_variant` does for this checkout)."""
    if linked_in is None:
        env = _clean(base_env) | {"PYTHONPATH": str(tree), "XDG_CACHE_HOME": str(cache)}
        python, gunicorn, cwd = Path(sys.executable), Path(sys.executable).parent / "gunicorn", tree
    else:
        slug = name.replace(" ", "-")
        cwd = linked_in / f"{service}-src-{slug}"
        (cwd / "services").mkdir(parents=True)
        (cwd / "shared").symlink_to(tree / "shared")
        (cwd / "services" / "__init__.py").symlink_to(tree / "services" / "__init__.py")
        (cwd / "services" / service).symlink_to(tree / "services" / service)
        envdir = linked_in / f"env-{service}-{slug}"
        python = deployable_env.link_environment(deployable_env.installed_names(service), envdir, source=cwd)
        gunicorn = envdir / "bin" / "gunicorn"
        env = _clean(base_env) | {
            "PATH": f"{envdir / 'bin'}:{os.environ.get('PATH', '')}",
            "XDG_CACHE_HOME": str(cache),
        }
    subprocess.run(
        [str(python), "-m", "shared.knowledge.embeddings"], cwd=cwd, env=env, check=True, capture_output=True
    )
    return Variant(service, name, gunicorn, cwd, env)


def _clean(env: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in env.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}


def cpu_seconds(pid: int) -> float:
    """User + system CPU of the process, its live children (recursively) and its reaped children."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except FileNotFoundError:
        return 0.0
    own = sum(int(f) for f in fields[11:15]) / os.sysconf("SC_CLK_TCK")  # utime stime cutime cstime
    return own + sum(cpu_seconds(int(child)) for child in children)


def _spawn(variant: Variant, args: list[str], port: int, env: dict[str, str], log) -> subprocess.Popen:
    argv = [str(variant.gunicorn), "--bind", f"127.0.0.1:{port}", *args]
    return subprocess.Popen(argv, cwd=variant.cwd, env=env, stdout=log, stderr=subprocess.STDOUT)


def _stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _until(proc: subprocess.Popen, what: str, log: Path, call) -> None:
    deadline = time.monotonic() + 120
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"{what}: the service exited during start; see {log}")
        try:
            if call():
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what}: no 200 within 120 s; see {log}")
        time.sleep(0.02)


def qa_start(variant: Variant, bucket: str, tmp: Path, run: str) -> dict[str, float]:
    port = free_port()
    env = variant.env | {
        k: v for k, v in service_env(bucket, tmp / f"data-{run}", port).items() if k in _QA_KEYS
    }
    log = LOG_DIR[0] / "qa.log"
    with open(log, "ab") as out, httpx.Client(timeout=30) as client:
        started = time.perf_counter()
        proc = _spawn(variant, QA_ARGS, port, env, out)
        try:
            base = f"http://127.0.0.1:{port}"

            def answered() -> bool:
                response = ask(client, base, QUESTIONS[0], "bench:cold")
                return response.status_code == 200 and bool(response.json()["sources"])

            _until(proc, f"qa {variant.name}", log, answered)
            return {"answer": time.perf_counter() - started, "answer_cpu": cpu_seconds(proc.pid)}
        finally:
            _stop(proc)


# The variables qa_latency.service_env sets (it starts from os.environ, which the variant's env holds).
_QA_KEYS = {
    "ASKBASE_ENV", "GOOGLE_CLOUD_PROJECT", "ASKBASE_BUCKET", "ASKBASE_DATA_DIR", "ASKBASE_SESSION_SECRET",
    "ASKBASE_RATE_LIMIT_PER_MINUTE", "ASKBASE_LOG_LEVEL", "PORT",
}  # fmt: skip


def botrunner_start(variant: Variant, tmp: Path, run: str) -> dict[str, float]:
    port = free_port()
    env = variant.env | {
        "ASKBASE_ENV": "local",
        "GOOGLE_CLOUD_PROJECT": PROJECT,
        "ASKBASE_DATA_DIR": str(tmp / f"data-{run}"),
        "ASKBASE_TOKEN_KEY": TOKEN_KEY,
        "ASKBASE_INTERNAL_AUTH": "none",
        "ASKBASE_LOG_LEVEL": "WARNING",
        "PORT": str(port),
    }
    log = LOG_DIR[0] / "botrunner.log"
    out_times: dict[str, float] = {}
    with open(log, "ab") as out, httpx.Client(timeout=30) as client:
        started = time.perf_counter()
        proc = _spawn(variant, BOTRUNNER_ARGS, port, env, out)
        try:
            base = f"http://127.0.0.1:{port}"
            _until(proc, f"botrunner {variant.name} /healthz", log,
                   lambda: client.get(base + "/healthz").status_code == 200)  # fmt: skip
            out_times["healthz"] = time.perf_counter() - started
            out_times["healthz_cpu"] = cpu_seconds(proc.pid)

            def listed() -> bool:
                response = client.get(base + "/api/bots", headers={"X-Askbase-User": USER})
                return response.status_code == 200 and "bots" in response.json()

            _until(proc, f"botrunner {variant.name} /api/bots", log, listed)
            out_times["bots"] = time.perf_counter() - started
            out_times["bots_cpu"] = cpu_seconds(proc.pid)
            return out_times
        finally:
            _stop(proc)


def fmt(values: list[float]) -> str:
    return f"{statistics.median(values):.2f} s ({min(values):.2f}-{max(values):.2f})"


def diff(values: list[float]) -> str:
    return f"{statistics.median(values):+.2f} s ({min(values):+.2f} to {max(values):+.2f})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=5, help="timed cold starts per row")
    parser.add_argument("--size", type=int, default=465, help="chunks in qa's published snapshot")
    parser.add_argument("--only", choices=["qa", "botrunner"], help="one service only")
    parser.add_argument("--logs", type=Path, help="keep the services' output here (default: deleted)")
    parser.add_argument("--compare", type=Path, help="another checkout: its code against this one's")
    parser.add_argument(
        "--runtime-set", action="store_true", help="with --compare: both trees from the runtime set"
    )
    args = parser.parse_args(argv)
    services = [args.only] if args.only else ["qa", "botrunner"]
    loads = [os.getloadavg()[0]]
    results: dict[tuple[str, str], list[dict[str, float]]] = {}
    with tempfile.TemporaryDirectory(prefix="askbase-coldstart-") as tmp_name, running_stack(PROJECT):
        tmp = Path(tmp_name)
        LOG_DIR[0] = args.logs or tmp
        LOG_DIR[0].mkdir(parents=True, exist_ok=True)
        firestore_client(PROJECT).collection("bots").document(BOT).set(
            {"owner": f"user:{USER}", "owner_email": USER, "model": "extractive"}
        )
        bucket = f"askbase-bench-{uuid.uuid4().hex[:8]}"
        chunks = 0
        if "qa" in services:
            print(f"building and publishing {args.size} chunks…", file=sys.stderr)
            chunks = publish(args.size, tmp, bucket)
        base_env = dict(os.environ)
        variants = []
        for service in services:
            if args.compare:
                print(f"building each tree's ONNX graph for {service}…", file=sys.stderr)
                linked_in = tmp if args.runtime_set else None
                variants += [
                    tree_variant(
                        service,
                        "compare tree",
                        args.compare.resolve(),
                        base_env,
                        tmp / "cache-compare",
                        linked_in,
                    ),
                    tree_variant(service, "this tree", ROOT, base_env, tmp / "cache-this", linked_in),
                ]
                continue
            print(f"linking {service}'s runtime set…", file=sys.stderr)
            variants += [dev_variant(service, base_env), linked_variant(service, tmp, base_env)]

        def once(v: Variant, run: str) -> dict[str, float]:
            if v.service == "qa":
                return qa_start(v, bucket, tmp, f"{v.service}-{v.name}-{run}".replace(" ", "-"))
            return botrunner_start(v, tmp, f"{v.service}-{v.name}-{run}".replace(" ", "-"))

        for v in variants:  # untimed: first touch of the files
            once(v, "warm")
        for run in range(args.runs):
            for v in variants if run % 2 == 0 else reversed(variants):
                results.setdefault((v.service, v.name), []).append(once(v, str(run)))
            loads.append(os.getloadavg()[0])
            print(f"run {run + 1}/{args.runs} done, load {loads[-1]:.1f}", file=sys.stderr)

    print(f"\n{'cold start (median (min-max) of ' + str(args.runs) + ')':<58}{'wall':>24}{'CPU':>24}")
    for (service, name), samples in results.items():
        if service == "qa":
            rows = [(f"qa, {name}: spawn → first /api/ask 200 ({chunks} chunks)", "answer")]
        else:
            rows = [
                (f"botrunner, {name}: spawn → first /healthz 200", "healthz"),
                (f"botrunner, {name}: spawn → first /api/bots 200", "bots"),
            ]
        for label, key in rows:
            wall = [s[key] for s in samples]
            cpu = [s[key + "_cpu"] for s in samples]
            print(f"{label:<58}{fmt(wall):>24}{fmt(cpu):>24}")
    # Runs are interleaved, so the per-run difference cancels most of the load that moves both.
    first, second = ("compare tree", "this tree") if args.compare else ("dev venv", "runtime set")
    print(f"\n{second} - {first}, paired by run: median (min-max) of the differences, wall / CPU")
    keys = {"qa": ["answer"], "botrunner": ["healthz", "bots"]}
    for service in services:
        dev, linked = results[(service, first)], results[(service, second)]
        for key in keys[service]:
            walls = [b[key] - a[key] for a, b in zip(dev, linked, strict=True)]
            cpus = [b[key + "_cpu"] - a[key + "_cpu"] for a, b in zip(dev, linked, strict=True)]
            print(f"  {service} {key}: {diff(walls)} / {diff(cpus)}")
    print("\nsingle runs, wall s:")
    for (service, name), samples in results.items():
        for key in keys[service]:
            print(f"  {service} {key} {name}: " + " ".join(f"{s[key]:.2f}" for s in samples))
    print(f"load average (1 min) during the runs: {min(loads):.1f}-{max(loads):.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
