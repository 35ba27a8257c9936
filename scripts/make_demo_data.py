#!/usr/bin/env python3
"""Turns examples/data/corpus.jsonl (text + lang) into the pre-tokenised JSONL the engine
reads, with a byte-level tokenisation: id = UTF-8 byte + 3, bos = 1, eos = 2, pad = 0.
Every 4th line of each language goes to the eval split. Deterministic; rerun after editing
the corpus:  python3 scripts/make_demo_data.py"""
import json
import os

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "..", "examples", "data")


def encode(text):
    return [1] + [b + 3 for b in text.encode("utf-8")] + [2]


def main():
    train, evals, seen = [], [], {}
    with open(os.path.join(DATA, "corpus.jsonl"), encoding="utf-8") as f:
        for line in f:
            ex = json.loads(line)
            k = seen.get(ex["lang"], 0)
            seen[ex["lang"]] = k + 1
            ids = encode(ex["text"])
            labels = list(ids)
            labels[0] = -100  # never train on predicting bos
            row = {"input_ids": ids, "labels": labels, "lang": ex["lang"]}
            (evals if k % 4 == 3 else train).append(row)
    for name, rows in (("train.jsonl", train), ("eval.jsonl", evals)):
        with open(os.path.join(DATA, name), "w", encoding="utf-8") as f:
            for r in rows:
                f.write(json.dumps(r, separators=(",", ":")) + "\n")
    print(f"train {len(train)} examples, eval {len(evals)} examples")


if __name__ == "__main__":
    main()
