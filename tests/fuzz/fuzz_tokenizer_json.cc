// Fuzz target: loading tokenizer.json (a model folder is untrusted input), then encoding and
// decoding multilingual text with what loaded. The input is tokenizer.json, optionally
// followed by a NUL byte and tokenizer_config.json.
#include <cstdint>
#include <string>

#include "polytune/text/tokenizer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using polytune::text::Tokenizer;
  const std::string input(reinterpret_cast<const char*>(data), size);
  const size_t nul = input.find('\0');
  const std::string json = input.substr(0, nul);
  const std::string config = nul == std::string::npos ? "" : input.substr(nul + 1);
  auto tok = Tokenizer::FromJson(json, config, "fuzz/tokenizer.json");
  if (!tok.ok()) return 0;
  for (const char* text : {"Hola, ¿qué tal? 123", "Grüße aus Köln\n\n  done", "日本語のテキスト",
                           "<s>[INST] hi [/INST]", "\xff\xfe broken \xc3"}) {
    for (bool special : {false, true}) {
      const auto ids = (*tok)->Encode(text, special);
      (void)(*tok)->Decode(ids);
      (void)(*tok)->DecodeRaw(ids);
    }
  }
  (void)(*tok)->Decode({-1, 0, 1, (*tok)->vocab_size(), int64_t{1} << 40});  // ids a corrupt dataset could hold
  return 0;
}
