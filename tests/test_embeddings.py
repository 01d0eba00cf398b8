"""The MiniLM embedder: shape, normalisation, meaning, 256-token inputs, an independent check of the
ONNX graph against a plain-numpy BERT forward pass written here from the paper, not from the graph,
and the word-embedding table read from its own file rather than held in memory."""

from __future__ import annotations

import json
import math
import os
import random
import socket
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file
from tokenizers import Tokenizer

from shared.knowledge import embeddings, onnx_graph
from shared.knowledge.embeddings import (
    MINILM_DIMENSION,
    MINILM_ID,
    Embedder,
    MiniLMEmbedder,
    load_embedder,
)
from shared.knowledge.onnx_graph import MiniLMModel, cached_onnx_model, model_dir
from shared.knowledge.word_table import WordTable, save_word_table

SENTENCES = [
    "How do I reset my password?",
    "What are the steps to change a forgotten password?",
    "The cat sat on the warm windowsill all afternoon.",
    "Quarterly revenue grew by twelve percent in Europe.",
    "Installez le logiciel avant de lancer le serveur.",
]
LONG_TEXT = (
    "The deployment guide starts with the basics. "
    + " ".join(
        f"Step {i}: configure the widget number {i} and check that it reports green." for i in range(8)
    )
    + " Finally, the last part of this very long document is about penguins swimming in Antarctic waters,"
    " krill, sea ice and the breeding colonies of emperor penguins during the polar winter."
)


@pytest.fixture(scope="module")
def embedder() -> MiniLMEmbedder:
    loaded = load_embedder()
    assert isinstance(loaded, MiniLMEmbedder)
    return loaded


# --- an independent numpy BERT -------------------------------------------------------------------


def _layer_norm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    normalised: np.ndarray = (x - mean) / np.sqrt(var + eps) * weight + bias
    return normalised


def _gelu(x: np.ndarray) -> np.ndarray:
    erf = np.vectorize(math.erf, otypes=[np.float64])
    gelu: np.ndarray = 0.5 * x * (1.0 + erf(x / math.sqrt(2.0)))
    return gelu


def numpy_minilm(text: str) -> np.ndarray:
    """all-MiniLM-L6-v2 for one text in float64 numpy: no padding, no ONNX, no shared code."""
    directory = model_dir()
    weights = {k: v.astype(np.float64) for k, v in load_file(str(directory / "model.safetensors")).items()}
    tokenizer = Tokenizer.from_file(str(directory / "tokenizer.json"))
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_length=256)
    ids = np.array(tokenizer.encode(text).ids)

    x = (
        weights["embeddings.word_embeddings.weight"][ids]
        + weights["embeddings.position_embeddings.weight"][: len(ids)]
        + weights["embeddings.token_type_embeddings.weight"][0]
    )
    x = _layer_norm(x, weights["embeddings.LayerNorm.weight"], weights["embeddings.LayerNorm.bias"])
    heads, head_dim = 12, 32
    for layer in range(6):
        p = f"encoder.layer.{layer}."

        def dense(h: np.ndarray, name: str, p: str = p) -> np.ndarray:
            return h @ weights[p + name + ".weight"].T + weights[p + name + ".bias"]

        def split(h: np.ndarray) -> np.ndarray:
            return h.reshape(len(ids), heads, head_dim).transpose(1, 0, 2)

        q = split(dense(x, "attention.self.query"))
        k = split(dense(x, "attention.self.key"))
        v = split(dense(x, "attention.self.value"))
        scores = q @ k.transpose(0, 2, 1) / math.sqrt(head_dim)
        scores = np.exp(scores - scores.max(-1, keepdims=True))
        attention = scores / scores.sum(-1, keepdims=True)
        context = (attention @ v).transpose(1, 0, 2).reshape(len(ids), heads * head_dim)
        x = _layer_norm(
            x + dense(context, "attention.output.dense"),
            weights[p + "attention.output.LayerNorm.weight"],
            weights[p + "attention.output.LayerNorm.bias"],
        )
        x = _layer_norm(
            x + dense(_gelu(dense(x, "intermediate.dense")), "output.dense"),
            weights[p + "output.LayerNorm.weight"],
            weights[p + "output.LayerNorm.bias"],
        )
    pooled = x.mean(0)
    normalised: np.ndarray = pooled / np.linalg.norm(pooled)
    return normalised


