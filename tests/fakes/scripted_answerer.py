"""An answerer whose verdict the test decides, for feedback and gaps tests on the fake index.

``ScriptedAnswerer(refuse=..., weak=...)``: a question ``refuse`` accepts is refused (nothing cited,
``related`` names one closest page); a question in ``weak`` cites the first retrieved passage with that
score (low support); any other question cites it with its own score (the fake index's 0.9).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Collection, Mapping
from typing import Any

from shared.knowledge.retrieval import Passage
from shared.qa.answerers import Answer

CLOSEST_URL = "https://docs.example.com/closest"


class ScriptedAnswerer:
    name = "scripted"

    def __init__(
        self,
        refuse: Callable[[str], bool] | Collection[str] = (),
        weak: Mapping[str, float] | None = None,
    ) -> None:
        self._refuse = refuse if callable(refuse) else (lambda q, qs=frozenset(refuse): q in qs)
        self._weak = dict(weak or {})

    def answer(self, question: str, passages: list[Passage], system_prompt: Any = None) -> Answer:
        if self._refuse(question) or not passages:
            closest = Passage(
                chunk_id="closest-1",
                text="Closest page\n\nSomething near it.",
                url=CLOSEST_URL,
                title="Closest page",
                anchor="near",
                source="docs",
                score=0.2,
            )
            return Answer(
                text="The docs don't cover that. The closest pages: Closest page.",
                answerer=self.name,
                refused=True,
                related=[closest],
            )
        cited = dataclasses.replace(passages[0], score=self._weak.get(question, passages[0].score))
        return Answer(text="Here is what the docs say about it. [1]", sources=[cited], answerer=self.name)
