// NF4 storage against vectors computed independently by tests/reference/make_fixtures.py.
#include "polytune/engine/nf4.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "polytune/engine/frozen_linear.h"
#include "polytune/engine/safetensors.h"
#include "test_util.h"

namespace polytune::engine {
namespace {

class Nf4Vectors : public ::testing::Test {
 protected:
  void SetUp() override {
    auto f = SafetensorsFile::Open(std::string(POLYTUNE_FIXTURES) + "/nf4_vectors.safetensors");
    ASSERT_TRUE(f.ok()) << f.status();
    file_ = std::move(*f);
  }
  at::Tensor Get(const std::string& name) { return *file_->Load(name); }
  std::unique_ptr<SafetensorsFile> file_;
};

TEST_F(Nf4Vectors, PackedBytesAndAbsmaxMatchReference) {
  Nf4Tensor q = QuantizeNf4(Get("input"), /*double_quant=*/false);
  EXPECT_EQ(q.numel, 301);
  EXPECT_EQ(q.packed.numel(), 151);
  EXPECT_TRUE(q.packed.equal(Get("packed"))) << "NF4 bytes differ from the reference";
  EXPECT_TRUE(q.absmax.equal(Get("absmax")));
}

TEST_F(Nf4Vectors, PackingPutsEvenElementInHighNibble) {
  // Values chosen to hit code 15 (1.0) then code 0 (-1.0) in one block scaled by absmax 2.
  at::Tensor t = at::zeros({64});
  t[0] = 2.0;
  t[1] = -2.0;
  Nf4Tensor q = QuantizeNf4(t, false);
  EXPECT_EQ(q.packed[0].item<uint8_t>(), 0xF0);
  EXPECT_EQ(q.packed[1].item<uint8_t>(), 0x77);  // zeros map to code 7 (0.0)
  EXPECT_FLOAT_EQ(q.absmax[0].item<float>(), 2.0f);
}

TEST_F(Nf4Vectors, DynamicMapMatchesBitsandbytes) {
  at::Tensor ref = Get("dynamic_map");
  const auto& map = DynamicMap8Bit();
  ASSERT_EQ(ref.numel(), 256);
  for (int i = 0; i < 256; ++i) EXPECT_EQ(map[i], ref[i].item<float>()) << "index " << i;
}

TEST_F(Nf4Vectors, DoubleQuantisationMatchesReference) {
  Nf4Tensor q = QuantizeNf4(Get("dq_input"), /*double_quant=*/true);
  ASSERT_TRUE(q.double_quant);
  EXPECT_TRUE(q.packed.equal(Get("dq_packed")));
  EXPECT_TRUE(q.absmax2.equal(Get("dq_absmax2")));
  EXPECT_FLOAT_EQ(q.absmax_offset, Get("dq_offset")[0].item<float>());
  // Indices may only differ where the centred absmax sits on a rounding boundary.
  const double mismatches = q.absmax_q.ne(Get("dq_absmax_q")).sum().item<double>();
  EXPECT_EQ(mismatches, 0);
}

TEST(Nf4, DequantisationErrorWithinHalfCodeGap) {
  at::Tensor w = at::randn({96, 80}) * 0.1;
  Nf4Tensor q = QuantizeNf4(w, false);
  at::Tensor back = DequantizeNf4(q, at::kFloat);
  ASSERT_EQ(back.sizes(), w.sizes());
  // Largest gap between neighbouring codes is 1.0 - 0.7229..., so the error is at most half
  // of it times the block's absmax.
  const auto& code = Nf4CodeBook();
  double max_gap = 0;
  for (int i = 0; i + 1 < 16; ++i) max_gap = std::max<double>(max_gap, code[i + 1] - code[i]);
  at::Tensor absmax = q.absmax.repeat_interleave(64).slice(0, 0, w.numel()).view(w.sizes());
  at::Tensor ratio = (back - w).abs() / absmax;
  EXPECT_LE(ratio.max().item<double>(), max_gap / 2 + 1e-6);
}

TEST(Nf4, DoubleQuantAbsmaxErrorWithinBoundAndSavesMemory) {
  at::Tensor w = at::randn({512, 512}) * 0.05;
  Nf4Tensor plain = QuantizeNf4(w, false);
  Nf4Tensor dq = QuantizeNf4(w, true);
  at::Tensor absmax_dq = Nf4BlockAbsmax(dq);
  // Each absmax is rebuilt from an 8-bit code: error <= half the largest gap of the dynamic
  // map times its 256-block's absmax2.
  const auto& map = DynamicMap8Bit();
  double max_gap = 0;
  for (int i = 0; i + 1 < 256; ++i) max_gap = std::max<double>(max_gap, map[i + 1] - map[i]);
  at::Tensor absmax2 = dq.absmax2.repeat_interleave(256).slice(0, 0, plain.absmax.numel());
  at::Tensor err = (absmax_dq - plain.absmax).abs() / absmax2;
  EXPECT_LE(err.max().item<double>(), max_gap / 2 + 1e-6);
  // In practice the mean relative error of absmax is far below 1%.
  EXPECT_LT(((absmax_dq - plain.absmax).abs() / plain.absmax).mean().item<double>(), 0.01);
  // bits per parameter: 4 + 32/64 = 4.5 plain, about 4.127 with double quantisation.
  const double bits_plain = 8.0 * plain.StorageBytes() / w.numel();
  const double bits_dq = 8.0 * dq.StorageBytes() / w.numel();
  EXPECT_NEAR(bits_plain, 4.5, 1e-9);
  EXPECT_LT(bits_dq, 4.13);
}

// The fused CPU quantisation against the tensor-op one CUDA runs: the same bytes and
// statistics, for whole and partial blocks, an odd count (the pad nibble), an all-zero block,
// values exactly on a midpoint, infinities and NaN (bucketize sends NaN past the last
// midpoint), and a bf16 weight. Where the CPU has AVX-512 whole blocks take the vector path.
TEST(Nf4, FusedCpuQuantisationEqualsTensorOpPath) {
  at::manual_seed(31);
  std::vector<at::Tensor> weights = {at::randn({37, 70}) * 0.2, at::randn({130, 301}), at::randn({3, 5}),
                                     at::randn({512, 256}) * 0.01, at::randn({64, 33}).to(at::kBFloat16)};
  at::Tensor edge = at::randn({4, 96});
  edge[0].zero_();                                       // an all-zero block
  edge[1][3] = std::numeric_limits<float>::infinity();   // a block scaled by 1/inf
  edge[2][5] = std::numeric_limits<float>::quiet_NaN();  // a NaN block
  edge[3].mul_(0.1);
  edge[3][0] = 1.0f;                                          // absmax 1: values as they are
  edge[3][1] = (Nf4CodeBook()[8] + Nf4CodeBook()[9]) * 0.5f;  // exactly on a midpoint
  edge[3][2] = (Nf4CodeBook()[0] + Nf4CodeBook()[1]) * 0.5f;  // a negative one
  weights.push_back(edge);
  for (size_t w = 0; w < weights.size(); ++w) {
    for (bool dq : {false, true}) {
      const Nf4Tensor fused = QuantizeNf4(weights[w], dq), ops = QuantizeNf4TensorOps(weights[w], dq);
      const std::string what = "weight " + std::to_string(w) + (dq ? " dq" : "");
      EXPECT_TRUE(fused.packed.equal(ops.packed)) << what;
      if (dq) {
        EXPECT_TRUE(fused.absmax_q.equal(ops.absmax_q)) << what;
        EXPECT_TRUE(at::allclose(fused.absmax2, ops.absmax2, 0, 0, /*equal_nan=*/true)) << what;
        EXPECT_TRUE(std::isnan(ops.absmax_offset) ? std::isnan(fused.absmax_offset)
                                                  : fused.absmax_offset == ops.absmax_offset)
            << what;
      } else {
        EXPECT_TRUE(at::allclose(fused.absmax, ops.absmax, 0, 0, /*equal_nan=*/true)) << what;
      }
    }
  }
}

TEST(Nf4, FusedCpuPathEqualsTensorOpPath) {
  // 2590 values: a partial last block; 39130: 612 blocks, so three double-quantisation
  // blocks of 256, the last partial (the CPU path rebuilds each block's absmax itself);
  // 15 values: no whole block; 524288: 8192 whole blocks, many chunks per thread. Where the
  // CPU has AVX-512 the whole blocks take the lane-permute path, the rest the scalar one.
  for (auto shape : {std::vector<int64_t>{37, 70}, std::vector<int64_t>{130, 301}, std::vector<int64_t>{3, 5},
                     std::vector<int64_t>{1024, 512}}) {
    for (bool dq : {false, true}) {
      at::Tensor w = at::randn(shape) * 0.2;
      Nf4Tensor q = QuantizeNf4(w, dq);
      EXPECT_TRUE(DequantizeNf4(q, at::kFloat).equal(DequantizeNf4TensorOps(q, at::kFloat)))
          << "double_quant " << dq << " " << shape[0];
      EXPECT_TRUE(DequantizeNf4(q, at::kBFloat16).equal(DequantizeNf4TensorOps(q, at::kBFloat16)));
    }
  }
}

TEST(Nf4, ScratchDequantisationEqualsAFreshOneAcrossSizes) {
  at::Tensor scratch;
  for (auto shape : {std::vector<int64_t>{64, 96}, std::vector<int64_t>{300, 129}, std::vector<int64_t>{7, 33}}) {
    for (bool dq : {false, true}) {
      Nf4Tensor q = QuantizeNf4(at::randn(shape) * 0.1, dq);
      at::Tensor fresh = DequantizeNf4(q, at::kFloat);
      at::Tensor reused = DequantizeNf4IntoScratch(q, &scratch);
      EXPECT_EQ(reused.sizes(), fresh.sizes());
      EXPECT_TRUE(at::equal(reused, fresh)) << shape[0] << "x" << shape[1] << (dq ? " dq" : "");
    }
  }
  EXPECT_EQ(scratch.numel(), 300 * 129) << "grown to the largest, never shrunk";
  // bf16 into the same scratch (replaced for the dtype, kept as large), then fp32 again: each
  // the fp32 values converted, bit for bit.
  for (at::ScalarType dtype : {at::kBFloat16, at::kFloat}) {
    Nf4Tensor q = QuantizeNf4(at::randn({70, 37}) * 0.1, true);
    at::Tensor reused = DequantizeNf4IntoScratch(q, &scratch, dtype);
    EXPECT_EQ(reused.scalar_type(), dtype);
    EXPECT_TRUE(at::equal(reused, DequantizeNf4(q, at::kFloat).to(dtype))) << dtype;
    EXPECT_TRUE(at::equal(DequantizeNf4(q, dtype), DequantizeNf4(q, at::kFloat).to(dtype))) << dtype;
    EXPECT_EQ(scratch.numel(), 300 * 129);
  }
}

TEST(Nf4, FrozenLinearGradientIsDequantisedWeight) {
  at::Tensor w = at::randn({12, 64});
  FrozenWeight fw = FrozenWeight::Quantized(QuantizeNf4(w, true));
  at::Tensor x = at::randn({3, 64}).set_requires_grad(true);
  at::Tensor y = FrozenLinear(x, fw, at::Tensor());
  at::Tensor g = at::randn({3, 12});
  y.backward(g);
  at::Tensor deq = fw.Materialize(at::kFloat);
  EXPECT_TRUE(y.allclose(at::matmul(x.detach(), deq.t()), 1e-5, 1e-6));
  EXPECT_TRUE(x.grad().allclose(at::matmul(g, deq), 1e-5, 1e-6));
}

// The graph-only projection (a checkpointed layer's recomputed down_proj) gives zeros plus
// bias and exactly FrozenLinear's gradient; without gradients it is FrozenLinear.
TEST(Nf4, GraphOnlyFrozenLinearSkipsTheProductButNotTheGradient) {
  at::Tensor w = at::randn({12, 64}), bias = at::randn({12}), g = at::randn({3, 12});
  FrozenWeight fw = FrozenWeight::Quantized(QuantizeNf4(w, true));
  at::Tensor x0 = at::randn({3, 64});
  at::Tensor x = x0.clone().set_requires_grad(true), xg = x0.clone().set_requires_grad(true);
  at::Tensor y = FrozenLinear(x, fw, bias), yg = FrozenLinearGraphOnly(xg, fw, bias);
  EXPECT_TRUE(yg.equal(bias.expand({3, 12})));
  y.backward(g);
  yg.backward(g);
  EXPECT_TRUE(xg.grad().equal(x.grad()));
  at::NoGradGuard no_grad;
  EXPECT_TRUE(FrozenLinearGraphOnly(x0, fw, bias).equal(FrozenLinear(x0, fw, bias)));
}

}  // namespace
}  // namespace polytune::engine
