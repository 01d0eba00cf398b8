"""Crash consistency of publishing: SIGKILL the scrape job at random points; never serve a torn index."""

from __future__ import annotations

import pytest

from shared.config import Settings, Source, SourceKind
from shared.knowledge.embeddings import load_embedder
from tests import sites
from tests.crash_harness import check_published, child_env, clear_lease, run_child, run_trials

pytestmark = pytest.mark.emulators


def test_sigkill_at_random_points_never_tears_the_published_index(
    emulators, settings: Settings, docs_site, tmp_path
) -> None:
    cfg = settings.model_copy(
        update={"sources": [Source(name="docs", kind=SourceKind.SITEMAP, url=docs_site.url("/sitemap.xml"))]}
    )
    report = run_trials(cfg, docs_site, load_embedder(), tmp_path, trials=5, seed=7, min_kills=3)
    assert report.trials >= 5
    assert report.torn == 0, report.failures
    assert report.killed >= 3, report  # the delays must really interrupt runs, or this proves nothing

    # After the crashes, an uninterrupted run still publishes and its snapshot answers.
    clear_lease(cfg)
    docs_site.edit_page("/docs/faq", sites.page_for("/docs/faq", version=99))
    killed, *_ = run_child(child_env(cfg), kill_after=None)
    assert not killed
    assert check_published(cfg, load_embedder(), tmp_path / "final") is None
