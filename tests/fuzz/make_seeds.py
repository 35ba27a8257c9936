#!/usr/bin/env python3
"""Writes the fuzz targets' seed corpora under tests/fuzz/corpus/ from the repository's own
fixtures and examples (run from anywhere; needs protoc for the RPC seeds). The seeds are
committed; rerun this when the formats grow."""
import json
import os
import pathlib
import struct
import subprocess

ROOT = pathlib.Path(__file__).resolve().parents[2]
OUT = ROOT / "tests/fuzz/corpus"


def write(target, name, data):
    d = OUT / target
    d.mkdir(parents=True, exist_ok=True)
    (d / name).write_bytes(data if isinstance(data, bytes) else data.encode())


def safetensors(tensors, metadata=None):
    """tensors: name -> (dtype, shape, raw bytes)."""
    header, buf = {}, b""
    if metadata is not None:
        header["__metadata__"] = metadata
    for name, (dtype, shape, raw) in tensors.items():
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(buf), len(buf) + len(raw)]}
        buf += raw
    h = json.dumps(header).encode()
    return struct.pack("<Q", len(h)) + h + buf


def shrink_tokenizer(path, keep):
    """A tokenizer.json with the first `keep` vocab entries and the merges among them."""
    tok = json.loads(path.read_text())
    model = tok["model"]
    vocab = {t: i for t, i in model["vocab"].items() if i < keep}
    merges = []
    for m in model.get("merges", []):
        a, b = m.split(" ", 1) if isinstance(m, str) else m
        if a in vocab and b in vocab and a + b in vocab:
            merges.append(m)
    model["vocab"], model["merges"] = vocab, merges
    tok["added_tokens"] = [t for t in tok.get("added_tokens", []) if t["id"] < keep] + [
        t for t in tok.get("added_tokens", []) if t["id"] >= keep][:2]
    for t in tok["added_tokens"]:
        t["id"] = min(t["id"], keep + 10)
    return json.dumps(tok, ensure_ascii=False)


