#include "text_commands.h"
#include "cli_util.h"
#include "data_prepare_command.h"

#include <cstdio>
#include <iostream>
#include <map>

#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"
#include "polytune/engine/language_sampling.h"
#include "polytune/engine/token_dataset.h"
#include "polytune/text/bpe_trainer.h"
#include "polytune/text/chat_template.h"
#include "polytune/text/examples.h"
#include "polytune/text/tokenizer.h"

namespace polytune::cli {
namespace {

struct TextArgs {
  std::string tokenizer, data, out, chat_template, format = "auto";
  bool add_special = false, jsonl = false, json = false, train_on_inputs = false;
  int64_t vocab_size = 512, max_seq_len = 1024;
  std::string sampling = "natural";
  double alpha = 0.3, max_epochs_per_language = 4;
};

// The template a data command uses: --chat-template, else the tokenizer's own.
absl::StatusOr<std::optional<text::ChatTemplate>> PickTemplate(const text::Tokenizer& tok, const std::string& name) {
  if (!name.empty()) {
    auto t = text::ChatTemplate::Builtin(name);
    if (!t.ok()) return t.status();
    return std::optional<text::ChatTemplate>(std::move(*t));
  }
  if (tok.chat_template().empty()) return std::optional<text::ChatTemplate>();
  auto t = text::ChatTemplate::FromSource(tok.chat_template(), "tokenizer_config.json");
  if (!t.ok()) return t.status();
  return std::optional<text::ChatTemplate>(std::move(*t));
}

int Encode(const TextArgs& a) {
  auto tok = text::Tokenizer::Load(a.tokenizer);
  if (!tok.ok()) return Fail(tok.status());
  std::string line;
  int64_t n = 0;
  while (std::getline(std::cin, line)) {
    ++n;
    std::string text = line;
    if (a.jsonl) {
      auto j = nlohmann::json::parse(line, nullptr, false);
      if (j.is_discarded() || !j.is_string())
        return Fail(absl::InvalidArgumentError(absl::StrCat("stdin:", n, ": expected one JSON string per line")));
      text = j.get<std::string>();
    }
    std::printf("%s\n", nlohmann::json((*tok)->Encode(text, a.add_special)).dump().c_str());
  }
  return 0;
}

int TrainTokenizer(const TextArgs& a) {
  text::BpeTrainOptions o;
  o.vocab_size = a.vocab_size;
  size_t num_texts = 0;
  auto tok = text::TrainTokenizerFromCorpus(a.data, o, a.out, &num_texts);
  if (!tok.ok()) return Fail(tok.status());
  std::printf("wrote %s/tokenizer.json (%lld tokens, learned from %zu texts)\n", a.out.c_str(),
              static_cast<long long>((*tok)->vocab_size()), num_texts);
  return 0;
}

int Render(const TextArgs& a) {
  auto tok = text::Tokenizer::Load(a.tokenizer);
  if (!tok.ok()) return Fail(tok.status());
  auto tmpl = PickTemplate(**tok, a.chat_template);
  if (!tmpl.ok()) return Fail(tmpl.status());
  auto format = text::ParseDataFormat(a.format);
  if (!format.ok()) return Fail(format.status());
  std::ifstream in(a.data);
  if (!in) return Fail(absl::NotFoundError(absl::StrCat(a.data, ": cannot open")));
  text::EncodeOptions eo{tok->get(), *tmpl ? &**tmpl : nullptr, a.train_on_inputs};
  std::string line;
  int64_t n = 0;
  while (std::getline(in, line)) {
    ++n;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    const std::string where = absl::StrCat(a.data, ":", n);
    auto j = nlohmann::json::parse(line, nullptr, false);
    if (j.is_discarded()) return Fail(absl::InvalidArgumentError(absl::StrCat(where, ": invalid JSON")));
    auto ex = text::ParseExample(j, *format, where);
    if (!ex.ok()) return Fail(ex.status());
    auto enc = text::EncodeExample(*ex, eo, where);
    if (!enc.ok()) return Fail(enc.status());
    if (a.json) {
      std::printf("%s\n", nlohmann::json{{"line", n},
                                         {"lang", ex->lang},
                                         {"format", text::DataFormatName(ex->format)},
                                         {"text", enc->rendered},
                                         {"input_ids", enc->input_ids},
                                         {"labels", enc->labels}}
                              .dump()
                              .c_str());
      continue;
    }
    // Human form: trained spans between ⟦ and ⟧.
    std::string marked;
    size_t pos = 0;
    for (const auto& [s, e] : enc->trained_spans) {
      marked += enc->rendered.substr(pos, s - pos) + "\xE2\x9F\xA6" + enc->rendered.substr(s, e - s) + "\xE2\x9F\xA7";
      pos = e;
    }
    marked += enc->rendered.substr(pos);
    int64_t trained = 0;
    for (int64_t l : enc->labels) trained += l != -100;
    std::printf("--- %s [%s, %s] %zu tokens, %lld trained\n%s\n", where.c_str(), text::DataFormatName(ex->format),
                ex->lang.empty() ? "und" : ex->lang.c_str(), enc->input_ids.size(), static_cast<long long>(trained),
                marked.c_str());
  }
  return 0;
}

int Inspect(const TextArgs& a) {
  std::unique_ptr<text::Tokenizer> tok;
  if (!a.tokenizer.empty()) {
    auto t = text::Tokenizer::Load(a.tokenizer);
    if (!t.ok()) return Fail(t.status());
    tok = std::move(*t);
  }
  std::optional<text::ChatTemplate> tmpl;
  if (tok) {
    auto t = PickTemplate(*tok, a.chat_template);
    if (!t.ok()) return Fail(t.status());
    tmpl = std::move(*t);
  }
  engine::DatasetOptions o;
  o.max_seq_len = a.max_seq_len;
  o.vocab_size = tok ? tok->vocab_size() : (int64_t{1} << 40);
  o.format = *text::ParseDataFormat(a.format);
  o.tokenizer = tok.get();
  o.chat_template = tmpl ? &*tmpl : nullptr;
  o.train_on_inputs = a.train_on_inputs;
  auto data = engine::LoadDataset(a.data, o);
  if (!data.ok()) return Fail(data.status());
  std::map<std::string, std::pair<int64_t, int64_t>> per_lang;  // examples, tokens
  for (size_t i = 0; i < data->examples.size(); ++i) {
    auto& p = per_lang[data->languages[data->examples[i].language]];
    ++p.first;
    p.second += static_cast<int64_t>(data->examples[i].input_ids.size());
  }
  // Power-of-two length buckets.
  std::map<int64_t, int64_t> hist;
  for (int64_t len : data->untruncated_lengths) {
    int64_t b = 1;
    while (b < len) b <<= 1;
    ++hist[b];
  }
  // The language mix before and after sampling: examples per round of the visiting order.
  spec::LanguageSampling sampling;
  sampling.alpha = a.alpha;
  sampling.max_epochs_per_language = a.max_epochs_per_language;
  if (a.sampling == "temperature") {
    sampling.strategy = spec::SamplingStrategy::kTemperature;
  } else if (a.sampling == "unimax") {
    sampling.strategy = spec::SamplingStrategy::kUnimax;
  } else if (a.sampling != "natural") {
    return Fail("--sampling must be natural, temperature or unimax, got '" + a.sampling + "'");
  }
  std::vector<int64_t> sizes;
  for (const auto& lang : data->languages) sizes.push_back(per_lang[lang].first);
  const std::vector<int64_t> sampled = engine::LanguageRoundCounts(sizes, sampling);
  int64_t round = 0;
  for (int64_t c : sampled) round += c;
  if (a.json) {
    nlohmann::json j;
    j["examples"] = data->examples.size();
    j["sampling"] = {
        {"strategy", a.sampling}, {"alpha", a.alpha}, {"max_epochs_per_language", a.max_epochs_per_language}};
    for (size_t l = 0; l < sizes.size(); ++l)
      j["mix"][data->languages[l]] = {{"examples", sizes[l]},
                                      {"share", static_cast<double>(sizes[l]) / data->examples.size()},
                                      {"sampled_per_round", sampled[l]},
                                      {"sampled_share", static_cast<double>(sampled[l]) / round},
                                      {"epochs_per_round", static_cast<double>(sampled[l]) / sizes[l]}};
    j["formats"] = data->format_counts;
    for (const auto& [l, p] : per_lang) j["languages"][l] = {{"examples", p.first}, {"tokens", p.second}};
    for (const auto& [b, n] : hist) j["length_histogram"][std::to_string(b)] = n;
    j["truncated"] = data->truncated;
    j["max_seq_len"] = a.max_seq_len;
    std::printf("%s\n", j.dump().c_str());
    return 0;
  }
  std::printf("%s: %zu examples\nformats:", a.data.c_str(), data->examples.size());
  for (const auto& [f, n] : data->format_counts) std::printf(" %s=%lld", f.c_str(), static_cast<long long>(n));
  std::printf("\n%-8s %9s %9s\n", "language", "examples", "tokens");
  for (const auto& [l, p] : per_lang)
    std::printf("%-8s %9lld %9lld\n", l.c_str(), static_cast<long long>(p.first), static_cast<long long>(p.second));
  std::printf("language mix with sampling %s (alpha %g, max %g epochs per language):\n", a.sampling.c_str(), a.alpha,
              a.max_epochs_per_language);
  std::printf("%-8s %9s %8s %9s %8s %8s\n", "language", "examples", "share", "sampled", "share", "epochs");
  for (size_t l = 0; l < sizes.size(); ++l)
    std::printf("%-8s %9lld %7.1f%% %9lld %7.1f%% %8.2f\n", data->languages[l].c_str(),
                static_cast<long long>(sizes[l]), 100.0 * sizes[l] / data->examples.size(),
                static_cast<long long>(sampled[l]), 100.0 * sampled[l] / round,
                static_cast<double>(sampled[l]) / sizes[l]);
  std::printf("token lengths (up to):\n");
  int64_t most = 1;
  for (const auto& [b, n] : hist) most = std::max(most, n);
  for (const auto& [b, n] : hist)
    std::printf("  <=%6lld %6lld %s\n", static_cast<long long>(b), static_cast<long long>(n),
                std::string(static_cast<size_t>(40 * n / most), '#').c_str());
  std::printf("truncated at max_seq_len %lld: %lld\n", static_cast<long long>(a.max_seq_len),
              static_cast<long long>(data->truncated));
  return 0;
}

}  // namespace

void RegisterTextCommands(CLI::App& app, const std::shared_ptr<std::function<int()>>& run) {
  auto args = std::make_shared<TextArgs>();
  auto* tokenizer = app.add_subcommand("tokenizer", "Hugging Face tokenizer.json tools");
  tokenizer->require_subcommand(1);
  auto* encode = tokenizer->add_subcommand("encode", "Encode stdin lines; prints one JSON array of ids per line");
  encode->add_option("--tokenizer", args->tokenizer, "Folder with tokenizer.json")->required();
  encode->add_flag("--add-special-tokens", args->add_special, "Add BOS/EOS as the tokenizer's post-processor does");
  encode->add_flag("--jsonl", args->jsonl, "Each input line is a JSON string");
  encode->callback([run, args] { *run = [args] { return Encode(*args); }; });
  auto* train = tokenizer->add_subcommand("train", "Learn a byte-level BPE tokenizer from text");
  train->add_option("--data", args->data, "JSONL (any supported format) or plain text")->required();
  train->add_option("--vocab-size", args->vocab_size, "Vocabulary size including special tokens")
      ->capture_default_str();
  train->add_option("--out", args->out, "Output folder")->required();
  train->callback([run, args] { *run = [args] { return TrainTokenizer(*args); }; });

  auto* data = app.add_subcommand("data", "Prepare, inspect and render training data");
  data->require_subcommand(1);
  auto* render = data->add_subcommand("render", "Show each example as the model will see it");
  render->add_option("--tokenizer", args->tokenizer, "Folder with tokenizer.json (and its chat template)")->required();
  render->add_option("--data", args->data, "JSONL file")->required();
  render->add_option("--chat-template", args->chat_template, "Built-in template: llama3, chatml, mistral, plain");
  render->add_option("--format", args->format, "auto, messages, alpaca, text or tokens")->capture_default_str();
  render->add_flag("--train-on-inputs", args->train_on_inputs, "Train on prompts too");
  render->add_flag("--json", args->json, "One JSON object per example: text, input_ids, labels");
  render->callback([run, args] { *run = [args] { return Render(*args); }; });
  auto* inspect = data->add_subcommand("inspect", "Counts per language and format, token lengths, truncation");
  inspect->add_option("file", args->data, "JSONL file")->required();
  inspect->add_option("--tokenizer", args->tokenizer, "Folder with tokenizer.json (needed for text formats)");
  inspect->add_option("--chat-template", args->chat_template, "Built-in template");
  inspect->add_option("--format", args->format, "auto, messages, alpaca, text or tokens")->capture_default_str();
  inspect->add_option("--max-seq-len", args->max_seq_len, "Truncation length to check")->capture_default_str();
  inspect->add_option("--sampling", args->sampling, "Show the mix after natural, temperature or unimax sampling")
      ->capture_default_str();
  inspect->add_option("--alpha", args->alpha, "Temperature sampling exponent")->capture_default_str();
  inspect->add_option("--max-epochs-per-language", args->max_epochs_per_language, "UniMax cap")->capture_default_str();
  inspect->add_flag("--json", args->json, "Print one JSON object");
  inspect->callback([run, args] { *run = [args] { return Inspect(*args); }; });
  RegisterDataPrepareCommand(*data, run);
}

}  // namespace polytune::cli
