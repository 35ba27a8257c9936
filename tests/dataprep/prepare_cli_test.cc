// `polytune data prepare` end to end through the installed binary: outputs, reasons with
// file:line, unknown fields kept, the same output for any thread count, strict mode and
// config errors.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "nlohmann/json.hpp"

namespace {
namespace fs = std::filesystem;
using nlohmann::json;

struct CliRun {
  int rc = -1;
  std::string output;  // stdout and stderr
};

CliRun Polytune(const std::string& args) {
  CliRun r;
  FILE* p = ::popen((std::string(POLYTUNE_BIN) + " " + args + " 2>&1").c_str(), "r");
  if (p == nullptr) return r;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) r.output.append(buf, n);
  const int status = ::pclose(p);
  r.rc = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

std::string Slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

std::vector<json> Jsonl(const fs::path& p) {
  std::vector<json> rows;
  std::ifstream in(p);
  std::string line;
  while (std::getline(in, line)) rows.push_back(json::parse(line));
  return rows;
}

class PrepareCli : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("polytune_prepare_cli_" + std::to_string(::getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    std::ofstream a(dir_ / "a.jsonl", std::ios::binary);
    a << R"({"id":"a1","messages":[{"role":"user","content":"¿Dónde está la farmacia más cercana?"},{"role":"assistant","content":"Está en la calle Mayor; llame al 612 345 678 o escriba a farmacia@ejemplo.es."}],"meta":{"source":"web"}})"
      << "\n";
    a << R"({"id":"a2","instruction":"Fasse den Bericht zusammen.","input":"Der Umsatz stieg im dritten Quartal um zwölf Prozent.","output":"Der Umsatz wuchs deutlich.","lang":"de"})"
      << "\n";
    a << "{\"text\": this is not json\n";
    a << "\n";
    a << "{\"text\":\"Caf\xE9 con leche, por favor, y un vaso de agua sin gas.\"}\n";  // Latin-1 byte
    a.close();
    std::ofstream b(dir_ / "b.jsonl", std::ios::binary);
    b << R"({"id":"b1","messages":[{"role":"user","content":"¿DÓNDE está la farmacia más cercana?"},{"role":"assistant","content":"Está en la calle Mayor; llame al 612 345 678 o escriba a farmacia@ejemplo.es!"}]})"
      << "\n";
    b << R"({"id":"b2","text":"The quarterly report shows that revenue grew by twelve percent in the third quarter.","lang":"en"})"
      << "\n";
    b << R"({"id":"b3","text":"Der Patient wurde gestern entlassen und kommt in zwei Wochen zur Kontrolle.","lang":"es"})"
      << "\n";
    b.close();
    std::ofstream c(dir_ / "prep.yaml");
    c << "language:\n  languages: [es, de]\n";
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::string Args(const std::string& out, int threads, const std::string& config = "prep.yaml") const {
    return (dir_ / "a.jsonl").string() + " " + (dir_ / "b.jsonl").string() + " --out " + (dir_ / out).string() +
           " --config " + (dir_ / config).string() + " --threads " + std::to_string(threads);
  }

  fs::path dir_;
};

TEST_F(PrepareCli, WritesKeptDroppedAndReport) {
  const CliRun run = Polytune("data prepare " + Args("out", 2));
  ASSERT_EQ(run.rc, 0) << run.output;
  EXPECT_NE(run.output.find("total"), std::string::npos) << run.output;

  const auto kept = Jsonl(dir_ / "out" / "data.jsonl");
  std::map<std::string, json> by_id;
  for (const auto& k : kept) by_id[k.value("id", "")] = k;
  ASSERT_EQ(kept.size(), 4u) << Slurp(dir_ / "out" / "data.jsonl");
  // Scrubbed, labelled, unknown fields kept in place.
  const json& a1 = by_id.at("a1");
  EXPECT_EQ(a1["lang"], "es");
  EXPECT_EQ(a1["messages"][1]["content"], "Está en la calle Mayor; llame al <PHONE> o escriba a <EMAIL>.");
  EXPECT_EQ(a1["meta"]["source"], "web");
  EXPECT_EQ(Slurp(dir_ / "out" / "data.jsonl").rfind("{\"id\":\"a1\",\"messages\":", 0), 0u)
      << "the input's key order is kept";
  EXPECT_EQ(by_id.at("a2")["lang"], "de");
  // The Latin-1 byte was repaired (U+FFFD), not a reason to lose the example.
  bool repaired = false;
  for (const auto& k : kept)
    repaired |= k.contains("text") && k["text"].get<std::string>().find("\xEF\xBF\xBD") != std::string::npos;
  EXPECT_TRUE(repaired);
  // The declared "es" of a German text is relabelled (declared: relabel is the default).
  EXPECT_EQ(by_id.at("b3")["lang"], "de");

  std::map<std::string, json> dropped;
  for (const auto& d : Jsonl(dir_ / "out" / "dropped.jsonl")) dropped[d["reason"]] = d;
  ASSERT_EQ(dropped.size(), 3u) << Slurp(dir_ / "out" / "dropped.jsonl");
  EXPECT_EQ(dropped["malformed"]["source"], (dir_ / "a.jsonl").string() + ":3");
  EXPECT_EQ(dropped["malformed"]["example"], "{\"text\": this is not json");
  EXPECT_EQ(dropped["duplicate"]["source"], (dir_ / "b.jsonl").string() + ":1");
  EXPECT_EQ(dropped["duplicate"]["duplicate_of"], (dir_ / "a.jsonl").string() + ":1");
  EXPECT_EQ(dropped["duplicate"]["example"]["messages"][1]["content"],
            "Está en la calle Mayor; llame al 612 345 678 o escriba a farmacia@ejemplo.es!")
      << "dropped.jsonl keeps the input as it was";
  EXPECT_EQ(dropped["duplicate"]["example"],
            json::parse(R"({"id":"b1","messages":[{"role":"user","content":"¿DÓNDE está la farmacia más cercana?"},)"
                        R"({"role":"assistant","content":"Está en la calle Mayor; llame al 612 345 678 o escriba a )"
                        R"(farmacia@ejemplo.es!"}]})"))
      << "the whole example as given: not standardised, not scrubbed, no lang added";
  EXPECT_EQ(dropped["language"]["source"], (dir_ / "b.jsonl").string() + ":2");

  const json report = json::parse(Slurp(dir_ / "out" / "report.json"));
  const json& total = report["total"];
  int64_t dropped_sum = 0;
  for (const auto& [reason, n] : total["dropped"].items()) dropped_sum += n.get<int64_t>();
  EXPECT_EQ(total["examples_in"].get<int64_t>(), 7);
  EXPECT_EQ(total["kept"].get<int64_t>() + dropped_sum, 7);
  EXPECT_EQ(report["languages"]["es"]["pii_replaced"]["phone"], 1);
  EXPECT_EQ(report["languages"]["es"]["pii_replaced"]["email"], 1);
  EXPECT_EQ(report["languages"]["en"]["dropped"]["language"], 1);
  EXPECT_FALSE(fs::exists(dir_ / "out" / "data.jsonl.tmp"));

  // The same output whatever the thread count.
  const CliRun one = Polytune("data prepare " + Args("out1", 1));
  ASSERT_EQ(one.rc, 0) << one.output;
  EXPECT_EQ(Slurp(dir_ / "out1" / "data.jsonl"), Slurp(dir_ / "out" / "data.jsonl"));
  EXPECT_EQ(Slurp(dir_ / "out1" / "dropped.jsonl"), Slurp(dir_ / "out" / "dropped.jsonl"));
}

TEST_F(PrepareCli, StrictStopsAtTheFirstMalformedLineAndConfigErrorsNameTheKey) {
  std::ofstream(dir_ / "strict.yaml") << "strict: true\n";
  const CliRun strict = Polytune("data prepare " + Args("strict_out", 1, "strict.yaml"));
  EXPECT_NE(strict.rc, 0);
  EXPECT_NE(strict.output.find((dir_ / "a.jsonl").string() + ":3: not valid JSON"), std::string::npos) << strict.output;
  EXPECT_FALSE(fs::exists(dir_ / "strict_out" / "report.json"));

  std::ofstream(dir_ / "bad.yaml") << "language:\n  languages: [es]\n  min_confidense: 0.9\n";
  const CliRun bad = Polytune("data prepare " + Args("bad_out", 1, "bad.yaml"));
  EXPECT_NE(bad.rc, 0);
  EXPECT_NE(bad.output.find("bad.yaml:3: 'language.min_confidense' is not a known key"), std::string::npos)
      << bad.output;
}

}  // namespace
