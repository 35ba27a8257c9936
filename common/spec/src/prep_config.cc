#include "polytune/spec/prep_config.h"

#include <re2/re2.h>
#include <yaml-cpp/yaml.h>

#include "absl/strings/ascii.h"
#include "polytune/common/file_util.h"
#include "prep_config_internal.h"
#include "yaml_parser.h"

namespace polytune::spec {
namespace {
using internal::Contains;
using internal::Parser;

bool Present(const YAML::Node& n) { return n.IsDefined() && !n.IsNull(); }

absl::Status StringList(const Parser& p, const YAML::Node& parent, const std::string& path, const std::string& key,
                        std::vector<std::string>* out) {
  const YAML::Node n = parent[key];
  if (!Present(n)) return absl::OkStatus();
  const std::string full = Parser::Join(path, key);
  if (!n.IsSequence()) return p.Error(n, full, "must be a list");
  out->clear();
  for (const auto& item : n) {
    if (!item.IsScalar() || item.Scalar().empty()) return p.Error(item, full, "must be a list of non-empty names");
    out->push_back(item.Scalar());
  }
  return absl::OkStatus();
}

template <typename E>
absl::Status Choice(const Parser& p, const YAML::Node& parent, const std::string& path, const std::string& key,
                    const std::vector<std::pair<std::string, E>>& choices, E* out) {
  std::string name;
  std::string expected;
  for (const auto& [n, v] : choices) expected += (expected.empty() ? "" : ", ") + n;
  RETURN_IF_ERROR(p.Get(parent, path, key, &name, expected.c_str()));
  if (name.empty()) return absl::OkStatus();
  for (const auto& [n, v] : choices) {
    if (n == name) {
      *out = v;
      return absl::OkStatus();
    }
  }
  return p.Error(parent[key], Parser::Join(path, key), absl::StrCat("must be one of ", expected, ", got '", name, "'"));
}

const std::vector<std::pair<std::string, InvalidUtf8>> kUtf8 = {{"repair", InvalidUtf8::kRepair},
                                                                {"drop", InvalidUtf8::kDrop}};
const std::vector<std::pair<std::string, UnicodeForm>> kForms = {
    {"nfc", UnicodeForm::kNfc}, {"nfkc", UnicodeForm::kNfkc}, {"none", UnicodeForm::kNone}};
const std::vector<std::pair<std::string, DeclaredLanguage>> kDeclared = {
    {"keep", DeclaredLanguage::kKeep}, {"relabel", DeclaredLanguage::kRelabel}, {"drop", DeclaredLanguage::kDrop}};

template <typename E>
std::string NameOf(const std::vector<std::pair<std::string, E>>& choices, E v) {
  for (const auto& [n, e] : choices)
    if (e == v) return n;
  return "?";
}

bool IsLanguageCode(const std::string& s) {
  // ISO 639-1 (two letters) or 639-3 (three) where no two-letter code exists.
  if (s.size() < 2 || s.size() > 3) return false;
  for (char c : s)
    if (c < 'a' || c > 'z') return false;
  return true;
}

absl::Status ParseStandardize(const Parser& p, const YAML::Node& n, const std::string& path, StandardizeConfig* c) {
  RETURN_IF_ERROR(
      p.Keys(n, path, {"enabled", "invalid_utf8", "unicode", "remove_control_chars", "whitespace", "ascii_digits"}));
  RETURN_IF_ERROR(p.Get(n, path, "enabled", &c->enabled, "true or false"));
  RETURN_IF_ERROR(Choice(p, n, path, "invalid_utf8", kUtf8, &c->invalid_utf8));
  RETURN_IF_ERROR(Choice(p, n, path, "unicode", kForms, &c->unicode));
  RETURN_IF_ERROR(p.Get(n, path, "remove_control_chars", &c->remove_control_chars, "true or false"));
  RETURN_IF_ERROR(p.Get(n, path, "whitespace", &c->whitespace, "true or false"));
  return p.Get(n, path, "ascii_digits", &c->ascii_digits, "true or false");
}

absl::Status ParseLanguage(const Parser& p, const YAML::Node& n, const std::string& path, LanguageConfig* c) {
  RETURN_IF_ERROR(p.Keys(n, path, {"enabled", "languages", "min_confidence", "declared", "sample_bytes"}));
  RETURN_IF_ERROR(p.Get(n, path, "enabled", &c->enabled, "true or false"));
  RETURN_IF_ERROR(StringList(p, n, path, "languages", &c->languages));
  for (auto& code : c->languages) {
    code = absl::AsciiStrToLower(code);
    if (!IsLanguageCode(code))
      return p.Error(n["languages"], Parser::Join(path, "languages"),
                     absl::StrCat("must hold ISO 639-1 codes such as es, de, id; got '", code, "'"));
  }
  RETURN_IF_ERROR(p.Number(n, path, "min_confidence", &c->min_confidence));
  if (c->min_confidence < 0 || c->min_confidence > 1)
    return p.Error(n["min_confidence"], Parser::Join(path, "min_confidence"), "must be in [0, 1]");
  RETURN_IF_ERROR(p.Get(n, path, "sample_bytes", &c->sample_bytes, "an integer"));
  if (c->sample_bytes != 0 && c->sample_bytes < 256)
    return p.Error(n["sample_bytes"], Parser::Join(path, "sample_bytes"),
                   "must be 0 (all of the text) or at least 256: CLD2 needs about 200 bytes per window");
  return Choice(p, n, path, "declared", kDeclared, &c->declared);
}

absl::Status ParseThresholds(const Parser& p, const YAML::Node& n, const std::string& path,
                             std::map<std::string, double>* out) {
  RETURN_IF_ERROR(p.Keys(n, path, QualityRuleNames()));
  for (auto it = n.begin(); it != n.end(); ++it) {
    const std::string key = it->first.Scalar();
    double v = 0;
    RETURN_IF_ERROR(p.Number(n, path, key, &v));
    if (v < 0) return p.Error(it->second, Parser::Join(path, key), "must not be negative");
    (*out)[key] = v;
  }
  return absl::OkStatus();
}

absl::Status ParseQuality(const Parser& p, const YAML::Node& n, const std::string& path, QualityConfig* c) {
  RETURN_IF_ERROR(p.Keys(n, path, {"enabled", "defaults", "languages"}));
  RETURN_IF_ERROR(p.Get(n, path, "enabled", &c->enabled, "true or false"));
  if (Present(n["defaults"]))
    RETURN_IF_ERROR(ParseThresholds(p, n["defaults"], Parser::Join(path, "defaults"), &c->defaults));
  const YAML::Node langs = n["languages"];
  if (!Present(langs)) return absl::OkStatus();
  if (!langs.IsMap()) return p.Error(langs, Parser::Join(path, "languages"), "must map language codes to thresholds");
  for (auto it = langs.begin(); it != langs.end(); ++it) {
    const std::string code = it->first.IsScalar() ? it->first.Scalar() : "";
    const std::string lpath = absl::StrCat(Parser::Join(path, "languages"), ".", code);
    if (!IsLanguageCode(code)) return p.Error(it->first, lpath, "is not an ISO 639-1 language code");
    RETURN_IF_ERROR(ParseThresholds(p, it->second, lpath, &c->languages[code]));
  }
  return absl::OkStatus();
}

absl::Status ParseDedup(const Parser& p, const YAML::Node& n, const std::string& path, DedupConfig* c) {
  RETURN_IF_ERROR(
      p.Keys(n, path, {"exact", "near", "threshold", "num_permutations", "word_ngram", "char_ngram", "seed"}));
  RETURN_IF_ERROR(p.Get(n, path, "exact", &c->exact, "true or false"));
  RETURN_IF_ERROR(p.Get(n, path, "near", &c->near, "true or false"));
  RETURN_IF_ERROR(p.Number(n, path, "threshold", &c->threshold));
  if (c->threshold <= 0 || c->threshold > 1)
    return p.Error(n["threshold"], Parser::Join(path, "threshold"), "must be in (0, 1]");
  RETURN_IF_ERROR(p.Get(n, path, "num_permutations", &c->num_permutations, "an integer"));
  RETURN_IF_ERROR(p.AtLeast(n, path, "num_permutations", c->num_permutations, 2));
  if (c->num_permutations > 1024)
    return p.Error(n["num_permutations"], Parser::Join(path, "num_permutations"), "must be at most 1024");
  RETURN_IF_ERROR(p.Get(n, path, "word_ngram", &c->word_ngram, "an integer"));
  RETURN_IF_ERROR(p.AtLeast(n, path, "word_ngram", c->word_ngram, 1));
  RETURN_IF_ERROR(p.Get(n, path, "char_ngram", &c->char_ngram, "an integer"));
  RETURN_IF_ERROR(p.AtLeast(n, path, "char_ngram", c->char_ngram, 1));
  return p.Get(n, path, "seed", &c->seed, "a non-negative integer");
}

absl::Status ParsePii(const Parser& p, const YAML::Node& n, const std::string& path, PiiConfig* c) {
  RETURN_IF_ERROR(p.Keys(n, path, {"enabled", "types", "regions", "placeholders", "patterns"}));
  RETURN_IF_ERROR(p.Get(n, path, "enabled", &c->enabled, "true or false"));
  RETURN_IF_ERROR(StringList(p, n, path, "types", &c->types));
  for (const auto& t : c->types)
    if (!Contains(PiiTypeNames(), t))
      return p.Error(
          n["types"], Parser::Join(path, "types"),
          absl::StrCat("has unknown type '", t, "'; expected some of: ", absl::StrJoin(PiiTypeNames(), ", ")));
  RETURN_IF_ERROR(StringList(p, n, path, "regions", &c->regions));
  for (auto& r : c->regions) {
    r = absl::AsciiStrToUpper(r);
    if (r.size() != 2 || !absl::ascii_isalpha(r[0]) || !absl::ascii_isalpha(r[1]))
      return p.Error(n["regions"], Parser::Join(path, "regions"),
                     absl::StrCat("must hold ISO 3166 two-letter region codes such as ES, DE, ID; got '", r, "'"));
  }
  const YAML::Node ph = n["placeholders"];
  if (Present(ph)) {
    RETURN_IF_ERROR(p.Keys(ph, Parser::Join(path, "placeholders"), PiiTypeNames()));
    for (auto it = ph.begin(); it != ph.end(); ++it) {
      std::string v;
      RETURN_IF_ERROR(p.Get(ph, Parser::Join(path, "placeholders"), it->first.Scalar(), &v, "a string"));
      c->placeholders[it->first.Scalar()] = v;
    }
  }
  const YAML::Node pats = n["patterns"];
  if (!Present(pats)) return absl::OkStatus();
  if (!pats.IsSequence())
    return p.Error(pats, Parser::Join(path, "patterns"), "must be a list of {name, regex, placeholder}");
  for (size_t i = 0; i < pats.size(); ++i) {
    const std::string ipath = absl::StrCat(Parser::Join(path, "patterns"), "[", i, "]");
    const YAML::Node item = pats[i];
    RETURN_IF_ERROR(p.Keys(item, ipath, {"name", "regex", "placeholder"}));
    PiiPattern pat;
    RETURN_IF_ERROR(p.Get(item, ipath, "name", &pat.name, "a name"));
    RETURN_IF_ERROR(p.Get(item, ipath, "regex", &pat.regex, "an RE2 regular expression"));
    RETURN_IF_ERROR(p.Get(item, ipath, "placeholder", &pat.placeholder, "a string"));
    if (pat.name.empty()) return p.Error(item, ipath + ".name", "is required");
    if (pat.regex.empty()) return p.Error(item, ipath + ".regex", "is required");
    RE2 re(pat.regex, RE2::Quiet);
    if (!re.ok()) return p.Error(item["regex"], ipath + ".regex", absl::StrCat("is not valid RE2: ", re.error()));
    if (pat.placeholder.empty()) pat.placeholder = absl::StrCat("<", absl::AsciiStrToUpper(pat.name), ">");
    c->patterns.push_back(std::move(pat));
  }
  return absl::OkStatus();
}

}  // namespace

const std::vector<std::string>& QualityRuleNames() {
  static const auto* names = new std::vector<std::string>{
      "min_units",
      "max_units",
      "min_mean_word_length",
      "max_mean_word_length",
      "max_symbol_ratio",
      "max_digit_ratio",
      "max_duplicate_line_fraction",
      "max_top_2gram_fraction",
      "max_top_3gram_fraction",
      "max_top_4gram_fraction",
      "max_duplicate_5gram_fraction",
      "max_duplicate_10gram_fraction",
      "repetition_min_units",
  };
  return *names;
}

const std::vector<std::string>& PiiTypeNames() {
  static const auto* names = new std::vector<std::string>{"email", "phone", "iban", "card", "ip", "id"};
  return *names;
}

namespace internal {

absl::Status ParsePrepConfigNode(const Parser& p, const YAML::Node& root, const std::string& path, PrepConfig* c) {
  RETURN_IF_ERROR(p.Keys(root, path, {"standardize", "language", "quality", "dedup", "pii", "strict"}));
  if (Present(root["standardize"]))
    RETURN_IF_ERROR(ParseStandardize(p, root["standardize"], Parser::Join(path, "standardize"), &c->standardize));
  if (Present(root["language"]))
    RETURN_IF_ERROR(ParseLanguage(p, root["language"], Parser::Join(path, "language"), &c->language));
  if (Present(root["quality"]))
    RETURN_IF_ERROR(ParseQuality(p, root["quality"], Parser::Join(path, "quality"), &c->quality));
  if (Present(root["dedup"])) RETURN_IF_ERROR(ParseDedup(p, root["dedup"], Parser::Join(path, "dedup"), &c->dedup));
  if (Present(root["pii"])) RETURN_IF_ERROR(ParsePii(p, root["pii"], Parser::Join(path, "pii"), &c->pii));
  return p.Get(root, path, "strict", &c->strict, "true or false");
}

void EmitPrepConfig(YAML::Emitter& e, const PrepConfig& c) {
  auto str_list = [&](const char* key, const std::vector<std::string>& v) {
    e << YAML::Key << key << YAML::Value << YAML::Flow << YAML::BeginSeq;
    for (const auto& s : v) e << YAML::DoubleQuoted << s;
    e << YAML::EndSeq;
  };
  e << YAML::BeginMap;
  const auto& s = c.standardize;
  e << YAML::Key << "standardize" << YAML::Value << YAML::BeginMap;
  e << YAML::Key << "enabled" << YAML::Value << s.enabled;
  e << YAML::Key << "invalid_utf8" << YAML::Value << NameOf(kUtf8, s.invalid_utf8);
  e << YAML::Key << "unicode" << YAML::Value << NameOf(kForms, s.unicode);
  e << YAML::Key << "remove_control_chars" << YAML::Value << s.remove_control_chars;
  e << YAML::Key << "whitespace" << YAML::Value << s.whitespace;
  e << YAML::Key << "ascii_digits" << YAML::Value << s.ascii_digits;
  e << YAML::EndMap;

  const auto& l = c.language;
  e << YAML::Key << "language" << YAML::Value << YAML::BeginMap;
  e << YAML::Key << "enabled" << YAML::Value << l.enabled;
  str_list("languages", l.languages);
  e << YAML::Key << "min_confidence" << YAML::Value << l.min_confidence;
  e << YAML::Key << "declared" << YAML::Value << NameOf(kDeclared, l.declared);
  e << YAML::Key << "sample_bytes" << YAML::Value << l.sample_bytes;
  e << YAML::EndMap;

  const auto& q = c.quality;
  auto thresholds = [&](const std::map<std::string, double>& m) {
    e << YAML::BeginMap;
    for (const auto& [k, v] : m) e << YAML::Key << k << YAML::Value << v;
    e << YAML::EndMap;
  };
  e << YAML::Key << "quality" << YAML::Value << YAML::BeginMap;
  e << YAML::Key << "enabled" << YAML::Value << q.enabled;
  e << YAML::Key << "defaults" << YAML::Value;
  thresholds(q.defaults);
  e << YAML::Key << "languages" << YAML::Value << YAML::BeginMap;
  for (const auto& [lang, m] : q.languages) {
    e << YAML::Key << lang << YAML::Value;
    thresholds(m);
  }
  e << YAML::EndMap << YAML::EndMap;

  const auto& d = c.dedup;
  e << YAML::Key << "dedup" << YAML::Value << YAML::BeginMap;
  e << YAML::Key << "exact" << YAML::Value << d.exact;
  e << YAML::Key << "near" << YAML::Value << d.near;
  e << YAML::Key << "threshold" << YAML::Value << d.threshold;
  e << YAML::Key << "num_permutations" << YAML::Value << d.num_permutations;
  e << YAML::Key << "word_ngram" << YAML::Value << d.word_ngram;
  e << YAML::Key << "char_ngram" << YAML::Value << d.char_ngram;
  e << YAML::Key << "seed" << YAML::Value << d.seed;
  e << YAML::EndMap;

  const auto& pi = c.pii;
  e << YAML::Key << "pii" << YAML::Value << YAML::BeginMap;
  e << YAML::Key << "enabled" << YAML::Value << pi.enabled;
  str_list("types", pi.types);
  str_list("regions", pi.regions);
  e << YAML::Key << "placeholders" << YAML::Value << YAML::BeginMap;
  for (const auto& [k, v] : pi.placeholders) e << YAML::Key << k << YAML::Value << YAML::DoubleQuoted << v;
  e << YAML::EndMap;
  e << YAML::Key << "patterns" << YAML::Value << YAML::BeginSeq;
  for (const auto& pat : pi.patterns) {
    e << YAML::BeginMap << YAML::Key << "name" << YAML::Value << YAML::DoubleQuoted << pat.name;
    e << YAML::Key << "regex" << YAML::Value << YAML::DoubleQuoted << pat.regex;
    e << YAML::Key << "placeholder" << YAML::Value << YAML::DoubleQuoted << pat.placeholder << YAML::EndMap;
  }
  e << YAML::EndSeq << YAML::EndMap;
  e << YAML::Key << "strict" << YAML::Value << c.strict;
  e << YAML::EndMap;
}

}  // namespace internal

absl::StatusOr<PrepConfig> ParsePrepConfig(const std::string& yaml_text, const std::string& source) {
  YAML::Node root;
  try {
    root = YAML::Load(yaml_text);
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(
        absl::StrCat(source, ":", e.mark.line + 1, ": not valid YAML: ", e.msg, "; fix the syntax and rerun"));
  }
  PrepConfig config;
  if (!root.IsDefined() || root.IsNull()) return config;  // an empty file: every default
  Parser p(source, "", SpecUse::kTraining);
  RETURN_IF_ERROR(internal::CheckDuplicateKeys(p, root, ""));
  RETURN_IF_ERROR(internal::ParsePrepConfigNode(p, root, "", &config));
  return config;
}

absl::StatusOr<PrepConfig> LoadPrepConfig(const std::string& path) {
  ASSIGN_OR_RETURN(std::string text, ReadFileToString(path));
  return ParsePrepConfig(text, path);
}

std::string ToCanonicalYaml(const PrepConfig& config) {
  YAML::Emitter e;
  e.SetDoublePrecision(17);
  e.SetBoolFormat(YAML::TrueFalseBool);
  internal::EmitPrepConfig(e, config);
  return std::string(e.c_str()) + "\n";
}

bool operator==(const PrepConfig& a, const PrepConfig& b) { return ToCanonicalYaml(a) == ToCanonicalYaml(b); }

}  // namespace polytune::spec
