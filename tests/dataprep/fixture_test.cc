// Accuracy of language identification, PII scrubbing and near-duplicate removal on the
// independently made sets in tests/fixtures/dataprep/ (see make_dataprep_fixtures.py for how
// each was made). Each test prints its figures, so a run shows where we stand.
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "nlohmann/json.hpp"
#include "polytune/dataprep/language_id.h"
#include "polytune/dataprep/pii.h"
#include "polytune/dataprep/pipeline.h"

namespace polytune::dataprep {
namespace {
namespace fs = std::filesystem;
using nlohmann::json;

std::vector<json> ReadJsonl(const std::string& path) {
  std::ifstream in(path);
  EXPECT_TRUE(in) << path;
  std::vector<json> rows;
  std::string line;
  while (std::getline(in, line))
    if (!line.empty()) rows.push_back(json::parse(line));
  return rows;
}

std::string Fixture(const std::string& name) { return std::string(POLYTUNE_FIXTURES) + "/dataprep/" + name; }

TEST(DataprepFixtures, LanguageIdBeatsCld2AloneOnShortLines) {
  const auto rows = ReadJsonl(Fixture("lid.jsonl"));
  ASSERT_GT(rows.size(), 1000u);
  spec::LanguageConfig config;
  std::set<std::string> langs;
  for (const auto& r : rows) langs.insert(r["lang"].get<std::string>());
  config.languages.assign(langs.begin(), langs.end());
  const LanguageIdentifier ours(config);
  // bucket -> lang -> (ours correct, cld2 correct, total)
  std::map<std::string, std::map<std::string, std::array<int, 3>>> counts;
  for (const auto& r : rows) {
    const std::string text = r["text"], gold = r["lang"], bucket = r["bucket"];
    auto& c = counts[bucket][gold];
    c[0] += ours.Identify(text).code == gold;
    c[1] += LanguageIdentifier::Cld2Only(text).code == gold;
    c[2] += 1;
  }
  std::map<std::string, std::array<double, 2>> accuracy;
  for (const auto& [bucket, by_lang] : counts) {
    std::printf("%-7s", bucket.c_str());
    std::array<int, 3> sum{};
    for (const auto& [lang, c] : by_lang) {
      std::printf(" %s %.2f/%.2f", lang.c_str(), double(c[0]) / c[2], double(c[1]) / c[2]);
      for (int k = 0; k < 3; ++k) sum[k] += c[k];
    }
    accuracy[bucket] = {double(sum[0]) / sum[2], double(sum[1]) / sum[2]};
    std::printf("\n%-7s overall: ours %.3f, CLD2 alone %.3f (%d lines)\n", bucket.c_str(), accuracy[bucket][0],
                accuracy[bucket][1], sum[2]);
  }
  EXPECT_GT(accuracy["short"][0], accuracy["short"][1] + 0.10);
  for (const auto& [bucket, a] : accuracy) EXPECT_GE(a[0], a[1]) << bucket;
  EXPECT_GT(accuracy["long"][0], 0.95);
}

// Longer examples (the fixture's lines of one language, joined into 0.6-3 KB) are identified
// from sample windows as well as from the whole text, for a fraction of CLD2's work. Half of
// them open with an English line (a system prompt) that must not decide, and a quarter mix in
// lines of another language.
TEST(DataprepFixtures, LanguageIdOnLongTextFromSampleWindowsEqualsTheWholeText) {
  const auto rows = ReadJsonl(Fixture("lid.jsonl"));
  std::map<std::string, std::vector<std::string>> by_lang;
  for (const auto& r : rows) by_lang[r["lang"].get<std::string>()].push_back(r["text"].get<std::string>());
  spec::LanguageConfig config;
  for (const auto& [lang, texts] : by_lang) config.languages.push_back(lang);
  std::mt19937 gen(5);
  std::map<int64_t, int> correct;
  int total = 0;
  for (const auto& [lang, texts] : by_lang) {
    for (int k = 0; k < 40; ++k) {
      std::string text;
      if (k % 2 == 1) text = "You are a helpful assistant.\n";
      const size_t target = 600 + gen() % 2400;
      // One text in four mixes in a fifth of its lines from one other language: the majority decides.
      const auto& other = std::next(by_lang.begin(), gen() % by_lang.size())->second;
      while (text.size() < target)
        text += (k % 4 == 2 && gen() % 5 == 0 ? other[gen() % other.size()] : texts[gen() % texts.size()]) + "\n";
      ++total;
      for (int64_t sample : {int64_t{0}, int64_t{512}, int64_t{1024}}) {
        config.sample_bytes = sample;
        correct[sample] += LanguageIdentifier(config).Identify(text).code == lang;
      }
    }
  }
  for (const auto& [sample, n] : correct)
    std::printf("sample_bytes %4lld: %.4f of %d long texts\n", static_cast<long long>(sample), double(n) / total, total);
  EXPECT_GE(double(correct[0]) / total, 0.98);
  for (int64_t sample : {512, 1024})
    EXPECT_GE(correct[sample], correct[0] - total / 100) << sample << "-byte windows lose more than 1% to the whole text";
}

TEST(DataprepFixtures, PiiRecallAndPrecisionPerType) {
  const auto rows = ReadJsonl(Fixture("pii.jsonl"));
  ASSERT_GT(rows.size(), 300u);
  auto scrubber = PiiScrubber::Create(spec::PiiConfig());
  ASSERT_TRUE(scrubber.ok()) << scrubber.status();
  std::map<std::string, std::array<int, 3>> stats;  // type -> (true positives, gold, found)
  int decoys = 0, decoys_kept = 0;
  for (const auto& r : rows) {
    const std::string text = r["text"], lang = r["lang"];
    const auto spans = (*scrubber)->Find(text, lang);
    std::vector<bool> matched(spans.size(), false);
    for (const auto& gold : r["pii"]) {
      const std::string type = gold["type"], value = gold["value"];
      ++stats[type][1];
      const size_t at = text.find(value);
      ASSERT_NE(at, std::string::npos);
      for (size_t i = 0; i < spans.size(); ++i) {
        if (spans[i].type == type && spans[i].begin == at && spans[i].end == at + value.size()) {
          ++stats[type][0];
          matched[i] = true;
        }
      }
      if (!std::count(matched.begin(), matched.end(), true))
        std::printf("missed %s '%s' in: %s\n", type.c_str(), value.c_str(), text.c_str());
    }
    for (size_t i = 0; i < spans.size(); ++i) {
      ++stats[spans[i].type][2];
      if (!matched[i])
        std::printf("false positive %s '%s' in: %s\n", spans[i].type.c_str(),
                    text.substr(spans[i].begin, spans[i].end - spans[i].begin).c_str(), text.c_str());
    }
    std::map<std::string, int64_t> counts;
    const std::string scrubbed = (*scrubber)->Scrub(text, lang, &counts);
    for (const auto& d : r["decoys"]) {
      ++decoys;
      decoys_kept += scrubbed.find(d.get<std::string>()) != std::string::npos;
    }
  }
  for (const auto& [type, s] : stats) {
    const double recall = s[1] ? double(s[0]) / s[1] : 1.0, precision = s[2] ? double(s[0]) / s[2] : 1.0;
    std::printf("%-6s recall %.3f (%d/%d) precision %.3f (%d/%d)\n", type.c_str(), recall, s[0], s[1], precision, s[0],
                s[2]);
    EXPECT_GE(recall, 0.95) << type;
    EXPECT_GE(precision, 0.95) << type;
  }
  std::printf("decoys left intact: %d of %d\n", decoys_kept, decoys);
  EXPECT_GE(stats.size(), 6u);
  EXPECT_GE(decoys_kept, decoys * 0.95);
}

TEST(DataprepFixtures, NearDuplicatesFoundWithHighPairPrecision) {
  const std::string input = Fixture("neardup.jsonl");
  const auto rows = ReadJsonl(input);
  const fs::path out = fs::temp_directory_path() / ("polytune_neardup_" + std::to_string(::getpid()));
  spec::PrepConfig config;
  config.language.enabled = false;  // the fixture's declared lang decides word or character shingles
  config.quality.enabled = false;
  config.pii.enabled = false;
  PrepOptions options;
  options.inputs = {input};
  options.out_dir = out.string();
  options.threads = 2;
  auto report = PrepareData(config, options);
  ASSERT_TRUE(report.ok()) << report.status();

  // line number (1-based) -> (reason, duplicate_of line)
  std::map<int, std::pair<std::string, int>> dropped;
  for (const auto& d : ReadJsonl((out / "dropped.jsonl").string())) {
    const std::string source = d["source"], of = d.value("duplicate_of", std::string());
    dropped[std::stoi(source.substr(source.rfind(':') + 1))] = {
        d["reason"], of.empty() ? 0 : std::stoi(of.substr(of.rfind(':') + 1))};
  }
  int gold_near = 0, found_near = 0, exact = 0, exact_found = 0, pairs = 0, good_pairs = 0;
  for (const auto& r : rows) {
    const int line = r["id"].get<int>() + 1;
    if (r["kind"] == "exact") {
      ++exact;
      exact_found += dropped.count(line) && dropped[line].first == "duplicate";
      continue;
    }
    if (r["kind"] != "variant") continue;
    double best = 0;
    for (const auto& [id, j] : r["jaccard_with"].items()) best = std::max(best, j.get<double>());
    const bool is_near = best >= 0.8;
    gold_near += is_near;
    auto it = dropped.find(line);
    const bool was_dropped = it != dropped.end();
    if (is_near) found_near += was_dropped;
    if (was_dropped && it->second.first == "near_duplicate") {
      ++pairs;
      const std::string of = std::to_string(it->second.second - 1);
      good_pairs += r["jaccard_with"].contains(of) && r["jaccard_with"][of].get<double>() >= 0.8;
    }
  }
  std::printf(
      "near duplicates (Jaccard >= 0.8): found %d of %d (recall %.3f); pairs dropped %d, precision %.3f; "
      "exact duplicates %d of %d; %lld LSH candidates verified, bands %d x rows %d\n",
      found_near, gold_near, double(found_near) / gold_near, pairs, pairs ? double(good_pairs) / pairs : 1.0,
      exact_found, exact, static_cast<long long>(report->near_duplicate_candidates), report->lsh.bands,
      report->lsh.rows);
  EXPECT_GT(gold_near, 50);
  EXPECT_GE(double(found_near) / gold_near, 0.9);
  EXPECT_GE(pairs ? double(good_pairs) / pairs : 1.0, 0.95);
  EXPECT_EQ(exact_found, exact);
  EXPECT_GT(exact, 20);
  fs::remove_all(out);
}

// The near-dup spool buffers kept texts in memory up to 1 MiB before writing them out; the
// candidates it verifies must read the same from the file, from the buffer, and for a text
// longer than the buffer (written straight through).
TEST(DataprepNearDup, CandidatesAreVerifiedFromTheFileTheBufferAndOversizedTexts) {
  const fs::path dir = fs::temp_directory_path() / ("polytune_spool_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  auto words = [](int first, int count, const std::string& prefix) {
    std::string text;
    for (int i = first; i < first + count; ++i) text += prefix + std::to_string(i) + " ";
    return text;
  };
  auto near = [](std::string text) { return text.replace(text.find("10 "), 3, "changed "); };
  const std::string early = words(0, 200, "early"), big = words(0, 150000, "big");  // big: ~1.4 MB
  std::ofstream in(dir / "in.jsonl");
  in << json({{"text", early}}).dump() << "\n";  // line 1
  for (int d = 0; d < 3000; ++d) in << json({{"text", words(d * 100, 100, "f")}}).dump() << "\n";
  in << json({{"text", near(words(2999 * 100, 100, "f"))}}).dump() << "\n";  // 3002: 3001 is in the buffer
  in << json({{"text", big}}).dump() << "\n";                                // 3003
  in << json({{"text", near(early)}}).dump() << "\n";                        // 3004: early is on disk
  in << json({{"text", near(big)}}).dump() << "\n";                          // 3005: big went straight out
  in.close();
  spec::PrepConfig config;
  config.language.enabled = false;
  config.quality.enabled = false;
  config.pii.enabled = false;
  PrepOptions options;
  options.inputs = {(dir / "in.jsonl").string()};
  options.out_dir = (dir / "out").string();
  auto report = PrepareData(config, options);
  ASSERT_TRUE(report.ok()) << report.status();
  std::map<std::string, std::string> duplicate_of;  // dropped line -> kept line
  for (const auto& d : ReadJsonl((dir / "out" / "dropped.jsonl").string())) {
    EXPECT_EQ(d["reason"], "near_duplicate") << d.dump();
    const std::string source = d["source"], of = d["duplicate_of"];
    duplicate_of[source.substr(source.rfind(':') + 1)] = of.substr(of.rfind(':') + 1);
  }
  EXPECT_EQ(duplicate_of, (std::map<std::string, std::string>{{"3002", "3001"}, {"3004", "1"}, {"3005", "3003"}}));
  fs::remove_all(dir);
}

// All three fixtures at once (2,729 lines in three files, with exact and near duplicates) give
// byte-identical outputs on 1, 2 and 5 threads: lines are finished in input order however the
// threads interleave.
TEST(DataprepFixtures, OutputsAreTheSameOnOneTwoAndFiveThreads) {
  const fs::path dir = fs::temp_directory_path() / ("polytune_threads_" + std::to_string(::getpid()));
  std::map<int, std::pair<std::string, std::string>> outputs;  // threads -> (data, dropped)
  for (int threads : {1, 2, 5}) {
    PrepOptions options;
    options.inputs = {Fixture("lid.jsonl"), Fixture("neardup.jsonl"), Fixture("pii.jsonl")};
    options.out_dir = (dir / std::to_string(threads)).string();
    options.threads = threads;
    int progress_calls = 0;
    options.progress = [&](int64_t, int64_t) { ++progress_calls; };
    auto report = PrepareData(spec::PrepConfig{}, options);
    ASSERT_TRUE(report.ok()) << report.status();
    EXPECT_EQ(report->total.examples_in, 2729) << threads << " threads";
    EXPECT_GE(progress_calls, 1);
    auto slurp = [](const fs::path& p) {
      std::ifstream in(p, std::ios::binary);
      return std::string(std::istreambuf_iterator<char>(in), {});
    };
    outputs[threads] = {slurp(fs::path(options.out_dir) / "data.jsonl"),
                        slurp(fs::path(options.out_dir) / "dropped.jsonl")};
  }
  EXPECT_GT(outputs[1].first.size(), 100000u);
  EXPECT_NE(outputs[1].second.find("\"near_duplicate\""), std::string::npos);
  for (int threads : {2, 5}) {
    EXPECT_TRUE(outputs[threads].first == outputs[1].first) << "data.jsonl differs on " << threads << " threads";
    EXPECT_TRUE(outputs[threads].second == outputs[1].second) << "dropped.jsonl differs on " << threads << " threads";
  }
  fs::remove_all(dir);
}

}  // namespace
}  // namespace polytune::dataprep