# --- the tests -----------------------------------------------------------------------------------

REFERENCE = Path(__file__).parent / "data" / "minilm_reference.json"


def test_vectors_match_sentence_transformers_reference(embedder: MiniLMEmbedder) -> None:
    # Vectors computed once with sentence-transformers + torch from the same weights (the generator
    # is named in the file); one text is ~200 tokens long, past the tokenizer's built-in 128.
    reference = json.loads(REFERENCE.read_text())
    texts = [item["text"] for item in reference["items"]]
    expected = np.array([item["vector"] for item in reference["items"]], dtype=np.float32)
    assert embedder.token_count(texts[-1]) > 128
    got = embedder.embed(texts)
    cosines = (got * expected).sum(axis=1)
    assert cosines.min() >= 0.99999, cosines
    np.testing.assert_allclose(got, expected, atol=1e-4)


def test_onnx_graph_agrees_with_an_independent_numpy_forward_pass(embedder: MiniLMEmbedder) -> None:
    texts = [*SENTENCES[:3], LONG_TEXT]
    onnx_vectors = embedder.embed(texts)
    for text, vector in zip(texts, onnx_vectors, strict=True):
        reference = numpy_minilm(text)
        cosine = float(vector @ reference)
        assert cosine >= 0.9999, (text[:40], cosine)
        assert np.abs(vector - reference).max() < 1e-3


def test_shape_dtype_and_unit_length(embedder: MiniLMEmbedder) -> None:
    vectors = embedder.embed(SENTENCES)
    assert vectors.shape == (len(SENTENCES), MINILM_DIMENSION)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert embedder.id == MINILM_ID == "minilm-l6-v2"
    assert embedder.dimension == 384
    assert isinstance(embedder, Embedder)


def test_paraphrases_score_far_above_unrelated_sentences(embedder: MiniLMEmbedder) -> None:
    v = embedder.embed(SENTENCES)
    paraphrase = float(v[0] @ v[1])
    unrelated = max(float(v[0] @ v[2]), float(v[0] @ v[3]), float(v[1] @ v[2]))
    assert paraphrase > 0.6
    assert unrelated < 0.2
    assert paraphrase - unrelated > 0.5


def test_padding_and_batch_order_do_not_change_a_vector(embedder: MiniLMEmbedder) -> None:
    alone = embedder.embed([SENTENCES[0]])[0]
    # Batched with a much longer text, the short one is padded; its vector must not move.
    batched = embedder.embed([LONG_TEXT, SENTENCES[0], *SENTENCES[2:]])
    np.testing.assert_allclose(batched[1], alone, atol=1e-5)
    reverse = embedder.embed(SENTENCES[::-1])
    np.testing.assert_allclose(reverse[::-1], embedder.embed(SENTENCES), atol=1e-5)


def test_more_than_a_batch_keeps_every_row_in_order(embedder: MiniLMEmbedder) -> None:
    texts = [f"Document number {i} is about topic {i % 7}." for i in range(embeddings.BATCH_SIZE * 2 + 5)]
    vectors = embedder.embed(texts)
    assert vectors.shape == (len(texts), 384)
    for i in (0, 33, len(texts) - 1):
        np.testing.assert_allclose(vectors[i], embedder.embed([texts[i]])[0], atol=1e-5)


def test_length_batches_group_similar_lengths_within_both_limits() -> None:
    lengths = [200, 12, 256, 40, 12, 180, 90, 256, 30, 12]
    batches = embeddings.length_batches(lengths, max_texts=3, max_tokens=600)
    flat = [i for batch in batches for i in batch]
    assert sorted(flat) == list(range(len(lengths)))  # every text exactly once
    assert [lengths[i] for i in flat] == sorted(lengths)  # shortest first, so neighbours are alike
    for batch in batches:
        assert len(batch) <= 3
        assert len(batch) == 1 or len(batch) * max(lengths[i] for i in batch) <= 600
    # One text longer than the token budget still gets a batch of its own.
    assert embeddings.length_batches([900, 5], max_texts=8, max_tokens=600) == [[1], [0]]
    assert embeddings.length_batches([]) == []


