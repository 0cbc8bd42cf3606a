"""Model architecture: preset sizes, FFN rule, RoPE layout, masks, meta-device builds."""

import math

import pytest
import torch
import torch.nn.functional as F

from llamaforge import SIZES, ModelArgs, Transformer
from llamaforge.model.llama import (PackedDocuments, RMSNorm, _RMSNormFn, apply_rope, packed_attention,
                                    packed_documents, rope_cos_sin, single_query_attention)
from llamaforge.model.sizes import preset


@pytest.mark.parametrize(
    "name, expected",
    [
        ("llama2-7b", 6_738_415_616),
        ("llama2-13b", 13_015_864_320),
        ("llama2-34b", 33_743_970_304),
        ("llama2-70b", 68_976_648_192),
    ],
)
def test_published_parameter_counts_on_meta_device(name, expected):
    with torch.device("meta"):
        model = Transformer(ModelArgs(**SIZES[name]))
    assert all(p.is_meta for p in model.parameters())
    assert sum(p.numel() for p in model.parameters()) == expected


@pytest.mark.parametrize("name, ffn", [("llama2-7b", 11008), ("llama2-13b", 13824),
                                       ("llama2-34b", 22016), ("llama2-70b", 28672)])
def test_ffn_width_rule(name, ffn):
    # 70B: int(2*4*8192/3) = 21845; int(1.3 * 21845) = 28398; rounded up to 4096s -> 28672
    assert ModelArgs(**SIZES[name]).ffn_hidden_dim == ffn


def test_gqa_projection_shapes():
    args = ModelArgs(**SIZES["llama2-70b"])
    with torch.device("meta"):
        model = Transformer(args)
    attn = model.layers[0].attention
    assert attn.wq.weight.shape == (8192, 8192)
    assert attn.wk.weight.shape == (8 * 128, 8192)  # (n_kv_heads * head_dim, dim)
    assert attn.wv.weight.shape == (8 * 128, 8192)


def test_meta_parameter_names_and_untied_head():
    model = Transformer(ModelArgs(**SIZES["debug"]))
    names = set(model.state_dict())
    assert {"tok_embeddings.weight", "norm.weight", "output.weight",
            "layers.0.attention.wq.weight", "layers.1.feed_forward.w3.weight",
            "layers.0.attention_norm.weight", "layers.0.ffn_norm.weight"} <= names
    assert not any("rope" in n or "cache" in n for n in names)
    assert model.output.weight.data_ptr() != model.tok_embeddings.weight.data_ptr()


def test_bad_args_raise():
    with pytest.raises(ValueError, match="n_heads"):
        ModelArgs(dim=64, n_heads=5)
    with pytest.raises(ValueError, match="n_kv_heads"):
        ModelArgs(dim=64, n_heads=4, n_kv_heads=3)
    with pytest.raises(ValueError, match="unknown model preset 'llama3'"):
        preset("llama3")


def test_meta_init_then_to_empty_matches_eager_statistics():
    args = ModelArgs(**SIZES["debug"])
    with torch.device("meta"):
        model = Transformer(args)
    model.to_empty(device="cpu")
    torch.manual_seed(0)
    model.init_weights()
    assert torch.equal(model.norm.weight, torch.ones(args.dim))
    std = model.layers[0].attention.wo.weight.std().item()
    assert abs(std - 0.02 / math.sqrt(2 * args.n_layers)) < 0.003
    logits = model(torch.randint(0, args.vocab_size, (2, 8)))
    assert logits.shape == (2, 8, args.vocab_size) and logits.dtype == torch.float32
    assert torch.isfinite(logits).all()


