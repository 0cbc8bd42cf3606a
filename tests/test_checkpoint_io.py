"""Checkpoint formats against the reference: HF transformers' LlamaForCausalLM (random weights).

HF runs with attn_implementation="eager"; full-tensor logits agree to atol 1e-5 in fp32 (observed max
abs diff 1.2e-6; sdpa passes too). Meta round trips are lossless: atol=0 there.
"""

import dataclasses
import json
import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
transformers = pytest.importorskip("transformers")
from safetensors.torch import load_file, save_file  # noqa: E402

from llamaforge import SIZES, ModelArgs, Transformer  # noqa: E402
from llamaforge.model.checkpoint_io import (  # noqa: E402
    args_from_hf_config, detect_format, hf_config_from_args, hf_to_meta, load_args, load_model,
    meta_to_hf, save_meta, save_model,
)

transformers.utils.logging.disable_progress_bar()
PRESETS = ["debug", "debug-gqa"]
# 70B-shaped attention in miniature: 8 query heads per KV head, as 64 / 8 in the 70B
TINY_70B = ModelArgs(dim=256, n_layers=2, n_heads=16, n_kv_heads=2, vocab_size=128, multiple_of=256,
                     ffn_dim_multiplier=1.3, max_seq_len=64)


@pytest.fixture(autouse=True)
def seed():
    torch.manual_seed(0)


def random_model(args: ModelArgs) -> Transformer:
    """Random weights, norms included (all ones would hide a swapped norm)."""
    model = Transformer(args)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.copy_(1 + 0.2 * torch.randn_like(p))
    return model


def hf_reference(args: ModelArgs):
    """An HF model built from its own LlamaConfig (not from our writer), with random weights."""
    config = transformers.LlamaConfig(
        hidden_size=args.dim, intermediate_size=args.ffn_hidden_dim, num_hidden_layers=args.n_layers,
        num_attention_heads=args.n_heads, num_key_value_heads=args.kv_heads, vocab_size=args.vocab_size,
        rms_norm_eps=args.norm_eps, max_position_embeddings=args.max_seq_len,
        rope_parameters={"rope_type": "default", "rope_theta": args.rope_theta},
        attn_implementation="eager")
    model = transformers.LlamaForCausalLM(config).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(1 + 0.2 * torch.randn_like(p) if name.endswith("norm.weight") else 0.05 * torch.randn_like(p))
    return model


def tokens(args: ModelArgs) -> torch.Tensor:
    return torch.randint(0, args.vocab_size, (2, 33))


@torch.no_grad()
def ours_logits(model, x):
    return model(x)


@torch.no_grad()
def hf_logits(model, x):
    return model(x).logits


def from_pretrained(path):
    return transformers.LlamaForCausalLM.from_pretrained(path, attn_implementation="eager").eval()


# --- parity with transformers ---------------------------------------------------------------------

@pytest.mark.parametrize("preset", PRESETS)
def test_hf_checkpoint_loads_with_the_same_logits(preset, tmp_path):
    args = ModelArgs(**SIZES[preset])
    hf = hf_reference(args)
    hf.save_pretrained(tmp_path)
    assert detect_format(tmp_path) == "hf" and load_args(tmp_path) == args
    ours = load_model(tmp_path)
    assert ours.args == args
    x = tokens(args)
    torch.testing.assert_close(ours_logits(ours, x), hf_logits(hf, x), atol=1e-5, rtol=0)


@pytest.mark.parametrize("preset", PRESETS)
def test_saved_model_loads_in_transformers_with_the_same_logits(preset, tmp_path):
    args = ModelArgs(**SIZES[preset])
    ours = random_model(args)
    save_model(ours, tmp_path / "m")
    x = tokens(args)
    torch.testing.assert_close(hf_logits(from_pretrained(tmp_path / "m"), x), ours_logits(ours, x),
                               atol=1e-5, rtol=0)
    back = load_model(tmp_path / "m")  # and back: lossless
    torch.testing.assert_close(ours_logits(back, x), ours_logits(ours, x), atol=0, rtol=0)