def test_mixed_lengths_across_many_batches_give_each_text_its_own_vector(embedder: MiniLMEmbedder) -> None:
    texts = [" ".join([f"word{i}"] * (1 + (i * 37) % 150)) for i in range(40)] + [LONG_TEXT, *SENTENCES]
    together = embedder.embed(texts)
    for i in (0, 7, 39, 40, len(texts) - 1):
        np.testing.assert_allclose(together[i], embedder.embed([texts[i]])[0], atol=1e-5)


def test_texts_longer_than_128_tokens_are_not_cut_at_128(embedder: MiniLMEmbedder) -> None:
    tokenizer = embedder._tokenizer
    ids = tokenizer.encode(LONG_TEXT).ids
    assert 128 < len(ids) <= 256, len(ids)  # the text must sit between the two limits to test them
    prefix_128 = tokenizer.decode(ids[1:127])  # what a 128-token cut would have kept
    long_vector, prefix_vector = embedder.embed([LONG_TEXT, prefix_128])
    # The penguins in the tail change the vector; a 128-token cut would make the two identical.
    assert float(long_vector @ prefix_vector) < 0.97
    penguins = embedder.embed(["emperor penguins breeding in Antarctic sea ice"])[0]
    assert float(long_vector @ penguins) > float(prefix_vector @ penguins) + 0.05


def test_texts_beyond_256_tokens_are_truncated_at_256(embedder: MiniLMEmbedder) -> None:
    huge = LONG_TEXT * 4
    assert embedder.token_count(huge) == 256
    tail_changed = huge + " Something entirely different about volcanoes erupting."
    np.testing.assert_allclose(embedder.embed([huge])[0], embedder.embed([tail_changed])[0], atol=1e-6)


def test_empty_input_and_single_string_misuse(embedder: MiniLMEmbedder) -> None:
    assert embedder.embed([]).shape == (0, 384)
    with pytest.raises(TypeError):
        embedder.embed("not a list")


def test_the_session_keeps_no_cpu_arena_between_calls(embedder: MiniLMEmbedder) -> None:
    # The arena would hold the largest batch's buffers for the life of a qa worker that then only
    # embeds one-line queries; without it the vectors are the same (the reference tests above).
    assert embedder._session.get_session_options().enable_cpu_mem_arena is False
    embeddings.release_free_heap()  # safe to call again while the session is in use
    np.testing.assert_allclose(embedder.embed(SENTENCES[:1]), embedder.embed(SENTENCES[:1]), atol=0)


def test_load_embedder_is_cached_per_process_and_rejects_unknown_names() -> None:
    assert load_embedder() is load_embedder("minilm-l6-v2")
    with pytest.raises(ValueError, match="unknown embedder"):
        load_embedder("text-embedding-3-large")


