// Data preparation throughput: MB/s per core for each stage alone (one thread) and for the whole
// pipeline with 1 and N threads, CLD2's own speed on the same text, and the near-dup index's
// memory per million documents. Prints one JSON object.
//
//   prep_bench [--mb 16] [--threads N] [--dedup-docs 200000] [--rounds 3]
//   prep_bench --only quality [--repeat 5]   one stage alone (or `pipeline`: all, one thread or --threads N),
//                                            for a profiler
//
// The corpus is built from the committed fixtures (human-written catalog strings in 20
// languages and the near-dup documents, with one line in 50 taken from the PII sentences:
// --pii-fraction), assembled into chat examples of 2-12 lines each with a seeded generator, so
// every run reads the same bytes. The whole pipeline also runs once on a PII-dense corpus (the
// fixtures' own proportion, about one line in five), the PII stage's worst case.
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "nlohmann/json.hpp"
#include "polytune/dataprep/dedup.h"
#include "polytune/dataprep/language_id.h"
#include "polytune/dataprep/pii.h"
#include "polytune/dataprep/pipeline.h"
#include "polytune/dataprep/quality.h"
#include "polytune/dataprep/standardize.h"

namespace {
namespace fs = std::filesystem;
using namespace polytune;
using Clock = std::chrono::steady_clock;

double Seconds(Clock::time_point since) { return std::chrono::duration<double>(Clock::now() - since).count(); }

struct FixtureTexts {
  std::map<std::string, std::vector<std::string>> clean;  // by language: catalog strings, documents
  std::vector<std::string> pii;                           // sentences dense with personal data
};

FixtureTexts LoadFixtureTexts() {
  FixtureTexts t;
  for (const char* name : {"lid.jsonl", "neardup.jsonl", "pii.jsonl"}) {
    std::ifstream in(std::string(POLYTUNE_FIXTURES) + "/dataprep/" + name);
    std::string line;
    while (std::getline(in, line)) {
      auto j = nlohmann::json::parse(line);
      if (std::strcmp(name, "pii.jsonl") == 0) {
        t.pii.push_back(j["text"].get<std::string>());
      } else {
        t.clean[j["lang"].get<std::string>()].push_back(j["text"].get<std::string>());
      }
    }
  }
  return t;
}

struct Corpus {
  std::vector<std::string> texts;  // the joined text of each example (for the stage timings)
  std::vector<std::string> langs;
  std::string path;
  int64_t bytes = 0;
};

// Chat examples of 1 + (1-11) lines in one language; each line is, with probability
// `pii_fraction`, one of the PII sentences (any language) instead.
Corpus BuildCorpus(const FixtureTexts& t, double megabytes, double pii_fraction, const fs::path& file) {
  std::vector<std::string> langs;
  for (const auto& [l, v] : t.clean) langs.push_back(l);
  std::mt19937_64 rng(5);
  std::uniform_real_distribution<double> coin(0, 1);
  Corpus c;
  c.path = file.string();
  std::ofstream out(c.path);
  while (c.bytes < megabytes * 1e6) {
    const std::string& lang = langs[rng() % langs.size()];
    const auto& pool = t.clean.at(lang);
    auto line = [&]() -> const std::string& {
      return coin(rng) < pii_fraction ? t.pii[rng() % t.pii.size()] : pool[rng() % pool.size()];
    };
    std::string user = line(), answer;
    const int lines = 1 + static_cast<int>(rng() % 11);
    for (int i = 0; i < lines; ++i) answer += (i ? "\n" : "") + line();
    nlohmann::json j = {
        {"messages", {{{"role", "user"}, {"content", user}}, {{"role", "assistant"}, {"content", answer}}}},
        {"lang", lang}};
    const std::string text = j.dump();
    out << text << "\n";
    c.bytes += static_cast<int64_t>(text.size()) + 1;
    c.texts.push_back(user + "\n" + answer);
    c.langs.push_back(lang);
  }
  return c;
}

template <typename F>
double StageMbPerSecond(const Corpus& c, F&& f) {
  int64_t bytes = 0;
  const auto t = Clock::now();
  for (size_t i = 0; i < c.texts.size(); ++i) {
    f(i);
    bytes += static_cast<int64_t>(c.texts[i].size());
  }
  return bytes / 1e6 / Seconds(t);
}

long PeakRssKb() {
  rusage u;
  getrusage(RUSAGE_SELF, &u);
  return u.ru_maxrss;
}

}  // namespace

