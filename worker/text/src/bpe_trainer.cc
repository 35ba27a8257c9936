#include "polytune/text/bpe_trainer.h"

#include <filesystem>
#include <fstream>
#include <map>
#include <unordered_map>

#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"
#include "polytune/common/file_util.h"
#include "polytune/text/chat_template.h"
#include "polytune/text/tokenizer.h"
#include "text_transforms.h"

namespace polytune::text {
namespace {

const char* kLlama3Split =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| "
    "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

nlohmann::json PreTokenizerJson() {
  return {{"type", "Sequence"},
          {"pretokenizers",
           {{{"type", "Split"}, {"pattern", {{"Regex", kLlama3Split}}}, {"behavior", "Isolated"}, {"invert", false}},
            {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true}, {"use_regex", false}}}}};
}

// Splits a UTF-8 string into code points (each a byte-level symbol here).
std::vector<std::string> CodePoints(const std::string& s) {
  std::vector<std::string> out;
  for (size_t i = 0; i < s.size();) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    const size_t n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : 4;
    out.push_back(s.substr(i, n));
    i += n;
  }
  return out;
}

}  // namespace

const std::vector<std::string>& TrainedSpecialTokens() {
  static const std::vector<std::string> kTokens = {"<|begin_of_text|>",   "<|end_of_text|>",   "<|pad|>",
                                                   "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"};
  return kTokens;
}

absl::Status TrainByteLevelBpe(const std::vector<std::string>& texts, const BpeTrainOptions& o,
                               const std::string& out_dir) {
  const auto& specials = TrainedSpecialTokens();
  const int64_t budget = o.vocab_size - static_cast<int64_t>(specials.size());
  if (budget < 256)
    return absl::InvalidArgumentError(absl::StrCat("--vocab-size must be at least ", 256 + specials.size(),
                                                   " (256 byte tokens plus ", specials.size(), " special tokens)"));
  auto pre = MakePreTokenizer(PreTokenizerJson(), "trainer");
  if (!pre.ok()) return pre.status();
  // Word frequencies over the byte-level pre-tokens.
  std::map<std::string, int64_t> word_counts;
  for (const auto& t : texts)
    for (const auto& w : (*pre)->Split({t}, true)) ++word_counts[w];
  std::vector<std::string> vocab = ByteLevelAlphabet();  // ids 0..255: the bytes
  std::unordered_map<std::string, int> ids;
  for (size_t i = 0; i < vocab.size(); ++i) ids[vocab[i]] = static_cast<int>(i);
  struct Word {
    std::vector<int> symbols;
    int64_t count;
  };
  std::vector<Word> words;
  for (const auto& [w, n] : word_counts) {
    Word word{{}, n};
    for (const auto& cp : CodePoints(w)) word.symbols.push_back(ids.at(cp));
    words.push_back(std::move(word));
  }
  std::vector<std::pair<std::string, std::string>> merges;
  while (static_cast<int64_t>(vocab.size()) < budget) {
    std::map<std::pair<int, int>, int64_t> pairs;
    for (const auto& w : words)
      for (size_t i = 0; i + 1 < w.symbols.size(); ++i) pairs[{w.symbols[i], w.symbols[i + 1]}] += w.count;
    // Most frequent pair; ties go to the lexicographically smallest merged string, so the
    // result does not depend on map order.
    const std::pair<int, int>* best = nullptr;
    int64_t best_count = 0;
    std::string best_text;
    for (const auto& [p, n] : pairs) {
      std::string text = vocab[p.first] + vocab[p.second];
      if (n > best_count || (n == best_count && text < best_text)) {
        best = &p;
        best_count = n;
        best_text = std::move(text);
      }
    }
    if (!best || best_count < o.min_frequency) break;
    const auto [a, b] = *best;
    const int merged = static_cast<int>(vocab.size());
    if (ids.count(best_text)) break;  // cannot happen with byte-level symbols; guards the invariant
    vocab.push_back(best_text);
    ids[best_text] = merged;
    merges.emplace_back(vocab[a], vocab[b]);
    for (auto& w : words) {
      std::vector<int> next;
      for (size_t i = 0; i < w.symbols.size(); ++i) {
        if (i + 1 < w.symbols.size() && w.symbols[i] == a && w.symbols[i + 1] == b) {
          next.push_back(merged);
          ++i;
        } else {
          next.push_back(w.symbols[i]);
        }
      }
      w.symbols = std::move(next);
    }
  }
  nlohmann::json vocab_json = nlohmann::json::object();
  for (size_t i = 0; i < vocab.size(); ++i) vocab_json[vocab[i]] = i;
  nlohmann::json merges_json = nlohmann::json::array();
  for (const auto& [a, b] : merges) merges_json.push_back(a + " " + b);
  nlohmann::json added = nlohmann::json::array();
  const int64_t first_special = static_cast<int64_t>(vocab.size());
  for (size_t i = 0; i < specials.size(); ++i)
    added.push_back({{"id", first_special + static_cast<int64_t>(i)},
                     {"content", specials[i]},
                     {"single_word", false},
                     {"lstrip", false},
                     {"rstrip", false},
                     {"normalized", false},
                     {"special", true}});
  const int64_t bos_id = first_special;
  nlohmann::json tok = {
      {"version", "1.0"},
      {"truncation", nullptr},
      {"padding", nullptr},
      {"added_tokens", added},
      {"normalizer", nullptr},
      {"pre_tokenizer", PreTokenizerJson()},
      {"post_processor",
       {{"type", "TemplateProcessing"},
        {"single",
         {{{"SpecialToken", {{"id", specials[0]}, {"type_id", 0}}}}, {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}}},
        {"pair",
         {{{"SpecialToken", {{"id", specials[0]}, {"type_id", 0}}}},
          {{"Sequence", {{"id", "A"}, {"type_id", 0}}}},
          {{"SpecialToken", {{"id", specials[0]}, {"type_id", 1}}}},
          {{"Sequence", {{"id", "B"}, {"type_id", 1}}}}}},
        {"special_tokens", {{specials[0], {{"id", specials[0]}, {"ids", {bos_id}}, {"tokens", {specials[0]}}}}}}}},
      {"decoder", {{"type", "ByteLevel"}, {"add_prefix_space", true}, {"trim_offsets", true}, {"use_regex", true}}},
      {"model",
       {{"type", "BPE"},
        {"dropout", nullptr},
        {"unk_token", nullptr},
        {"continuing_subword_prefix", nullptr},
        {"end_of_word_suffix", nullptr},
        {"fuse_unk", false},
        {"byte_fallback", false},
        {"ignore_merges", false},
        {"vocab", vocab_json},
        {"merges", merges_json}}}};
  auto llama3 = ChatTemplate::Builtin("llama3");
  if (!llama3.ok()) return llama3.status();
  nlohmann::json cfg = {{"tokenizer_class", "PreTrainedTokenizerFast"},
                        {"bos_token", specials[0]},
                        {"eos_token", "<|eot_id|>"},
                        {"pad_token", "<|pad|>"},
                        {"clean_up_tokenization_spaces", false},
                        {"model_max_length", 131072},
                        {"chat_template", llama3->source()}};
  std::error_code ec;
  std::filesystem::create_directories(out_dir, ec);
  if (ec) return absl::InternalError(absl::StrCat("cannot create '", out_dir, "': ", ec.message()));
  absl::Status st = WriteFileAtomic(out_dir + "/tokenizer.json", tok.dump(1, ' ', false) + "\n");
  if (!st.ok()) return st;
  return WriteFileAtomic(out_dir + "/tokenizer_config.json", cfg.dump(2, ' ', false) + "\n");
}

