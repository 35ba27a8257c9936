#!/usr/bin/env python3
"""The peer Polytune's trainer is measured against: LoRA fine-tuning of the same Llama shape in
plain PyTorch, printing one JSON object like bench/train_bench's.

--impl eager: a self-contained Llama in PyTorch eager (Hugging Face Llama semantics: RMSNorm,
  rotate-half RoPE, grouped-query attention, SwiGLU), PEFT-style LoRA on the seven projections
  (A kaiming-uniform, B zero, dropout on the adapter's input, scaling alpha / r), per-layer
  activation checkpointing, full-vocabulary cross-entropy, AdamW over the adapters. It runs on
  Debian's python3-torch (1.13), which is what a user without bitsandbytes' CUDA kernels has on
  CPU. The base is fp32 on CPU (no NF4 without bitsandbytes), bf16 on CUDA.
--impl hf: Hugging Face transformers LlamaForCausalLM + PEFT LoraConfig, bf16, SDPA attention,
  gradient checkpointing (the GPU machine has both; it has no bitsandbytes).

  bench/peer/lora_peer.py --impl eager --hidden 512 --layers 8 --seq 512 --batch 4 --threads 2
"""
import argparse
import json
import math
import resource
import time

import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.utils.checkpoint


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--impl", choices=["eager", "hf"], default="eager")
    p.add_argument("--hidden", type=int, default=512)
    p.add_argument("--layers", type=int, default=8)
    p.add_argument("--head-dim", type=int, default=64)
    p.add_argument("--kv-heads", type=int, default=0, help="default: as many as query heads")
    p.add_argument("--intermediate", type=int, default=0, help="default: 8/3 of hidden, multiple of 64")
    p.add_argument("--vocab", type=int, default=32000)
    p.add_argument("--seq", type=int, default=512)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--steps", type=int, default=6)
    p.add_argument("--lora-r", type=int, default=16)
    p.add_argument("--dropout-percent", type=int, default=5)
    p.add_argument("--checkpointing", type=int, default=1)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--peak-tflops", type=float, default=0)
    p.add_argument("--compute-dtype", choices=["auto", "float32", "bfloat16"], default="auto",
                   help="the frozen base and activations: auto is bfloat16 on CUDA, float32 on CPU")
    return p.parse_args()


class LoraLinear(nn.Module):
    """y = x W^T + scaling * B(A(dropout(x))), W frozen (PEFT's lora.Linear)."""

    def __init__(self, in_f, out_f, r, alpha, dropout, dtype, device):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_f, in_f, dtype=dtype, device=device) * 0.02, requires_grad=False)
        self.lora_A = nn.Parameter(torch.empty(r, in_f, dtype=torch.float32, device=device))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))
        self.lora_B = nn.Parameter(torch.zeros(out_f, r, dtype=torch.float32, device=device))
        self.dropout = nn.Dropout(dropout)
        self.scaling = alpha / r

    def forward(self, x):
        a = self.lora_A.to(x.dtype)
        b = self.lora_B.to(x.dtype)
        return F.linear(x, self.weight) + F.linear(F.linear(self.dropout(x), a), b) * self.scaling


class RMSNorm(nn.Module):
    def __init__(self, n, dtype, device, eps=1e-5):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(n, dtype=dtype, device=device), requires_grad=False)
        self.eps = eps

    def forward(self, x):
        xf = x.float()
        xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * xf.to(x.dtype)


def rotate_half(x):
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


class Layer(nn.Module):
    def __init__(self, a, dtype, device):
        super().__init__()
        h, d = a.hidden, a.head_dim
        self.heads, self.kv_heads, self.head_dim = h // d, a.kv_heads, d
        lin = lambda i, o: LoraLinear(i, o, a.lora_r, 2 * a.lora_r, a.dropout_percent / 100, dtype, device)
        self.q, self.k, self.v = lin(h, self.heads * d), lin(h, self.kv_heads * d), lin(h, self.kv_heads * d)
        self.o = lin(self.heads * d, h)
        self.gate, self.up, self.down = lin(h, a.intermediate), lin(h, a.intermediate), lin(a.intermediate, h)
        self.norm1, self.norm2 = RMSNorm(h, dtype, device), RMSNorm(h, dtype, device)

    def forward(self, x, cos, sin):
        b, s, _ = x.shape
        y = self.norm1(x)
        q = self.q(y).view(b, s, self.heads, self.head_dim).transpose(1, 2)
        k = self.k(y).view(b, s, self.kv_heads, self.head_dim).transpose(1, 2)
        v = self.v(y).view(b, s, self.kv_heads, self.head_dim).transpose(1, 2)
        q, k = q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin
        rep = self.heads // self.kv_heads
        k, v = k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1)
        if hasattr(F, "scaled_dot_product_attention"):
            att = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:  # torch 1.13
            scores = q @ k.transpose(-1, -2) / math.sqrt(self.head_dim)
            mask = torch.ones(s, s, dtype=torch.bool, device=x.device).triu(1)
            att = scores.masked_fill(mask, float("-inf")).softmax(-1) @ v
        x = x + self.o(att.transpose(1, 2).reshape(b, s, -1))
        y = self.norm2(x)
        return x + self.down(F.silu(self.gate(y)) * self.up(y))


