#include "polytune/dataprep/pipeline.h"

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <thread>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "json_line.h"
#include "polytune/common/check.h"
#include "polytune/common/file_util.h"
#include "polytune/common/status_macros.h"
#include "polytune/dataprep/language_id.h"
#include "polytune/dataprep/pii.h"
#include "polytune/dataprep/quality.h"
#include "polytune/dataprep/standardize.h"

namespace polytune::dataprep {
namespace fs = std::filesystem;
namespace {

using Json = nlohmann::ordered_json;  // keeps the input's key order
using Clock = std::chrono::steady_clock;

constexpr size_t kBatchLines = 4096;
const char* const kStages[] = {"parse", "standardize", "language",  "quality",
                               "pii",   "dedup_hash",  "serialize", "dedup"};
enum Stage { kParse, kStandardize, kLanguage, kQuality, kPii, kDedupHash, kSerialize, kDedup, kNumStages };

struct Line {
  uint32_t file = 0;
  uint32_t number = 0;  // 1-based
  std::string raw;
};

// What the parallel stages decide about one line.
struct LineResult {
  bool blank = false;
  std::string reason;  // "" when kept so far
  std::string detail;
  std::string lang;
  std::optional<Json> example;              // parsed (and, when kept, rewritten) object
  std::vector<std::string> original_texts;  // its text fields as they came in, to show a dropped one
  std::map<std::string, int64_t> pii;
  Hash128 hash;
  std::string normalized;  // match-normalised text (near-dup verification reads it back)
  std::vector<uint32_t> signature;
  std::string output;  // the data.jsonl line when kept
  std::array<double, kNumStages> seconds{};
};

// The text fields of an example in any of our formats, as pointers into the JSON.
std::vector<Json*> TextFields(Json& j, std::string* error) {
  std::vector<Json*> fields;
  if (j.contains("messages")) {
    Json& msgs = j["messages"];
    if (!msgs.is_array()) {
      *error = "'messages' must be a list of {role, content}";
      return {};
    }
    for (auto& m : msgs)
      if (m.is_object() && m.contains("content") && m["content"].is_string()) fields.push_back(&m["content"]);
  } else if (j.contains("instruction") || j.contains("output")) {
    for (const char* key : {"system", "instruction", "input", "output"})
      if (j.contains(key) && j[key].is_string()) fields.push_back(&j[key]);
  } else if (j.contains("text") && j["text"].is_string()) {
    fields.push_back(&j["text"]);
  } else if (j.contains("input_ids")) {
    *error = "token-id examples have no text to prepare; prepare the text before tokenising";
    return {};
  }
  if (fields.empty() && error->empty())
    *error = "no text field: expected 'messages', 'instruction'/'output' (alpaca) or 'text'";
  return fields;
}

class Stopwatch {
 public:
  explicit Stopwatch(std::array<double, kNumStages>* seconds) : seconds_(seconds), last_(Clock::now()) {}
  void Lap(Stage stage) {
    const auto now = Clock::now();
    (*seconds_)[stage] += std::chrono::duration<double>(now - last_).count();
    last_ = now;
  }

 private:
  std::array<double, kNumStages>* seconds_;
  Clock::time_point last_;
};

class Pipeline {
 public:
  Pipeline(const spec::PrepConfig& config, const PiiScrubber* pii)
      : config_(config),
        lid_(config.language),
        pii_(pii),
        lsh_params_(ChooseLshParams(config.dedup.threshold, static_cast<int>(config.dedup.num_permutations))),
        hasher_(lsh_params_.permutations(), config.dedup.seed) {}

  const LshParams& lsh_params() const { return lsh_params_; }

