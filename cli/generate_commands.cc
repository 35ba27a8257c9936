#include "generate_commands.h"

#include <cstdio>
#include <thread>

#include "absl/strings/str_cat.h"
#include "cli_util.h"
#include "polytune/common/status_macros.h"
#include "polytune/engine/adapter_io.h"
#include "polytune/engine/communicator.h"
#include "polytune/engine/cpu_threads.h"
#include "polytune/engine/generation_eval.h"
#include "polytune/engine/model_loader.h"

namespace polytune::cli {
namespace {

using namespace polytune::engine;

struct GenerateArgs {
  InferenceModelArgs model;
  GenerationArgs gen;
  std::string prompt, data, format = "auto", tokenizer, chat_template;
  bool json = false;
};

int RunGenerate(const GenerateArgs& a) {
  ConfigureCpuThreads(static_cast<int>(std::thread::hardware_concurrency()));
  if (a.prompt.empty() == a.data.empty()) return Fail("give exactly one of --prompt TEXT and --data FILE");
  auto model = LoadInferenceModel(a.model);
  if (!model.ok()) return Fail(model.status());
  TrainConfig pc;
  pc.model.path = a.model.model;
  pc.data.format = a.format == "tokens" ? "auto" : a.format;  // generation always needs the tokenizer
  pc.data.tokenizer = a.tokenizer;
  pc.data.chat_template = a.chat_template;
  auto format = text::ParseDataFormat(a.format);
  if (!format.ok()) return Fail(format.status());
  auto pipeline = LoadTextPipeline(pc);
  if (!pipeline.ok()) return Fail(pipeline.status());
  if (!pipeline->tokenizer)
    return Fail(absl::StrCat("generation needs a tokenizer: ", a.tokenizer.empty() ? a.model.model : a.tokenizer,
                             "/tokenizer.json does not exist; pass --tokenizer DIR"));
  const text::ChatTemplate* tmpl = pipeline->chat_template ? &*pipeline->chat_template : nullptr;
  std::vector<PromptCase> cases;
  if (!a.prompt.empty()) {
    auto c = MakeUserPrompt(a.prompt, *pipeline->tokenizer, tmpl);
    if (!c.ok()) return Fail(c.status());
    cases.push_back(std::move(*c));
  } else {
    auto loaded = LoadPromptCases(a.data, *format, *pipeline->tokenizer, tmpl);
    if (!loaded.ok()) return Fail(loaded.status());
    cases = std::move(*loaded);
  }
  const auto eos = EosTokenIds(a.model.model, (*model)->config(), pipeline->tokenizer.get());
  auto gens = GenerateForCases(**model, cases, a.gen.WithEos(eos), a.gen.batch_size, *pipeline->tokenizer);
  if (!gens.ok()) return Fail(gens.status());
  for (size_t i = 0; i < cases.size(); ++i) {
    const auto& c = cases[i];
    const auto& g = (*gens)[i];
    if (a.json) {
      nlohmann::json j = {{"prompt", c.prompt},
                          {"output", g.text},
                          {"lang", c.lang},
                          {"prompt_tokens", c.prompt_ids.size()},
                          {"output_tokens", g.tokens.size()},
                          {"finish_reason", FinishReasonName(g.finish)}};
      if (c.reference) j["reference"] = *c.reference;
      if (!c.label.empty()) j["label"] = c.label;
      std::printf("%s\n", j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
    } else {
      if (cases.size() > 1) std::printf("=== %s [%s]\n", c.where.c_str(), c.lang.c_str());
      std::printf("%s\n", g.text.c_str());
    }
  }
  return 0;
}

}  // namespace

void InferenceModelArgs::AddTo(CLI::App* cmd) {
  cmd->add_option("--model", model, "HF model directory (a base model, or one merged by `polytune export`)")
      ->required();
  cmd->add_option("--adapter", adapter, "PEFT adapter directory");
  cmd->add_option("--quantization", quantization, "none or nf4 (as a training spec's model.quantization)")
      ->capture_default_str();
  cmd->add_flag("--double-quant,!--no-double-quant", double_quant,
                "Double-quantise NF4 absmax (default on, as in training)");
  cmd->add_option("--device", device, "cpu, cuda or auto")->capture_default_str();
}

absl::StatusOr<std::unique_ptr<LlamaModel>> LoadInferenceModel(const InferenceModelArgs& a) {
  auto quant = ParseQuantization(a.quantization);
  if (!quant.ok()) return quant.status();
  auto device = ResolveDevice(a.device, 0);
  if (!device.ok()) return device.status();
  LoadOptions opts;
  opts.quantization = *quant;
  opts.double_quant = a.double_quant;
  opts.device = *device;
  auto model = LoadModel(a.model, opts);
  if (!model.ok()) return model.status();
  if (!a.adapter.empty()) {
    auto adapter = LoadPeftAdapter(a.adapter);
    if (!adapter.ok()) return adapter.status();
    absl::Status st = ApplyPeftAdapter(*adapter, model->get());
    if (!st.ok()) return st;
  }
  return model;
}

void GenerationArgs::AddTo(CLI::App* cmd, bool sampling) {
  cmd->add_option("--max-new-tokens", options.max_new_tokens, "Tokens to generate at most")->capture_default_str();
  if (sampling) {
    cmd->add_option("--temperature", options.temperature, "0: greedy; above 0: sampling")->capture_default_str();
    cmd->add_option("--top-p", options.top_p, "Nucleus sampling mass")->capture_default_str();
    cmd->add_option("--top-k", options.top_k, "Sample among the k most likely (0: all)")->capture_default_str();
    cmd->add_option("--seed", options.seed, "Sampling seed")->capture_default_str();
  }
  cmd->add_option("--stop", options.stop_strings, "Stop string (repeatable); the output is cut before it");
  cmd->add_option("--gen-batch-size", batch_size, "Prompts decoded together")->capture_default_str();
}

void RegisterGenerateCommand(CLI::App& app, const std::shared_ptr<std::function<int()>>& run) {
  auto* cmd = app.add_subcommand("generate", "Generate text with a model (and adapter) from a prompt or a dataset");
  auto args = std::make_shared<GenerateArgs>();
  args->model.AddTo(cmd);
  args->gen.AddTo(cmd, /*sampling=*/true);
  cmd->add_option("--prompt", args->prompt, "One user turn, rendered with the model's chat template");
  cmd->add_option("--data", args->data,
                  "JSONL in our data formats: each example's prompt is everything before its last assistant turn");
  cmd->add_option("--format", args->format, "auto, messages, alpaca, text or tokens")->capture_default_str();
  cmd->add_option("--tokenizer", args->tokenizer, "Folder with tokenizer.json (default: the model folder)");
  cmd->add_option("--chat-template", args->chat_template, "Built-in template instead of the model's own");
  cmd->add_flag("--json", args->json, "One JSON object per example: prompt, output, lang, token counts");
  cmd->callback([run, args] { *run = [args] { return RunGenerate(*args); }; });
}

void PrintGenerationTable(const GenerationEvalResult& r) {
  const bool labelled = r.overall.labelled > 0;
  std::printf("\n%-10s %10s %10s %10s %10s", "language", "generated", "chrF", "chrF++", "exact");
  if (labelled) std::printf(" %10s %10s %10s %10s", "label_acc", "macro_P", "macro_R", "macro_F1");
  std::printf("\n");
  auto row = [&](const std::string& name, const GenerationFigures& f) {
    std::printf("%-10s %10lld %10.2f %10.2f %10.4f", name.c_str(), static_cast<long long>(f.examples), f.chrf, f.chrfpp,
                f.exact_match);
    if (labelled)
      std::printf(" %10.4f %10.4f %10.4f %10.4f", f.label_accuracy, f.macro_precision, f.macro_recall, f.macro_f1);
    std::printf("\n");
  };
  for (const auto& [lang, f] : r.languages) row(lang, f);
  row("overall", r.overall);
}

absl::StatusOr<GenerationEvalResult> RunGenerationEval(const LlamaModel& model, const TextPipeline& pipeline,
                                                       const std::string& model_dir, const std::string& data,
                                                       const std::string& format, const GenerationArgs& args,
                                                       const std::vector<std::string>& labels,
                                                       nlohmann::json* eval_json) {
  if (!pipeline.tokenizer) return absl::FailedPreconditionError("--generate needs a tokenizer (tokenizer.json)");
  ASSIGN_OR_RETURN(text::DataFormat f, text::ParseDataFormat(format));
  const text::ChatTemplate* tmpl = pipeline.chat_template ? &*pipeline.chat_template : nullptr;
  ASSIGN_OR_RETURN(std::vector<PromptCase> cases, LoadPromptCases(data, f, *pipeline.tokenizer, tmpl));
  GenerationEvalOptions o;
  o.generation = args.WithEos(EosTokenIds(model_dir, model.config(), pipeline.tokenizer.get()));
  o.batch_size = args.batch_size;
  o.labels = labels;
  auto comm = MakeSingleProcessCommunicator();
  ASSIGN_OR_RETURN(GenerationEvalResult r, EvaluateGeneration(model, cases, o, *pipeline.tokenizer, *comm));
  r.AddToJson(eval_json);
  (*eval_json)["samples"] = r.SamplesJson();
  return r;
}

}  // namespace polytune::cli
