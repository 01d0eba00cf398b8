"""The answer rows a gaps report is computed from, and how they are read from Firestore.

:class:`AnswerRows` holds the answers of a period column by column, with pages interned
(:class:`PageTable`) and the stored float16 vectors packed into one buffer, so 100,000 answers cost
little more than their vectors. :func:`read_rows` fills it with one projected range query per scope
(no asker, no answer text), read as raw protobufs on a channel of its own (:func:`raw_documents`).
"""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import grpc  # type: ignore[import-untyped]  # grpcio ships no type information
import grpc.experimental  # type: ignore[import-untyped]
import numpy as np
from google.api_core import exceptions
from google.cloud import firestore
from google.cloud.firestore_v1.services.firestore.transports.grpc import FirestoreGrpcTransport
from google.cloud.firestore_v1.types import firestore as firestore_types

from shared.qa.answer_log import ANSWERS, VECTOR_DTYPE, PageRef, bot_time_key
from shared.qa.gaps_filters import GapsFilters

_FIELDS = [
    "question",
    "created_at",
    "refused",
    "top_score",
    "down_votes",
    "cited_pages",
    "closest_pages",
    "vector",
    "expire_at",
]

# A page as an answer names it: ``(url, title, source)``, or the packed string it is stored as.
Page = tuple[str, str, str] | str


@dataclass(frozen=True)
class PageInfo:
    url: str
    title: str
    source: str


class PageTable:
    """Pages interned: rows refer to them by number. A page is its URL; its title and source are the
    first seen."""

    def __init__(self) -> None:
        self.pages: list[PageInfo] = []
        self._index: dict[str, int] = {}
        self._packed: dict[str, int] = {}

    def intern(self, url: str, title: str, source: str) -> int:
        at = self._index.get(url)
        if at is None:
            at = self._index[url] = len(self.pages)
            self.pages.append(PageInfo(url, title or url, source))
        return at

    def intern_page(self, page: Page) -> int:
        """:meth:`intern` of ``(url, title, source)``, or :meth:`intern_packed` of a stored string."""
        if isinstance(page, str):
            at = self._packed.get(page)  # the common case inlined: called for every page of every row
            return self.intern_packed(page) if at is None else at
        return self.intern(*page)

    def intern_packed(self, value: str) -> int:
        """:meth:`intern` of a stored ``"<source>\t<title>\t<url>"``."""
        at = self._packed.get(value)
        if at is None:
            ref = PageRef.unpack(value)
            at = self._packed[value] = self.intern(ref.url, ref.title, ref.source)
        return at