  LineResult Process(const Line& line) const {
    LineResult r;
    Stopwatch watch(&r.seconds);
    if (line.raw.find_first_not_of(" \t\r") == std::string::npos) {
      r.blank = true;
      return r;
    }
    std::string repaired;
    const std::string* raw = &line.raw;
    if (!IsValidUtf8(line.raw)) {
      if (!config_.standardize.enabled || config_.standardize.invalid_utf8 == spec::InvalidUtf8::kDrop) {
        r.reason = "invalid_utf8";
        r.detail = "the line is not valid UTF-8";
        return r;
      }
      const size_t bad = RepairUtf8(line.raw, &repaired);
      raw = &repaired;
      r.detail = absl::StrCat(bad, " invalid UTF-8 bytes replaced by U+FFFD");
    }
    Json parsed;
    if (!ParseJsonLine(*raw, &parsed)) {  // what the fast reader declines, nlohmann decides
      try {
        parsed = Json::parse(*raw);
      } catch (const Json::parse_error& e) {
        r.reason = "malformed";
        r.detail = absl::StrCat("not valid JSON: ", e.what());
        return r;
      }
    }
    r.example = std::move(parsed);
    Json& j = *r.example;
    if (!j.is_object()) {
      r.reason = "malformed";
      r.detail = "each line must be a JSON object";
      return r;
    }
    std::string declared;
    if (j.contains("lang") && j["lang"].is_string()) declared = j["lang"].get<std::string>();
    r.lang = declared;
    std::string error;
    std::vector<Json*> fields = TextFields(j, &error);
    if (fields.empty()) {
      r.reason = "malformed";
      r.detail = error;
      return r;
    }
    watch.Lap(kParse);

    r.original_texts.reserve(fields.size());
    for (Json* f : fields) {
      r.original_texts.push_back(std::move(f->get_ref<std::string&>()));
      *f = Standardize(r.original_texts.back(), config_.standardize);
    }
    std::string joined;
    for (Json* f : fields) absl::StrAppend(&joined, joined.empty() ? "" : "\n", f->get_ref<const std::string&>());
    watch.Lap(kStandardize);

    if (config_.language.enabled) {
      const LanguageGuess g = lid_.Identify(joined);
      watch.Lap(kLanguage);
      const bool determined = !g.code.empty() && g.confidence >= config_.language.min_confidence;
      if (!determined) {
        if (declared.empty() || !lid_.Allowed(declared)) {
          r.reason = "language";
          r.detail = g.code.empty() ? "undetermined"
                                    : absl::StrCat("'", g.code, "' with confidence ", g.confidence, " below ",
                                                   config_.language.min_confidence);
          return r;
        }
      } else if (!lid_.Allowed(g.code)) {
        r.reason = "language";
        r.detail = absl::StrCat("detected '", g.code, "', not in language.languages");
        if (declared.empty()) r.lang = g.code;
        return r;
      } else if (declared.empty() || declared == g.code) {
        r.lang = g.code;
      } else if (config_.language.declared == spec::DeclaredLanguage::kDrop) {
        r.reason = "language_mismatch";
        r.detail = absl::StrCat("declared '", declared, "', detected '", g.code, "'");
        return r;
      } else if (config_.language.declared == spec::DeclaredLanguage::kRelabel) {
        r.lang = g.code;
      }
    }

    if (config_.quality.enabled) {
      const QualityRules rules = ResolveQualityRules(config_.quality, r.lang);
      const std::string failed = FailedQualityRule(joined, rules, IsSpacelessLanguage(r.lang));
      watch.Lap(kQuality);
      if (!failed.empty()) {
        r.reason = "quality:" + failed;
        return r;
      }
    }

    if (pii_ != nullptr) {
      bool scrubbed = false;
      for (Json* f : fields) scrubbed |= pii_->ScrubInPlace(&f->get_ref<std::string&>(), r.lang, &r.pii);
      if (scrubbed) {  // otherwise `joined` already holds the fields as they are
        joined.clear();
        for (Json* f : fields) absl::StrAppend(&joined, joined.empty() ? "" : "\n", f->get_ref<const std::string&>());
      }
      watch.Lap(kPii);
    }

    if (config_.dedup.exact || config_.dedup.near) {
      r.normalized = MatchNormalize(joined);
      r.hash = HashText(r.normalized);
      if (config_.dedup.near) {
        r.signature = hasher_.Signature(ShingleHashes(r.normalized, IsSpacelessLanguage(r.lang), ShingleSize(r.lang)));
      }
      watch.Lap(kDedupHash);
    }
    // Last: adding a key to an ordered_json object may move its values, and `fields` points into them.
    const bool set_lang = config_.language.enabled && !r.lang.empty();
    std::optional<Json> given_lang;
    if (set_lang) {
      if (j.contains("lang")) given_lang = j["lang"];
      j["lang"] = r.lang;
    }
    r.output.reserve(raw->size() + 16);
    AppendJson(j, &r.output);
    if (set_lang) {  // as it came in again: an exact or near duplicate is shown as given
      if (given_lang.has_value()) {
        j["lang"] = std::move(*given_lang);
      } else {
        j.erase("lang");
      }
    }
    watch.Lap(kSerialize);
    return r;
  }