def test_building_the_graph_caches_it_atomically_and_never_touches_the_network(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_network(*args: object, **kwargs: object) -> None:
        raise AssertionError("the embedder tried to open a network connection")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    cache = tmp_path / "cache"
    fresh = MiniLMEmbedder(cache=cache)
    graph, table = sorted(cache.iterdir(), key=lambda path: path.name)
    assert graph.suffix == ".onnx" and table.name.endswith(".words.npy")
    assert table.name.removesuffix(".words.npy") == graph.name.removesuffix(".onnx")
    # The 47 MB word table is its own file; the graph keeps the rest of the weights (~43 MB).
    assert table.stat().st_size > 30522 * 384 * 4
    assert 40_000_000 < graph.stat().st_size < 50_000_000
    np.testing.assert_allclose(fresh.embed(SENTENCES[:2]), load_embedder().embed(SENTENCES[:2]), atol=1e-6)

    # The second load reuses the files: building again would fail here.
    def no_rebuild(weights: dict[str, np.ndarray]) -> bytes:
        raise AssertionError("rebuilt a cached graph")

    monkeypatch.setattr(onnx_graph, "build_minilm_onnx", no_rebuild)
    assert cached_onnx_model(cache=cache) == MiniLMModel(graph, table)


def _fake_builder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, words: np.ndarray, weights: bytes
) -> tuple[Path, list[int]]:
    """A model directory holding ``weights`` and a graph builder that records each build (returned
    list) instead of building: the cache logic without the real model."""
    built: list[int] = []

    def fake_build(loaded: dict[str, np.ndarray]) -> bytes:
        built.append(1)
        return b"onnx-bytes"

    monkeypatch.setattr(onnx_graph, "build_minilm_onnx", fake_build)
    monkeypatch.setattr(onnx_graph, "load_weights", lambda directory: {onnx_graph.WORD_TABLE_KEY: words})
    fake_model = tmp_path / "model"
    fake_model.mkdir()
    (fake_model / "model.safetensors").write_bytes(weights)
    return fake_model, built


def test_cache_key_follows_the_weights_and_an_unwritable_cache_falls_back_to_memory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    words = np.arange(12, dtype=np.float32).reshape(4, 3)
    fake_model, built = _fake_builder(tmp_path, monkeypatch, words, b"weights v1")
    cache = tmp_path / "cache"
    first = cached_onnx_model(fake_model, cache)
    assert isinstance(first.graph, Path) and isinstance(first.word_table, Path)
    assert first.graph.read_bytes() == b"onnx-bytes"
    np.testing.assert_array_equal(np.load(first.word_table), words)
    # No temporary file left behind.
    assert sorted(p.name for p in cache.iterdir()) == sorted([first.graph.name, first.word_table.name])
    assert cached_onnx_model(fake_model, cache) == first
    assert len(built) == 1

    (fake_model / "model.safetensors").write_bytes(b"weights v2")
    second = cached_onnx_model(fake_model, cache)
    assert second != first
    assert len(built) == 2
    assert isinstance(second.graph, Path) and isinstance(second.word_table, Path)
    # The stale graph and table are gone.
    assert sorted(p.name for p in cache.iterdir()) == sorted([second.graph.name, second.word_table.name])

    # A graph whose table went missing is rebuilt with it, never run without it.
    second.word_table.unlink()
    assert cached_onnx_model(fake_model, cache) == second
    assert len(built) == 3

    blocked = tmp_path / "not-a-dir"
    blocked.write_text("a file where the cache directory should be")
    in_memory = cached_onnx_model(fake_model, blocked / "askbase")
    assert in_memory.graph == b"onnx-bytes"
    assert isinstance(in_memory.word_table, np.ndarray)
    np.testing.assert_array_equal(in_memory.word_table, words)


def test_a_graph_cached_by_the_older_builder_is_rebuilt_once_and_deleted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Graph version 3 held the word table as an initializer and took token ids; its file, named
    # <id>-<weights digest>-g3.<builder hash>.onnx, must neither be loaded nor left taking 90 MB.
    fake_model, built = _fake_builder(tmp_path, monkeypatch, np.ones((2, 2), np.float32), b"weights")
    digest = onnx_graph.weights_sha256(fake_model / "model.safetensors")
    cache = tmp_path / "cache"
    cache.mkdir()
    old = cache / f"{MINILM_ID}-{digest[:16]}-g3.c5f6d7f5.onnx"
    old.write_bytes(b"a graph with the table inside")
    model = cached_onnx_model(fake_model, cache)
    assert model.graph != old and len(built) == 1
    assert not old.exists()
    assert cached_onnx_model(fake_model, cache) == model
    assert len(built) == 1  # once


