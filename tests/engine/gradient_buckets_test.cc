// Overlapped (bucketed) gradient reduction against the single all-reduce it replaces, through
// a real model's backward with and without activation checkpointing.
#include "polytune/engine/gradient_buckets.h"

#include <gtest/gtest.h>

#include "polytune/engine/llama_model.h"
#include "polytune/engine/loss.h"
#include "polytune/engine/model_loader.h"

namespace polytune::engine {
namespace {

const std::string kModel = std::string(POLYTUNE_FIXTURES) + "/models/llama_gqa";

// Stands in for the other ranks: "the sum" is x + 0.5 x elementwise, so both reduction paths
// must feed it the same values to come out bit-identical. Logs when each collective started.
class FakeRanks : public Communicator {
 public:
  int rank() const override { return 0; }
  int world_size() const override { return 2; }
  std::unique_ptr<PendingCollective> StartAllReduceSum(const at::Tensor& tensor) override {
    started.push_back({tensor.numel(), backward_returned});
    tensor.add_(tensor * 0.5);
    return std::make_unique<Done>(fail_with);
  }
  absl::Status Barrier() override { return absl::OkStatus(); }

  struct Start {
    int64_t numel;
    bool after_backward;
  };
  std::vector<Start> started;
  bool backward_returned = false;
  absl::Status fail_with;

 private:
  struct Done : PendingCollective {
    explicit Done(absl::Status s) : status(std::move(s)) {}
    absl::Status Wait() override { return status; }
    absl::Status status;
  };
};

std::unique_ptr<LlamaModel> Model() {
  LoadOptions o;
  o.quantization = Quantization::kNf4;
  auto m = LoadModel(kModel, o);
  EXPECT_TRUE(m.ok()) << m.status();
  LoraSettings s;
  s.r = 4;
  s.dropout = 0.0;
  (*m)->AttachLora(s, 1);
  at::manual_seed(11);
  at::NoGradGuard no_grad;
  for (auto& [name, p] : (*m)->LoraParameters()) p.normal_(0, 0.1);  // B != 0: every gradient is nonzero
  return std::move(*m);
}

// One micro-batch's forward and backward; returns its loss.
double Backward(LlamaModel& model, int64_t seed, bool checkpointing) {
  at::manual_seed(seed);
  at::Tensor ids = at::randint(0, 96, {2, 12}, at::TensorOptions().dtype(at::kLong));
  ForwardOptions f;
  f.training = true;
  f.gradient_checkpointing = checkpointing;
  at::Tensor loss = SumTokenCrossEntropy(model.Forward(ids, f), ids);
  loss.backward();
  return loss.item<double>();
}

std::vector<std::pair<std::string, at::Tensor>> Named(const LlamaModel& m) {
  auto named = m.LoraParameters();
  return {named.begin(), named.end()};
}

TEST(GradientBuckets, BackwardReadyOrderPutsLaterLayersFirstAndKeepsTies) {
  const std::vector<std::string> names = {"m.layers.0.q.A", "m.layers.10.q.A", "m.layers.2.q.A", "head",
                                          "m.layers.10.k.A"};
  EXPECT_EQ(BackwardReadyOrder(names), (std::vector<size_t>{1, 4, 2, 0, 3}));
}

TEST(GradientBuckets, EqualsOneAllReduceBitForBitAndStartsBucketsDuringBackward) {
  for (const bool checkpointing : {true, false}) {
    for (const int micro_batches : {1, 2}) {
      SCOPED_TRACE(::testing::Message() << "checkpointing " << checkpointing << ", micro-batches " << micro_batches);
      auto flat_model = Model(), bucket_model = Model();
      auto flat_params = Named(*flat_model), bucket_params = Named(*bucket_model);

      FakeRanks flat_ranks;
      double flat_loss = 0;
      for (int m = 0; m < micro_batches; ++m) flat_loss += Backward(*flat_model, 100 + m, checkpointing);
      std::vector<at::Tensor> tensors;
      for (auto& [n, p] : flat_params) tensors.push_back(p);
      FlatGradients flat(tensors);
      auto expected = ReduceGradients(flat, flat_ranks, flat_loss, false);
      ASSERT_TRUE(expected.ok()) << expected.status();

      FakeRanks ranks;
      OverlappedGradientReducer reducer(bucket_params, ranks, /*bucket_bytes=*/2048);
      ASSERT_GT(reducer.bucket_count(), 3u);
      double loss = 0;
      for (int m = 0; m < micro_batches; ++m) {
        if (m + 1 == micro_batches) reducer.Arm();
        loss += Backward(*bucket_model, 100 + m, checkpointing);
      }
      ranks.backward_returned = true;
      auto reduced = reducer.Finish(loss, true);
      ASSERT_TRUE(reduced.ok()) << reduced.status();

      EXPECT_EQ(reduced->loss_sum, expected->loss_sum);
      EXPECT_TRUE(reduced->stop);
      EXPECT_FALSE(expected->stop);
      for (size_t i = 0; i < flat_params.size(); ++i) {
        ASSERT_EQ(flat_params[i].first, bucket_params[i].first);
        const at::Tensor& g = bucket_params[i].second.grad();
        ASSERT_TRUE(g.defined()) << flat_params[i].first;
        EXPECT_GT(g.abs().max().item<double>(), 0) << flat_params[i].first;
        EXPECT_TRUE(g.equal(flat_params[i].second.grad())) << flat_params[i].first;
      }
      // Every bucket but the last (which carries the loss) started inside backward, in order.
      ASSERT_EQ(ranks.started.size(), reducer.bucket_count());
      EXPECT_EQ(reducer.started_during_backward(), static_cast<int64_t>(reducer.bucket_count()) - 1);
      for (size_t b = 0; b + 1 < ranks.started.size(); ++b) EXPECT_FALSE(ranks.started[b].after_backward) << b;
      EXPECT_TRUE(ranks.started.back().after_backward);
      int64_t total = 0;
      for (const auto& s : ranks.started) total += s.numel;
      int64_t params = 0;
      for (auto& [n, p] : bucket_params) params += p.numel();
      EXPECT_EQ(total, params + 2);
    }
  }
}

TEST(GradientBuckets, AnotherStepReusesTheHooksAndAFailedCollectiveIsReported) {
  auto model = Model();
  FakeRanks ranks;
  OverlappedGradientReducer reducer(Named(*model), ranks, 2048);
  for (int step = 0; step < 2; ++step) {
    reducer.Arm();
    Backward(*model, 7 + step, true);
    ASSERT_TRUE(reducer.Finish(1.0, false).ok());
    EXPECT_EQ(reducer.started_during_backward(), static_cast<int64_t>(reducer.bucket_count()) - 1);
    for (auto& [n, p] : model->LoraParameters()) p.mutable_grad().reset();
  }
  // Gradients outside an armed pass (an earlier micro-batch) start nothing.
  ranks.started.clear();
  Backward(*model, 9, true);
  EXPECT_TRUE(ranks.started.empty());

  ranks.fail_with = absl::UnavailableError("rank 1 exited");
  reducer.Arm();
  Backward(*model, 10, true);
  auto reduced = reducer.Finish(1.0, false);
  EXPECT_EQ(reduced.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_NE(reduced.status().message().find("rank 1 exited"), std::string::npos);
}

}  // namespace
}  // namespace polytune::engine