def main():
    # Job specs: the examples and each section's forms.
    for f in (ROOT / "examples").glob("*.yaml"):
        write("job_spec", f.name, f.read_text())
    write("job_spec", "submission.yaml", "model: {path: /models/llama, quantization: nf4}\n"
          "data: {train: {sha256: " + "ab" * 32 + ", name: t.jsonl}, eval: /data/eval.jsonl, format: messages}\n"
          "lora: {r: 16, alpha: 32, dropout: 0.05, target_modules: [q_proj, v_proj]}\n"
          "training: {max_steps: 100, learning_rate: 2.0e-4, micro_batch_size: 2, seq_len: 512}\n"
          "resources: {world_size: 2, max_restarts: 3, preemptible: true}\n")
    write("job_spec", "anchors.yaml", "base: &b {path: /m}\nmodel: *b\ndata: {train: /t}\nresources: {world_size: 1}\n")
    # Safetensors: the fixtures, and small hand-made tables.
    for f in [ROOT / "tests/fixtures/llama_gqa.reference.safetensors"]:
        write("safetensors", f.name, f.read_bytes())
    write("safetensors", "f32.safetensors", safetensors({"w": ("F32", [2, 2], struct.pack("<4f", 1, 2, 3, 4))}))
    write("safetensors", "mixed.safetensors", safetensors(
        {"a": ("BF16", [3], b"\x80\x3f" * 3), "b": ("I64", [1], struct.pack("<q", 7)), "c": ("U8", [0], b""),
         "d": ("BOOL", [2], b"\x01\x00")}, {"format": "pt"}))
    # Chat templates: the fixtures' templates and the tokenizers' own.
    cases = json.loads((ROOT / "tests/fixtures/chat_templates/cases.json").read_text())
    for name, source in cases["templates"].items():
        write("jinja", name + ".jinja", source["source"])
    for d in (ROOT / "tests/fixtures/tokenizers").iterdir():
        cfg = json.loads((d / "tokenizer_config.json").read_text())
        if isinstance(cfg.get("chat_template"), str):
            write("jinja", d.name + ".jinja", cfg["chat_template"])
    write("jinja", "expressions.jinja", "{% set ns = namespace(x=0) %}{% for m in messages[1:] if m.role != 'x' %}"
          "{{ loop.index ~ ':' ~ m.content|trim|upper }}{% if not loop.last %}, {% endif %}"
          "{% set ns.x = ns.x + 1 %}{% endfor %}{{ ns.x * 2 // 3 }}{{ '%d'|format(3) if true else none }}"
          "{{ raise_exception('no') if false }}{{ messages|length }}{{ strftime_now('%Y-%m-%d') }}")
    # JSONL examples: every format.
    for f in ["train.jsonl", "instructions_train.jsonl"]:
        lines = (ROOT / "examples/data" / f).read_text().splitlines()[:6]
        write("examples", f, "\n".join(lines) + "\n")
    write("examples", "formats.jsonl", "\n".join([
        json.dumps({"messages": [{"role": "system", "content": "Sé breve."}, {"role": "user", "content": "¿Hola?"},
                                 {"role": "assistant", "content": "Hola."}], "lang": "es"}, ensure_ascii=False),
        json.dumps({"instruction": "Übersetze", "input": "cat", "output": "Katze", "system": "du"}, ensure_ascii=False),
        json.dumps({"text": "Teks hukum dalam bahasa Indonesia."}),
        json.dumps({"input_ids": [1, 2, 3, 4], "labels": [-100, 2, 3, 4]}),
        json.dumps({"input_ids": [128000, 5]}),
    ]) + "\n")
    # JSONL lines for data preparation's fast reader: single lines from the data fixtures, and
    # the corners of the grammar (escapes, surrogate pairs, integers at the fast range's edges).
    for f in ["tests/fixtures/dataprep/pii.jsonl", "tests/fixtures/dataprep/lid.jsonl", "examples/data/train.jsonl",
              "examples/data/instructions_train.jsonl"]:
        for i, line in enumerate((ROOT / f).read_text().splitlines()[:3]):
            write("json_line", f"{pathlib.Path(f).stem}_{i}.json", line)
    write("json_line", "corners.json", '{"a":[1,-0,999999999999999999,18446744073709551615,-1.5e3,true,false,null,'
          '"\\u00e9\\ud83d\\ude00\\n\\"\\\\\\/"],"b":{},"c":[[]],"a2":"\x7f caf\u00e9"}')
    # Tokenizers: shrunken copies of the fixtures, with and without their configs.
    for name, keep in [("gpt2", 400), ("llama2", 600), ("llama3", 400), ("qwen2_5", 400)]:
        d = ROOT / "tests/fixtures/tokenizers" / name
        small = shrink_tokenizer(d / "tokenizer.json", keep)
        write("tokenizer_json", name + ".json", small)
        cfg = json.loads((d / "tokenizer_config.json").read_text())
        cfg.pop("chat_template", None)
        cfg.pop("added_tokens_decoder", None)
        write("tokenizer_json", name + "_with_config.json", small + "\0" + json.dumps(cfg))
    texts = json.loads((ROOT / "tests/fixtures/tokenizer_texts.json").read_text())
    for i, t in enumerate(texts if isinstance(texts, list) else texts.values()):
        write("tokenizer_encode", "text%02d.txt" % i, t if isinstance(t, str) else json.dumps(t, ensure_ascii=False))
    # RPC request sequences: register a worker, submit a job, heartbeat, report, read back.
    proto = ROOT / "proto"
    def enc(message, text):
        return subprocess.run(["protoc", "--encode=polytune.v1." + message, "-I", str(proto),
                               "polytune/v1/polytune.proto"], input=text.encode(), capture_output=True,
                              check=True).stdout
    def call(method, message, text, advance=0):
        b = enc(message, text)
        return bytes([method | (advance << 4)]) + struct.pack("<H", len(b)) + b
    spec = 'model: {path: /m}\\ndata: {train: /t}\\nresources: {world_size: 1}\\n'
    seq = (call(9, "RegisterRequest", 'worker_id: "w1" incarnation: "i1" address: "10.0.0.1" devices { kind: "cpu" } rendezvous_port_first: 29500 rendezvous_port_count: 10')
           + call(0, "SubmitJobRequest", 'name: "j" spec_yaml: "%s"' % spec)
           + call(10, "HeartbeatRequest", 'worker_id: "w1" incarnation: "i1"', 1)
           + call(10, "HeartbeatRequest", 'worker_id: "w1" incarnation: "i1" ranks { job_id: "job-1" rank: 0 '
                  'phase: RUNNING }', 1)
           + call(11, "ReportMetricsRequest", 'job_id: "job-1" records { step { step: 1 loss: 2.5 } }')
           + call(12, "ReportLogsRequest", 'job_id: "job-1" lines: "step 1"')
           + call(1, "GetJobRequest", 'id: "job-1"') + call(2, "GetMetricsRequest", 'id: "job-1"')
           + call(7, "DrainWorkerRequest", 'id: "w1"') + call(5, "CancelJobRequest", 'id: "job-1"', 5)
           + call(4, "ListJobsRequest", "") + call(6, "ListWorkersRequest", ""))
    write("rpc_requests", "lifecycle.bin", seq)
    write("rpc_requests", "orders.bin", call(13, "HeartbeatResponse",
          'start { job_id: "job-1" rank: 0 world_size: 2 spec_yaml: "x" } cancel_jobs: "job-2"'))
    write("rpc_requests", "job.bin", call(14, "Job", 'id: "job-1" state: RUNNING world_size: 1 name: "n"'))


if __name__ == "__main__":
    main()
