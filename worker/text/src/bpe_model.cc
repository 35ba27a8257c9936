#include "bpe_model.h"

#include <queue>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace polytune::text {
namespace {

size_t Utf8Length(unsigned char lead) {
  if (lead < 0x80) return 1;
  if ((lead >> 5) == 0x6) return 2;
  if ((lead >> 4) == 0xe) return 3;
  if ((lead >> 3) == 0x1e) return 4;
  return 1;  // invalid lead byte: treat as one unit
}

constexpr size_t kMaxCacheEntries = 1 << 16;

}  // namespace

BpeModel::BpeModel(BpeModel&& o) noexcept
    : vocab_(std::move(o.vocab_)),
      id_to_token_(std::move(o.id_to_token_)),
      merges_(std::move(o.merges_)),
      unk_id_(o.unk_id_),
      fuse_unk_(o.fuse_unk_),
      byte_fallback_(o.byte_fallback_),
      ignore_merges_(o.ignore_merges_) {
  std::copy(std::begin(o.byte_ids_), std::end(o.byte_ids_), std::begin(byte_ids_));
}

BpeModel& BpeModel::operator=(BpeModel&& o) noexcept {
  vocab_ = std::move(o.vocab_);
  id_to_token_ = std::move(o.id_to_token_);
  merges_ = std::move(o.merges_);
  unk_id_ = o.unk_id_;
  fuse_unk_ = o.fuse_unk_;
  byte_fallback_ = o.byte_fallback_;
  ignore_merges_ = o.ignore_merges_;
  std::copy(std::begin(o.byte_ids_), std::end(o.byte_ids_), std::begin(byte_ids_));
  return *this;
}

absl::StatusOr<BpeModel> BpeModel::FromJson(const nlohmann::json& m, const std::string& source) {
  auto err = [&](const std::string& what) {
    return absl::InvalidArgumentError(absl::StrCat(source, ": model.", what));
  };
  if (m.value("type", "BPE") != "BPE")
    return err(absl::StrCat("type '", m.value("type", ""), "' is not supported (only BPE)"));
  if (!m.contains("vocab") || !m["vocab"].is_object()) return err("vocab must be an object");
  for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"})
    if (m.contains(key) && m[key].is_string() && !m[key].get<std::string>().empty())
      return err(absl::StrCat(key, " is not supported"));
  if (m.contains("dropout") && m["dropout"].is_number() && m["dropout"].get<double>() > 0)
    return err("dropout (BPE-dropout) is not supported");
  BpeModel bpe;
  int64_t max_id = -1;
  for (auto it = m["vocab"].begin(); it != m["vocab"].end(); ++it) {
    if (!it->is_number_integer() || it->get<int64_t>() < 0 || it->get<int64_t>() > kMaxTokenId)
      return err(absl::StrCat("vocab['", it.key(), "'] must be an id in [0, ", kMaxTokenId, "]"));
    bpe.vocab_[it.key()] = it->get<int64_t>();
    max_id = std::max(max_id, it->get<int64_t>());
  }
  bpe.id_to_token_.resize(max_id + 1);
  for (const auto& [tok, id] : bpe.vocab_) bpe.id_to_token_[id] = tok;
  if (m.contains("merges") && m["merges"].is_array()) {
    int32_t rank = 0;
    for (const auto& merge : m["merges"]) {
      std::string a, b;
      if (merge.is_string()) {
        const std::string s = merge.get<std::string>();
        const size_t space = s.find(' ', 1);
        if (space == std::string::npos) return err(absl::StrCat("merges[", rank, "] '", s, "' is not 'a b'"));
        a = s.substr(0, space);
        b = s.substr(space + 1);
      } else if (merge.is_array() && merge.size() == 2 && merge[0].is_string() && merge[1].is_string()) {
        a = merge[0].get<std::string>();
        b = merge[1].get<std::string>();
      } else {
        return err(absl::StrCat("merges[", rank, "] must be \"a b\" or [\"a\", \"b\"]"));
      }
      auto ia = bpe.vocab_.find(a), ib = bpe.vocab_.find(b), ic = bpe.vocab_.find(a + b);
      if (ia == bpe.vocab_.end() || ib == bpe.vocab_.end() || ic == bpe.vocab_.end())
        return err(absl::StrCat("merges[", rank, "] ('", a, "', '", b, "') uses tokens missing from the vocab"));
      bpe.merges_.emplace(PairKey(ia->second, ib->second), Merge{rank, ic->second});
      ++rank;
    }
  }
  if (m.contains("unk_token") && m["unk_token"].is_string()) {
    auto it = bpe.vocab_.find(m["unk_token"].get<std::string>());
    if (it == bpe.vocab_.end()) return err("unk_token is not in the vocab");
    bpe.unk_id_ = it->second;
  }
  bpe.fuse_unk_ = m.value("fuse_unk", false);
  bpe.byte_fallback_ = m.value("byte_fallback", false);
  bpe.ignore_merges_ = m.value("ignore_merges", false);
  for (int b = 0; b < 256; ++b) {
    auto it = bpe.vocab_.find(absl::StrFormat("<0x%02X>", b));
    bpe.byte_ids_[b] = it == bpe.vocab_.end() ? -1 : it->second;
  }
  return bpe;
}

