"""Checkpoint formats: Hugging Face ``LlamaForCausalLM`` dirs and Meta ``consolidated.NN.pth`` dirs.

The only module that knows foreign parameter names and the RoPE q/k row permutation (STYLE.md,
principle 3). Our parameter names are Meta's; HF renames them and, because its RoPE rotates the two
HALVES of each head instead of ADJACENT pairs, stores the rows of wq (per query head) and wk (per KV
head, RECIPE.md "Pitfalls") permuted. Loading is strict: every tensor is checked against the model
the config describes before any is used.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import pickle
import re
import shutil
import uuid
import zipfile
from pathlib import Path
from typing import Callable, Optional, Union

import torch

from llamaforge.model.llama import ModelArgs, Transformer
from llamaforge.model.sizes import SIZES

PathLike = Union[str, os.PathLike]

_HF_TOP = {"tok_embeddings.weight": "model.embed_tokens.weight", "norm.weight": "model.norm.weight",
           "output.weight": "lm_head.weight"}
_HF_LAYER = {  # our name inside layers.N -> HF's inside model.layers.N
    "attention.wq.weight": "self_attn.q_proj.weight", "attention.wk.weight": "self_attn.k_proj.weight",
    "attention.wv.weight": "self_attn.v_proj.weight", "attention.wo.weight": "self_attn.o_proj.weight",
    "feed_forward.w1.weight": "mlp.gate_proj.weight", "feed_forward.w2.weight": "mlp.down_proj.weight",
    "feed_forward.w3.weight": "mlp.up_proj.weight", "attention_norm.weight": "input_layernorm.weight",
    "ffn_norm.weight": "post_attention_layernorm.weight",
}
_HF_TOP_INV = {**{v: k for k, v in _HF_TOP.items()}, "score.weight": "output.weight"}  # + a reward model's head
# HF architectures: the LM, and a reward / value model (a scalar head, ``model/heads.py``) as
# LlamaForSequenceClassification with one label, its head stored as ``score.weight`` [1, dim].
_HF_ARCHITECTURES = {"LlamaForCausalLM": "lm", "LlamaForSequenceClassification": "scalar"}
_HF_LAYER_INV = {v: k for k, v in _HF_LAYER.items()}
# Buffers some writers store that are not parameters (RoPE tables: we compute them), dropped by name.
_NON_PARAMETER = re.compile(r"rope\.freqs|model\.layers\.\d+\.self_attn\.rotary_emb\.inv_freq")
# Meta's model parallelism (fairscale): row-parallel layers and the embedding split their INPUT dim.
_META_SPLIT_DIM1 = ("tok_embeddings.weight", "attention.wo.weight", "feed_forward.w2.weight")

# HF config: fields we read, fields that must hold the value shown, and harmless bookkeeping.
_HF_READ = {"num_key_value_heads", "rms_norm_eps", "max_position_embeddings", "rope_theta",
            "rope_parameters", "rope_scaling", "head_dim", "architectures"}
_HF_REQUIRED = ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "vocab_size")
_HF_FIXED = {"model_type": "llama", "hidden_act": "silu", "tie_word_embeddings": False,
             "attention_bias": False, "mlp_bias": False, "attention_dropout": 0.0}
_HF_IGNORED = {"transformers_version", "torch_dtype", "dtype", "use_cache", "initializer_range",
               "bos_token_id", "eos_token_id", "pad_token_id", "pretraining_tp", "output_attentions",
               "output_hidden_states", "return_dict", "torchscript", "use_bfloat16", "chunk_size_feed_forward",
               "is_encoder_decoder", "tie_encoder_decoder", "id2label", "label2id", "problem_type",
               "tokenizer_class", "max_length"}
_GENERATION_CONFIG = {"bos_token_id": 1, "eos_token_id": 2, "do_sample": True, "temperature": 0.6, "top_p": 0.9}
_INT_FIELDS = {"dim", "n_layers", "n_heads", "n_kv_heads", "vocab_size", "multiple_of", "max_seq_len"}


# --- pure conversions ---------------------------------------------------------------------------

def _ours_to_hf_name(key: str) -> Optional[str]:
    if key in _HF_TOP:
        return _HF_TOP[key]
    m = re.fullmatch(r"layers\.(\d+)\.(.+)", key)
    return f"model.layers.{m[1]}.{_HF_LAYER[m[2]]}" if m and m[2] in _HF_LAYER else None


def _hf_to_ours_name(key: str) -> Optional[str]:
    if key in _HF_TOP_INV:
        return _HF_TOP_INV[key]
    m = re.fullmatch(r"model\.layers\.(\d+)\.(.+)", key)
    return f"layers.{m[1]}.{_HF_LAYER_INV[m[2]]}" if m and m[2] in _HF_LAYER_INV else None


def _rope_rows(w: torch.Tensor, n_heads: int, head_dim: int, to_hf: bool) -> torch.Tensor:
    """Reorder the rows of wq / wk within each head: adjacent pairs (Meta) <-> halves (HF).

    w is [n_heads * head_dim, dim]; Meta's row 2i+j (pair i, component j) is HF's row j*head_dim/2+i.
    """
    if w.dim() != 2 or w.shape[0] != n_heads * head_dim:
        raise ValueError(f"a q/k projection of shape {tuple(w.shape)} is not {n_heads} heads x {head_dim} rows")
    rows, dim = w.shape
    shape = (n_heads, head_dim // 2, 2, dim) if to_hf else (n_heads, 2, head_dim // 2, dim)
    return w.reshape(shape).transpose(1, 2).reshape(rows, dim)  # [H, hd/2, 2, dim] <-> [H, 2, hd/2, dim]


def _permute_qk(state: dict, args: ModelArgs, to_hf: bool) -> dict:
    out = {}
    for key, t in state.items():
        if key.endswith("attention.wq.weight"):
            t = _rope_rows(t, args.n_heads, args.head_dim, to_hf)
        elif key.endswith("attention.wk.weight"):  # per KV head: wk is [n_kv_heads * head_dim, dim]
            t = _rope_rows(t, args.kv_heads, args.head_dim, to_hf)
        out[key] = t
    return out


def _rename(state_dict: dict, name: Callable[[str], Optional[str]], who: str) -> dict:
    state = {k: v for k, v in state_dict.items() if not _NON_PARAMETER.fullmatch(k)}
    unknown = [k for k in state if name(k) is None]
    if unknown:
        raise ValueError(f"{who}: unknown parameters {unknown}")
    return {name(k): v for k, v in state.items()}


def meta_to_hf(state_dict: dict, args: ModelArgs) -> dict:
    """Our (= Meta's) state dict -> HF ``LlamaForCausalLM`` names and RoPE row order.

    Args:
        state_dict: tensors under our names (``rope.freqs`` is dropped); args: the architecture.
    Returns:
        a new dict under HF names; wq/wk rows permuted, every other tensor the same object.
    """
    out = _rename(_permute_qk(state_dict, args, to_hf=True), _ours_to_hf_name, "meta_to_hf")
    if "lm_head.weight" in out and out["lm_head.weight"].shape[0] == 1 != args.vocab_size:  # a scalar head
        out["score.weight"] = out.pop("lm_head.weight")
    return out


def hf_to_meta(state_dict: dict, args: ModelArgs) -> dict:
    """HF ``LlamaForCausalLM`` state dict -> our names and RoPE row order (the inverse of meta_to_hf)."""
    return _permute_qk(_rename(state_dict, _hf_to_ours_name, "hf_to_meta"), args, to_hf=False)


def _make_args(fields: dict) -> ModelArgs:
    """ModelArgs from a dict of its fields, with the types checked (a JSON file may hold anything)."""
    known = {f.name for f in dataclasses.fields(ModelArgs)}
    unknown = sorted(set(fields) - known)
    if unknown:
        raise ValueError(f"unsupported fields {unknown} (known: {sorted(known)})")
    for name, value in fields.items():
        ok = isinstance(value, int) if name in _INT_FIELDS else isinstance(value, (int, float))
        if (value is not None or name not in ("n_kv_heads", "ffn_dim_multiplier")) and (
                isinstance(value, bool) or not ok):
            raise ValueError(f"field {name}={value!r} has the wrong type")
    return ModelArgs(**fields)


def _ffn_fields(base: ModelArgs, hidden: int) -> tuple[int, Optional[float]]:
    """(multiple_of, ffn_dim_multiplier) for which ModelArgs' FFN rule gives exactly ``hidden``."""
    def width(m: int, mult: Optional[float]) -> int:
        return dataclasses.replace(base, multiple_of=m, ffn_dim_multiplier=mult).ffn_hidden_dim

    if hidden < 1:
        raise ValueError(f"intermediate_size={hidden} must be positive")
    for p in SIZES.values():  # a published size first: the 70B's 28672 is 1.3 x rounded to 4096
        m, mult = p.get("multiple_of", 256), p.get("ffn_dim_multiplier")
        if p["dim"] == base.dim and width(m, mult) == hidden:
            return m, mult
    steps = [256] + [2 ** k for k in range(12, -1, -1)]
    candidates = [(m, None) for m in steps]  # Meta's plain rule
    plain = int(2 * 4 * base.dim / 3)
    for digits in (1, 2, 3):  # else a short multiplier, else an exact one with multiple_of 1
        candidates += [(m, round(hidden / plain, digits)) for m in steps]
    candidates.append((1, (hidden + 0.5) / plain))
    for m, mult in candidates:
        if width(m, mult) == hidden:
            return m, mult
    raise ValueError(f"intermediate_size={hidden} cannot be expressed by Meta's FFN rule for dim={base.dim}")


def _hf_rope_theta(cfg: dict) -> float:
    params = cfg.get("rope_scaling") or cfg.get("rope_parameters") or {}
    rope_type = params.get("rope_type", params.get("type", "default")) if isinstance(params, dict) else None
    if rope_type != "default" or set(params) - {"rope_type", "type", "rope_theta"}:
        raise ValueError(f"unsupported RoPE {params!r}: only the default (unscaled) RoPE of Llama 2")
    thetas = {float(t) for t in (params.get("rope_theta"), cfg.get("rope_theta")) if t is not None}
    if len(thetas) > 1:
        raise ValueError(f"rope_theta and rope_parameters disagree: {sorted(thetas)}")
    return thetas.pop() if thetas else 10000.0


def args_from_hf_config(cfg: dict) -> ModelArgs:
    """ModelArgs from an HF ``config.json`` dict; ValueError names any unknown or unsupported field.

    Absent fields take transformers' defaults (rms_norm_eps 1e-6, 2048 positions): what the file
    means to transformers is what it means here.
    """
    known = _HF_READ | set(_HF_REQUIRED) | set(_HF_FIXED) | _HF_IGNORED
    unknown = sorted(k for k in cfg if k not in known and k[:1] != "_")
    if unknown:
        raise ValueError(f"unsupported config fields {unknown}")
    bad = [f"{k}={cfg.get(k)!r} (supported: {v!r})" for k, v in _HF_FIXED.items()
           if cfg.get(k, None if k == "model_type" else v) != v]
    archs = cfg.get("architectures")
    if archs is not None and (not isinstance(archs, list) or len(archs) != 1 or archs[0] not in _HF_ARCHITECTURES):
        bad.append(f"architectures={archs!r} (supported: one of {sorted(_HF_ARCHITECTURES)})")
    elif archs == ["LlamaForSequenceClassification"] and len(cfg.get("id2label") or {"0": ""}) != 1:
        bad.append(f"id2label={cfg['id2label']!r} (a reward model has one label)")
    if bad:
        raise ValueError(f"unsupported config: {'; '.join(bad)}")
    missing = [k for k in _HF_REQUIRED if k not in cfg]
    if missing:
        raise ValueError(f"missing config fields {missing}")
    for k in _HF_REQUIRED + ("num_key_value_heads", "max_position_embeddings", "rms_norm_eps"):
        v, number = cfg.get(k, 1), (float, int) if k == "rms_norm_eps" else int
        if (v is not None or k != "num_key_value_heads") and (isinstance(v, bool) or not isinstance(v, number)):
            raise ValueError(f"field {k}={v!r} is not a{' number' if k == 'rms_norm_eps' else 'n integer'}")
    heads = cfg["num_attention_heads"]
    kv = cfg.get("num_key_value_heads") or heads
    base = _make_args(dict(
        dim=cfg["hidden_size"], n_layers=cfg["num_hidden_layers"], n_heads=heads,
        n_kv_heads=None if kv == heads else kv, vocab_size=cfg["vocab_size"],
        norm_eps=cfg.get("rms_norm_eps", 1e-6), rope_theta=_hf_rope_theta(cfg),
        max_seq_len=cfg.get("max_position_embeddings", 2048)))
    if cfg.get("head_dim") not in (None, base.head_dim):
        raise ValueError(f"head_dim={cfg['head_dim']} is not hidden_size / num_attention_heads = {base.head_dim}")
    multiple_of, mult = _ffn_fields(base, cfg["intermediate_size"])
    return dataclasses.replace(base, multiple_of=multiple_of, ffn_dim_multiplier=mult)


def hf_head(cfg: dict) -> str:
    """"lm" (LlamaForCausalLM, or no architectures field) or "scalar" (a reward / value model)."""
    return _HF_ARCHITECTURES.get((cfg.get("architectures") or ["LlamaForCausalLM"])[0], "lm")


def hf_config_from_args(args: ModelArgs, dtype: Union[torch.dtype, str, None], head: str = "lm") -> dict:
    """The ``config.json`` of an HF ``LlamaForCausalLM`` (head "lm") or, for a reward / value model
    (head "scalar"), a one-label ``LlamaForSequenceClassification``, with this architecture and dtype.

    Everything Llama 2 depends on is written explicitly (HF's defaults, eps 1e-6 and 2048 positions,
    are wrong for it); RoPE both the transformers 4.x way (rope_theta) and the 5.x way (rope_parameters).
    A reward model's config names pad_token_id 0 (UNK, which chat text never holds): transformers
    scores a batch at each row's last token that is not the pad id, so right-pad with 0.
    """
    name = "float32" if dtype is None else str(dtype).removeprefix("torch.")
    arch = {"lm": "LlamaForCausalLM", "scalar": "LlamaForSequenceClassification"}[head]
    scalar = {"id2label": {"0": "LABEL_0"}, "label2id": {"LABEL_0": 0}, "pad_token_id": 0} if head == "scalar" else {}
    return {
        "architectures": [arch], "model_type": "llama", **scalar,
        "hidden_size": args.dim, "intermediate_size": args.ffn_hidden_dim,
        "num_hidden_layers": args.n_layers, "num_attention_heads": args.n_heads,
        "num_key_value_heads": args.kv_heads, "head_dim": args.head_dim, "vocab_size": args.vocab_size,
        "rms_norm_eps": args.norm_eps, "max_position_embeddings": args.max_seq_len,
        "rope_theta": args.rope_theta, "rope_parameters": {"rope_type": "default", "rope_theta": args.rope_theta},
        "rope_scaling": None, "hidden_act": "silu", "tie_word_embeddings": False, "attention_bias": False,
        "mlp_bias": False, "attention_dropout": 0.0, "bos_token_id": 1, "eos_token_id": 2,
        "torch_dtype": name, "dtype": name, "use_cache": True,
    }


# --- files ----------------------------------------------------------------------------------------

@contextlib.contextmanager
def _about(file: Path):
    """Prefix the file's name to a ValueError raised inside."""
    try:
        yield
    except ValueError as e:
        raise ValueError(f"{file}: {e}") from None


def _read_json(file: Path) -> dict:
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{file}: not valid JSON ({e})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{file}: expected a JSON object, found {type(data).__name__}")
    return data


def _write_json(file: Path, data: dict) -> None:
    file.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def _read_weights(file: Path) -> dict:
    """All tensors of a .safetensors or torch.save file; ValueError naming the file if it is damaged."""
    from safetensors import SafetensorError, safe_open

    try:
        if file.suffix == ".safetensors":
            with safe_open(str(file), framework="pt") as f:
                return {k: f.get_tensor(k) for k in f.keys()}
        # mmap needs the zip format; a truncated zip (or a legacy file) is read plainly and fails there
        state = torch.load(file, map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(file))
    except (SafetensorError, OSError, RuntimeError, EOFError, ValueError, pickle.UnpicklingError) as e:
        raise ValueError(f"{file}: truncated or corrupted checkpoint file ({e})") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{file}: expected a dict of tensors")
    return state


def _hf_weight_files(path: Path) -> list[Path]:
    """The weight files of an HF dir (safetensors preferred), [] if none; missing shards raise."""
    for index_name, single in (("model.safetensors.index.json", "model.safetensors"),
                               ("pytorch_model.bin.index.json", "pytorch_model.bin")):
        index = path / index_name
        if index.is_file():
            weight_map = _read_json(index).get("weight_map")
            if not isinstance(weight_map, dict):
                raise ValueError(f"{index}: no 'weight_map' object")
            files = [path / name for name in sorted(set(weight_map.values()))]
            for f in files:
                if not f.is_file():
                    raise FileNotFoundError(f"{f}: shard listed in {index} does not exist")
            return files
        if (path / single).is_file():
            return [path / single]
    return []


def _meta_shard_files(path: Path) -> list[Path]:
    files = sorted(path.glob("consolidated.*.pth"))
    numbers = sorted(int(m[1]) for f in files if (m := re.fullmatch(r"consolidated\.(\d+)\.pth", f.name)))
    if numbers != list(range(len(files))):
        raise FileNotFoundError(f"{path}: model-parallel shards must be consolidated.00.pth .. "
                                f"consolidated.{len(files) - 1:02d}.pth, found {[f.name for f in files]}")
    return [path / f"consolidated.{i:02d}.pth" for i in numbers]


def detect_format(path: PathLike) -> str:
    """``"hf"`` (config.json + weights) or ``"meta"`` (params.json + consolidated.NN.pth)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such model directory")
    if not path.is_dir():
        raise ValueError(f"{path}: expected a model directory, found a file")
    hf_weights = any((path / n).is_file() for n in ("model.safetensors", "model.safetensors.index.json",
                                                    "pytorch_model.bin", "pytorch_model.bin.index.json"))
    if (path / "config.json").is_file() and hf_weights:
        return "hf"
    if (path / "params.json").is_file() and any(path.glob("consolidated.*.pth")):
        return "meta"
    raise ValueError(f"{path}: neither a Hugging Face model dir (config.json + model.safetensors or "
                     f"pytorch_model.bin) nor a Meta checkpoint dir (params.json + consolidated.NN.pth)")


def load_args(path: PathLike) -> ModelArgs:
    """The architecture of an HF or Meta model dir, read from its config (weights untouched, except
    a Meta dir's vocab_size -1, taken from the embedding's shape in consolidated.00.pth, mmap-ed)."""
    path = Path(path)
    if detect_format(path) == "hf":
        with _about(path / "config.json"):
            return args_from_hf_config(_read_json(path / "config.json"))
    with _about(path / "params.json"):
        params = _read_json(path / "params.json")
        _make_args({**params, "vocab_size": 1})  # a bad field fails before any weights are read
    if params.get("vocab_size", -1) == -1:  # Meta writes -1; every shard holds whole embedding rows
        shard = _meta_shard_files(path)[0]
        if "tok_embeddings.weight" not in (state := _read_weights(shard)):
            raise ValueError(f"{shard}: no tok_embeddings.weight to take vocab_size from")
        params["vocab_size"] = state["tok_embeddings.weight"].shape[0]
    with _about(path / "params.json"):
        return _make_args(params)


def _read_hf(path: Path) -> tuple[ModelArgs, dict, dict, list]:
    """(args, tensors under our names in HF row order, file of each, unexpected names) of an HF dir."""
    args = load_args(path)
    tensors, sources, unexpected = {}, {}, []
    for file in _hf_weight_files(path):
        for key, t in _read_weights(file).items():
            ours = _hf_to_ours_name(key)
            if ours is None or ours in tensors:
                if not _NON_PARAMETER.fullmatch(key):
                    unexpected.append(f"{key} (in {file}{', a duplicate' if ours else ''})")
                continue
            tensors[ours], sources[ours] = t, file
    return args, tensors, sources, unexpected


def _read_meta(path: Path) -> tuple[ModelArgs, dict, dict, list]:
    """(args, merged tensors, source of each, []) of a Meta dir: model-parallel shards concatenated."""
    args = load_args(path)
    files = _meta_shard_files(path)
    shards = [_read_weights(f) for f in files]
    for file, shard in zip(files[1:], shards[1:]):
        if set(shard) != set(shards[0]):
            raise ValueError(f"{file}: holds other tensors than {files[0]}: {sorted(set(shard) ^ set(shards[0]))}")
    source = files[0] if len(files) == 1 else path / f"consolidated.{{00..{len(files) - 1:02d}}}.pth"
    tensors = {}
    for key, t in shards[0].items():
        if _NON_PARAMETER.fullmatch(key):
            continue
        parts = [shard[key] for shard in shards]
        if len(parts) > 1 and _ours_to_hf_name(key) is not None and not key.endswith("norm.weight"):
            try:  # column-parallel on dim 0, row-parallel on dim 1; norms are replicated
                t = torch.cat(parts, dim=1 if key.endswith(_META_SPLIT_DIM1) else 0)
            except RuntimeError:
                raise ValueError(f"{source}: shards of {key} do not fit together: "
                                 f"{[tuple(p.shape) for p in parts]}") from None
        tensors[key] = t
    return args, tensors, dict.fromkeys(tensors, source), []


def load_model(path: PathLike, device="cpu", dtype: Optional[torch.dtype] = None) -> Transformer:
    """Load an HF/llamaforge model dir or a Meta checkpoint dir (any number of model-parallel shards).

    A reward / value model dir (``LlamaForSequenceClassification``) loads with its scalar head.

    Args:
        path: the directory; device: where the weights go; dtype: None keeps the checkpoint's.
    Returns:
        the Transformer. FileNotFoundError / ValueError name the file and what is wrong: a missing,
        unexpected or misshapen tensor, a bad config field, a truncated or corrupted file.
    """
    path = Path(path)
    hf = detect_format(path) == "hf"
    args, tensors, sources, unexpected = (_read_hf if hf else _read_meta)(path)
    scalar = hf and hf_head(_read_json(path / "config.json")) == "scalar"
    shown = (lambda k: ("score.weight" if scalar and k == "output.weight" else _ours_to_hf_name(k)) or k) \
        if hf else str  # name tensors as the files do
    with torch.device("meta"):
        model = Transformer(args)
        if scalar:
            from llamaforge.model.heads import scalar_head

            scalar_head(model)
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    unexpected = unexpected + [f"{shown(k)} (in {sources[k]})" for k in tensors if k not in expected]
    problems = [f"missing tensor {shown(k)}" + (" (the reward model's scalar head)" if scalar and k == "output.weight"
                                                 else "") for k in expected if k not in tensors]
    problems += [f"unexpected tensor {u}" for u in unexpected]
    problems += [f"tensor {shown(k)} in {sources[k]}: expected shape {expected[k]}, found {tuple(t.shape)}"
                 for k, t in tensors.items() if k in expected and tuple(t.shape) != expected[k]]
    if problems:
        raise ValueError(f"{path}: checkpoint does not match its config:\n  " + "\n  ".join(problems))
    if hf:
        tensors = _permute_qk(tensors, args, to_hf=False)
    state = {k: t.to(device=device, dtype=dtype or t.dtype) for k, t in tensors.items()}
    model.load_state_dict(state, strict=True, assign=True)
    return model


def _write_atomically(path: Path, write: Callable[[Path], None]) -> None:
    """Run write(tmp_dir) next to path, then put tmp_dir in its place: never a half-written ``path``."""
    if path.exists() and not path.is_dir():
        raise ValueError(f"{path}: exists and is not a directory")
    model_files = ("config.json", "params.json", "model*.safetensors*", "consolidated.*.pth", "pytorch_model*")
    if path.is_dir() and any(path.iterdir()) and not any(any(path.glob(g)) for g in model_files):
        raise ValueError(f"{path}: a non-empty directory that holds no model; refusing to replace it")
    path.parent.mkdir(parents=True, exist_ok=True)
    tag = uuid.uuid4().hex[:8]
    tmp, old = path.parent / f".{path.name}.tmp-{tag}", path.parent / f".{path.name}.old-{tag}"
    tmp.mkdir()
    try:
        write(tmp)
        for f in tmp.rglob("*"):  # on disk before the rename makes them visible
            if f.is_file():
                with open(f, "rb") as handle:
                    os.fsync(handle.fileno())
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if path.exists():
        os.replace(path, old)  # the old dir survives until the new one is complete
    os.replace(tmp, path)
    shutil.rmtree(old, ignore_errors=True)


def save_model(model: Transformer, path: PathLike, tokenizer=None, *, max_shard_size: int = 5 * 2**30,
               dtype: Optional[torch.dtype] = None) -> None:
    """Write an HF-compatible model dir (config.json, model*.safetensors, generation_config.json).

    Args:
        model: the Transformer; path: the directory (an existing model dir there is replaced whole,
            once the new one is complete); tokenizer: if given, ``tokenizer.save(dir)`` writes its files;
        max_shard_size: bytes per safetensors file before sharding with an index; dtype: None keeps the model's.
    """
    from llamaforge.model.heads import has_scalar_head

    args, head = model.args, "scalar" if has_scalar_head(model) else "lm"
    state = meta_to_hf({k: v.detach() for k, v in model.state_dict().items()}, args)
    state = {k: v.to(device="cpu", dtype=dtype or v.dtype).contiguous() for k, v in state.items()}
    shards: list[dict] = [{}]
    for key, t in state.items():  # greedy, in model order; a tensor bigger than the limit gets a file
        if shards[-1] and sum(x.nbytes for x in shards[-1].values()) + t.nbytes > max_shard_size:
            shards.append({})
        shards[-1][key] = t

    def write(tmp: Path) -> None:
        from safetensors.torch import save_file
        n = len(shards)
        names = ["model.safetensors"] if n == 1 else [f"model-{i:05d}-of-{n:05d}.safetensors" for i in range(1, n + 1)]
        for name, shard in zip(names, shards):
            save_file(shard, str(tmp / name), metadata={"format": "pt"})
        if n > 1:
            _write_json(tmp / "model.safetensors.index.json", {
                "metadata": {"total_size": sum(t.nbytes for t in state.values())},
                "weight_map": {k: name for name, shard in zip(names, shards) for k in shard}})
        _write_json(tmp / "config.json", hf_config_from_args(args, next(iter(state.values())).dtype, head))
        if head == "lm":
            _write_json(tmp / "generation_config.json", {**_GENERATION_CONFIG, "max_length": args.max_seq_len})
        if tokenizer is not None:
            tokenizer.save(tmp)

    _write_atomically(Path(path), write)


def save_meta(model: Transformer, path: PathLike, num_shards: int = 1, tokenizer=None) -> None:
    """Write a Meta checkpoint dir: params.json + consolidated.NN.pth split as Meta's model parallelism.

    Args:
        model: the Transformer; path: the directory (replaced as by save_model); num_shards:
            model-parallel shards (7B 1, 13B 2, 70B 8); tokenizer: as for save_model.
    """
    from llamaforge.model.heads import has_scalar_head

    if has_scalar_head(model):
        raise ValueError("save_meta: Meta's format has no reward / value models; use save_model "
                         "(an HF LlamaForSequenceClassification dir)")
    args = model.args
    sizes = {"dim": args.dim, "n_heads": args.n_heads, "n_kv_heads": args.kv_heads,
             "FFN width": args.ffn_hidden_dim, "vocab_size": args.vocab_size}
    bad = [f"{k}={v}" for k, v in sizes.items() if num_shards < 1 or v % num_shards]
    if bad:
        raise ValueError(f"save_meta: num_shards={num_shards} does not divide {', '.join(bad)}")
    params = {"dim": args.dim, "n_layers": args.n_layers, "n_heads": args.n_heads}
    if args.kv_heads != args.n_heads:
        params["n_kv_heads"] = args.kv_heads
    params.update(vocab_size=args.vocab_size, multiple_of=args.multiple_of)
    if args.ffn_dim_multiplier is not None:
        params["ffn_dim_multiplier"] = args.ffn_dim_multiplier
    params["norm_eps"] = args.norm_eps
    if args.rope_theta != 10000.0:
        params["rope_theta"] = args.rope_theta
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    unknown = [k for k in state if _ours_to_hf_name(k) is None]
    if unknown:
        raise ValueError(f"save_meta: parameters with no place in Meta's format: {unknown}")

    def write(tmp: Path) -> None:
        _write_json(tmp / "params.json", params)
        for i in range(num_shards):
            shard = {}
            for key, t in state.items():
                if not key.endswith("norm.weight"):  # clone: a chunk view would save the whole storage
                    t = t.chunk(num_shards, dim=1 if key.endswith(_META_SPLIT_DIM1) else 0)[i]
                shard[key] = t.clone()
            torch.save(shard, tmp / f"consolidated.{i:02d}.pth")
        if tokenizer is not None:
            tokenizer.save(tmp)

    _write_atomically(Path(path), write)
