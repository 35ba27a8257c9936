#!/usr/bin/env python3
"""Independent greedy-decoding reference for the engine's generation tests.

Run with Debian's python3-torch (1.13; `apt-get install python3-torch`):
    /usr/bin/python3 tests/reference/make_generation_fixtures.py
For each fixture model that make_fixtures.py wrote (read back here from the committed
safetensors files), it writes a PEFT LoRA adapter (random A and B, seeded, so the adapter
changes the outputs) to tests/fixtures/adapters/<model>/ and then decodes greedily with no
cache at all: every step reruns make_fixtures.forward (float64) over the whole sequence and
takes the argmax of the last position. Weights: as stored ("none"), or NF4 with double
quantisation ("nf4", make_fixtures' bitsandbytes re-implementation), each with and without
the adapter (W + alpha/r * B @ A, PEFT's LoRA at inference). The token ids and, per step, the
margin between the best and second-best logit go to tests/fixtures/generation.reference.json;
a margin far above the engine's fp32 rounding is what makes an exact token match a fair test.

Nothing here imports or calls the C++ code; the outputs are committed so CI needs no Python.
"""
import json
import os
import struct
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import make_fixtures as mf  # noqa: E402  (the reference forward pass and NF4 code)

FIX = os.path.normpath(os.path.join(HERE, "..", "fixtures"))
DTYPES = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16}
MODELS = ["llama_gqa", "qwen2_tied_f16", "llama3_sharded_bf16", "mistral_window"]
# Prompts of different lengths (ids < 96, the fixtures' vocabulary).
PROMPTS = [[5, 17, 33, 2, 71, 9, 40], [88, 3, 14], [60]]
NEW_TOKENS = 14  # past mistral_window's window (5) and llama3's original 8 positions
LORA_R, LORA_ALPHA = 4, 8.0


def read_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, e in header.items():
        if name == "__metadata__":
            continue
        b, end = e["data_offsets"]
        t = torch.frombuffer(bytearray(data[b:end]), dtype=DTYPES[e["dtype"]]) if end > b else torch.zeros(0)
        out[name] = t.reshape(e["shape"]).clone()
    return out


def read_model(name):
    d = os.path.join(FIX, "models", name)
    cfg = json.load(open(os.path.join(d, "config.json")))
    index = os.path.join(d, "model.safetensors.index.json")
    files = sorted(set(json.load(open(index))["weight_map"].values())) if os.path.exists(index) else ["model.safetensors"]
    W = {}
    for fn in files:
        W.update(read_safetensors(os.path.join(d, fn)))
    return cfg, {k: v.float() for k, v in W.items()}  # the engine computes in fp32 from the file values


def make_adapter(name, cfg, seed):
    gen = torch.Generator().manual_seed(seed)
    h, I = cfg["hidden_size"], cfg["intermediate_size"]
    qo, kvo = cfg["num_attention_heads"] * cfg["head_dim"], cfg["num_key_value_heads"] * cfg["head_dim"]
    dims = {"q_proj": (h, qo), "k_proj": (h, kvo), "v_proj": (h, kvo), "o_proj": (qo, h),
            "gate_proj": (h, I), "up_proj": (h, I), "down_proj": (I, h)}
    tensors = {}
    for l in range(cfg["num_hidden_layers"]):
        for proj in mf.PROJ:
            short = proj.split(".")[1]
            fan_in, fan_out = dims[short]
            p = f"base_model.model.model.layers.{l}.{proj}"
            tensors[p + ".lora_A.weight"] = torch.randn(LORA_R, fan_in, generator=gen) * 0.2
            tensors[p + ".lora_B.weight"] = torch.randn(fan_out, LORA_R, generator=gen) * 0.2
    d = os.path.join(FIX, "adapters", name)
    os.makedirs(d, exist_ok=True)
    mf.write_safetensors(os.path.join(d, "adapter_model.safetensors"), tensors)
    with open(os.path.join(d, "adapter_config.json"), "w") as f:
        json.dump({"peft_type": "LORA", "r": LORA_R, "lora_alpha": LORA_ALPHA, "lora_dropout": 0.0,
                   "target_modules": [p.split(".")[1] for p in mf.PROJ], "bias": "none",
                   "task_type": "CAUSAL_LM", "base_model_name_or_path": f"models/{name}"}, f, indent=2)
    return tensors


def weights(cfg, W, mode, adapter):
    out = dict(W)
    for k in W:
        if not any(k.endswith(p + ".weight") for p in mf.PROJ):
            continue
        if mode == "nf4":
            out[k] = mf.dequantize_nf4(mf.quantize_nf4(W[k], True), W[k].shape, True)
        if adapter is not None:
            p = "base_model.model." + k[: -len(".weight")]
            out[k] = out[k].double() + (LORA_ALPHA / LORA_R) * (
                adapter[p + ".lora_B.weight"].double() @ adapter[p + ".lora_A.weight"].double())
    return {k: v.double() for k, v in out.items()}


def greedy(cfg, W, prompt):
    ids, margins = list(prompt), []
    for _ in range(NEW_TOKENS):
        logits = mf.forward(cfg, W, torch.tensor([ids]))[0, -1]
        top = torch.topk(logits, 2)
        margins.append(float(top.values[0] - top.values[1]))
        ids.append(int(top.indices[0]))
    return ids[len(prompt):], margins


def main():
    torch.manual_seed(0)
    cases = []
    for seed, name in enumerate(MODELS):
        cfg, W = read_model(name)
        adapter = make_adapter(name, cfg, 100 + seed)
        for mode in ("none", "nf4"):
            for with_adapter in (False, True):
                Wm = weights(cfg, W, mode, adapter if with_adapter else None)
                outs = []
                for prompt in PROMPTS:
                    tokens, margins = greedy(cfg, Wm, prompt)
                    outs.append({"prompt": prompt, "tokens": tokens, "margins": [round(m, 8) for m in margins]})
                cases.append({"model": name, "quantization": mode, "adapter": with_adapter, "outputs": outs})
                print(name, mode, "adapter" if with_adapter else "base",
                      "min margin %.2e" % min(min(o["margins"]) for o in outs))
    with open(os.path.join(FIX, "generation.reference.json"), "w") as f:
        json.dump({"new_tokens": NEW_TOKENS, "cases": cases}, f, indent=1)


if __name__ == "__main__":
    main()
