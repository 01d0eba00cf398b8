"""Pulumi entry point (``Pulumi.yaml``: ``main: infra/``): read the stack config, build, export.

Pulumi runs this file as a script with ``infra/`` on ``sys.path``, not the repository root; the root
is added so the program is imported as the ``infra`` package, exactly as the tests import it.
"""

import sys
from pathlib import Path

ROOT = str(Path(__file__).resolve().parents[1])
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import pulumi  # noqa: E402

from infra.config import load_config  # noqa: E402
from infra.program import build  # noqa: E402

program = build(load_config())
for name, value in program.outputs.items():
    pulumi.export(name, value)
