#!/usr/bin/env python3
"""Independent reference for the engine's parity tests.

Run with Debian's python3-torch (1.13; `apt-get install python3-torch`):
    python3 tests/reference/make_fixtures.py
It writes tests/fixtures/: small Hugging Face style checkpoints (config.json + safetensors,
one of them sharded and in BF16) and, for each, logits and loss computed here by a plain
PyTorch re-implementation of Hugging Face's Llama/Mistral/Qwen2 forward pass (RMSNorm in
fp32, rotate_half RoPE with llama3 scaling, GQA, SwiGLU) in float64 then rounded to float32,
with full-precision weights and with weights quantised and dequantised the bitsandbytes NF4
way (blocks of 64, fp32 absmax, nearest code; double quantisation: absmax minus its mean,
8-bit dynamic map in blocks of 256). It also writes NF4 bytes/absmax of known tensors.

Nothing here imports or calls the C++ code; the fixtures are committed so CI needs no Python.
"""
import json
import math
import os
import struct

import torch

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures")

NF4 = torch.tensor([
    -1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453, -0.28444138169288635,
    -0.18477343022823334, -0.09105003625154495, 0.0, 0.07958029955625534, 0.16093020141124725,
    0.24611230194568634, 0.33791524171829224, 0.44070982933044434, 0.5626170039176941,
    0.7229568362236023, 1.0], dtype=torch.float32)


def dynamic_map():
    """bitsandbytes.functional.create_dynamic_map(signed=True, max_exponent_bits=7, total_bits=8)."""
    data = []
    max_exponent_bits, non_sign_bits = 7, 7
    for i in range(max_exponent_bits):
        fraction_items = int(2 ** (i + non_sign_bits - max_exponent_bits) + 1)
        boundaries = torch.linspace(0.1, 1, fraction_items)
        means = (boundaries[:-1] + boundaries[1:]) / 2.0
        data += ((10 ** (-(max_exponent_bits - 1) + i)) * means).tolist()
        data += (-(10 ** (-(max_exponent_bits - 1) + i)) * means).tolist()
    data.append(0)
    data.append(1.0)
    assert len(data) == 256
    data.sort()
    return torch.tensor(data, dtype=torch.float32)


DYN = dynamic_map()


def nearest(x, code):
    # argmin returns the first (lowest) index on ties, like bnb's `x > midpoint` tree.
    return torch.argmin((x.unsqueeze(-1) - code).abs(), dim=-1).to(torch.uint8)


def blockwise(flat, block):
    n = flat.numel()
    pad = (-n) % block
    return torch.cat([flat, torch.zeros(pad)]).view(-1, block), n


def quantize_nf4(w, double_quant):
    flat = w.detach().float().reshape(-1)
    blocks, n = blockwise(flat, 64)
    absmax = blocks.abs().max(dim=1).values
    inv = torch.where(absmax > 0, 1.0 / absmax, torch.zeros_like(absmax))
    q = nearest(blocks * inv[:, None], NF4).reshape(-1)[:n]
    if n % 2:
        q = torch.cat([q, torch.tensor([7], dtype=torch.uint8)])
    packed = (q[0::2] << 4) | q[1::2]
    state = {"packed": packed, "absmax": absmax}
    if double_quant:
        offset = absmax.mean()
        b2, m = blockwise(absmax - offset, 256)
        absmax2 = b2.abs().max(dim=1).values
        inv2 = torch.where(absmax2 > 0, 1.0 / absmax2, torch.zeros_like(absmax2))
        q2 = nearest(b2 * inv2[:, None], DYN).reshape(-1)[:m]
        state.update({"absmax_q": q2, "absmax2": absmax2, "offset": offset})
    return state


def dequantize_nf4(state, shape, double_quant):
    n = 1
    for s in shape:
        n *= s
    packed = state["packed"]
    idx = torch.stack([packed >> 4, packed & 15], dim=1).reshape(-1)[:n].long()
    if double_quant:
        a2 = state["absmax2"].repeat_interleave(256)[: state["absmax_q"].numel()]
        absmax = DYN[state["absmax_q"].long()] * a2 + state["offset"]
    else:
        absmax = state["absmax"]
    vals, _ = blockwise(NF4[idx], 64)
    return (vals * absmax[:, None]).reshape(-1)[:n].view(shape)


# --- safetensors writer (format: u64 header length, JSON header, raw little-endian data) ---
DT = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16", torch.uint8: "U8", torch.int64: "I64"}


def tensor_bytes(t):
    t = t.contiguous()
    if t.dtype == torch.bfloat16:
        return t.view(torch.int16).numpy().tobytes()
    return t.numpy().tobytes()


