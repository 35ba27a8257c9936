#include "polytune/engine/generation_eval.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <set>

#include "absl/strings/str_cat.h"
#include "polytune/common/json_util.h"
#include "polytune/engine/token_dataset.h"
#include "polytune/text/text_metrics.h"

namespace polytune::engine {
namespace {

std::string SpecialText(const text::Tokenizer& tok, std::optional<int64_t> id) { return id ? tok.IdToToken(*id) : ""; }

absl::StatusOr<PromptCase> RenderConversation(std::vector<text::ChatMessage> messages, const text::Tokenizer& tok,
                                              const text::ChatTemplate* chat_template, const std::string& where) {
  if (chat_template == nullptr)
    return absl::FailedPreconditionError(
        absl::StrCat(where, ": a chat prompt needs a chat template (the tokenizer's, or --chat-template NAME)"));
  PromptCase c;
  c.where = where;
  if (!messages.empty() && messages.back().role == "assistant") {
    c.reference = messages.back().content;
    messages.pop_back();
  }
  if (messages.empty()) return absl::InvalidArgumentError(absl::StrCat(where, ": nothing before the assistant turn"));
  auto rendered = chat_template->Render(messages, /*add_generation_prompt=*/true, SpecialText(tok, tok.bos_id()),
                                        SpecialText(tok, tok.eos_id()));
  if (!rendered.ok()) return absl::InvalidArgumentError(absl::StrCat(where, ": ", rendered.status().message()));
  c.prompt = *rendered;
  c.prompt_ids = tok.Encode(c.prompt, /*add_special_tokens=*/false);
  return c;
}

// Summable statistics of one group (overall or a language), as doubles for AllReduceSum:
// [examples, exact, labelled, generated tokens, chrF stats..., chrF++ stats..., label counts...].
struct GroupStats {
  double examples = 0, exact = 0, labelled = 0, tokens = 0;
  text::ChrfStats chrf, chrfpp;
  text::ClassificationCounts labels;
  explicit GroupStats(const std::vector<std::string>& classes) : labels(classes) {
    chrf.counts.assign(3 * text::ChrfOptions().char_order, 0);
    chrfpp.counts.assign(3 * (text::ChrfOptions::ChrfPlusPlus().char_order + 2), 0);
  }
  std::vector<double> Flatten() const {
    std::vector<double> v = {examples, exact, labelled, tokens};
    for (int64_t x : chrf.counts) v.push_back(static_cast<double>(x));
    for (int64_t x : chrfpp.counts) v.push_back(static_cast<double>(x));
    v.insert(v.end(), labels.counts().begin(), labels.counts().end());
    return v;
  }
  void Unflatten(const double* v) {
    examples = v[0], exact = v[1], labelled = v[2], tokens = v[3];
    size_t i = 4;
    for (auto& x : chrf.counts) x = static_cast<int64_t>(v[i++]);
    for (auto& x : chrfpp.counts) x = static_cast<int64_t>(v[i++]);
    std::vector<double> lc(v + i, v + i + labels.counts().size());
    labels.set_counts(std::move(lc));
  }
  GenerationFigures Figures() const {
    GenerationFigures f;
    f.examples = static_cast<int64_t>(examples);
    f.chrf = text::ChrfScore(chrf, text::ChrfOptions());
    f.chrfpp = text::ChrfScore(chrfpp, text::ChrfOptions::ChrfPlusPlus());
    f.exact_match = examples > 0 ? exact / examples : 0.0;
    f.generated_tokens = static_cast<int64_t>(tokens);
    auto l = labels.Compute();
    f.labelled = l.examples;
    f.label_accuracy = l.accuracy;
    f.macro_precision = l.macro_precision;
    f.macro_recall = l.macro_recall;
    f.macro_f1 = l.macro_f1;
    return f;
  }
};

void AddFigures(const GenerationFigures& f, nlohmann::json* j) {
  (*j)["generated"] = f.examples;
  (*j)["chrf"] = f.chrf;
  (*j)["chrfpp"] = f.chrfpp;
  (*j)["exact_match"] = f.exact_match;
  (*j)["generated_tokens"] = f.generated_tokens;
  if (f.labelled > 0) {
    (*j)["labelled"] = f.labelled;
    (*j)["label_accuracy"] = f.label_accuracy;
    (*j)["macro_precision"] = f.macro_precision;
    (*j)["macro_recall"] = f.macro_recall;
    (*j)["macro_f1"] = f.macro_f1;
  }
}

}  // namespace

absl::StatusOr<PromptCase> MakePromptCase(const text::Example& ex, const text::Tokenizer& tok,
                                          const text::ChatTemplate* chat_template, const std::string& where) {
  PromptCase c;
  switch (ex.format) {
    case text::DataFormat::kMessages:
    case text::DataFormat::kAlpaca: {
      auto r = RenderConversation(ex.messages, tok, chat_template, where);
      if (!r.ok()) return r.status();
      c = std::move(*r);
      break;
    }
    case text::DataFormat::kText:
      c.where = where;
      c.prompt = ex.text;
      c.prompt_ids = tok.Encode(ex.text, /*add_special_tokens=*/true);
      break;
    case text::DataFormat::kTokens: {
      c.where = where;
      size_t first = ex.labels.size();
      for (size_t i = 1; i < ex.labels.size(); ++i)
        if (ex.labels[i] != kIgnoreIndex) {
          first = i;
          break;
        }
      if (ex.labels.empty() || first >= ex.input_ids.size()) {
        c.prompt_ids = ex.input_ids;
      } else {
        c.prompt_ids.assign(ex.input_ids.begin(), ex.input_ids.begin() + static_cast<int64_t>(first));
        std::vector<int64_t> rest;
        for (size_t i = first; i < ex.labels.size(); ++i)
          if (ex.labels[i] != kIgnoreIndex) rest.push_back(ex.labels[i]);
        c.reference = tok.DecodeText(rest);
      }
      c.prompt = tok.Decode(c.prompt_ids);
      break;
    }
    case text::DataFormat::kAuto:
      return absl::InternalError("example format not resolved");
  }
  if (c.prompt_ids.empty()) return absl::InvalidArgumentError(absl::StrCat(where, ": the prompt has no tokens"));
  c.lang = ex.lang.empty() ? "und" : ex.lang;
  c.label = ex.label;
  return c;
}

absl::StatusOr<PromptCase> MakeUserPrompt(const std::string& user_text, const text::Tokenizer& tokenizer,
                                          const text::ChatTemplate* chat_template) {
  if (chat_template == nullptr) {
    PromptCase c;
    c.where = "--prompt";
    c.lang = "und";
    c.prompt = user_text;
    c.prompt_ids = tokenizer.Encode(user_text, /*add_special_tokens=*/true);
    if (c.prompt_ids.empty()) return absl::InvalidArgumentError("--prompt is empty");
    return c;
  }
  auto c = RenderConversation({{"user", user_text}}, tokenizer, chat_template, "--prompt");
  if (c.ok()) c->lang = "und";
  return c;
}

absl::StatusOr<std::vector<PromptCase>> LoadPromptCases(const std::string& path, text::DataFormat format,
                                                        const text::Tokenizer& tokenizer,
                                                        const text::ChatTemplate* chat_template) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot open ", path));
  std::vector<PromptCase> cases;
  std::string line;
  for (int64_t n = 1; std::getline(in, line); ++n) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    const std::string where = absl::StrCat(path, ":", n);
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(line);
    } catch (const nlohmann::json::exception& e) {
      return absl::InvalidArgumentError(absl::StrCat(where, ": not valid JSON (", e.what(), ")"));
    }
    auto ex = text::ParseExample(j, format, where, /*require_assistant=*/false);
    if (!ex.ok()) return ex.status();
    auto c = MakePromptCase(*ex, tokenizer, chat_template, where);
    if (!c.ok()) return c.status();
    cases.push_back(std::move(*c));
  }
  if (cases.empty()) return absl::InvalidArgumentError(absl::StrCat(path, ": no examples"));
  return cases;
}

