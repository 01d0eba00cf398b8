"""The suite's one policy for property tests (hypothesis).

The suite replays the same examples on every run (derandomized, no example database), so a failure in CI
is a regression, never bad luck. A longer random search is one command (README, "Tests"):

    ASKBASE_FUZZ_RANDOM=1 ASKBASE_FUZZ_EXAMPLES=1000 .venv/bin/python -m pytest tests/test_fuzz_http.py

hypothesis then prints the seed and the failing example's blob to reproduce it.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from hypothesis import HealthCheck, settings

RANDOM = os.environ.get("ASKBASE_FUZZ_RANDOM") == "1"


def property_settings(examples: int, suppress: Iterable[HealthCheck] = ()) -> settings:
    """Settings for one property test: ``examples`` cases (``ASKBASE_FUZZ_EXAMPLES`` overrides), no
    deadline (the machine is shared), replayed unless ``ASKBASE_FUZZ_RANDOM=1``, and ``too_slow``
    never failing a test (generating long texts on a busy two-core machine trips it)."""
    return settings(
        max_examples=int(os.environ.get("ASKBASE_FUZZ_EXAMPLES", examples)),
        deadline=None,
        derandomize=not RANDOM,
        database=None,
        print_blob=True,
        suppress_health_check=[HealthCheck.too_slow, *suppress],
    )
