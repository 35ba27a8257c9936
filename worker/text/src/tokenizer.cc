#include "polytune/text/tokenizer.h"

#include <map>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "bpe_model.h"
#include "nlohmann/json.hpp"
#include "polytune/common/file_util.h"
#include "text_transforms.h"

namespace polytune::text {
namespace {

struct AddedToken {
  std::string content;
  int64_t id;
  bool special, lstrip, rstrip, single_word;
};

bool IsSpace(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'; }

bool IsWordByte(unsigned char c) { return std::isalnum(c) || c == '_' || c >= 0x80; }

// The name of a special token in tokenizer_config.json: a string or {"content": ...}.
std::optional<std::string> ConfigToken(const nlohmann::json& cfg, const char* key) {
  if (!cfg.contains(key)) return std::nullopt;
  const auto& v = cfg[key];
  if (v.is_string()) return v.get<std::string>();
  if (v.is_object() && v.contains("content") && v["content"].is_string()) return v["content"].get<std::string>();
  return std::nullopt;
}

}  // namespace

const std::vector<std::string>& ByteLevelAlphabet() {
  static const std::vector<std::string> kAlphabet = [] {
    std::vector<int> cps(256, -1);
    for (int b = 0; b < 256; ++b)
      if ((b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255)) cps[b] = b;
    int next = 256;
    for (int b = 0; b < 256; ++b)
      if (cps[b] < 0) cps[b] = next++;
    std::vector<std::string> out(256);
    for (int b = 0; b < 256; ++b) {
      const int cp = cps[b];
      std::string s;
      if (cp < 0x80) {
        s.push_back(static_cast<char>(cp));
      } else {
        s.push_back(static_cast<char>(0xC0 | (cp >> 6)));
        s.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
      }
      out[b] = s;
    }
    return out;
  }();
  return kAlphabet;
}

struct Tokenizer::Impl {
  BpeModel model;
  std::unique_ptr<Normalizer> normalizer;
  std::unique_ptr<PreTokenizer> pre_tokenizer;
  std::unique_ptr<Decoder> decoder;
  std::vector<AddedToken> added;
  std::map<unsigned char, std::vector<const AddedToken*>> added_by_first_byte;  // longest first
  std::unordered_map<int64_t, const AddedToken*> added_by_id;
  // Post-processing for a single sequence: ids before and after it.
  std::vector<int64_t> prefix, suffix;
  std::optional<int64_t> bos, eos, pad;
  bool clean_up_spaces = false;
  std::string chat_template;

  void EncodeSegment(const std::string& segment, bool first_segment, std::vector<int64_t>* out) const {
    std::string text = normalizer ? normalizer->Apply(segment) : segment;
    std::vector<std::string> words = {text};
    if (pre_tokenizer) words = pre_tokenizer->Split(words, first_segment);
    for (const auto& w : words) model.EncodeWord(w, out);
  }
};

Tokenizer::Tokenizer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Tokenizer::~Tokenizer() = default;

absl::StatusOr<std::unique_ptr<Tokenizer>> Tokenizer::Load(const std::string& dir) {
  auto tok = ReadFileToString(dir + "/tokenizer.json");
  if (!tok.ok()) return tok.status();
  std::string cfg = "{}";
  auto cfg_text = ReadFileToString(dir + "/tokenizer_config.json");
  if (cfg_text.ok()) cfg = *cfg_text;
  return FromJson(*tok, cfg, dir + "/tokenizer.json");
}

absl::StatusOr<std::unique_ptr<Tokenizer>> Tokenizer::FromJson(const std::string& tokenizer_json,
                                                               const std::string& tokenizer_config_json,
                                                               const std::string& source) {
  nlohmann::json j, cfg;
  try {
    j = nlohmann::json::parse(tokenizer_json);
  } catch (const nlohmann::json::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat(source, ": invalid JSON: ", e.what()));
  }
  try {
    cfg = nlohmann::json::parse(tokenizer_config_json);
  } catch (const nlohmann::json::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat(source, ": tokenizer_config.json is invalid JSON: ", e.what()));
  }
  if (!j.is_object() || !j.contains("model"))
    return absl::InvalidArgumentError(absl::StrCat(source, ": no 'model' section"));
  // A field of the wrong JSON type or a missing nested one surfaces as a json exception from
  // the accessors below; either way the file is bad input, never a crash.
  try {
    return Build(j, cfg.is_object() ? cfg : nlohmann::json::object(), source);
  } catch (const nlohmann::json::exception& e) {
    return absl::InvalidArgumentError(
        absl::StrCat(source, ": unexpected structure (a field of the wrong type or missing): ", e.what()));
  }
}

