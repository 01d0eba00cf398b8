"""Pulumi entry point (``Pulumi.yaml``: ``main: infra/``): read the stack config, build, export.

Pulumi runs this file as a script with ``infra/`` on ``sys.path``, not the repository root; the root
is added so the program is imported as the ``infra`` package, exactly as the tests import it.
"""

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = str(HERE.parent)
# Drop infra/ itself from the path (its config.py, archive.py... must not shadow other modules named
# so) and put the repository root first.
sys.path[:] = [ROOT] + [p for p in sys.path if p and Path(p).resolve() not in (HERE, Path(ROOT))]

import pulumi  # noqa: E402

from infra.config import load_config  # noqa: E402
from infra.program import build  # noqa: E402

program = build(load_config())
for name, value in program.outputs.items():
    pulumi.export(name, value)
