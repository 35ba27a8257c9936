// The fixture model's fp32 reference (llama_gqa.reference.*: Hugging Face transformers' logits
// for each quantisation mode, and the mean token loss), for tests that hold another path of
// the engine (bf16 on CPU, CUDA) to it.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <string>

#include "polytune/common/json_util.h"
#include "polytune/engine/loss.h"
#include "polytune/engine/safetensors.h"
#include "test_util.h"

namespace polytune::testing {

struct ReferenceLogits {
  at::Tensor input_ids, labels;
  int64_t targets = 0;                       // labels that count (shifted, not -100)
  std::map<std::string, at::Tensor> logits;  // by mode: "none", "nf4_dq"
  std::map<std::string, double> loss;        // mean token loss by mode
};

// Fails the calling test (ASSERT) when the fixture files cannot be read.
inline void LoadReferenceLogits(ReferenceLogits* out) {
  const std::string fixtures = POLYTUNE_FIXTURES;
  auto ref = engine::SafetensorsFile::Open(fixtures + "/llama_gqa.reference.safetensors");
  ASSERT_TRUE(ref.ok()) << ref.status();
  auto losses = ReadJsonFile(fixtures + "/llama_gqa.reference.json");
  ASSERT_TRUE(losses.ok()) << losses.status();
  out->input_ids = *(*ref)->Load("input_ids");
  out->labels = *(*ref)->Load("labels");
  out->targets = out->labels.slice(1, 1).ne(-100).sum().item<int64_t>();
  for (const std::string mode : {"none", "nf4_dq"}) {
    out->logits[mode] = *(*ref)->Load("logits_" + mode);
    out->loss[mode] = (*losses)["loss"][mode].get<double>();
  }
}

// fp32 CPU logits of the reference inputs against the reference of `mode`: the largest error
// relative to the largest logit, and the mean loss relative to the reference loss. Returns the
// logits' relative error, for callers that also want it bounded from below.
inline double ExpectNearReference(const ReferenceLogits& ref, const std::string& mode, const at::Tensor& logits,
                                  double logits_tolerance, double loss_tolerance, const std::string& what) {
  const double error = RelativeMaxError(logits, ref.logits.at(mode));
  EXPECT_LT(error, logits_tolerance) << what;
  const double loss = engine::SumTokenCrossEntropy(logits, ref.labels).item<double>() / ref.targets;
  EXPECT_NEAR(loss, ref.loss.at(mode), loss_tolerance * std::abs(ref.loss.at(mode))) << what;
  return error;
}

}  // namespace polytune::testing