int main(int argc, char** argv) {
  double mb = 16;
  double pii_fraction = 0.02;
  int threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  int64_t dedup_docs = 200000;
  std::string only;  // --only STAGE: that stage alone, --repeat times, for profiling
  int repeat = 1;
  int rounds = 3;                 // whole-pipeline runs per thread count
  int only_pipeline_threads = 1;  // --only pipeline runs one thread unless --threads says otherwise
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--mb")) mb = std::atof(argv[i + 1]);
    if (!std::strcmp(argv[i], "--threads")) only_pipeline_threads = threads = std::max(1, std::atoi(argv[i + 1]));
    if (!std::strcmp(argv[i], "--dedup-docs")) dedup_docs = std::atoll(argv[i + 1]);
    if (!std::strcmp(argv[i], "--pii-fraction")) pii_fraction = std::atof(argv[i + 1]);
    if (!std::strcmp(argv[i], "--only")) only = argv[i + 1];
    if (!std::strcmp(argv[i], "--repeat")) repeat = std::max(1, std::atoi(argv[i + 1]));
    if (!std::strcmp(argv[i], "--rounds")) rounds = std::max(1, std::atoi(argv[i + 1]));
  }
  const fs::path dir = fs::temp_directory_path() / ("polytune_prep_bench_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  nlohmann::json result;
  // Near-dup memory first, while the peak RSS is still the process's baseline: short
  // distinct documents through dedup alone.
  if (only.empty()) {
    const std::string path = (dir / "dedup.jsonl").string();
    std::ofstream out(path);
    std::mt19937_64 rng(9);
    for (int64_t d = 0; d < dedup_docs; ++d) {
      std::string text;
      for (int w = 0; w < 30; ++w) text += "w" + std::to_string(rng() % 50000) + " ";
      out << nlohmann::json({{"text", text}}).dump() << "\n";
    }
    out.close();
    spec::PrepConfig dedup_only;
    dedup_only.standardize.enabled = false;
    dedup_only.language.enabled = false;
    dedup_only.quality.enabled = false;
    dedup_only.pii.enabled = false;
    dataprep::PrepOptions options;
    options.inputs = {path};
    options.out_dir = (dir / "dedup_out").string();
    options.threads = threads;
    const long rss_before = PeakRssKb();
    auto report = dataprep::PrepareData(dedup_only, options);
    if (!report.ok()) return std::fprintf(stderr, "%s\n", std::string(report.status().message()).c_str()), 1;
    const double per_million = 1e6 / static_cast<double>(dedup_docs);
    result["near_dup"] = {{"documents", dedup_docs},
                          {"index_bytes_per_million_docs", report->dedup_index_bytes * per_million},
                          {"peak_rss_growth_mb_per_million_docs", (PeakRssKb() - rss_before) / 1024.0 * per_million},
                          {"peak_rss_mb", PeakRssKb() / 1024.0},
                          {"mb_per_s", report->total.bytes_in / 1e6 / report->seconds},
                          {"bands", report->lsh.bands},
                          {"rows", report->lsh.rows}};
  }
  const FixtureTexts fixture_texts = LoadFixtureTexts();
  const Corpus corpus = BuildCorpus(fixture_texts, mb, pii_fraction, dir / "corpus.jsonl");
  // Every line a PII sentence's as often as the fixtures hold them (about one line in five):
  // far denser in numbers than real data, the worst case for the PII stage.
  const double dense_fraction =
      static_cast<double>(fixture_texts.pii.size()) / static_cast<double>(fixture_texts.pii.size() + [&] {
        size_t n = 0;
        for (const auto& [l, v] : fixture_texts.clean) n += v.size();
        return n;
      }());
  const Corpus dense = BuildCorpus(fixture_texts, mb / 4, dense_fraction, dir / "dense.jsonl");
  result["corpus_mb"] = corpus.bytes / 1e6;
  result["pii_line_fraction"] = pii_fraction;
  result["examples"] = corpus.texts.size();

  // Each stage alone, one thread, over the examples' joined text.
  const spec::PrepConfig config;
  std::string sink;
  size_t sink_size = 0;
  spec::LanguageConfig allow;
  for (const auto& l : corpus.langs) allow.languages.push_back(l);
  std::sort(allow.languages.begin(), allow.languages.end());
  allow.languages.erase(std::unique(allow.languages.begin(), allow.languages.end()), allow.languages.end());
  const dataprep::LanguageIdentifier lid(allow);
  auto pii = dataprep::PiiScrubber::Create(config.pii);
  if (!pii.ok()) return std::fprintf(stderr, "%s\n", std::string(pii.status().message()).c_str()), 1;
  const dataprep::LshParams lsh = dataprep::ChooseLshParams(config.dedup.threshold, 128);
  const dataprep::MinHasher hasher(lsh.permutations(), 1);
  const std::map<std::string, std::function<void(size_t)>> stage_fns = {
      {"standardize",
       [&](size_t i) {
         sink = dataprep::Standardize(corpus.texts[i], config.standardize);
         sink_size += sink.size();
       }},
      {"language", [&](size_t i) { sink_size += lid.Identify(corpus.texts[i]).code.size(); }},
      {"cld2_alone",
       [&](size_t i) { sink_size += dataprep::LanguageIdentifier::Cld2Only(corpus.texts[i]).code.size(); }},
      {"quality",
       [&](size_t i) {
         sink_size += dataprep::FailedQualityRule(corpus.texts[i], dataprep::DefaultQualityRules(corpus.langs[i]),
                                                  dataprep::IsSpacelessLanguage(corpus.langs[i]))
                          .size();
       }},
      {"pii", [&](size_t i) { sink_size += (*pii)->Scrub(corpus.texts[i], corpus.langs[i], nullptr).size(); }},
      {"dedup_hash",
       [&](size_t i) {
         const std::string norm = dataprep::MatchNormalize(corpus.texts[i]);
         sink_size += dataprep::HashText(norm).lo & 1;
         const bool chars = dataprep::IsSpacelessLanguage(corpus.langs[i]);
         sink_size += hasher.Signature(dataprep::ShingleHashes(norm, chars, 5))[0] & 1;
       }},
  };
  nlohmann::json stages;
  if (only == "pipeline") {  // the whole pipeline, `repeat` times (for a profiler or an A/B)
    double mbps = 0;
    for (int r = 0; r < repeat; ++r) {
      dataprep::PrepOptions options;
      options.inputs = {corpus.path};
      options.out_dir = (dir / "out_only").string();
      options.threads = only_pipeline_threads;
      auto report = dataprep::PrepareData(config, options);
      if (!report.ok()) return std::fprintf(stderr, "%s\n", std::string(report.status().message()).c_str()), 1;
      mbps = std::max(mbps, corpus.bytes / 1e6 / report->seconds);
    }
    std::printf("%s\n", nlohmann::json({{"pipeline_best_mb_per_s", mbps}}).dump().c_str());
    fs::remove_all(dir);
    return 0;
  }
  if (!only.empty()) {  // one stage, `repeat` times (for a profiler); nothing else
    auto it = stage_fns.find(only);
    if (it == stage_fns.end()) return std::fprintf(stderr, "--only: no stage '%s'\n", only.c_str()), 1;
    double mbps = 0;
    for (int r = 0; r < repeat; ++r) mbps += StageMbPerSecond(corpus, it->second) / repeat;
    std::printf("%s\n", nlohmann::json({{only + "_mb_per_s", mbps}, {"checksum", sink_size % 1000}}).dump().c_str());
    fs::remove_all(dir);
    return 0;
  }
  for (const auto& [name, fn] : stage_fns) stages[name] = StageMbPerSecond(corpus, fn);
  result["stage_mb_per_s_one_thread"] = stages;

  // The whole pipeline, from the file, with 1 and N threads, `rounds` times each, alternating
  // (this class of VM drifts by tens of percent within minutes): the median run is reported,
  // with the best and every run beside it.
  nlohmann::json pipeline;
  std::map<int, std::vector<std::pair<double, nlohmann::json>>> runs;  // threads -> (MB/s, details)
  std::vector<int> thread_counts = {1};
  if (threads != 1) thread_counts.push_back(threads);
  for (int r = 0; r < rounds; ++r) {
    for (int t : thread_counts) {
      dataprep::PrepOptions options;
      options.inputs = {corpus.path};
      options.out_dir = (dir / ("out" + std::to_string(t))).string();
      options.threads = t;
      auto report = dataprep::PrepareData(config, options);
      if (!report.ok()) return std::fprintf(stderr, "%s\n", std::string(report.status().message()).c_str()), 1;
      const double mbps = corpus.bytes / 1e6 / report->seconds;
      runs[t].push_back(
          {mbps,
           {{"seconds", report->seconds}, {"kept", report->total.kept}, {"stage_cpu_seconds", report->stage_seconds}}});
    }
  }
  for (auto& [t, list] : runs) {
    std::vector<double> speeds;
    for (const auto& run : list) speeds.push_back(run.first);
    std::sort(list.begin(), list.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
    const auto& median = list[list.size() / 2];
    nlohmann::json entry = median.second;
    entry["mb_per_s"] = median.first;
    entry["mb_per_s_per_core"] = median.first / t;
    entry["mb_per_s_best"] = list.back().first;
    entry["mb_per_s_runs"] = speeds;
    pipeline[std::to_string(t) + "_threads"] = entry;
  }
  result["pipeline"] = pipeline;
  {
    dataprep::PrepOptions options;
    options.inputs = {dense.path};
    options.out_dir = (dir / "out_dense").string();
    options.threads = 1;
    auto report = dataprep::PrepareData(config, options);
    if (!report.ok()) return std::fprintf(stderr, "%s\n", std::string(report.status().message()).c_str()), 1;
    result["pii_dense_corpus"] = {{"pii_line_fraction", dense_fraction},
                                  {"mb", dense.bytes / 1e6},
                                  {"mb_per_s_one_thread", dense.bytes / 1e6 / report->seconds},
                                  {"stage_cpu_seconds", report->stage_seconds}};
  }
  result["threads"] = threads;

  result["checksum"] = sink_size % 1000;  // keeps the stage loops from being optimised away
  std::printf("%s\n", result.dump(2).c_str());
  fs::remove_all(dir);
  return 0;
}