@pytest.mark.parametrize("preset,num_shards,vocab", [
    ("debug", 1, None), ("debug", 2, None), ("debug-gqa", 1, None),
    ("debug-gqa", 2, 510),  # 509 is prime: no model-parallel split of the output head
])
def test_meta_round_trip(preset, num_shards, vocab, tmp_path):
    args = ModelArgs(**{**SIZES[preset], **({"vocab_size": vocab} if vocab else {})})
    ours = random_model(args)
    save_meta(ours, tmp_path / "meta", num_shards=num_shards)
    assert sorted(p.name for p in (tmp_path / "meta").iterdir()) == [
        f"consolidated.{i:02d}.pth" for i in range(num_shards)] + ["params.json"]
    assert detect_format(tmp_path / "meta") == "meta"
    back = load_model(tmp_path / "meta")
    x = tokens(args)
    torch.testing.assert_close(ours_logits(back, x), ours_logits(ours, x), atol=0, rtol=0)
    hf = transformers.LlamaForCausalLM(transformers.LlamaConfig(
        **hf_config_from_args(back.args, torch.float32), attn_implementation="eager")).eval()
    hf.load_state_dict(meta_to_hf(back.state_dict(), back.args), strict=True)
    torch.testing.assert_close(hf_logits(hf, x), ours_logits(ours, x), atol=1e-5, rtol=0)


def test_meta_params_json_holds_meta_fields_only(tmp_path):
    save_meta(random_model(ModelArgs(**SIZES["debug-gqa"])), tmp_path / "gqa")
    assert json.loads((tmp_path / "gqa" / "params.json").read_text()) == dict(
        dim=72, n_layers=3, n_heads=6, n_kv_heads=2, vocab_size=509, multiple_of=24,
        ffn_dim_multiplier=1.3, norm_eps=1e-5)
    save_meta(random_model(dataclasses.replace(ModelArgs(**SIZES["debug"]), rope_theta=1e6)), tmp_path / "mha")
    assert json.loads((tmp_path / "mha" / "params.json").read_text()) == dict(
        dim=64, n_layers=2, n_heads=4, vocab_size=512, multiple_of=32, norm_eps=1e-5, rope_theta=1e6)