absl::StatusOr<std::unique_ptr<Tokenizer>> Tokenizer::Build(const nlohmann::json& j, const nlohmann::json& cfg,
                                                            const std::string& source) {
  auto impl = std::make_unique<Impl>();
  auto model = BpeModel::FromJson(j.at("model"), source);
  if (!model.ok()) return model.status();
  impl->model = std::move(*model);
  auto norm = MakeNormalizer(j.value("normalizer", nlohmann::json()), source);
  if (!norm.ok()) return norm.status();
  impl->normalizer = std::move(*norm);
  auto pre = MakePreTokenizer(j.value("pre_tokenizer", nlohmann::json()), source);
  if (!pre.ok()) return pre.status();
  impl->pre_tokenizer = std::move(*pre);
  auto dec = MakeDecoder(j.value("decoder", nlohmann::json()), source);
  if (!dec.ok()) return dec.status();
  impl->decoder = std::move(*dec);

  for (const auto& a : j.value("added_tokens", nlohmann::json::array())) {
    if (!a.contains("content") || !a.contains("id"))
      return absl::InvalidArgumentError(absl::StrCat(source, ": added_tokens entries need content and id"));
    if (a.at("id").get<int64_t>() < 0 || a.at("id").get<int64_t>() > BpeModel::kMaxTokenId)
      return absl::InvalidArgumentError(absl::StrCat(source, ": added token id ", a.at("id").get<int64_t>(),
                                                     " is outside [0, ", BpeModel::kMaxTokenId, "]"));
    impl->added.push_back({a.at("content").get<std::string>(), a.at("id").get<int64_t>(), a.value("special", false),
                           a.value("lstrip", false), a.value("rstrip", false), a.value("single_word", false)});
  }
  for (const auto& a : impl->added) {
    if (a.content.empty()) continue;
    impl->added_by_first_byte[static_cast<unsigned char>(a.content[0])].push_back(&a);
    impl->added_by_id[a.id] = &a;
  }
  for (auto& [b, list] : impl->added_by_first_byte)
    std::stable_sort(list.begin(), list.end(),
                     [](const AddedToken* x, const AddedToken* y) { return x->content.size() > y->content.size(); });

  Tokenizer* raw = new Tokenizer(std::move(impl));
  std::unique_ptr<Tokenizer> t(raw);
  Impl& im = *t->impl_;
  if (auto s = ConfigToken(cfg, "bos_token")) im.bos = t->TokenToId(*s);
  if (auto s = ConfigToken(cfg, "eos_token")) im.eos = t->TokenToId(*s);
  if (auto s = ConfigToken(cfg, "pad_token")) im.pad = t->TokenToId(*s);
  im.clean_up_spaces = cfg.value("clean_up_tokenization_spaces", false);
  if (cfg.contains("chat_template") && cfg["chat_template"].is_string())
    im.chat_template = cfg.at("chat_template").get<std::string>();

  // Post-processor: a TemplateProcessing's "single" template, else add_bos/eos_token.
  const nlohmann::json post = j.value("post_processor", nlohmann::json());
  std::vector<nlohmann::json> processors;
  if (post.is_object() && post.value("type", "") == "Sequence")
    processors = post.value("processors", std::vector<nlohmann::json>());
  else if (post.is_object())
    processors.push_back(post);
  bool templated = false;
  for (const auto& p : processors) {
    const std::string type = p.value("type", "");
    if (type == "ByteLevel") continue;
    if (type != "TemplateProcessing")
      return absl::UnimplementedError(absl::StrCat(source, ": post_processor type '", type, "' is not supported"));
    templated = true;
    bool seen_sequence = false;
    for (const auto& piece : p.value("single", nlohmann::json::array())) {
      if (piece.contains("Sequence")) {
        seen_sequence = true;
        continue;
      }
      const std::string name = piece.at("SpecialToken").at("id").get<std::string>();
      auto id = t->TokenToId(name);
      if (!id)
        return absl::InvalidArgumentError(absl::StrCat(source, ": post_processor names unknown token '", name, "'"));
      (seen_sequence ? im.suffix : im.prefix).push_back(*id);
    }
  }
  if (!templated) {
    if (cfg.value("add_bos_token", false) && im.bos) im.prefix.push_back(*im.bos);
    if (cfg.value("add_eos_token", false) && im.eos) im.suffix.push_back(*im.eos);
  }
  return t;
}

