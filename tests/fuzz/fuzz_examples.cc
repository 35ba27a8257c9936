// Fuzz target: the JSONL example readers, every format (messages, alpaca, text, tokens and
// auto), each parsed line rendered and tokenised as training does: with Llama 3's own chat
// template and tokenizer, prompt-masked and with train_on_inputs. Beyond not crashing: labels
// line up with the ids and the trained spans lie inside the rendered text.
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>

#include "absl/strings/str_split.h"
#include "nlohmann/json.hpp"
#include "polytune/text/examples.h"

namespace {
using namespace polytune::text;

struct Fixture {
  std::unique_ptr<Tokenizer> tokenizer;
  std::unique_ptr<ChatTemplate> llama3, chatml;
};

const Fixture& Get() {
  static const Fixture* f = [] {
    auto* x = new Fixture;
    auto t = Tokenizer::Load(std::string(POLYTUNE_FIXTURES) + "/tokenizers/llama3");
    if (!t.ok()) std::abort();
    x->tokenizer = *std::move(t);
    auto own = ChatTemplate::FromSource(x->tokenizer->chat_template(), "llama3");
    auto chatml = ChatTemplate::Builtin("chatml");
    if (!own.ok() || !chatml.ok()) std::abort();
    std::tm now{};
    now.tm_year = 126;
    own->set_now(now);
    x->llama3 = std::make_unique<ChatTemplate>(*std::move(own));
    x->chatml = std::make_unique<ChatTemplate>(*std::move(chatml));
    return x;
  }();
  return *f;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const Fixture& f = Get();
  int line_no = 0;
  for (absl::string_view line : absl::StrSplit(absl::string_view(reinterpret_cast<const char*>(data), size), '\n')) {
    ++line_no;
    nlohmann::json j = nlohmann::json::parse(line.begin(), line.end(), nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded()) continue;
    for (DataFormat format :
         {DataFormat::kAuto, DataFormat::kMessages, DataFormat::kAlpaca, DataFormat::kText, DataFormat::kTokens}) {
      auto ex = ParseExample(j, format, "fuzz.jsonl:" + std::to_string(line_no));
      if (!ex.ok()) continue;
      for (const ChatTemplate* tmpl : {f.llama3.get(), f.chatml.get()}) {
        for (bool train_on_inputs : {false, true}) {
          auto enc = EncodeExample(*ex, {f.tokenizer.get(), tmpl, train_on_inputs}, "fuzz.jsonl");
          if (!enc.ok()) continue;
          if (enc->labels.size() != enc->input_ids.size()) std::abort();
          for (const auto& [begin, end] : enc->trained_spans)
            if (begin > end || end > enc->rendered.size()) std::abort();
        }
      }
    }
  }
  return 0;
}