std::vector<int64_t> EosTokenIds(const std::string& model_dir, const ModelConfig& config,
                                 const text::Tokenizer* tokenizer) {
  std::set<int64_t> ids;
  if (config.eos_token_id >= 0) ids.insert(config.eos_token_id);
  if (tokenizer && tokenizer->eos_id()) ids.insert(*tokenizer->eos_id());
  const std::string gen = model_dir + "/generation_config.json";
  if (std::filesystem::exists(gen)) {
    auto j = ReadJsonFile(gen);
    if (j.ok() && j->is_object() && j->contains("eos_token_id")) {
      const auto& e = j->at("eos_token_id");
      if (e.is_number_integer()) ids.insert(e.get<int64_t>());
      if (e.is_array())
        for (const auto& v : e)
          if (v.is_number_integer()) ids.insert(v.get<int64_t>());
    }
  }
  return {ids.begin(), ids.end()};
}

absl::StatusOr<std::vector<Generation>> GenerateForCases(const LlamaModel& model, const std::vector<PromptCase>& cases,
                                                         const GenerationOptions& options, int64_t batch_size,
                                                         const text::Tokenizer& tokenizer) {
  if (batch_size < 1) return absl::InvalidArgumentError("batch size must be >= 1");
  // Similar lengths together: less padding in the prefill.
  std::vector<size_t> order(cases.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return cases[a].prompt_ids.size() < cases[b].prompt_ids.size(); });
  std::vector<Generation> out(cases.size());
  TokenDecoder decode = [&](const std::vector<int64_t>& ids) { return tokenizer.DecodeText(ids); };
  for (size_t start = 0; start < order.size(); start += static_cast<size_t>(batch_size)) {
    const size_t end = std::min(order.size(), start + static_cast<size_t>(batch_size));
    std::vector<std::vector<int64_t>> prompts;
    std::vector<uint64_t> streams;
    for (size_t i = start; i < end; ++i) {
      prompts.push_back(cases[order[i]].prompt_ids);
      streams.push_back(order[i]);
    }
    auto gens = Generate(model, prompts, options, decode, streams);
    if (!gens.ok()) return gens.status();
    for (size_t i = start; i < end; ++i) out[order[i]] = std::move((*gens)[i - start]);
  }
  return out;
}