class EagerLlama(nn.Module):
    def __init__(self, a, dtype, device):
        super().__init__()
        self.embed = nn.Parameter(torch.randn(a.vocab, a.hidden, dtype=dtype, device=device) * 0.02, requires_grad=False)
        self.layers = nn.ModuleList(Layer(a, dtype, device) for _ in range(a.layers))
        self.norm = RMSNorm(a.hidden, dtype, device)
        self.lm_head = nn.Parameter(torch.randn(a.vocab, a.hidden, dtype=dtype, device=device) * 0.02, requires_grad=False)
        self.checkpointing = bool(a.checkpointing)
        inv = 1.0 / (500000.0 ** (torch.arange(0, a.head_dim, 2, device=device).float() / a.head_dim))
        freqs = torch.outer(torch.arange(a.seq, device=device).float(), inv)
        emb = torch.cat((freqs, freqs), dim=-1)
        self.cos, self.sin = emb.cos().to(dtype), emb.sin().to(dtype)

    def loss(self, ids):
        x = F.embedding(ids, self.embed)
        for layer in self.layers:
            if self.checkpointing:
                x = torch.utils.checkpoint.checkpoint(layer, x, self.cos, self.sin, use_reentrant=False)
            else:
                x = layer(x, self.cos, self.sin)
        logits = F.linear(self.norm(x), self.lm_head).float()
        return F.cross_entropy(logits[:, :-1].reshape(-1, logits.size(-1)), ids[:, 1:].reshape(-1))


def build_hf(a, dtype, device):
    import peft
    import transformers

    config = transformers.LlamaConfig(
        hidden_size=a.hidden, intermediate_size=a.intermediate, num_hidden_layers=a.layers,
        num_attention_heads=a.hidden // a.head_dim, num_key_value_heads=a.kv_heads, head_dim=a.head_dim,
        vocab_size=a.vocab, max_position_embeddings=max(4096, a.seq), rope_theta=500000.0,
        tie_word_embeddings=False)
    config._attn_implementation = "sdpa"
    torch.set_default_dtype(dtype)
    with torch.device(device):
        model = transformers.LlamaForCausalLM(config)
    torch.set_default_dtype(torch.float32)
    if a.checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    lc = peft.LoraConfig(r=a.lora_r, lora_alpha=2 * a.lora_r, lora_dropout=a.dropout_percent / 100,
                         target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
    model = peft.get_peft_model(model, lc)
    model.train()
    return model, lambda ids: model(input_ids=ids, labels=ids).loss


def main():
    a = parse_args()
    a.kv_heads = a.kv_heads or a.hidden // a.head_dim
    a.intermediate = a.intermediate or a.hidden * 8 // 3 // 64 * 64
    if a.threads:
        torch.set_num_threads(a.threads)
    device = torch.device(a.device)
    if a.compute_dtype == "auto":
        dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    else:
        dtype = getattr(torch, a.compute_dtype)
    torch.manual_seed(0)
    if a.impl == "hf":
        model, loss_fn = build_hf(a, dtype, device)
    else:
        model = EagerLlama(a, dtype, device)
        model.train()
        loss_fn = model.loss
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4)
    gen = torch.Generator().manual_seed(3)
    step_seconds = []
    for _ in range(a.steps):
        ids = torch.randint(0, a.vocab, (a.batch, a.seq), generator=gen).to(device)
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        loss = loss_fn(ids)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        loss_value = loss.item()
        if device.type == "cuda":
            torch.cuda.synchronize()
        step_seconds.append(time.perf_counter() - t0)
    timed = sorted(step_seconds[1:] or step_seconds)  # the first step warms up
    median = timed[len(timed) // 2]
    out = {
        "impl": a.impl, "torch": torch.__version__, "device": a.device, "hidden": a.hidden, "layers": a.layers,
        "vocab": a.vocab, "seq": a.seq, "global_batch": a.batch, "lora_r": a.lora_r,
        "checkpointing": bool(a.checkpointing), "threads": torch.get_num_threads(),
        "base_dtype": str(dtype).replace("torch.", ""), "trainable_params": sum(p.numel() for p in params),
        "tokens_per_second": a.batch * a.seq / median, "final_loss": loss_value,
        "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
    }
    if device.type == "cuda":
        out["cuda_peak_allocated_bytes"] = torch.cuda.max_memory_allocated()
        out["cuda_peak_reserved_bytes"] = torch.cuda.max_memory_reserved()
        if a.peak_tflops:
            h, d, kv, inter = a.hidden, a.head_dim, a.kv_heads, a.intermediate
            q = h  # heads * head_dim
            rows = a.batch * a.seq
            proj = a.layers * 2.0 * rows * (h * q + 2 * h * kv * d + q * h + 3 * h * inter)
            attn = a.layers * 2.0 * (2.0 * a.batch * (h // d) * a.seq * a.seq * d)
            head = 2.0 * rows * h * a.vocab
            flops = 3 * proj + 4 * attn + 3 * head  # the same count as train_bench's
            out["mfu"] = flops / median / 1e12 / a.peak_tflops
    print(json.dumps(out))


if __name__ == "__main__":
    main()