def test_rope_rotates_adjacent_pairs_like_complex_multiply():
    # Meta: view (x[2i], x[2i+1]) as a complex number and multiply by exp(i * pos * theta^(-2i/d))
    torch.manual_seed(0)
    x = torch.randn(1, 5, 2, 8)
    cos, sin = rope_cos_sin(torch.arange(5), 8, 10000.0)
    freqs = 1.0 / (10000.0 ** (torch.arange(0, 8, 2).float() / 8))
    cis = torch.polar(torch.ones(5, 4), torch.outer(torch.arange(5).float(), freqs))  # [T, 4]
    expected = torch.view_as_real(torch.view_as_complex(x.reshape(1, 5, 2, 4, 2)) * cis[None, :, None])
    torch.testing.assert_close(apply_rope(x, cos, sin), expected.flatten(3), atol=1e-6, rtol=0)


def test_rope_compiled_form_equals_eager_form(monkeypatch):
    # eager rotates with a complex multiply, a compiled graph with real ops inductor fuses: same numbers,
    # forward and backward, per-row positions too
    torch.manual_seed(0)
    cos, sin = rope_cos_sin(torch.tensor([[0, 1, 2, 3, 4], [0, 0, 1, 2, 3]]), 8, 10000.0)
    x = torch.randn(2, 5, 3, 8, requires_grad=True)
    g = torch.randn(2, 5, 3, 8)
    eager = apply_rope(x, cos, sin)
    (grad_eager,) = torch.autograd.grad(eager, x, g)
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)
    real = apply_rope(x, cos, sin)
    (grad_real,) = torch.autograd.grad(real, x, g)
    torch.testing.assert_close(eager, real, atol=1e-6, rtol=0)
    torch.testing.assert_close(grad_eager, grad_real, atol=1e-6, rtol=0)
    xb = x.detach().bfloat16()
    assert apply_rope(xb, cos, sin).dtype == torch.bfloat16


@pytest.mark.parametrize("n_kv", [6, 2, 1])
def test_single_query_attention_equals_sdpa(n_kv):
    # the decode step's attention: SDPA's numbers for one query, MHA and GQA, masked keys, bf16 too
    torch.manual_seed(0)
    q, k, v = torch.randn(3, 6, 1, 16), torch.randn(3, n_kv, 20, 16), torch.randn(3, n_kv, 20, 16)
    mask = torch.rand(3, 1, 1, 20) < 0.7
    mask[..., 5] = True  # every row sees at least one key
    for m in (mask, None):
        expected = F.scaled_dot_product_attention(q, k, v, attn_mask=m, enable_gqa=n_kv != 6)
        torch.testing.assert_close(single_query_attention(q, k, v, m), expected, atol=1e-5, rtol=0)
    qb, kb, vb = q.bfloat16(), k.bfloat16(), v.bfloat16()
    out = single_query_attention(qb, kb, vb, mask)
    expected = F.scaled_dot_product_attention(qb, kb, vb, attn_mask=mask, enable_gqa=n_kv != 6)
    assert out.dtype == torch.bfloat16 and out.shape == (3, 6, 1, 16)
    torch.testing.assert_close(out.float(), expected.float(), atol=2e-2, rtol=0)


def test_rmsnorm_under_autocast_hands_linears_the_autocast_dtype():
    norm = RMSNorm(8)
    x = torch.randn(2, 3, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = norm(x)
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out, norm(x).bfloat16(), atol=0, rtol=0)


def test_causality_and_explicit_causal_mask_agree():
    torch.manual_seed(0)
    model = Transformer(ModelArgs(**SIZES["debug-gqa"]))
    tokens = torch.randint(0, model.args.vocab_size, (2, 12))
    full = model(tokens)
    # changing a future token never changes earlier logits
    changed = tokens.clone()
    changed[:, 8] = (changed[:, 8] + 1) % model.args.vocab_size
    torch.testing.assert_close(model(changed)[:, :8], full[:, :8], atol=1e-6, rtol=0)
    causal = torch.ones(12, 12, dtype=torch.bool).tril()
    torch.testing.assert_close(model(tokens, mask=causal), full, atol=1e-5, rtol=0)


