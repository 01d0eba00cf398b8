"""Sentence embeddings: all-MiniLM-L6-v2 run by onnxruntime, offline, without torch.

The model runs from the ONNX graph :mod:`shared.knowledge.onnx_graph` builds from the packaged weights
and caches on disk; this module tokenises, batches and runs it, and keeps one embedder per process.
The graph's input is the word-embedding rows of each batch's tokens, which
:class:`~shared.knowledge.word_table.WordTable` reads from the table's own file (47 MB that no
process holds in memory).

Speed (bench/embeddings.py; figures in bench/README.md, "Performance round 2"): the graph uses
onnxruntime's fused transformer kernels, the session's threads sleep instead of spinning while they
wait, and :meth:`MiniLMEmbedder.embed` sorts texts by token count and pads each batch only to its
longest text. Memory: the word-embedding table stays in its file, the session runs without
onnxruntime's CPU arena and hands the heap its load freed back to the system (see
:class:`MiniLMEmbedder`). None of this changes a vector beyond float rounding (tests/test_embeddings.py
holds them to the sentence-transformers reference).

Nothing here touches the network: a missing model is an error, never a download.
"""

from __future__ import annotations

import ctypes
import logging
import os
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np

from shared.knowledge.onnx_graph import (
    MINILM_ID,
    EmbedderUnavailable,
    MiniLMModel,
    cached_onnx_model,
    model_dir,
)
from shared.knowledge.word_table import WordTable

if TYPE_CHECKING:
    import onnxruntime

__all__ = [
    "BATCH_SIZE",
    "BATCH_TOKENS",
    "MAX_TOKENS",
    "MINILM_DIMENSION",
    "MINILM_ID",
    "Embedder",
    "EmbedderUnavailable",
    "MiniLMEmbedder",
    "available_cpus",
    "length_batches",
    "load_embedder",
]

log = logging.getLogger(__name__)

