"""Scalar heads (reward / value models): save / load, parity with HF LlamaForSequenceClassification,
padding independence, and the builders that turn a chat model into a reward model.

HF runs with attn_implementation="eager" in fp32; it scores each row at its last token that is not
``pad_token_id`` (0, which our config writes), so test rows hold no 0 before their padding.
"""

import json
import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
from safetensors.torch import load_file, save_file  # noqa: E402

from llamaforge import SIZES, ModelArgs, Transformer  # noqa: E402
from llamaforge.model.checkpoint_io import load_model, save_meta, save_model  # noqa: E402
from llamaforge.model.heads import has_scalar_head, scalar_head, sequence_scores, token_values  # noqa: E402
from llamaforge.parallel import Dist  # noqa: E402
from llamaforge.train.loop import build_model, export_model  # noqa: E402

PRESETS = ["debug", "debug-gqa"]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(autouse=True)
def seed():
    torch.manual_seed(0)


def random_model(args: ModelArgs, scalar: bool = True) -> Transformer:
    """Random weights, norms and the head included (ones or a tiny head would hide mistakes)."""
    model = Transformer(args)
    if scalar:
        scalar_head(model)
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(1 + 0.2 * torch.randn_like(p) if name.endswith("norm.weight") else 0.05 * torch.randn_like(p))
    return model.eval()