def write_safetensors(path, tensors):
    header, blobs, off = {"__metadata__": {"format": "pt"}}, [], 0
    for name in sorted(tensors):
        b = tensor_bytes(tensors[name])
        header[name] = {"dtype": DT[tensors[name].dtype], "shape": list(tensors[name].shape),
                        "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header).encode()
    h += b" " * ((-len(h)) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


# --- reference forward pass (float64) ---
def rms_norm(x, w, eps):
    var = x.pow(2).mean(-1, keepdim=True)
    return w * (x * torch.rsqrt(var + eps))


def inv_freq(cfg):
    d = cfg["head_dim"]
    inv = 1.0 / (cfg.get("rope_theta", 10000.0) ** (torch.arange(0, d, 2, dtype=torch.int64).double() / d))
    rs = cfg.get("rope_scaling")
    if rs and rs.get("rope_type") == "llama3":
        factor, low, high = rs["factor"], rs["low_freq_factor"], rs["high_freq_factor"]
        old = rs["original_max_position_embeddings"]
        low_wl, high_wl = old / low, old / high
        out = []
        for f in inv.tolist():
            wl = 2 * math.pi / f
            if wl < high_wl:
                out.append(f)
            elif wl > low_wl:
                out.append(f / factor)
            else:
                smooth = (old / wl - low) / (high - low)
                out.append((1 - smooth) * f / factor + smooth * f)
        inv = torch.tensor(out, dtype=torch.float64)
    return inv


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat([-x[..., h:], x[..., :h]], dim=-1)


def forward(cfg, W, ids):
    B, T = ids.shape
    H, KV, D = cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["head_dim"]
    eps = cfg["rms_norm_eps"]
    x = W["model.embed_tokens.weight"][ids]
    pos = torch.arange(T, dtype=torch.float64)
    freqs = pos[:, None] * inv_freq(cfg)[None, :]
    emb = torch.cat([freqs, freqs], -1)
    cos, sin = emb.cos(), emb.sin()
    mask = torch.ones(T, T, dtype=torch.bool).triu(1)
    sw = cfg.get("sliding_window") if cfg["architectures"][0] == "MistralForCausalLM" else None
    if sw:
        mask = mask | torch.ones(T, T, dtype=torch.bool).tril(-sw)

    def lin(name, inp):
        y = inp @ W[name + ".weight"].T
        if name + ".bias" in W:
            y = y + W[name + ".bias"]
        return y

    for l in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{l}."
        h = rms_norm(x, W[p + "input_layernorm.weight"], eps)
        q = lin(p + "self_attn.q_proj", h).view(B, T, H, D).transpose(1, 2)
        k = lin(p + "self_attn.k_proj", h).view(B, T, KV, D).transpose(1, 2)
        v = lin(p + "self_attn.v_proj", h).view(B, T, KV, D).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        k = k.repeat_interleave(H // KV, dim=1)
        v = v.repeat_interleave(H // KV, dim=1)
        s = (q @ k.transpose(-1, -2)) / math.sqrt(D)
        s = s.masked_fill(mask, float("-inf"))
        a = torch.softmax(s, -1) @ v
        a = a.transpose(1, 2).reshape(B, T, H * D)
        x = x + lin(p + "self_attn.o_proj", a)
        h2 = rms_norm(x, W[p + "post_attention_layernorm.weight"], eps)
        g = lin(p + "mlp.gate_proj", h2)
        u = lin(p + "mlp.up_proj", h2)
        x = x + lin(p + "mlp.down_proj", torch.nn.functional.silu(g) * u)
    x = rms_norm(x, W["model.norm.weight"], eps)
    head = W["model.embed_tokens.weight"] if cfg.get("tie_word_embeddings") else W["lm_head.weight"]
    return x @ head.T


def loss_of(logits, labels):
    lg = logits[:, :-1].reshape(-1, logits.shape[-1])
    lb = labels[:, 1:].reshape(-1)
    return torch.nn.functional.cross_entropy(lg, lb, ignore_index=-100, reduction="mean").item()


PROJ = ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
        "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"]


def make_weights(cfg, gen, bias):
    h, V, I = cfg["hidden_size"], cfg["vocab_size"], cfg["intermediate_size"]
    qo, kvo = cfg["num_attention_heads"] * cfg["head_dim"], cfg["num_key_value_heads"] * cfg["head_dim"]
    n = lambda *s: torch.randn(*s, generator=gen) * 0.05
    W = {"model.embed_tokens.weight": n(V, h), "model.norm.weight": 1 + n(h)}
    if not cfg.get("tie_word_embeddings"):
        W["lm_head.weight"] = n(V, h)
    shapes = {"q": (qo, h), "k": (kvo, h), "v": (kvo, h), "o": (h, qo), "gate": (I, h), "up": (I, h), "down": (h, I)}
    for l in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{l}."
        W[p + "input_layernorm.weight"] = 1 + n(h)
        W[p + "post_attention_layernorm.weight"] = 1 + n(h)
        for proj in PROJ:
            short = proj.split(".")[1].replace("_proj", "")
            W[p + proj + ".weight"] = n(*shapes[short])
            if short in bias:
                W[p + proj + ".bias"] = n(shapes[short][0])
    return W


def make_case(name, cfg, dtype, bias, shards=1, seed=0):
    gen = torch.Generator().manual_seed(seed)
    W = make_weights(cfg, gen, bias)
    W = {k: v.to(dtype) for k, v in W.items()}  # what the file holds
    d = os.path.join(OUT, "models", name)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    names = sorted(W)
    if shards == 1:
        write_safetensors(os.path.join(d, "model.safetensors"), W)
    else:
        wm = {}
        for s in range(shards):
            part = names[s::shards]
            fn = f"model-{s + 1:05d}-of-{shards:05d}.safetensors"
            write_safetensors(os.path.join(d, fn), {k: W[k] for k in part})
            wm.update({k: fn for k in part})
        total = sum(W[k].numel() * W[k].element_size() for k in names)
        with open(os.path.join(d, "model.safetensors.index.json"), "w") as f:
            json.dump({"metadata": {"total_size": total}, "weight_map": wm}, f, indent=2)

    ids = torch.randint(0, cfg["vocab_size"], (2, 12), generator=gen)
    labels = ids.clone()
    labels[0, :3] = -100
    labels[1, 7] = -100
    Wf = {k: v.float() for k, v in W.items()}  # engine computes in fp32 from the file values
    out = {"input_ids": ids, "labels": labels}
    losses = {}
    for mode in ("none", "nf4", "nf4_dq"):
        Wm = dict(Wf)
        if mode != "none":
            dq = mode == "nf4_dq"
            for k in names:
                if any(k.endswith(p + ".weight") for p in PROJ):
                    Wm[k] = dequantize_nf4(quantize_nf4(Wf[k], dq), Wf[k].shape, dq)
        logits = forward(cfg, {k: v.double() for k, v in Wm.items()}, ids)
        out[f"logits_{mode}"] = logits.float()
        losses[mode] = loss_of(logits, labels)
    write_safetensors(os.path.join(OUT, f"{name}.reference.safetensors"), out)
    with open(os.path.join(OUT, f"{name}.reference.json"), "w") as f:
        json.dump({"loss": losses}, f, indent=2)


def nf4_vectors():
    gen = torch.Generator().manual_seed(7)
    # 300 values: 4 full blocks and a partial one (44 values), odd count for the last nibble.
    t = torch.randn(301, generator=gen) * 0.3
    t[5] = 0.0
    t[64:128] = torch.linspace(-2.0, 2.0, 64)  # a block spanning every code
    out = {"input": t}
    s = quantize_nf4(t, False)
    out["packed"], out["absmax"] = s["packed"], s["absmax"]
    big = torch.randn(256 * 70, generator=gen) * torch.linspace(0.01, 1.0, 256 * 70)  # 280 blocks -> 2 dq blocks
    out["dq_input"] = big
    s2 = quantize_nf4(big, True)
    out["dq_packed"], out["dq_absmax_q"], out["dq_absmax2"] = s2["packed"], s2["absmax_q"], s2["absmax2"]
    out["dq_offset"] = s2["offset"].reshape(1)
    out["dynamic_map"] = DYN
    write_safetensors(os.path.join(OUT, "nf4_vectors.safetensors"), out)


def main():
    torch.manual_seed(0)
    os.makedirs(OUT, exist_ok=True)
    base = {"hidden_size": 64, "intermediate_size": 160, "num_hidden_layers": 2, "vocab_size": 96,
            "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "max_position_embeddings": 128}
    make_case("llama_gqa", dict(base, architectures=["LlamaForCausalLM"], model_type="llama",
                                num_attention_heads=4, num_key_value_heads=2, head_dim=16,
                                tie_word_embeddings=False), torch.float32, bias=[], seed=1)
    make_case("qwen2_tied_f16", dict(base, architectures=["Qwen2ForCausalLM"], model_type="qwen2",
                                     num_attention_heads=4, num_key_value_heads=1, head_dim=16,
                                     tie_word_embeddings=True, rope_theta=1000000.0),
              torch.float16, bias=["q", "k", "v"], seed=2)
    make_case("llama3_sharded_bf16", dict(base, architectures=["LlamaForCausalLM"], model_type="llama",
                                          num_attention_heads=4, num_key_value_heads=2, head_dim=24,
                                          tie_word_embeddings=False, attention_bias=True, mlp_bias=True,
                                          rope_theta=500000.0,
                                          rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                                        "high_freq_factor": 4.0,
                                                        "original_max_position_embeddings": 8}),
              torch.bfloat16, bias=["q", "k", "v", "o", "gate", "up", "down"], shards=2, seed=3)
    make_case("mistral_window", dict(base, architectures=["MistralForCausalLM"], model_type="mistral",
                                     num_attention_heads=4, num_key_value_heads=4, head_dim=16,
                                     tie_word_embeddings=False, sliding_window=5), torch.float32, bias=[], seed=4)
    nf4_vectors()
    print("fixtures written to", os.path.normpath(OUT))


if __name__ == "__main__":
    main()