void GenerationEvalResult::AddToJson(nlohmann::json* eval_json) const {
  AddFigures(overall, &(*eval_json)["overall"]);
  for (const auto& [lang, f] : languages) AddFigures(f, &(*eval_json)["languages"][lang]);
}

nlohmann::json GenerationEvalResult::SamplesJson() const {
  nlohmann::json out = nlohmann::json::array();
  for (const auto& s : samples) {
    nlohmann::json j = {{"lang", s.lang}, {"prompt", s.prompt}, {"output", s.output}, {"reference", s.reference}};
    if (!s.label.empty()) j["label"] = s.label;
    j["chrf"] = s.chrf;
    out.push_back(std::move(j));
  }
  return out;
}

absl::StatusOr<GenerationEvalResult> EvaluateGeneration(const LlamaModel& model, const std::vector<PromptCase>& cases,
                                                        const GenerationEvalOptions& options,
                                                        const text::Tokenizer& tokenizer, Communicator& comm) {
  std::vector<std::string> classes;
  for (const auto& l : options.labels) classes.push_back(text::NormalizeLabel(l));
  std::set<std::string> langs;
  for (const auto& c : cases) {
    langs.insert(c.lang);
    if (options.labels.empty() && !c.label.empty()) classes.push_back(text::NormalizeLabel(c.label));
  }
  // Group 0 is overall, then languages in sorted order: the same layout on every rank.
  std::vector<std::string> groups = {""};
  groups.insert(groups.end(), langs.begin(), langs.end());
  std::vector<GroupStats> stats(groups.size(), GroupStats(classes));
  std::map<std::string, size_t> group_of;
  for (size_t g = 1; g < groups.size(); ++g) group_of[groups[g]] = g;

  std::vector<PromptCase> mine;
  for (size_t i = 0; i < cases.size(); ++i)
    if (static_cast<int>(i % comm.world_size()) == comm.rank()) mine.push_back(cases[i]);
  auto gens = GenerateForCases(model, mine, options.generation, options.batch_size, tokenizer);
  if (!gens.ok()) return gens.status();

  GenerationEvalResult result;
  std::map<std::string, int64_t> sampled;
  const text::ChrfOptions chrf_opts, chrfpp_opts = text::ChrfOptions::ChrfPlusPlus();
  for (size_t i = 0; i < mine.size(); ++i) {
    const PromptCase& c = mine[i];
    const std::string& output = (*gens)[i].text;
    for (size_t g : {size_t{0}, group_of[c.lang]}) {
      GroupStats& s = stats[g];
      s.tokens += static_cast<double>((*gens)[i].tokens.size());
      if (c.reference) {
        s.examples += 1;
        s.chrf.Add(text::ChrfSegmentStats(output, *c.reference, chrf_opts));
        s.chrfpp.Add(text::ChrfSegmentStats(output, *c.reference, chrfpp_opts));
        if (text::NormalizeForMatch(output) == text::NormalizeForMatch(*c.reference)) s.exact += 1;
      }
      if (!c.label.empty()) s.labels.Add(text::NormalizeLabel(output), text::NormalizeLabel(c.label));
    }
    if (sampled[c.lang]++ < options.samples_per_language) {
      GenerationSample s{c.lang, c.prompt, output, c.reference.value_or(""), c.label, 0.0};
      if (c.reference) s.chrf = text::ChrfScore(text::ChrfSegmentStats(output, *c.reference, chrf_opts), chrf_opts);
      result.samples.push_back(std::move(s));
    }
  }
  // Sum every group's statistics across ranks in one reduction.
  std::vector<double> flat;
  for (const auto& s : stats) {
    auto v = s.Flatten();
    flat.insert(flat.end(), v.begin(), v.end());
  }
  at::Tensor t = at::tensor(flat, at::kDouble);
  if (comm.world_size() > 1)
    if (absl::Status st = comm.AllReduceSum(t); !st.ok()) return st;
  const double* p = t.data_ptr<double>();
  const size_t width = flat.size() / stats.size();
  for (size_t g = 0; g < stats.size(); ++g) {
    stats[g].Unflatten(p + g * width);
    if (g == 0)
      result.overall = stats[g].Figures();
    else
      result.languages[groups[g]] = stats[g].Figures();
  }
  return result;
}

}  // namespace polytune::engine