def test_meta_shards_laid_out_as_meta_by_hand(tmp_path):
    """A 2-shard checkpoint split by hand the way fairscale does (not by save_meta), with Meta's
    vocab_size -1 and a rope.freqs buffer, loads into the same model."""
    args = TINY_70B
    ours = random_model(args)
    row_parallel = ("tok_embeddings.weight", "attention.wo.weight", "feed_forward.w2.weight")
    shards = [{"rope.freqs": torch.randn(args.head_dim // 2)} for _ in range(2)]
    for key, t in ours.state_dict().items():
        for i in range(2):
            if key.endswith("norm.weight"):
                part = t
            elif key.endswith(row_parallel):
                part = t[:, i * t.shape[1] // 2:(i + 1) * t.shape[1] // 2]
            else:  # column parallel: wq wk wv w1 w3 output
                part = t[i * t.shape[0] // 2:(i + 1) * t.shape[0] // 2]
            shards[i][key] = part.clone()
    assert shards[0]["layers.0.attention.wk.weight"].shape == (args.head_dim, args.dim)  # one KV head each
    (tmp_path / "params.json").write_text(json.dumps(dict(
        dim=256, n_layers=2, n_heads=16, n_kv_heads=2, vocab_size=-1, multiple_of=256,
        ffn_dim_multiplier=1.3, norm_eps=1e-5)))
    for i, shard in enumerate(shards):
        torch.save(shard, tmp_path / f"consolidated.{i:02d}.pth")
    (tmp_path / "tokenizer.model").write_bytes(b"not read by load_model")
    meta_args = dataclasses.replace(args, max_seq_len=4096)  # params.json has no context length
    assert load_args(tmp_path) == meta_args
    back = load_model(tmp_path)
    assert back.args == meta_args
    x = tokens(args)
    torch.testing.assert_close(ours_logits(back, x), ours_logits(ours, x), atol=0, rtol=0)
    # and save_meta splits the same way
    save_meta(ours, tmp_path / "again", num_shards=2)
    again = torch.load(tmp_path / "again" / "consolidated.01.pth", weights_only=True)
    assert set(again) == set(shards[1]) - {"rope.freqs"}
    for key, t in again.items():
        assert torch.equal(t, shards[1][key]), key


def test_save_meta_rejects_a_shard_count_that_does_not_divide(tmp_path):
    model = random_model(ModelArgs(**SIZES["debug-gqa"]))
    with pytest.raises(ValueError, match=r"num_shards=2 .*vocab_size=509"):
        save_meta(model, tmp_path / "x", num_shards=2)
    with pytest.raises(ValueError, match=r"num_shards=4 .*n_kv_heads=2"):
        save_meta(model, tmp_path / "x", num_shards=4)
    assert not (tmp_path / "x").exists()


def test_sharded_safetensors_round_trip(tmp_path):
    args = ModelArgs(**SIZES["debug-gqa"])
    ours = random_model(args)
    save_model(ours, tmp_path / "m", max_shard_size=60_000)
    index = json.loads((tmp_path / "m" / "model.safetensors.index.json").read_text())
    files = sorted(set(index["weight_map"].values()))
    assert len(files) > 3 and files[0] == f"model-00001-of-{len(files):05d}.safetensors"
    assert not (tmp_path / "m" / "model.safetensors").exists()
    assert index["metadata"]["total_size"] == sum(p.numel() * 4 for p in ours.parameters())
    x = tokens(args)
    torch.testing.assert_close(ours_logits(load_model(tmp_path / "m"), x), ours_logits(ours, x), atol=0, rtol=0)
    torch.testing.assert_close(hf_logits(from_pretrained(tmp_path / "m"), x), ours_logits(ours, x),
                               atol=1e-5, rtol=0)


def test_pytorch_bin_checkpoint_loads(tmp_path):
    args = ModelArgs(**SIZES["debug"])
    hf = hf_reference(args)
    hf.config.save_pretrained(tmp_path)
    state = dict(hf.state_dict())
    state["model.layers.0.self_attn.rotary_emb.inv_freq"] = torch.ones(8)  # old transformers wrote it
    torch.save(state, tmp_path / "pytorch_model.bin")
    x = tokens(args)
    torch.testing.assert_close(ours_logits(load_model(tmp_path), x), hf_logits(hf, x), atol=1e-5, rtol=0)


def test_dtype_cast_on_load_and_save(tmp_path):
    ours = random_model(ModelArgs(**SIZES["debug"]))
    save_model(ours, tmp_path / "bf16", dtype=torch.bfloat16)
    config = json.loads((tmp_path / "bf16" / "config.json").read_text())
    assert config["torch_dtype"] == config["dtype"] == "bfloat16"
    assert {t.dtype for t in load_file(tmp_path / "bf16" / "model.safetensors").values()} == {torch.bfloat16}
    assert {p.dtype for p in load_model(tmp_path / "bf16").parameters()} == {torch.bfloat16}
    assert {p.dtype for p in load_model(tmp_path / "bf16", dtype=torch.float32).parameters()} == {torch.float32}


# --- configs --------------------------------------------------------------------------------------

def test_written_configs_are_explicit(tmp_path):
    save_model(random_model(ModelArgs(**SIZES["debug-gqa"])), tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["rms_norm_eps"] == 1e-5 and config["max_position_embeddings"] == 256
    assert config["rope_theta"] == 10000.0 and config["rope_parameters"]["rope_theta"] == 10000.0
    assert config["architectures"] == ["LlamaForCausalLM"] and config["model_type"] == "llama"
    assert config["tie_word_embeddings"] is False and config["attention_bias"] is False
    assert (config["intermediate_size"], config["num_key_value_heads"], config["hidden_act"]) == (264, 2, "silu")
    assert (config["bos_token_id"], config["eos_token_id"], config["torch_dtype"]) == (1, 2, "float32")
    generation = json.loads((tmp_path / "generation_config.json").read_text())
    assert generation["temperature"] == 0.6 and generation["top_p"] == 0.9 and generation["do_sample"] is True
    assert (generation["bos_token_id"], generation["eos_token_id"]) == (1, 2)
    loaded = transformers.AutoConfig.from_pretrained(tmp_path)
    assert loaded.rms_norm_eps == 1e-5 and loaded.max_position_embeddings == 256


@pytest.mark.parametrize("name", list(SIZES))
def test_hf_config_round_trip_on_every_preset(name):
    args = ModelArgs(**SIZES[name])
    assert args_from_hf_config(hf_config_from_args(args, torch.bfloat16)) == args


def test_70b_ffn_fields_come_back():
    args = args_from_hf_config(hf_config_from_args(ModelArgs(**SIZES["llama2-70b"]), torch.bfloat16))
    assert (args.ffn_hidden_dim, args.multiple_of, args.ffn_dim_multiplier) == (28672, 4096, 1.3)
    assert (args.n_heads, args.n_kv_heads) == (64, 8)


def test_published_llama2_7b_hf_config():
    # the fields of meta-llama/Llama-2-7b-hf's config.json (transformers 4.31 era)
    cfg = {"_name_or_path": "meta-llama/Llama-2-7b-hf", "architectures": ["LlamaForCausalLM"],
           "bos_token_id": 1, "eos_token_id": 2, "hidden_act": "silu", "hidden_size": 4096,
           "initializer_range": 0.02, "intermediate_size": 11008, "max_position_embeddings": 4096,
           "model_type": "llama", "num_attention_heads": 32, "num_hidden_layers": 32,
           "num_key_value_heads": 32, "pretraining_tp": 1, "rms_norm_eps": 1e-05, "rope_scaling": None,
           "tie_word_embeddings": False, "torch_dtype": "float16", "transformers_version": "4.31.0.dev0",
           "use_cache": True, "vocab_size": 32000}
    assert args_from_hf_config(cfg) == ModelArgs(**SIZES["llama2-7b"])


@pytest.mark.parametrize("dim,hidden", [(96, 256), (96, 300), (96, 1000), (128, 7), (200, 533)])
def test_ffn_width_outside_the_presets_is_derived_exactly(dim, hidden):
    cfg = hf_config_from_args(ModelArgs(dim=dim, n_layers=1, n_heads=4, vocab_size=10), torch.float32)
    assert args_from_hf_config({**cfg, "intermediate_size": hidden}).ffn_hidden_dim == hidden


def test_ffn_width_that_cannot_be_expressed_raises():
    cfg = hf_config_from_args(ModelArgs(dim=96, n_layers=1, n_heads=4, vocab_size=10), torch.float32)
    with pytest.raises(ValueError, match="intermediate_size=0"):
        args_from_hf_config({**cfg, "intermediate_size": 0})


# --- the RoPE permutation -------------------------------------------------------------------------

def test_rope_permutation_by_hand():
    # 2 KV heads of head_dim 4: Meta's rows (pairs (0,1), (2,3)) become HF's halves (0,2 | 1,3)
    args = ModelArgs(dim=16, n_layers=1, n_heads=4, n_kv_heads=2, vocab_size=8)
    wk = torch.arange(8.0).unsqueeze(1).expand(8, 16)
    hf = meta_to_hf({"layers.0.attention.wk.weight": wk}, args)["model.layers.0.self_attn.k_proj.weight"]
    assert hf[:, 0].tolist() == [0, 2, 1, 3, 4, 6, 5, 7]
    with pytest.raises(ValueError, match=r"shape \(8, 16\) is not 4 heads x 4 rows"):  # wk given as wq
        meta_to_hf({"layers.0.attention.wq.weight": wk}, args)


def test_rope_permutation_70b_shaped_is_inverse_and_matches_hf():
    args = TINY_70B
    ours = random_model(args)
    state = ours.state_dict()
    hf_state = meta_to_hf(state, args)
    assert not torch.equal(hf_state["model.layers.0.self_attn.k_proj.weight"], state["layers.0.attention.wk.weight"])
    assert hf_state["model.layers.0.self_attn.v_proj.weight"] is state["layers.0.attention.wv.weight"]
    back = hf_to_meta(hf_state, args)
    assert set(back) == set(state) and all(torch.equal(back[k], state[k]) for k in state)

    hf = transformers.LlamaForCausalLM(transformers.LlamaConfig(
        **hf_config_from_args(args, torch.float32), attn_implementation="eager")).eval()
    x = tokens(args)
    hf.load_state_dict(hf_state, strict=True)
    torch.testing.assert_close(hf_logits(hf, x), ours_logits(ours, x), atol=1e-5, rtol=0)
    # the classic 70B bug: wk's rows permuted with the QUERY head count. Shapes allow it here
    # (kv rows 32 = 16 heads x 2) exactly as in the 70B, and the logits must then be wrong.
    for i in range(args.n_layers):
        wk = state[f"layers.{i}.attention.wk.weight"]
        bad = wk.reshape(args.n_heads, wk.shape[0] // args.n_heads // 2, 2, args.dim).transpose(1, 2)
        hf_state[f"model.layers.{i}.self_attn.k_proj.weight"] = bad.reshape(wk.shape)
    hf.load_state_dict(hf_state, strict=True)
    assert (hf_logits(hf, x) - ours_logits(ours, x)).abs().max() > 1e-2


# --- bad input ------------------------------------------------------------------------------------

@pytest.fixture
def saved(tmp_path):
    """A saved debug model dir."""
    save_model(random_model(ModelArgs(**SIZES["debug"])), tmp_path / "m")
    return tmp_path / "m"


def test_missing_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        load_model(tmp_path / "nowhere")


@pytest.mark.parametrize("files", [[], ["config.json"], ["params.json"], ["tokenizer.model"]])
def test_dir_without_weights(files, tmp_path):
    for name in files:
        (tmp_path / name).write_text("{}")
    with pytest.raises(ValueError, match=f"{tmp_path}: neither"):
        load_model(tmp_path)


def rewrite_weights(saved, change):
    state = load_file(saved / "model.safetensors")
    change(state)
    save_file(state, saved / "model.safetensors", metadata={"format": "pt"})


def test_wrong_shape_names_tensor_both_shapes_and_file(saved):
    rewrite_weights(saved, lambda s: s.update({"model.layers.1.self_attn.q_proj.weight": torch.zeros(64, 60)}))
    with pytest.raises(ValueError) as e:
        load_model(saved)
    msg = str(e.value)
    assert "model.layers.1.self_attn.q_proj.weight" in msg and "model.safetensors" in msg
    assert "expected shape (64, 64), found (64, 60)" in msg


def test_missing_and_unexpected_tensors_are_named(saved):
    def change(state):
        del state["model.layers.0.mlp.up_proj.weight"]
        state["model.layers.0.self_attn.q_proj.bias"] = torch.zeros(64)
        state["model.layers.2.input_layernorm.weight"] = torch.ones(64)  # a layer the config lacks
    rewrite_weights(saved, change)
    with pytest.raises(ValueError) as e:
        load_model(saved)
    msg = str(e.value)
    assert "missing tensor model.layers.0.mlp.up_proj.weight" in msg
    assert "unexpected tensor model.layers.0.self_attn.q_proj.bias" in msg
    assert "unexpected tensor model.layers.2.input_layernorm.weight" in msg


def test_missing_shard_listed_in_the_index(tmp_path):
    save_model(random_model(ModelArgs(**SIZES["debug"])), tmp_path, max_shard_size=100_000)
    index = json.loads((tmp_path / "model.safetensors.index.json").read_text())
    name = sorted(set(index["weight_map"].values()))[1]
    (tmp_path / name).unlink()
    with pytest.raises(FileNotFoundError, match=f"{name}: shard listed in .*index.json"):
        load_model(tmp_path)


def test_truncated_safetensors(saved):
    data = (saved / "model.safetensors").read_bytes()
    (saved / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"model\.safetensors: truncated or corrupted"):
        load_model(saved)


def test_corrupted_safetensors_header(saved):
    data = (saved / "model.safetensors").read_bytes()
    (saved / "model.safetensors").write_bytes(b"\xff" * 64 + data[64:])
    with pytest.raises(ValueError, match=r"model\.safetensors: truncated or corrupted"):
        load_model(saved)


def test_truncated_pth(tmp_path):
    save_meta(random_model(ModelArgs(**SIZES["debug"])), tmp_path, num_shards=2)
    data = (tmp_path / "consolidated.01.pth").read_bytes()
    (tmp_path / "consolidated.01.pth").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"consolidated\.01\.pth: truncated or corrupted"):
        load_model(tmp_path)


def test_missing_meta_shard(tmp_path):
    save_meta(random_model(ModelArgs(**SIZES["debug"])), tmp_path, num_shards=2)
    (tmp_path / "consolidated.01.pth").rename(tmp_path / "consolidated.02.pth")
    with pytest.raises(FileNotFoundError, match=r"consolidated\.00\.pth \.\. consolidated\.01\.pth"):
        load_model(tmp_path)


@pytest.mark.parametrize("text,match", [
    ("{not json", "not valid JSON"), ("[1, 2]", "expected a JSON object"),
    ('{"dim": 64, "n_layers": 2, "n_heads": 4, "vocab_size": -1, "use_scaled_rope": true}', "use_scaled_rope"),
    ('{"dim": "64", "n_layers": 2, "n_heads": 4, "vocab_size": -1}', "dim='64'"),
])
def test_bad_params_json(text, match, tmp_path):
    save_meta(random_model(ModelArgs(**SIZES["debug"])), tmp_path)
    (tmp_path / "params.json").write_text(text)
    with pytest.raises(ValueError, match=f"params.json: .*{match}"):
        load_model(tmp_path)


@pytest.mark.parametrize("change,match", [
    ({"attention_bias": True}, "attention_bias"), ({"tie_word_embeddings": True}, "tie_word_embeddings"),
    ({"rope_scaling": {"rope_type": "linear", "factor": 2.0}}, "unsupported RoPE"),
    ({"rope_parameters": {"rope_type": "llama3", "rope_theta": 5e5, "factor": 8.0}}, "unsupported RoPE"),
    ({"model_type": "mistral"}, "model_type"), ({"hidden_act": "gelu"}, "hidden_act"),
    ({"sliding_window": 4096}, "sliding_window"), ({"head_dim": 32}, "head_dim"),
    ({"architectures": ["LlamaForTokenClassification"]}, "architectures"),
    ({"rope_theta": 5e5}, "disagree"), ({"num_hidden_layers": 2.0}, "num_hidden_layers=2.0"),
    ({"rms_norm_eps": "1e-5"}, "rms_norm_eps='1e-5' is not a number"),
])
def test_unsupported_hf_config(change, match, saved):
    config = json.loads((saved / "config.json").read_text())
    (saved / "config.json").write_text(json.dumps({**config, **change}))
    with pytest.raises(ValueError, match=f"config.json: .*{match}"):
        load_model(saved)


def test_invalid_config_json(saved):
    (saved / "config.json").write_text('{"hidden_size": 64,')
    with pytest.raises(ValueError, match="config.json: not valid JSON"):
        load_model(saved)


# --- writing --------------------------------------------------------------------------------------

class FakeTokenizer:
    def __init__(self, fail=False):
        self.fail = fail

    def save(self, out_dir):
        if self.fail:
            raise RuntimeError("disk full")
        (out_dir / "tokenizer.model").write_bytes(b"spm")


def test_tokenizer_is_saved_with_the_model(tmp_path):
    model = random_model(ModelArgs(**SIZES["debug"]))
    save_model(model, tmp_path / "m", tokenizer=FakeTokenizer())
    save_meta(model, tmp_path / "meta", tokenizer=FakeTokenizer())
    for name in ("m", "meta"):
        assert (tmp_path / name / "tokenizer.model").read_bytes() == b"spm"
        load_model(tmp_path / name)


def test_failed_save_leaves_the_old_dir_intact(saved):
    before = {p.name: p.read_bytes() for p in saved.iterdir()}
    with pytest.raises(RuntimeError, match="disk full"):
        save_model(random_model(ModelArgs(**SIZES["debug"])), saved, tokenizer=FakeTokenizer(fail=True))
    assert {p.name: p.read_bytes() for p in saved.iterdir()} == before
    assert sorted(p.name for p in saved.parent.iterdir()) == ["m"]  # no temporary dir left behind


def test_save_replaces_an_old_model_dir_whole(tmp_path):
    model = random_model(ModelArgs(**SIZES["debug"]))
    save_model(model, tmp_path / "m", max_shard_size=100_000)
    save_model(model, tmp_path / "m")
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == [
        "config.json", "generation_config.json", "model.safetensors"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]


def test_save_refuses_to_replace_a_dir_that_is_not_a_model(tmp_path):
    (tmp_path / "notes.txt").write_text("precious")
    with pytest.raises(ValueError, match="refusing to replace"):
        save_model(random_model(ModelArgs(**SIZES["debug"])), tmp_path)
    assert (tmp_path / "notes.txt").read_text() == "precious"