def test_packed_documents_with_block_mask_equal_separate_forwards():
    # Two documents packed into one row, attention kept inside each and positions restarting:
    # each document's logits must equal its own forward.
    torch.manual_seed(0)
    model = Transformer(ModelArgs(**SIZES["debug"]))
    a, b = torch.randint(0, 512, (1, 5)), torch.randint(0, 512, (1, 7))
    doc = torch.tensor([0] * 5 + [1] * 7)
    mask = (doc[:, None] == doc[None, :]) & torch.ones(12, 12, dtype=torch.bool).tril()
    pos = torch.cat([torch.arange(5), torch.arange(7)])[None]
    packed = model(torch.cat([a, b], 1), pos_ids=pos, mask=mask)
    torch.testing.assert_close(packed[:, :5], model(a), atol=1e-5, rtol=0)
    torch.testing.assert_close(packed[:, 5:], model(b), atol=1e-5, rtol=0)


def test_packed_documents_lay_out_every_position_once():
    # rows [a a a b b -1 -1] and [c c c c c c c]: documents of 3, 2, 2 (the padding) and 7 tokens,
    # buckets of 4 -> lengths 4 (three documents) and 8 (one); every position is read back once
    doc = torch.tensor([[0, 0, 0, 1, 1, -1, -1], [0] * 7])
    docs = packed_documents(doc, bucket=4)
    assert isinstance(docs, PackedDocuments)
    assert docs.shapes == ((3, 4), (1, 8))
    assert docs.index.tolist() == [0, 1, 2, 2, 3, 4, 4, 4, 5, 6, 6, 6] + [7, 8, 9, 10, 11, 12, 13, 13]
    # concatenated outputs: rows 0-11 the first group (3 x 4), 12-19 the second
    assert docs.inverse.tolist() == [0, 1, 2, 4, 5, 8, 9, 12, 13, 14, 15, 16, 17, 18]


@pytest.mark.parametrize("n_kv", [4, 2])
def test_packed_attention_equals_sdpa_under_the_block_mask_with_its_gradients(n_kv):
    torch.manual_seed(0)
    doc = torch.tensor([[0] * 5 + [1] * 20 + [2] * 7 + [-1] * 8, [0] * 40, [0] + [1] * 33 + [-1] * 6])
    q = torch.randn(3, 40, 4, 8, dtype=torch.float64, requires_grad=True)
    k, v = (torch.randn(3, 40, n_kv, 8, dtype=torch.float64, requires_grad=True) for _ in range(2))
    got = packed_attention(q, k, v, packed_documents(doc, bucket=16))  # buckets 16, 32 and 48
    mask = ((doc[:, :, None] == doc[:, None, :]) & torch.ones(40, 40, dtype=torch.bool).tril())[:, None]
    want = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), attn_mask=mask,
                                          enable_gqa=n_kv != 4).transpose(1, 2).reshape(3, 40, 32)
    torch.testing.assert_close(got, want, atol=1e-12, rtol=0)
    g = torch.randn_like(want)
    for a, b in zip(torch.autograd.grad(got, (q, k, v), g), torch.autograd.grad(want, (q, k, v), g)):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=0)


def test_a_model_given_packed_documents_equals_the_block_mask():
    torch.manual_seed(0)
    model = Transformer(ModelArgs(**SIZES["debug"]))
    doc = torch.tensor([[0] * 5 + [1] * 7 + [-1] * 4])
    tokens = torch.randint(0, 512, (1, 16))
    pos = torch.cat([torch.arange(5), torch.arange(7), torch.arange(4)])[None]
    mask = ((doc[:, :, None] == doc[:, None, :]) & torch.ones(16, 16, dtype=torch.bool).tril())[:, None]
    torch.testing.assert_close(model(tokens, pos_ids=pos, mask=packed_documents(doc)),
                               model(tokens, pos_ids=pos, mask=mask), atol=1e-5, rtol=0)


