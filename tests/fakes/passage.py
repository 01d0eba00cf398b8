"""Stand-in for shared.knowledge.retrieval.Passage until that module lands (same fields)."""

from dataclasses import dataclass


@dataclass(frozen=True)
class Passage:
    chunk_id: str
    text: str
    url: str
    title: str
    anchor: str
    source: str
    score: float