  int ShingleSize(const std::string& lang) const {
    return static_cast<int>(IsSpacelessLanguage(lang) ? config_.dedup.char_ngram : config_.dedup.word_ngram);
  }

 private:
  const spec::PrepConfig& config_;
  LanguageIdentifier lid_;
  const PiiScrubber* pii_;
  LshParams lsh_params_;
  MinHasher hasher_;
};

// Kept examples' match-normalised text, on disk, so near-duplicate candidates are verified by
// their real Jaccard without holding texts in memory. Appends gather in a 1 MiB buffer (one
// write per MiB, not one per example); a read of what is still buffered is served from it.
class Spool {
 public:
  ~Spool() {
    if (fd_ >= 0) ::close(fd_);
    if (!path_.empty()) ::unlink(path_.c_str());
  }
  absl::Status Open(const std::string& path) {
    path_ = path;
    fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd_ < 0) return absl::InternalError(absl::StrCat("cannot create ", path, ": ", std::strerror(errno)));
    buffer_.reserve(kBufferBytes);
    return absl::OkStatus();
  }
  absl::Status Append(const std::string& text) {
    offsets_.push_back({flushed_ + buffer_.size(), static_cast<uint32_t>(text.size())});
    if (buffer_.size() + text.size() > kBufferBytes) RETURN_IF_ERROR(Flush());
    if (text.size() > kBufferBytes) return WriteAt(text, offsets_.back().first);
    buffer_.append(text);
    return absl::OkStatus();
  }
  absl::StatusOr<std::string> Read(uint32_t id) const {
    const auto [offset, size] = offsets_[id];
    if (offset >= flushed_) return buffer_.substr(offset - flushed_, size);
    std::string text(size, '\0');
    size_t done = 0;
    while (done < size) {
      const ssize_t n = ::pread(fd_, text.data() + done, size - done, offset + done);
      if (n <= 0) return absl::InternalError(absl::StrCat("reading ", path_, ": ", std::strerror(errno)));
      done += n;
    }
    return text;
  }
  size_t MemoryBytes() const { return offsets_.capacity() * sizeof(offsets_[0]) + buffer_.capacity(); }

 private:
  static constexpr size_t kBufferBytes = 1 << 20;

  absl::Status Flush() {
    RETURN_IF_ERROR(WriteAt(buffer_, flushed_));
    buffer_.clear();
    return absl::OkStatus();
  }
  // Writes `bytes` at `offset` (= flushed_, the end of the file) and moves flushed_ past them.
  absl::Status WriteAt(std::string_view bytes, uint64_t offset) {
    size_t done = 0;
    while (done < bytes.size()) {
      const ssize_t n = ::pwrite(fd_, bytes.data() + done, bytes.size() - done, offset + done);
      if (n < 0) return absl::InternalError(absl::StrCat("writing ", path_, ": ", std::strerror(errno)));
      done += n;
    }
    flushed_ = offset + bytes.size();
    return absl::OkStatus();
  }