absl::StatusOr<std::unique_ptr<Tokenizer>> TrainTokenizerFromCorpus(const std::string& corpus_path,
                                                                    const BpeTrainOptions& options,
                                                                    const std::string& out_dir, size_t* num_texts) {
  auto texts = ReadCorpusTexts(corpus_path);
  if (!texts.ok()) return texts.status();
  absl::Status st = TrainByteLevelBpe(*texts, options, out_dir);
  if (!st.ok()) return st;
  if (num_texts) *num_texts = texts->size();
  return Tokenizer::Load(out_dir);
}

absl::StatusOr<std::vector<std::string>> ReadCorpusTexts(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat(path, ": cannot open"));
  std::vector<std::string> texts;
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    nlohmann::json j = nlohmann::json::parse(line, nullptr, false);
    if (j.is_discarded() || !j.is_object()) {
      texts.push_back(line);
      continue;
    }
    if (j.contains("messages") && j["messages"].is_array())
      for (const auto& m : j["messages"])
        if (m.is_object() && m.contains("content") && m["content"].is_string())
          texts.push_back(m["content"].get<std::string>());
    for (const char* k : {"instruction", "input", "output", "system", "text"})
      if (j.contains(k) && j[k].is_string()) texts.push_back(j[k].get<std::string>());
  }
  if (texts.empty()) return absl::InvalidArgumentError(absl::StrCat(path, ": no text found"));
  return texts;
}

}  // namespace polytune::text