def test_last_n_and_bf16_autocast():
    torch.manual_seed(0)
    model = Transformer(ModelArgs(**SIZES["debug"]))
    tokens = torch.randint(0, 512, (2, 10))
    full = model(tokens)
    torch.testing.assert_close(model(tokens, last_n=1), full[:, -1:], atol=1e-6, rtol=0)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = model(tokens)
    assert low.dtype == torch.float32
    assert (low - full).abs().max() < 0.05


def test_bf16_training_attention_runs_in_fp32_where_the_cpu_kernel_is_faster(monkeypatch):
    # under bf16 autocast, a training forward's SDPA sees fp32 q/k/v (autocast disabled around it)
    # for short sequences or head_dim <= 32, bf16 otherwise and in every forward-only call
    seen = []
    real_sdpa = F.scaled_dot_product_attention

    def spy(q, k, v, **kw):
        seen.append((q.dtype, k.dtype, v.dtype, torch.is_autocast_enabled("cpu")))
        return real_sdpa(q, k, v, **kw)

    monkeypatch.setattr(F, "scaled_dot_product_attention", spy)
    torch.manual_seed(0)

    def attention_dtypes(dim, n_heads, seqlen, grad=True):
        model = Transformer(ModelArgs(dim=dim, n_layers=1, n_heads=n_heads, vocab_size=64, max_seq_len=512))
        tokens = torch.randint(0, 64, (1, seqlen))
        seen.clear()
        with torch.autocast("cpu", dtype=torch.bfloat16), torch.set_grad_enabled(grad):
            loss = model(tokens, targets=tokens)
        if grad:
            loss.backward()
            assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
        return seen[0]

    fp32, bf16 = (torch.float32,) * 3 + (False,), (torch.bfloat16,) * 3 + (True,)
    assert attention_dtypes(128, 2, 100) == fp32  # T <= 256 (head_dim 64)
    assert attention_dtypes(64, 2, 256) == fp32  # T <= 256 (head_dim 32)
    assert attention_dtypes(64, 2, 257) == bf16  # T > 256
    assert attention_dtypes(64, 2, 100, grad=False) == bf16  # forward only (prefill)


def test_input_pos_without_cache_is_an_error():
    model = Transformer(ModelArgs(**SIZES["debug"]))
    with pytest.raises(ValueError, match="input_pos"):
        model(torch.zeros(1, 3, dtype=torch.long), torch.arange(3))


def test_public_api_names():
    import llamaforge
    import llamaforge.generation.sampling as sampling  # the subpackage is not shadowed

    for name in ("ModelArgs", "Transformer", "SIZES", "load_model", "save_model", "Tokenizer",
                 "chat_format", "generate", "stream", "chat", "SamplingParams"):
        assert hasattr(llamaforge, name), name
    assert callable(llamaforge.generate) and sampling.SamplingParams is llamaforge.SamplingParams


def test_rmsnorm_backward_matches_autograd_of_its_definition():
    # the hand-written backward of the eager RMSNorm: gradcheck in fp64, then the module (fp32 compute)
    # against autograd through Meta's formula
    torch.manual_seed(0)
    x = (torch.randn(3, 5, 16, dtype=torch.float64) * 3).requires_grad_()
    assert torch.autograd.gradcheck(lambda t: _RMSNormFn.apply(t, 1e-5), (x,))
    norm = RMSNorm(16, eps=1e-5)
    with torch.no_grad():
        norm.weight.uniform_(0.5, 1.5)
    x = (torch.randn(3, 5, 16) * 3).requires_grad_()
    g = torch.randn(3, 5, 16)
    ours = torch.autograd.grad(norm(x), (x, norm.weight), g)
    ref = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-5) * norm.weight
    expected = torch.autograd.grad(ref, (x, norm.weight), g)
    for a, b in zip(ours, expected):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