  std::string path_;
  int fd_ = -1;
  uint64_t flushed_ = 0;  // bytes in the file; buffer_ holds what follows
  std::string buffer_;
  std::vector<std::pair<uint64_t, uint32_t>> offsets_;
};

// A file written in full under a temporary name, then fsynced and renamed. Lines gather in a
// 1 MiB buffer; every 2 MiB written, the kernel is asked to start writing them back
// (sync_file_range, which does not wait), so the fsync at the end has little left to wait for
// instead of the whole file: that wait was 5 % of a run, and twice that on two threads.
class OutputFile {
 public:
  ~OutputFile() {
    if (fd_ >= 0) ::close(fd_);
  }
  absl::Status Open(const std::string& path) {
    path_ = path;
    tmp_ = path + ".tmp";
    fd_ = ::open(tmp_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd_ < 0) return absl::InternalError(absl::StrCat("cannot write ", tmp_, ": ", std::strerror(errno)));
    buffer_.reserve(kBufferBytes + 4096);
    return absl::OkStatus();
  }
  absl::Status Write(std::string_view line) {
    buffer_.append(line);
    buffer_.push_back('\n');
    return buffer_.size() >= kBufferBytes ? Flush() : absl::OkStatus();
  }
  absl::Status Commit() {
    RETURN_IF_ERROR(Flush());
    if (::fsync(fd_) != 0)
      return absl::InternalError(absl::StrCat("fsync failed on ", tmp_, ": ", std::strerror(errno)));
    ::close(fd_);
    fd_ = -1;
    std::error_code ec;
    fs::rename(tmp_, path_, ec);
    if (ec) return absl::InternalError(absl::StrCat("cannot rename ", tmp_, " to ", path_, ": ", ec.message()));
    return absl::OkStatus();
  }

 private:
  static constexpr size_t kBufferBytes = 1 << 20;
  static constexpr uint64_t kWritebackBytes = 2 << 20;

  absl::Status Flush() {
    size_t done = 0;
    while (done < buffer_.size()) {
      const ssize_t n = ::write(fd_, buffer_.data() + done, buffer_.size() - done);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0)
        return absl::InternalError(absl::StrCat("writing ", tmp_, " failed (disk full?): ", std::strerror(errno)));
      done += static_cast<size_t>(n);
    }
    written_ += buffer_.size();
    buffer_.clear();
#ifdef __linux__
    if (written_ - started_ >= kWritebackBytes) {
      ::sync_file_range(fd_, static_cast<off_t>(started_), static_cast<off_t>(written_ - started_),
                        SYNC_FILE_RANGE_WRITE);  // a hint: an error here resurfaces at fsync
      started_ = written_;
    }
#endif
    return absl::OkStatus();
  }

  std::string path_, tmp_;
  int fd_ = -1;
  std::string buffer_;
  uint64_t written_ = 0, started_ = 0;  // bytes in the file; bytes whose writeback was started
};

}  // namespace

void LanguageStats::Add(const LanguageStats& o) {
  examples_in += o.examples_in;
  kept += o.kept;
  for (const auto& [k, v] : o.dropped) dropped[k] += v;
  for (const auto& [k, v] : o.pii) pii[k] += v;
  bytes_in += o.bytes_in;
  bytes_out += o.bytes_out;
}

