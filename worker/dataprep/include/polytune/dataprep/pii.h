// PII scrubbing for every language: emails; phone numbers through libphonenumber (regions
// from the example's language plus the config's `regions`; international numbers with + in
// any); IBANs (registered length + mod 97); payment cards (network prefix + Luhn); IPv4 and
// IPv6 (valid addresses only, never digits inside longer numbers); national identifiers with
// published checksums (Spanish DNI/NIE, Brazilian CPF, Chinese resident ID, Indian Aadhaar);
// user RE2 patterns. Found spans are replaced by typed placeholders. Numbers that fail their
// checksum, dates, prices, ISBNs and order numbers are left alone.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "polytune/spec/prep_config.h"

namespace re2 {
class RE2;
}

namespace polytune::dataprep {

struct PiiSpan {
  size_t begin = 0, end = 0;  // byte offsets
  std::string type;           // email, phone, iban, card, ip, id, or a pattern's name
};

class PiiScrubber {
 public:
  static absl::StatusOr<std::unique_ptr<PiiScrubber>> Create(const spec::PiiConfig& config);
  ~PiiScrubber();
  // Non-overlapping spans in text order. `lang` picks the phone regions ("" : only `regions`).
  std::vector<PiiSpan> Find(std::string_view text, const std::string& lang) const;
  // The text with each span replaced by its placeholder; counts[type] grows by the spans of
  // that type.
  std::string Scrub(std::string_view text, const std::string& lang, std::map<std::string, int64_t>* counts) const;
  // Scrub, in place: false (and the text untouched, no copy made) when nothing was found.
  bool ScrubInPlace(std::string* text, const std::string& lang, std::map<std::string, int64_t>* counts) const;
  std::vector<std::string> PhoneRegions(const std::string& lang) const;
  const std::string& Placeholder(const std::string& type) const;

 private:
  explicit PiiScrubber(spec::PiiConfig config);
  bool Enabled(const std::string& type) const;
  // Appends phone numbers to `out`, which holds the stronger types' spans found so far.
  void FindPhones(std::string_view text, const std::string& lang, std::vector<PiiSpan>* out) const;

  spec::PiiConfig config_;
  std::map<std::string, std::string> placeholders_;
  std::vector<std::pair<std::string, std::unique_ptr<re2::RE2>>> patterns_;
  std::unique_ptr<re2::RE2> email_, iban_, card_, ipv4_, ipv6_, dni_, cpf_, cn_id_, aadhaar_;
  // One pass that says which of the number patterns occur at all (most text has none).
  struct NumberPrefilter;
  std::unique_ptr<NumberPrefilter> numbers_;
};

}  // namespace polytune::dataprep