std::vector<int64_t> Tokenizer::Encode(const std::string& text, bool add_special_tokens) const {
  const Impl& im = *impl_;
  std::vector<int64_t> ids;
  if (add_special_tokens) ids = im.prefix;
  // Split around added tokens (leftmost, longest), then encode the plain segments.
  size_t seg_start = 0;
  size_t i = 0;
  bool first_segment = true;
  auto flush = [&](size_t end) {
    if (end > seg_start)
      im.EncodeSegment(text.substr(seg_start, end - seg_start), first_segment && seg_start == 0, &ids);
  };
  while (i < text.size()) {
    const AddedToken* hit = nullptr;
    auto it = im.added_by_first_byte.find(static_cast<unsigned char>(text[i]));
    if (it != im.added_by_first_byte.end()) {
      for (const AddedToken* a : it->second) {
        if (text.compare(i, a->content.size(), a->content) != 0) continue;
        if (a->single_word && ((i > 0 && IsWordByte(text[i - 1])) ||
                               (i + a->content.size() < text.size() && IsWordByte(text[i + a->content.size()]))))
          continue;
        hit = a;
        break;
      }
    }
    if (!hit) {
      ++i;
      continue;
    }
    size_t start = i, end = i + hit->content.size();
    if (hit->lstrip)
      while (start > seg_start && IsSpace(text[start - 1])) --start;
    if (hit->rstrip)
      while (end < text.size() && IsSpace(text[end])) ++end;
    flush(start);
    ids.push_back(hit->id);
    first_segment = false;
    seg_start = i = end;
  }
  flush(text.size());
  if (add_special_tokens) ids.insert(ids.end(), im.suffix.begin(), im.suffix.end());
  return ids;
}

std::string Tokenizer::DecodeRaw(const std::vector<int64_t>& ids) const {
  std::vector<std::string> tokens;
  for (int64_t id : ids) tokens.push_back(IdToToken(id));
  if (impl_->decoder) tokens = impl_->decoder->Chain(std::move(tokens));
  std::string out;
  for (const auto& t : tokens) out += t;
  return out;
}

std::string Tokenizer::Decode(const std::vector<int64_t>& ids) const {
  const Impl& im = *impl_;
  std::string out = DecodeRaw(ids);
  if (im.clean_up_spaces) {
    out = absl::StrReplaceAll(out, {{" .", "."},
                                    {" ?", "?"},
                                    {" !", "!"},
                                    {" ,", ","},
                                    {" ' ", "'"},
                                    {" n't", "n't"},
                                    {" 'm", "'m"},
                                    {" 's", "'s"},
                                    {" 've", "'ve"},
                                    {" 're", "'re"}});
  }
  return out;
}

std::string Tokenizer::DecodeText(const std::vector<int64_t>& ids) const {
  std::vector<int64_t> kept;
  for (int64_t id : ids) {
    auto it = impl_->added_by_id.find(id);
    const bool special = (it != impl_->added_by_id.end() && it->second->special) || (impl_->eos && id == *impl_->eos);
    if (!special) kept.push_back(id);
  }
  return Decode(kept);
}

std::optional<std::pair<size_t, size_t>> Tokenizer::FindSpecialToken(const std::string& text, size_t from,
                                                                     size_t to) const {
  for (size_t i = from; i < to && i < text.size(); ++i) {
    auto it = impl_->added_by_first_byte.find(static_cast<unsigned char>(text[i]));
    if (it == impl_->added_by_first_byte.end()) continue;
    for (const AddedToken* a : it->second) {
      if (!(a->special || (impl_->eos && a->id == *impl_->eos))) continue;
      if (i + a->content.size() <= to && text.compare(i, a->content.size(), a->content) == 0)
        return std::make_pair(i, i + a->content.size());
    }
  }
  return std::nullopt;
}

std::optional<int64_t> Tokenizer::TokenToId(const std::string& token) const {
  for (const auto& a : impl_->added)
    if (a.content == token) return a.id;
  return impl_->model.TokenToId(token);
}

std::string Tokenizer::IdToToken(int64_t id) const {
  auto it = impl_->added_by_id.find(id);
  if (it != impl_->added_by_id.end()) return it->second->content;
  const std::string* t = impl_->model.IdToToken(id);
  return t ? *t : std::string();
}

int64_t Tokenizer::vocab_size() const {
  int64_t n = impl_->model.size();
  for (const auto& a : impl_->added) n = std::max(n, a.id + 1);
  return n;
}

std::optional<int64_t> Tokenizer::bos_id() const { return impl_->bos; }
std::optional<int64_t> Tokenizer::eos_id() const { return impl_->eos; }
std::optional<int64_t> Tokenizer::pad_id() const { return impl_->pad; }
const std::string& Tokenizer::chat_template() const { return impl_->chat_template; }

}  // namespace polytune::text