@dataclass
class AnswerRows:
    """The answers of a report, column by column. Vectors are packed into one buffer as they are read
    (``vector_slot[i]``: the row's place in it, -1 for none), so 100,000 of them cost their 77 MB once."""

    questions: list[str] = field(default_factory=list)
    created: list[float] = field(default_factory=list)  # epoch seconds, UTC
    refused: list[bool] = field(default_factory=list)
    top_score: list[float] = field(default_factory=list)  # nan: nothing cited
    down_votes: list[int] = field(default_factory=list)
    cited: list[tuple[int, ...]] = field(default_factory=list)  # into pages
    related: list[tuple[int, ...]] = field(default_factory=list)
    vector_slot: list[int] = field(default_factory=list)
    pages: PageTable = field(default_factory=PageTable)
    _packed: bytearray = field(default_factory=bytearray)
    _width: int = 0  # bytes per vector: the first one decides

    def __len__(self) -> int:
        return len(self.questions)

    def add(
        self,
        question: str,
        created: float,
        refused: bool,
        top_score: float | None,
        down_votes: int,
        cited: Sequence[Page],
        related: Sequence[Page] = (),
        vector: bytes | None = None,
    ) -> None:
        """One answer; ``cited`` / ``related`` are its pages, each ``(url, title, source)`` or as stored
        (a :meth:`shared.qa.answer_log.PageRef.packed` string); ``vector`` the stored float16 bytes (one
        of another size than the first is treated as missing)."""
        self.questions.append(question)
        self.created.append(created)
        self.refused.append(refused)
        self.top_score.append(float("nan") if top_score is None else float(top_score))
        self.down_votes.append(down_votes)
        intern = self.pages.intern_page
        self.cited.append(tuple(map(intern, cited)))
        self.related.append(tuple(map(intern, related)))
        if vector and (not self._width or len(vector) == self._width):
            self._width = self._width or len(vector)
            self.vector_slot.append(len(self._packed) // self._width)
            self._packed += vector
        else:
            self.vector_slot.append(-1)

    def vector_matrix(self) -> np.ndarray:
        """Every stored vector, one row per slot (a view of the buffer: no copy)."""
        if not self._width:
            return np.empty((0, 0), dtype=VECTOR_DTYPE)
        return np.frombuffer(self._packed, dtype=VECTOR_DTYPE).reshape(
            -1, self._width // VECTOR_DTYPE().itemsize
        )


_RUN_QUERY = "/google.firestore.v1.Firestore/RunQuery"
_QUERY_TIMEOUT = 300.0  # seconds, as the client library's own RunQuery default
_CHANNEL_OPTIONS = [
    # One document per stream message, 100,000 messages: by default grpcio hands every message from its
    # channel thread to the reading thread (about 40 µs each); a single-threaded unary-stream reads them
    # on the calling thread. Measured with ``bench/gaps.py``'s 100,000 answers in the emulator: the
    # report process's CPU for the read fell from 5.8-8.0 s to 1.9-2.9 s.
    (grpc.experimental.ChannelOptions.SingleThreadedUnaryStream, 1),
    ("grpc.max_receive_message_length", -1),
    ("grpc.keepalive_time_ms", 30000),
]
# google.api_core's conversion is unannotated: typed here as what it does.
_api_error: Callable[[Any], Exception] = exceptions.from_grpc_error
_channels: weakref.WeakKeyDictionary[firestore.Client, grpc.Channel] = weakref.WeakKeyDictionary()
_channels_lock = threading.Lock()


def _channel(db: firestore.Client) -> grpc.Channel:
    """The report's channel to ``db``'s database, made once per client: insecure to an emulator (as the
    client library connects to one), else with the client's credentials."""
    with _channels_lock:
        channel = _channels.get(db)
        if channel is None:
            if db._emulator_host:
                channel = grpc.insecure_channel(db._emulator_host, options=_CHANNEL_OPTIONS)
            else:
                channel = FirestoreGrpcTransport.create_channel(
                    db._target, credentials=db._credentials, options=_CHANNEL_OPTIONS
                )
            _channels[db] = channel
        return channel


def raw_documents(db: firestore.Client, query: firestore.Query) -> Iterator[Any]:
    """The documents of ``query`` as raw protobuf messages.

    ``Query.stream()`` wraps every document in a ``DocumentSnapshot`` decoded through proto-plus, about
    three times the cost of the query itself at 100,000 documents (``bench/gaps.py``); this sends the
    same ``RunQuery`` request (with the client's metadata and routing header) on a single-threaded
    stream channel (:data:`_CHANNEL_OPTIONS`) and hands back the protobufs. Errors are raised as the
    client library raises them (``google.api_core.exceptions``). Private client API, pinned by
    ``requirements.lock`` and covered by ``tests/test_gaps.py`` against the emulator.
    """
    parent, _ = query._parent._parent_info()
    request = firestore_types.RunQueryRequest(parent=parent, structured_query=query._to_protobuf())
    # The routing header the client library adds to every RunQuery (``x-goog-request-params``).
    metadata = [*db._rpc_metadata, ("x-goog-request-params", urlencode({"parent": parent}, safe="/"))]
    if db._emulator_host:
        metadata.append(("authorization", "Bearer owner"))  # the emulator's admin: no security rules
    call = _channel(db).unary_stream(
        _RUN_QUERY,
        request_serializer=firestore_types.RunQueryRequest.serialize,
        response_deserializer=firestore_types.RunQueryResponse.pb().FromString,
    )
    try:
        for message in call(request, metadata=metadata, timeout=_QUERY_TIMEOUT):
            if message.HasField("document"):
                yield message.document
    except grpc.RpcError as error:
        raise _api_error(error) from error


def add_document(rows: AnswerRows, document: Any, source: str | None = None) -> bool:
    """Add one raw answer document to ``rows`` (with only ``source``'s pages when given); False when a
    source is given and the answer touches none of its pages, or when it has expired."""
    fields = document.fields  # a missing field reads as its type's default (the message is ours alone)
    expire = fields["expire_at"]
    if expire.WhichOneof("value_type") == "timestamp_value" and expire.timestamp_value.seconds <= time.time():
        return False  # TTL has not deleted it yet
    cited = [v.string_value for v in fields["cited_pages"].array_value.values]
    related = [v.string_value for v in fields["closest_pages"].array_value.values]
    if source is not None:
        prefix = source + "\t"
        cited = [p for p in cited if p.startswith(prefix)]
        related = [p for p in related if p.startswith(prefix)]
        if not cited and not related:
            return False
    score = fields["top_score"]
    created = fields["created_at"].timestamp_value
    rows.add(
        fields["question"].string_value,
        created.seconds + created.nanos / 1e9,
        fields["refused"].boolean_value,
        score.double_value if score.WhichOneof("value_type") == "double_value" else None,
        fields["down_votes"].integer_value,
        cited,
        related,
        fields["vector"].bytes_value or None,
    )
    return True


def read_rows(
    db: firestore.Client, filters: GapsFilters, bots: Sequence[str | None] | None = None
) -> AnswerRows:
    """The answers of the period (and source). ``bots`` None: all traffic; else only these bots' (None
    in it: the web chat's), one range query each on ``bot_time``. Projected: no asker, no answer text."""
    answers = db.collection(ANSWERS)
    queries: list[firestore.Query]
    if bots is None:
        queries = [
            answers.where(filter=firestore.FieldFilter("created_at", ">=", filters.since)).where(
                filter=firestore.FieldFilter("created_at", "<", filters.until)
            )
        ]
    else:
        queries = [
            answers.where(
                filter=firestore.FieldFilter("bot_time", ">=", bot_time_key(b, filters.since))
            ).where(filter=firestore.FieldFilter("bot_time", "<", bot_time_key(b, filters.until)))
            for b in dict.fromkeys(bots)
        ]
    rows = AnswerRows()
    for query in queries:
        for document in raw_documents(db, query.select(_FIELDS)):
            add_document(rows, document, filters.source)
    return rows
