// Fuzz target: encoding arbitrary bytes with the fixture tokenizers (byte-level BPE: GPT-2,
// Llama 3, Qwen2.5; sentencepiece-style with byte fallback: Llama 2). Beyond not crashing:
// every id is in the vocabulary, and for GPT-2 (no normaliser) decoding gives the text back.
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "polytune/text/tokenizer.h"
#include "unicode/utf8.h"

namespace {
using polytune::text::Tokenizer;

const std::vector<std::unique_ptr<Tokenizer>>& Tokenizers() {
  static const auto* all = [] {
    auto* v = new std::vector<std::unique_ptr<Tokenizer>>;
    for (const char* name : {"gpt2", "llama2", "llama3", "qwen2_5"}) {
      auto t = Tokenizer::Load(std::string(POLYTUNE_FIXTURES) + "/tokenizers/" + name);
      if (!t.ok()) std::abort();  // the fixtures are part of the repository
      v->push_back(*std::move(t));
    }
    return v;
  }();
  return *all;
}

bool ValidUtf8(const std::string& s) {
  int32_t i = 0;
  const auto n = static_cast<int32_t>(s.size());
  while (i < n) {
    UChar32 c;
    U8_NEXT(s.data(), i, n, c);
    if (c < 0) return false;
  }
  return true;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  const auto& all = Tokenizers();
  for (size_t k = 0; k < all.size(); ++k) {
    const auto ids = all[k]->Encode(text, /*add_special_tokens=*/k % 2 == 1);
    for (int64_t id : ids)
      if (id < 0 || id >= all[k]->vocab_size()) std::abort();
    const std::string back = all[k]->DecodeRaw(ids);
    if (k == 0 && ValidUtf8(text) && back != text) std::abort();  // GPT-2 is lossless on valid UTF-8
  }
  return 0;
}