def test_the_installed_weights_digest_comes_from_the_package_record(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    installed = model_dir() / "model.safetensors"
    expected = onnx_graph.file_sha256(installed)

    def no_hashing(path: Path) -> str:
        raise AssertionError(f"hashed {path} instead of reading the RECORD")

    monkeypatch.setattr(onnx_graph, "file_sha256", no_hashing)
    assert onnx_graph.weights_sha256(installed) == expected
    monkeypatch.undo()
    # A copy elsewhere is not the installed file: it is hashed.
    copy = tmp_path / "model.safetensors"
    copy.write_bytes(b"other weights")
    assert onnx_graph.weights_sha256(copy) == onnx_graph.file_sha256(copy)


def test_cache_dir_follows_xdg(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert onnx_graph.cache_dir() == tmp_path / "askbase"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert onnx_graph.cache_dir() == tmp_path / "home" / ".cache" / "askbase"


# --- the word-embedding table ------------------------------------------------------------------------


def _graph_with_its_own_gather() -> bytes:
    """The cached embedder graph as it was before the table left it: token ids in, a Gather on the table
    as an initializer (graph version 3's embedding input), the rest unchanged."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model = cached_onnx_model()
    assert isinstance(model.graph, Path) and isinstance(model.word_table, Path)
    proto = onnx.load(str(model.graph))
    graph = proto.graph
    (word_input,) = [item for item in graph.input if item.name == "word_vectors"]
    graph.input.remove(word_input)
    graph.input.insert(0, helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "seq"]))
    graph.initializer.append(numpy_helper.from_array(np.load(model.word_table), "word_embeddings"))
    graph.node.insert(0, helper.make_node("Gather", ["word_embeddings", "input_ids"], ["word_vectors"]))
    serialized: bytes = proto.SerializeToString()
    return serialized


def test_vectors_equal_the_graph_that_gathers_the_words_itself(embedder: MiniLMEmbedder) -> None:
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3
    session = onnxruntime.InferenceSession(
        _graph_with_its_own_gather(), sess_options=options, providers=["CPUExecutionProvider"]
    )
    rng = random.Random(16)
    words = LONG_TEXT.split()
    # Mixed lengths, so most rows are padded (padding reads row 0 in both graphs).
    texts = [*SENTENCES, *(" ".join(rng.choices(words, k=rng.randint(3, 60))) for _ in range(6))]
    encodings = embedder._tokenizer.encode_batch(texts)
    width = max(len(encoding.ids) for encoding in encodings)
    ids = np.zeros((len(texts), width), dtype=np.int64)
    mask = np.zeros_like(ids)
    for row, encoding in enumerate(encodings):
        ids[row, : len(encoding.ids)] = encoding.ids
        mask[row, : len(encoding.ids)] = 1
    (in_graph,) = session.run(["embeddings"], {"input_ids": ids, "attention_mask": mask})
    (fed,) = embedder._session.run(
        ["embeddings"], {"word_vectors": embedder._words.rows(ids), "attention_mask": mask}
    )
    # Same batch, same arithmetic: identical, not merely close.
    np.testing.assert_array_equal(fed, in_graph)
    np.testing.assert_allclose(embedder.embed(texts), in_graph, atol=1e-6)


def test_the_word_table_stays_in_its_file_not_in_the_process(embedder: MiniLMEmbedder) -> None:
    import onnx

    # The session holds no [30522, 384] initializer: the graph's input is the gathered rows.
    assert [item.name for item in embedder._session.get_inputs()] == ["word_vectors", "attention_mask"]
    model = cached_onnx_model()
    assert isinstance(model.graph, Path)
    shapes = [tuple(initializer.dims) for initializer in onnx.load(str(model.graph)).graph.initializer]
    assert (30522, 384) not in shapes
    # The table is an open file the embedder reads from, never a mapping of it (the kernel mapped
    # whole neighbourhoods of a mapped table into the process, even with MADV_RANDOM).
    table = embedder._words.path
    assert table is not None and table.name.endswith(".words.npy")
    embedder.embed(SENTENCES)
    # (Another process may have rebuilt the cache meanwhile: the descriptor then reads the file it
    # opened, which the link shows as "... (deleted)".)
    assert os.readlink(f"/proc/self/fd/{embedder._words._fd}").startswith(str(table))
    mapped = Path("/proc/self/maps").read_text()
    assert table.name not in mapped


@pytest.mark.parametrize("damage", ["truncated word table", "garbage graph"])
def test_a_damaged_cached_model_is_built_again_not_fatal(
    embedder: MiniLMEmbedder, tmp_path: Path, damage: str, caplog: pytest.LogCaptureFixture
) -> None:
    import shutil

    # The process's cached files, copied (a build takes seconds), then damaged the way a disk error
    # or a broken image layer would: every start from this cache would fail without the rebuild.
    model = cached_onnx_model()
    assert isinstance(model.graph, Path) and isinstance(model.word_table, Path)
    cache = tmp_path / "cache"
    cache.mkdir()
    graph = Path(shutil.copy(model.graph, cache))
    table = Path(shutil.copy(model.word_table, cache))
    if damage == "truncated word table":
        with table.open("r+b") as handle:
            handle.truncate(table.stat().st_size - 4)
    else:
        graph.write_bytes(b"not an onnx graph")
    with caplog.at_level("WARNING", logger="shared.knowledge.embeddings"):
        healed = MiniLMEmbedder(cache=cache)
    assert "cached ONNX model unreadable" in caplog.text
    assert healed._words.path == table  # the same names: the weights and the builder are the same
    assert graph.stat().st_size > 40_000_000 and table.stat().st_size == model.word_table.stat().st_size
    texts = [*SENTENCES, LONG_TEXT]
    np.testing.assert_array_equal(healed.embed(texts), embedder.embed(texts))


def test_without_a_writable_cache_the_embedder_runs_graph_and_table_from_memory(
    embedder: MiniLMEmbedder, tmp_path: Path
) -> None:
    # A read-only home (the scrape function builds its model at its first run, where the cache may
    # not be writable): nothing is written, and the vectors are the same.
    blocked = tmp_path / "not-a-dir"
    blocked.write_text("a file where the cache directory should be")
    from_memory = MiniLMEmbedder(cache=blocked / "askbase")
    assert from_memory._words.path is None
    texts = [*SENTENCES, LONG_TEXT]
    np.testing.assert_array_equal(from_memory.embed(texts), embedder.embed(texts))


def test_word_table_rows_are_read_from_the_file_each_call(tmp_path: Path) -> None:
    array = np.random.default_rng(3).standard_normal((50, 6)).astype(np.float32)
    path = tmp_path / "words.npy"
    with path.open("wb") as handle:
        save_word_table(handle, array)
    table = WordTable.open(path)
    assert (table.vocabulary, table.dimension) == (50, 6)
    # Repeats, a run of consecutive ids, both ends of the table, a 2-D batch of ids.
    ids = np.array([[0, 7, 8, 9, 7, 49], [3, 3, 0, 10, 11, 48]], dtype=np.int64)
    np.testing.assert_array_equal(table.rows(ids), array[ids])
    np.testing.assert_array_equal(WordTable(array).rows(ids), array[ids])
    assert table.rows(np.zeros((0, 0), dtype=np.int64)).shape == (0, 0, 6)
    # Nothing is cached in the process: a row changed in the file (same inode) is read as changed.
    changed = array.copy()
    changed[7] = 42.0
    with path.open("r+b") as handle:
        handle.seek(path.stat().st_size - 50 * 6 * 4 + 7 * 6 * 4)
        handle.write(changed[7].tobytes())
    np.testing.assert_array_equal(table.rows(ids), changed[ids])
    with pytest.raises(IndexError):
        table.rows(np.array([50]))
    with pytest.raises(IndexError):
        table.rows(np.array([-1]))


def test_a_truncated_or_misshapen_word_table_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "words.npy"
    with path.open("wb") as handle:
        save_word_table(handle, np.ones((10, 4), dtype=np.float32))
    with path.open("r+b") as handle:
        handle.truncate(path.stat().st_size - 4)
    with pytest.raises(ValueError, match="truncated"):
        WordTable.open(path)
    np.save(path, np.ones((10, 4), dtype=np.float64))
    with pytest.raises(ValueError, match="float32"):
        WordTable.open(path)
