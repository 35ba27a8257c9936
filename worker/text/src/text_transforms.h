// tokenizer.json's normalizers, pre-tokenizers and decoders.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"

namespace polytune::text {

class Normalizer {
 public:
  virtual ~Normalizer() = default;
  virtual std::string Apply(const std::string& text) const = 0;
};

// Splits a normalised segment into the words the BPE model sees. `first_segment` is true
// for the segment at the start of the input (Metaspace's prepend_scheme "first").
class PreTokenizer {
 public:
  virtual ~PreTokenizer() = default;
  virtual std::vector<std::string> Split(const std::vector<std::string>& pieces, bool first_segment) const = 0;
};

// Turns tokens back into text pieces (decode_chain in Hugging Face's terms).
class Decoder {
 public:
  virtual ~Decoder() = default;
  virtual std::vector<std::string> Chain(std::vector<std::string> tokens) const = 0;
};

// A null JSON value gives a null pointer (no component). Unsupported types are errors naming
// the component type and `source`.
absl::StatusOr<std::unique_ptr<Normalizer>> MakeNormalizer(const nlohmann::json& j, const std::string& source);
absl::StatusOr<std::unique_ptr<PreTokenizer>> MakePreTokenizer(const nlohmann::json& j, const std::string& source);
absl::StatusOr<std::unique_ptr<Decoder>> MakeDecoder(const nlohmann::json& j, const std::string& source);

}  // namespace polytune::text