absl::StatusOr<PrepReport> PrepareData(const spec::PrepConfig& config, const PrepOptions& options) {
  if (options.inputs.empty()) return absl::InvalidArgumentError("no input files: name at least one JSONL file");
  if (options.out_dir.empty()) return absl::InvalidArgumentError("--out is required: the folder to write into");
  int64_t total_bytes = 0;
  for (const auto& in : options.inputs) {
    std::error_code ec;
    const auto size = fs::file_size(in, ec);
    if (ec) return absl::NotFoundError(absl::StrCat("cannot read input ", in, ": ", ec.message()));
    total_bytes += static_cast<int64_t>(size);
  }
  std::error_code ec;
  fs::create_directories(options.out_dir, ec);
  if (ec) return absl::InternalError(absl::StrCat("cannot create ", options.out_dir, ": ", ec.message()));

  std::unique_ptr<PiiScrubber> pii;
  if (config.pii.enabled) {
    ASSIGN_OR_RETURN(pii, PiiScrubber::Create(config.pii));
  }
  const Pipeline pipeline(config, pii.get());
  const int threads = std::max(1, options.threads);

  OutputFile data_out, dropped_out;
  RETURN_IF_ERROR(data_out.Open((fs::path(options.out_dir) / "data.jsonl").string()));
  RETURN_IF_ERROR(dropped_out.Open((fs::path(options.out_dir) / "dropped.jsonl").string()));
  Spool spool;
  if (config.dedup.near) RETURN_IF_ERROR(spool.Open((fs::path(options.out_dir) / ".near_dup_spool").string()));

  PrepReport report;
  report.threads = threads;
  report.lsh = pipeline.lsh_params();
  std::array<double, kNumStages> seconds{};
  absl::flat_hash_map<Hash128, uint32_t> exact;
  LshIndex lsh(report.lsh);
  std::vector<std::pair<uint32_t, uint32_t>> kept_origin;  // kept id -> (file, line)
  auto origin = [&](uint32_t file, uint32_t line) { return absl::StrCat(options.inputs[file], ":", line); };
  const auto start = Clock::now();
  int64_t bytes_read = 0;

  // Runs the in-order part for one processed line.
  auto finish = [&](const Line& line, LineResult& r) -> absl::Status {
    if (r.blank) return absl::OkStatus();
    const std::string lang = r.lang.empty() ? "und" : r.lang;
    LanguageStats& stats = report.languages[lang];
    ++stats.examples_in;
    stats.bytes_in += static_cast<int64_t>(line.raw.size()) + 1;
    Stopwatch watch(&seconds);
    std::string duplicate_of;
    if (r.reason.empty() && config.dedup.exact) {
      auto it = exact.find(r.hash);
      if (it != exact.end()) {
        r.reason = "duplicate";
        duplicate_of = origin(kept_origin[it->second].first, kept_origin[it->second].second);
      }
    }
    if (r.reason.empty() && config.dedup.near) {
      std::vector<uint64_t> mine;
      for (uint32_t candidate : lsh.Candidates(r.signature)) {
        ++report.near_duplicate_candidates;
        if (mine.empty()) mine = Shingles(r.normalized, IsSpacelessLanguage(r.lang), pipeline.ShingleSize(r.lang));
        ASSIGN_OR_RETURN(std::string other, spool.Read(candidate));
        const double j = Jaccard(mine, Shingles(other, IsSpacelessLanguage(r.lang), pipeline.ShingleSize(r.lang)));
        if (j >= config.dedup.threshold) {
          r.reason = "near_duplicate";
          r.detail = absl::StrCat("Jaccard ", j);
          duplicate_of = origin(kept_origin[candidate].first, kept_origin[candidate].second);
          break;
        }
      }
    }
    watch.Lap(kDedup);
    if (!r.reason.empty()) {
      if (config.strict && r.reason == "malformed")
        return absl::InvalidArgumentError(absl::StrCat(origin(line.file, line.number), ": ", r.detail,
                                                       " (strict: true stops at the first malformed line)"));
      ++stats.dropped[r.reason];
      Json d;
      d["source"] = origin(line.file, line.number);
      d["reason"] = r.reason;
      if (!r.detail.empty()) d["detail"] = r.detail;
      if (!duplicate_of.empty()) d["duplicate_of"] = duplicate_of;
      // The example as it came in (its text fields put back as they were before standardising
      // and scrubbing), for auditing what was removed; a line that is no JSON object, as text.
      if (r.example.has_value() && r.original_texts.size() > 0) {
        std::string unused;
        std::vector<Json*> fields = TextFields(*r.example, &unused);
        POLYTUNE_CHECK(fields.size() == r.original_texts.size()) << "text fields changed while processing";
        for (size_t i = 0; i < fields.size(); ++i) *fields[i] = std::move(r.original_texts[i]);
        d["example"] = std::move(*r.example);
      } else if (r.example.has_value()) {
        d["example"] = std::move(*r.example);
      } else {
        std::string repaired;
        if (!IsValidUtf8(line.raw)) RepairUtf8(line.raw, &repaired);
        d["example"] = repaired.empty() ? line.raw : repaired;
      }
      std::string dropped_line;
      AppendJson(d, &dropped_line);
      return dropped_out.Write(dropped_line);
    }
    const uint32_t id = static_cast<uint32_t>(kept_origin.size());
    kept_origin.emplace_back(line.file, line.number);
    if (config.dedup.exact) exact.emplace(r.hash, id);
    if (config.dedup.near) {
      lsh.Insert(id, r.signature);
      RETURN_IF_ERROR(spool.Append(r.normalized));
    }
    ++stats.kept;
    for (const auto& [type, n] : r.pii) stats.pii[type] += n;
    stats.bytes_out += static_cast<int64_t>(r.output.size()) + 1;
    return data_out.Write(r.output);
  };

  // Two batches in flight: while threads - 1 helpers process one, this thread runs the
  // in-order part (dedup, output) of the one before, then helps with what is left. The
  // in-order part sees batches in input order either way, so the output never depends on the
  // thread count.
  std::vector<Line> batch, next_batch, pending;
  std::vector<LineResult> pending_results;
  auto finish_pending = [&]() -> absl::Status {
    for (size_t i = 0; i < pending.size(); ++i) {
      for (int s = 0; s < kNumStages; ++s) seconds[s] += pending_results[i].seconds[s];
      RETURN_IF_ERROR(finish(pending[i], pending_results[i]));
    }
    if (!pending.empty() && options.progress) options.progress(bytes_read, total_bytes);
    // Freed here, while the helpers process the next batch, rather than later on this thread alone.
    pending.clear();
    pending_results.clear();
    return absl::OkStatus();
  };
  // The inputs' lines in order, up to a batch at a time.
  uint32_t file = 0, number = 0;
  std::ifstream in;
  auto read_batch = [&](std::vector<Line>* out) -> absl::Status {
    out->clear();
    while (out->size() < kBatchLines && file < options.inputs.size()) {
      if (!in.is_open()) {
        in.open(options.inputs[file], std::ios::binary);
        if (!in) return absl::NotFoundError(absl::StrCat("cannot open ", options.inputs[file]));
        number = 0;
      }
      std::string raw;
      if (std::getline(in, raw)) {
        ++number;
        bytes_read += static_cast<int64_t>(raw.size()) + 1;
        if (!raw.empty() && raw.back() == '\r') raw.pop_back();
        out->push_back({file, number, std::move(raw)});
        continue;
      }
      if (in.bad()) return absl::InternalError(absl::StrCat("reading ", options.inputs[file], " failed"));
      in.close();
      in.clear();
      ++file;
    }
    return absl::OkStatus();
  };

  // Per batch: the helpers process it while this thread finishes the batch before and reads
  // the next (so no core waits for the reading), then helps with what is left.
  RETURN_IF_ERROR(read_batch(&batch));
  while (!batch.empty()) {
    std::vector<LineResult> results(batch.size());
    std::atomic<size_t> next{0};
    auto work = [&]() {
      for (size_t i = next++; i < batch.size(); i = next++) results[i] = pipeline.Process(batch[i]);
    };
    std::vector<std::thread> pool;
    for (int t = 1; t < threads && static_cast<size_t>(t) < batch.size(); ++t) pool.emplace_back(work);
    absl::Status status = finish_pending();
    if (status.ok()) status = read_batch(&next_batch);
    work();
    for (auto& t : pool) t.join();
    RETURN_IF_ERROR(status);
    pending = std::move(batch);
    pending_results = std::move(results);
    batch = std::move(next_batch);
  }
  RETURN_IF_ERROR(finish_pending());

  RETURN_IF_ERROR(data_out.Commit());
  RETURN_IF_ERROR(dropped_out.Commit());
  report.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  for (int s = 0; s < kNumStages; ++s) report.stage_seconds[kStages[s]] = seconds[s];
  for (const auto& [lang, stats] : report.languages) report.total.Add(stats);
  report.dedup_index_bytes = static_cast<int64_t>(lsh.MemoryBytes() + spool.MemoryBytes() +
                                                  exact.capacity() * (sizeof(Hash128) + sizeof(uint32_t) + 1) +
                                                  kept_origin.capacity() * sizeof(kept_origin[0]));
  RETURN_IF_ERROR(
      WriteFileAtomic((fs::path(options.out_dir) / "report.json").string(), report.ToJson().dump(2) + "\n"));
  return report;
}

}  // namespace polytune::dataprep
