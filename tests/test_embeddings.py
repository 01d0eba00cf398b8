"""The MiniLM embedder: shape, normalisation, meaning, 256-token inputs, and an independent check of
the ONNX graph against a plain-numpy BERT forward pass written here from the paper, not from the graph."""

from __future__ import annotations

import json
import math
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
from shared.knowledge.onnx_graph import cached_onnx_model, model_dir

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
    return (x - mean) / np.sqrt(var + eps) * weight + bias


def _gelu(x: np.ndarray) -> np.ndarray:
    erf = np.vectorize(math.erf, otypes=[np.float64])
    return 0.5 * x * (1.0 + erf(x / math.sqrt(2.0)))


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

        split = lambda h: h.reshape(len(ids), heads, head_dim).transpose(1, 0, 2)  # noqa: E731
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
    return pooled / np.linalg.norm(pooled)


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
        embedder.embed("not a list")  # type: ignore[arg-type]


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
    files = list(cache.iterdir())
    assert len(files) == 1
    assert files[0].suffix == ".onnx"
    assert files[0].stat().st_size > 80_000_000
    np.testing.assert_allclose(fresh.embed(SENTENCES[:2]), load_embedder().embed(SENTENCES[:2]), atol=1e-6)

    # The second load reuses the file: building again would fail here.
    def no_rebuild(weights: dict) -> bytes:
        raise AssertionError("rebuilt a cached graph")

    monkeypatch.setattr(onnx_graph, "build_minilm_onnx", no_rebuild)
    assert cached_onnx_model(cache=cache) == files[0]


def test_cache_key_follows_the_weights_and_an_unwritable_cache_falls_back_to_memory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    built: list[int] = []

    def fake_build(weights: dict) -> bytes:
        built.append(1)
        return b"onnx-bytes"

    monkeypatch.setattr(onnx_graph, "build_minilm_onnx", fake_build)
    monkeypatch.setattr(onnx_graph, "load_weights", lambda directory: {})
    fake_model = tmp_path / "model"
    fake_model.mkdir()
    (fake_model / "model.safetensors").write_bytes(b"weights v1")
    cache = tmp_path / "cache"
    first = cached_onnx_model(fake_model, cache)
    assert isinstance(first, Path)
    assert first.read_bytes() == b"onnx-bytes"
    assert [p.name for p in cache.iterdir()] == [first.name]  # no temporary file left behind
    assert cached_onnx_model(fake_model, cache) == first
    assert len(built) == 1

    (fake_model / "model.safetensors").write_bytes(b"weights v2")
    second = cached_onnx_model(fake_model, cache)
    assert second != first
    assert len(built) == 2
    assert [p.name for p in cache.iterdir()] == [second.name]  # the stale graph is gone

    blocked = tmp_path / "not-a-dir"
    blocked.write_text("a file where the cache directory should be")
    assert cached_onnx_model(fake_model, blocked / "askbase") == b"onnx-bytes"


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
