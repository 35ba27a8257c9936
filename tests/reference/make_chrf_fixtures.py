#!/usr/bin/env python3
"""chrF / chrF++ reference scores computed by sacreBLEU's own code.

    /usr/bin/python3 tests/reference/make_chrf_fixtures.py SACREBLEU_CHECKOUT

SACREBLEU_CHECKOUT is a clone of https://github.com/mjpost/sacrebleu (scores committed here were
made at commit f615c7286d4d813370efb824d94fc2bfcd3a6b94, 2026-01-12). Debian 12 has no sacrebleu
package and this machine no PyPI, so the script loads sacreBLEU's metric modules
(sacrebleu/metrics/base.py, helpers.py and chrf.py) straight from the
checkout, unmodified, as a package of their own; they need nothing beyond the standard library.

Input: tests/fixtures/eval/chrf_pairs.jsonl (hand-written hypothesis/reference pairs in 15
scripts and languages, with whitespace, punctuation, empty and identical cases). Output:
tests/fixtures/eval/chrf.reference.json: per pair the sentence-level chrF2 and chrF2++ scores,
and corpus scores (all pairs, and per language), for CHRF() and CHRF(word_order=2).
"""
import importlib.util
import json
import os
import sys
import types

HERE = os.path.dirname(os.path.abspath(__file__))
FIX = os.path.normpath(os.path.join(HERE, "..", "fixtures", "eval"))


def load_sacrebleu_chrf(checkout):
    pkg = types.ModuleType("sacrebleu")
    pkg.__path__ = [os.path.join(checkout, "sacrebleu")]
    sys.modules["sacrebleu"] = pkg
    metrics = types.ModuleType("sacrebleu.metrics")  # not its __init__, which imports BLEU/TER deps
    metrics.__path__ = [os.path.join(checkout, "sacrebleu", "metrics")]
    sys.modules["sacrebleu.metrics"] = metrics
    # chrf.py imports sum_of_lists from sacrebleu.utils, whose module imports third-party
    # packages at load time; take the function's source from utils.py itself.
    utils_src = open(os.path.join(checkout, "sacrebleu", "utils.py")).read()
    start = utils_src.index("def sum_of_lists(")
    end = utils_src.index("\ndef ", start + 1)
    utils = types.ModuleType("sacrebleu.utils")
    exec(utils_src[start:end], utils.__dict__)
    sys.modules["sacrebleu.utils"] = utils
    # version.py is generated when the package is built; a bare checkout has none.
    version = types.ModuleType("sacrebleu.version")
    head = os.popen(f"git -C '{checkout}' rev-parse HEAD").read().strip()
    version.__version__ = "git-" + head
    sys.modules["sacrebleu.version"] = version
    for name in ("sacrebleu.metrics.base", "sacrebleu.metrics.helpers",
                 "sacrebleu.metrics.chrf"):
        path = os.path.join(checkout, *name.split(".")) + ".py"
        spec = importlib.util.spec_from_file_location(name, path)
        mod = importlib.util.module_from_spec(spec)
        sys.modules[name] = mod
        spec.loader.exec_module(mod)
    return sys.modules["sacrebleu.metrics.chrf"].CHRF, sys.modules["sacrebleu.version"].__version__


def main():
    CHRF, version = load_sacrebleu_chrf(sys.argv[1])
    pairs = [json.loads(l) for l in open(os.path.join(FIX, "chrf_pairs.jsonl"), encoding="utf-8")]
    chrf, chrfpp = CHRF(), CHRF(word_order=2)
    out = {"sacrebleu_version": version, "pairs": [], "corpus": {}}
    for p in pairs:
        out["pairs"].append({"chrf": chrf.sentence_score(p["hypothesis"], [p["reference"]]).score,
                             "chrfpp": chrfpp.sentence_score(p["hypothesis"], [p["reference"]]).score})
    groups = {"all": pairs}
    for p in pairs:
        groups.setdefault(p["lang"], []).append(p)
    for name, ps in groups.items():
        hyps, refs = [p["hypothesis"] for p in ps], [[p["reference"] for p in ps]]
        out["corpus"][name] = {"chrf": chrf.corpus_score(hyps, refs).score,
                               "chrfpp": chrfpp.corpus_score(hyps, refs).score}
    out["signature_chrf"], out["signature_chrfpp"] = str(chrf.get_signature()), str(chrfpp.get_signature())
    with open(os.path.join(FIX, "chrf.reference.json"), "w") as f:
        json.dump(out, f, indent=1)
    print("sacrebleu", version, "corpus chrF2 %.6f chrF2++ %.6f" % (out["corpus"]["all"]["chrf"],
                                                                    out["corpus"]["all"]["chrfpp"]))


if __name__ == "__main__":
    main()