def padded_batch(vocab: int, lengths: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """[B, max(lengths)] ids in [1, vocab) right-padded with 0, and the [B] lengths."""
    tokens = torch.zeros(len(lengths), max(lengths), dtype=torch.long)
    for i, n in enumerate(lengths):
        tokens[i, :n] = torch.randint(1, vocab, (n,))
    return tokens, torch.tensor(lengths)


@torch.no_grad()
def scores(model, tokens, lengths):
    return sequence_scores(model, tokens, lengths)


# ---------------------------------------------------------------- save / load, HF parity

@pytest.mark.parametrize("preset", PRESETS)
def test_scalar_model_round_trips_bit_exactly(preset, tmp_path):
    args = ModelArgs(**SIZES[preset])
    ours = random_model(args)
    assert has_scalar_head(ours) and tuple(ours.output.weight.shape) == (1, args.dim)
    save_model(ours, tmp_path / "rm")
    back = load_model(tmp_path / "rm")
    assert has_scalar_head(back) and back.args == args
    want = ours.state_dict()
    assert back.state_dict().keys() == want.keys()
    for k, v in back.state_dict().items():
        assert torch.equal(v, want[k]), k
    x, n = padded_batch(args.vocab_size, [17, 9, 1, 12])
    torch.testing.assert_close(scores(back, x, n), scores(ours, x, n), atol=0, rtol=0)
    config = json.loads((tmp_path / "rm" / "config.json").read_text())
    assert config["architectures"] == ["LlamaForSequenceClassification"] and config["pad_token_id"] == 0
    assert not (tmp_path / "rm" / "generation_config.json").exists()  # a reward model does not generate
    assert "score.weight" in load_file(tmp_path / "rm" / "model.safetensors")


@pytest.mark.parametrize("preset", PRESETS)
def test_transformers_scores_what_we_score(preset, tmp_path):
    transformers = pytest.importorskip("transformers")
    transformers.utils.logging.disable_progress_bar()
    args = ModelArgs(**SIZES[preset])
    ours = random_model(args)
    save_model(ours, tmp_path / "rm")
    hf = transformers.LlamaForSequenceClassification.from_pretrained(
        tmp_path / "rm", attn_implementation="eager").eval()
    x, n = padded_batch(args.vocab_size, [21, 6, 14, 1, 21])
    with torch.no_grad():
        theirs = hf(x).logits  # [B, 1], read at each row's last non-pad token
    assert theirs.shape == (5, 1)
    torch.testing.assert_close(scores(ours, x, n), theirs[:, 0], atol=1e-5, rtol=0)



@pytest.mark.parametrize("preset", PRESETS)
def test_a_transformers_reward_model_loads_with_its_scores(preset, tmp_path):
    """The other way: a LlamaForSequenceClassification built and saved by transformers itself."""
    transformers = pytest.importorskip("transformers")
    transformers.utils.logging.disable_progress_bar()
    args = ModelArgs(**SIZES[preset])
    config = transformers.LlamaConfig(
        hidden_size=args.dim, intermediate_size=args.ffn_hidden_dim, num_hidden_layers=args.n_layers,
        num_attention_heads=args.n_heads, num_key_value_heads=args.kv_heads, vocab_size=args.vocab_size,
        rms_norm_eps=args.norm_eps, max_position_embeddings=args.max_seq_len,
        rope_parameters={"rope_type": "default", "rope_theta": args.rope_theta}, num_labels=1, pad_token_id=0,
        attn_implementation="eager")
    hf = transformers.LlamaForSequenceClassification(config).eval()
    with torch.no_grad():
        for name, p in hf.named_parameters():
            p.copy_(1 + 0.2 * torch.randn_like(p) if name.endswith("norm.weight") else 0.05 * torch.randn_like(p))
    hf.save_pretrained(tmp_path / "hf")
    ours = load_model(tmp_path / "hf")
    assert has_scalar_head(ours) and ours.args == args
    x, n = padded_batch(args.vocab_size, [3, 19, 11])
    with torch.no_grad():
        theirs = hf(x).logits[:, 0]  # [B]
    torch.testing.assert_close(scores(ours, x, n), theirs, atol=1e-5, rtol=0)

def test_a_score_does_not_depend_on_the_padding():
    args = ModelArgs(**SIZES["debug-gqa"])
    model = random_model(args)
    x, n = padded_batch(args.vocab_size, [7, 30, 3])
    batched = scores(model, x, n)
    for i, length in enumerate(n.tolist()):
        alone = scores(model, x[i:i + 1, :length], n[i:i + 1])
        more_pad = torch.cat([x[i:i + 1], torch.zeros(1, 9, dtype=torch.long)], dim=1)  # [1, 39]
        torch.testing.assert_close(batched[i:i + 1], alone, atol=1e-6, rtol=0)
        torch.testing.assert_close(scores(model, more_pad, n[i:i + 1]), alone, atol=1e-6, rtol=0)


def test_a_reward_dir_without_its_head_is_refused(tmp_path):
    save_model(random_model(ModelArgs(**SIZES["debug"])), tmp_path / "rm")
    weights = tmp_path / "rm" / "model.safetensors"
    state = load_file(weights)
    del state["score.weight"]
    save_file(state, weights, metadata={"format": "pt"})
    with pytest.raises(ValueError, match=r"missing tensor score\.weight \(the reward model's scalar head\)"):
        load_model(tmp_path / "rm")


def test_save_meta_refuses_a_scalar_head(tmp_path):
    with pytest.raises(ValueError, match="Meta's format has no reward / value models"):
        save_meta(random_model(ModelArgs(**SIZES["debug"])), tmp_path / "meta")
    assert not (tmp_path / "meta").exists()


# ---------------------------------------------------------------- builders

@pytest.fixture
def chat_dir(tmp_path):
    save_model(random_model(ModelArgs(**SIZES["debug"]), scalar=False), tmp_path / "chat")
    return tmp_path / "chat"


def test_build_model_from_a_chat_dir_keeps_the_trunk_and_adds_a_head(chat_dir, tmp_path):
    args = ModelArgs(**SIZES["debug"])
    chat = load_model(chat_dir)
    rm = build_model(args, Dist(), precision="fp32", init_from=str(chat_dir), head="scalar")
    assert has_scalar_head(rm) and tuple(rm.output.weight.shape) == (1, args.dim) and rm.training
    got, want = rm.state_dict(), chat.state_dict()
    assert got.keys() == want.keys()
    for k in want:
        if k != "output.weight":
            assert torch.equal(got[k], want[k]), k
    head = rm.output.weight.detach()
    assert torch.isfinite(head).all() and 0.01 < float(head.std()) < 0.04  # N(0, 0.02), not the chat head's 0.05
    # seeded: the same head from the same seed, another from another
    again = build_model(args, Dist(), precision="fp32", init_from=str(chat_dir), head="scalar")
    assert torch.equal(again.output.weight, head)
    other = build_model(args, Dist(), precision="fp32", init_from=str(chat_dir), head="scalar", seed=1)
    assert not torch.equal(other.output.weight, head)
    # exported, it is a reward model dir that loads back with the same weights (PPO's value model path)
    with pytest.warns(UserWarning, match="without tokenizer.model"):
        export_model({k: v.detach() for k, v in rm.state_dict().items()}, args, None, tmp_path / "rm")
    value = build_model(args, Dist(), precision="fp32", init_from=str(tmp_path / "rm"), head="scalar", seed=5)
    assert torch.equal(value.output.weight, head)
    with pytest.raises(ValueError, match="reward / value model dir"):
        build_model(args, Dist(), precision="fp32", init_from=str(tmp_path / "rm"), head="lm")
    with pytest.raises(ValueError, match="head must be 'lm' or 'scalar'"):
        build_model(args, Dist(), precision="fp32", head="value")


def test_scalar_head_on_the_meta_device_stays_there():
    with torch.device("meta"):
        model = scalar_head(Transformer(ModelArgs(**SIZES["debug"])))
    assert model.output.weight.is_meta and tuple(model.output.weight.shape) == (1, 64)


def test_token_values_and_bad_inputs():
    args = ModelArgs(**SIZES["debug"])
    model = random_model(args)
    x, n = padded_batch(args.vocab_size, [11, 5])
    with torch.no_grad():
        values = token_values(model, x)
        assert values.shape == (2, 11) and values.dtype == torch.float32
        # the score is the value at the last real token
        torch.testing.assert_close(scores(model, x, n), values[torch.arange(2), n - 1], atol=0, rtol=0)
    lm = random_model(args, scalar=False)
    assert not has_scalar_head(lm)
    with pytest.raises(ValueError, match="512-way output head"):
        sequence_scores(lm, x, n)
    with pytest.raises(ValueError, match="scalar head"):
        token_values(lm, x)
    with pytest.raises(ValueError, match=r"tokens must be \[B, T\]"):
        token_values(model, x[0])
    for bad in ([0, 5], [12, 5], [5]):
        with pytest.raises(ValueError, match="lengths must be"):
            sequence_scores(model, x, torch.tensor(bad))