MINILM_DIMENSION = 384
# all-MiniLM-L6-v2 was trained with 256-token inputs (sentence_bert_config.json max_seq_length).
MAX_TOKENS = 256
# One model call holds at most this many texts, and at most BATCH_TOKENS tokens counting the padding.
# Texts are sorted by token count first, so a batch pads little. Measured on the 2-core machine with
# ~200-token chunks: 8-16 texts per call used 5-10 % less CPU per chunk than 32 or 64; short texts
# (queries of ~10 tokens) still go 64 to a call.
BATCH_SIZE = 64
BATCH_TOKENS = 8 * MAX_TOKENS


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into unit-length float32 vectors, one row per text."""

    id: str
    dimension: int

    def embed(self, texts: Sequence[str]) -> np.ndarray: ...


def available_cpus() -> int:
    """CPUs this process may run on (its affinity mask, e.g. a container's cpuset), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not Linux
        return max(1, os.cpu_count() or 1)


def release_free_heap() -> None:
    """Return the C heap's free pages to the system (glibc ``malloc_trim``); elsewhere a no-op.

    Loading the session parses the graph file (43 MB; 90 MB while it held the word table) and copies
    its weights into tensors; the parsed copy is freed afterwards, but glibc keeps freed pages in its
    arenas. Trimming once after the load gives them back: measured with the 90 MB graph and the arena
    off as well, the embedder alone held 164 MB after its load instead of 173-175 MB, and the qa app's
    imports, Chroma and the model 235 MB instead of 262 MB.
    Memory allocated later (opening a 10,000-chunk index) would otherwise have reused those pages,
    so a worker serving a large index ends at about the same RSS either way; the trim changes nothing
    the process computes.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc (macOS, musl): nothing to trim this way
        return
    trim = getattr(libc, "malloc_trim", None)
    if trim is not None:
        trim(0)


def length_batches(
    lengths: Sequence[int], max_texts: int = BATCH_SIZE, max_tokens: int = BATCH_TOKENS
) -> list[list[int]]:
    """Indices of ``lengths`` (token counts) grouped into model calls, shortest texts first.

    Every text is padded to the longest of its batch, and padding is computed like real tokens (the
    attention cost grows with the square of the width). Sorting by token count keeps neighbours
    alike; a batch closes at ``max_texts`` texts or when its padded size would pass ``max_tokens``.
    Real sites mix one-line sections with 256-token ones, so grouping by tokens (not characters:
    code and URLs tokenise at other rates than prose) is where padding is saved.
    """
    order = sorted(range(len(lengths)), key=lambda index: (lengths[index], index))
    batches: list[list[int]] = []
    batch: list[int] = []
    for index in order:
        # Sorted ascending: this text is the batch's longest if it joins.
        if batch and (len(batch) >= max_texts or (len(batch) + 1) * lengths[index] > max_tokens):
            batches.append(batch)
            batch = []
        batch.append(index)
    if batch:
        batches.append(batch)
    return batches


def _open_model(
    model: MiniLMModel, options: onnxruntime.SessionOptions
) -> tuple[WordTable, onnxruntime.InferenceSession]:
    """The word table and the inference session of ``model``; raises whatever a damaged file makes
    numpy or onnxruntime raise."""
    import onnxruntime

    graph = str(model.graph) if isinstance(model.graph, Path) else model.graph
    # The word-embedding table is not in the graph: the session would hold all 47 MB of it in
    # anonymous memory for the life of the process. embed() gathers each batch's rows from the table's
    # file and feeds them as the graph's input instead. Measured against the graph that gathered them
    # itself (64 chunks of mixed length, 24 queries): max abs difference 0.0, so the vectors, and this
    # embedder's id, are unchanged.
    words = (
        WordTable.open(model.word_table)
        if isinstance(model.word_table, Path)
        else WordTable(model.word_table)
    )
    session = onnxruntime.InferenceSession(graph, sess_options=options, providers=["CPUExecutionProvider"])
    return words, session


class MiniLMEmbedder:
    """all-MiniLM-L6-v2 on onnxruntime. Thread-safe: ``embed`` may be called concurrently."""

    id = MINILM_ID
    dimension = MINILM_DIMENSION

    def __init__(self, directory: Path | None = None, cache: Path | None = None, threads: int = 0) -> None:
        import onnxruntime
        from tokenizers import Tokenizer

        directory = directory or model_dir()
        tokenizer = Tokenizer.from_file(str(directory / "tokenizer.json"))
        # The shipped tokenizer.json truncates and pads to a fixed 128 tokens: longer chunks would be
        # silently cut and every short query padded. Use the model's 256, and no padding here: embed()
        # pads each batch to its own longest text.
        tokenizer.enable_truncation(max_length=MAX_TOKENS)
        tokenizer.no_padding()
        self._tokenizer = tokenizer

        options = onnxruntime.SessionOptions()
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = threads or available_cpus()
        options.inter_op_num_threads = 1  # one model call at a time per caller; the graph is a chain
        # Idle pool threads sleep instead of spinning: spinning cost 10-15 % more CPU per chunk on the
        # 2-core machine, CPU that a scrape's extraction and index writes (running beside the model)
        # and a loaded qa instance's request threads need.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        # No CPU arena: the arena keeps the largest batch's activations reserved for the life of the
        # process, which a qa worker answering one-line queries never needs again. Measured on the
        # 2-core machine, with the heap release below, after loading and embedding 64 ~200-token
        # chunks and 24 queries: 180-182 MB RSS against 234-236 MB with the arena; the vectors are
        # the same bit for bit (buffers are placed differently, the arithmetic is the same).
        options.enable_cpu_mem_arena = False
        options.log_severity_level = 3
        model = cached_onnx_model(directory, cache)
        try:
            self._words, self._session = _open_model(model, options)
        except Exception as exc:
            if not isinstance(model.graph, Path):
                # An in-memory model (the cache was not writable) was just built: nothing to rebuild.
                raise EmbedderUnavailable(f"cannot load the ONNX model ({exc})") from exc
            # The files are written atomically, so a bad one was damaged afterwards (a disk error, a
            # broken image layer). Every instance of an image would fail the same way: rebuild once.
            log.warning("cached ONNX model unreadable (%s); deleting it and building it again", exc)
            try:
                for stale in (model.graph, model.word_table):
                    if isinstance(stale, Path):
                        stale.unlink(missing_ok=True)
                model = cached_onnx_model(directory, cache)
                self._words, self._session = _open_model(model, options)
            except Exception as again:
                raise EmbedderUnavailable(f"cannot rebuild the cached ONNX model ({again})") from again
        # The first run allocates onnxruntime's buffers; pay for it here rather than in a request.
        self.embed(["warm up"])
        release_free_heap()

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Unit-length float32 vectors, shape ``[len(texts), 384]``, in the order given."""
        if isinstance(texts, str):
            raise TypeError("embed() takes a sequence of texts, not one string")
        out = np.empty((len(texts), self.dimension), dtype=np.float32)
        if not texts:
            return out
        encodings = self._tokenizer.encode_batch(list(texts))
        lengths = [len(encoding.ids) for encoding in encodings]
        for batch in length_batches(lengths):
            width = lengths[batch[-1]]  # the longest of the batch: batches come sorted by length
            ids = np.zeros((len(batch), width), dtype=np.int64)
            mask = np.zeros((len(batch), width), dtype=np.int64)
            for row, index in enumerate(batch):
                ids[row, : lengths[index]] = encodings[index].ids
                mask[row, : lengths[index]] = 1
            # Padding positions read row 0 ([PAD]), as the graph's own Gather did; the mask hides them.
            words = self._words.rows(ids)
            (vectors,) = self._session.run(["embeddings"], {"word_vectors": words, "attention_mask": mask})
            out[batch] = vectors
        return out

    def token_count(self, text: str) -> int:
        """Number of tokens ``text`` becomes (after truncation to 256, with [CLS] and [SEP])."""
        return len(self._tokenizer.encode(text).ids)


_LOADED: dict[str, Embedder] = {}
_LOAD_LOCK = threading.Lock()


def load_embedder(name: str = MINILM_ID) -> Embedder:
    """The process-wide embedder called ``name`` (only ``"minilm-l6-v2"`` exists). Offline."""
    with _LOAD_LOCK:
        embedder = _LOADED.get(name)
        if embedder is None:
            if name != MINILM_ID:
                raise ValueError(f"unknown embedder {name!r}; available: {MINILM_ID}")
            started = time.perf_counter()
            embedder = MiniLMEmbedder()
            log.info("loaded embedder %s in %.2f s", name, time.perf_counter() - started)
            _LOADED[name] = embedder
        return embedder


if __name__ == "__main__":
    # `python -m shared.knowledge.embeddings` builds the cached graph and word table ahead of time
    # (e.g. in a container image build), so the first request of a new instance does not pay ~2 s.
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    built = cached_onnx_model()
    for part in (built.graph, built.word_table):
        print(part if isinstance(part, Path) else "built in memory only: cache not writable")