std::optional<int64_t> BpeModel::TokenToId(const std::string& token) const {
  auto it = vocab_.find(token);
  if (it == vocab_.end()) return std::nullopt;
  return it->second;
}

const std::string* BpeModel::IdToToken(int64_t id) const {
  if (id < 0 || id >= static_cast<int64_t>(id_to_token_.size())) return nullptr;
  return &id_to_token_[id];
}

void BpeModel::EncodeWord(const std::string& word, std::vector<int64_t>* out) const {
  if (word.empty()) return;
  if (ignore_merges_) {
    auto it = vocab_.find(word);
    if (it != vocab_.end()) {
      out->push_back(it->second);
      return;
    }
  }
  {
    std::lock_guard<std::mutex> lock(cache_mu_);
    auto it = cache_.find(word);
    if (it != cache_.end()) {
      out->insert(out->end(), it->second.begin(), it->second.end());
      return;
    }
  }
  std::vector<int64_t> ids;
  Compute(word, &ids);
  out->insert(out->end(), ids.begin(), ids.end());
  if (word.size() <= 256) {
    std::lock_guard<std::mutex> lock(cache_mu_);
    if (cache_.size() >= kMaxCacheEntries) cache_.clear();
    cache_.emplace(word, std::move(ids));
  }
}

void BpeModel::Compute(const std::string& word, std::vector<int64_t>* out) const {
  struct Symbol {
    int64_t id;
    int prev, next;
    bool alive;
  };
  std::vector<Symbol> symbols;
  bool last_unk = false;
  for (size_t i = 0; i < word.size();) {
    const size_t len = std::min(Utf8Length(static_cast<unsigned char>(word[i])), word.size() - i);
    const std::string ch = word.substr(i, len);
    i += len;
    auto it = vocab_.find(ch);
    if (it != vocab_.end()) {
      symbols.push_back({it->second, 0, 0, true});
      last_unk = false;
    } else if (byte_fallback_ && std::all_of(ch.begin(), ch.end(),
                                             [&](char c) { return byte_ids_[static_cast<unsigned char>(c)] >= 0; })) {
      for (char c : ch) symbols.push_back({byte_ids_[static_cast<unsigned char>(c)], 0, 0, true});
      last_unk = false;
    } else if (unk_id_) {
      if (!(fuse_unk_ && last_unk)) symbols.push_back({*unk_id_, 0, 0, true});
      last_unk = true;
    }
  }
  const int n = static_cast<int>(symbols.size());
  for (int i = 0; i < n; ++i) {
    symbols[i].prev = i - 1;
    symbols[i].next = i + 1 < n ? i + 1 : -1;
  }
  struct Candidate {
    int32_t rank;
    int pos;
    int64_t id;
    bool operator>(const Candidate& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
  };
  std::priority_queue<Candidate, std::vector<Candidate>, std::greater<Candidate>> queue;
  auto push = [&](int pos) {
    if (pos < 0 || symbols[pos].next < 0) return;
    auto it = merges_.find(PairKey(symbols[pos].id, symbols[symbols[pos].next].id));
    if (it != merges_.end()) queue.push({it->second.rank, pos, it->second.id});
  };
  for (int i = 0; i + 1 < n; ++i) push(i);
  while (!queue.empty()) {
    Candidate top = queue.top();
    queue.pop();
    Symbol& left = symbols[top.pos];
    if (!left.alive || left.next < 0) continue;
    // Stale entry: the pair at this position changed since it was queued.
    auto it = merges_.find(PairKey(left.id, symbols[left.next].id));
    if (it == merges_.end() || it->second.rank != top.rank || it->second.id != top.id) continue;
    Symbol& right = symbols[left.next];
    left.id = top.id;
    right.alive = false;
    left.next = right.next;
    if (right.next >= 0) symbols[right.next].prev = top.pos;
    push(left.prev);
    push(top.pos);
  }
  for (const auto& s : symbols)
    if (s.alive) out->push_back(s.id);
}

}  // namespace polytune::text
