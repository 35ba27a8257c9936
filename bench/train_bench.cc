// Training throughput benchmark: builds a random Llama (default hidden 512, 8 layers,
// vocab 32000), trains it with the real trainer (NF4 + LoRA r16 on all seven projections,
// activation checkpointing) on random sequences of --seq tokens, and prints one JSON object:
// tokens/s, peak RSS, bytes per quantised parameter, and the step's matmul FLOP rate relative
// to plain sgemm on the same shapes, timed right after each step in the same process; that
// ratio without LoRA's rank-r products (matmul_efficiency_vs_sgemm: their time counts against
// the step) and with them on both sides (matmul_efficiency_with_lora_vs_sgemm).
//
//   build/bench/train_bench [--hidden 512] [--layers 8] [--seq 512] [--batch 4] [--steps 6]
//                           [--vocab 32000] [--threads N] [--rank R --world W --port P]
//                           [--head-dim 64] [--kv-heads H] [--intermediate I] [--lora-r 16]
//                           [--no-quant 1] [--checkpointing 0|1] [--device cuda --peak-tflops T]
//                           [--grad-bucket-kb K]  (data parallel; 0: one all-reduce after backward)
//                           [--keep-projections 1]  (checkpointing keeps the projection products)
//                           [--compute-dtype auto|float32|bfloat16]  (training.compute_dtype)
// On CUDA (bf16 compute) it reports the allocator's peak and the matmul TFLOP/s as a fraction
// of --peak-tflops (MFU) instead of the sgemm comparison. With bf16 compute on CPU the
// reference GEMMs run in bf16 too (oneDNN's, as the step's), so the ratio stays like for like.
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <ATen/Parallel.h>

#include <torch/csrc/autograd/profiler_legacy.h>

#if defined(POLYTUNE_WITH_CUDA) && __has_include(<c10/cuda/CUDACachingAllocator.h>)
#include <c10/cuda/CUDACachingAllocator.h>
#define POLYTUNE_CUDA_ALLOCATOR_STATS 1
#endif

#include "bench_model.h"
#include "nlohmann/json.hpp"
#include "polytune/engine/batched_matmul.h"
#include "polytune/engine/blocked_attention.h"
#include "polytune/engine/chunked_loss.h"
#include "polytune/engine/communicator.h"
#include "polytune/engine/cpu_threads.h"
#include "polytune/engine/model_io.h"
#include "polytune/engine/model_loader.h"
#include "polytune/engine/train_config.h"
#include "polytune/engine/trainer.h"

using namespace polytune::engine;
namespace fs = std::filesystem;

namespace {

struct Args {
  int64_t hidden = 512, layers = 8, seq = 512, batch = 4, steps = 6, vocab = 32000, threads = 0;
  int64_t head_dim = 64, kv_heads = 0, intermediate = 0, lora_r = 16;
  int rank = -1, world = 1, port = 0;
  std::string device = "cpu";
  std::string work = "/tmp/polytune-bench";
};

// FLOPs of the matmuls one optimizer step executes. Projections run forward and once more
// for the input gradient (2P); with activation checkpointing also in the recompute, except
// down_proj, whose product the recompute skips (P - D). Attention's two products run forward
// and four in backward (3A), plus the two again in the recompute (4A). lm_head runs forward
// and for its input gradient, both in the forward pass of the fused chunked cross-entropy
// (2H). With checkpointing that keeps the projections' products, the recompute runs no
// projection (2P + 4A + 2H). LoRA's rank-r products are left out of Total; LoraTotal counts
// them: per adapted projection the two forward products (x A^T, h B^T: L) and four in
// backward (B's and A's input and weight gradients, 2L), and with checkpointing the forward
// two again in every recompute (4L), down_proj's included (its LoRA values are needed).
struct StepFlops {
  double projections = 0, down = 0, attention = 0, head = 0, lora = 0;
  double LoraTotal(bool checkpointing) const { return (checkpointing ? 4 : 3) * lora; }
  double Total(bool checkpointing, bool keeps_projections = false) const {
    if (checkpointing && keeps_projections) return 2 * projections + 4 * attention + 2 * head;
    return checkpointing ? 3 * projections - down + 4 * attention + 2 * head
                         : 2 * projections + 3 * attention + 2 * head;
  }
};

// (query, key) pairs attention computes per head: on CPU, sequences of two blocks or more run
// blocked causal attention, whose query block i only meets keys [0, end of block i) (at seq
// 512, 5/8 of seq^2); shorter ones compute all seq^2.
double AttentionPairs(int64_t seq) {
  if (seq < 2 * kAttentionBlock) return static_cast<double>(seq) * seq;
  double pairs = 0;
  for (int64_t start = 0; start < seq; start += kAttentionBlock) {
    const int64_t rows = std::min(kAttentionBlock, seq - start);
    pairs += static_cast<double>(rows) * (start + rows);
  }
  return pairs;
}

StepFlops CountFlops(const ModelConfig& c, int64_t batch, int64_t seq, bool cuda = false, int64_t lora_r = 0) {
  const double rows = static_cast<double>(batch * seq);
  const double h = c.hidden_size, q = c.num_attention_heads * c.head_dim, kv = c.num_key_value_heads * c.head_dim,
               inter = c.intermediate_size;
  StepFlops f;
  f.projections = c.num_hidden_layers * 2.0 * rows * (h * q + 2 * h * kv + q * h + 3 * h * inter);
  f.down = c.num_hidden_layers * 2.0 * rows * inter * h;
  // On CUDA, SDPA's causal kernels skip the masked half in their own way; counted whole there.
  const double pairs = cuda ? static_cast<double>(seq) * seq : AttentionPairs(seq);
  f.attention = c.num_hidden_layers * 2.0 * (2.0 * batch * c.num_attention_heads * pairs * c.head_dim);
  f.head = 2.0 * rows * h * c.vocab_size;
  f.lora =
      lora_r > 0 ? c.num_hidden_layers * 2.0 * rows * lora_r * (h + q + 2 * (h + kv) + q + h + 3 * (h + inter)) : 0;
  return f;
}

// Seconds for exactly those matmuls as plain GEMMs in the compute dtype, run once after every training step
// so that each step is compared with a reference timed seconds later, on the same VM state:
// this machine's speed drifts by 2x over minutes, which made a reference timed once, before
// or after training, meaningless as a ratio. Inputs are made before the clock starts and freed
// after each run (so they never add to the training's peak RSS); their values do not affect
// GEMM speed, so they are constants. lm_head runs in the row chunks the fused cross-entropy uses.
class SgemmReference {
 public:
  SgemmReference(const ModelConfig& c, int64_t batch, int64_t seq, bool checkpointing, bool keeps_projections,
                 at::ScalarType dtype, int64_t lora_r)
      : c_(c),
        batch_(batch),
        seq_(seq),
        checkpointing_(checkpointing),
        keeps_projections_(keeps_projections),
        dtype_(dtype),
        lora_r_(lora_r) {}

  // Seconds for the matmuls StepFlops::Total counts, and for LoRA's (LoraTotal), timed apart.
  struct Seconds {
    double counted = 0, lora = 0;
  };

  Seconds RunOnce() const {
    const int64_t rows = batch_ * seq_;
    const int64_t h = c_.hidden_size, q = c_.num_attention_heads * c_.head_dim,
                  kv = c_.num_key_value_heads * c_.head_dim, inter = c_.intermediate_size;
    auto make = [this](std::initializer_list<int64_t> shape) { return at::full(shape, 0.01f, at::dtype(dtype_)); };
    struct Shape {
      at::Tensor x, w, g;
    };
    std::vector<Shape> proj;
    for (auto [in, out] :
         std::vector<std::pair<int64_t, int64_t>>{{h, q}, {h, kv}, {h, kv}, {q, h}, {h, inter}, {h, inter}, {inter, h}})
      proj.push_back({make({rows, in}), make({out, in}), make({rows, out})});
    // Attention's products in the blocks the step runs (a block of queries against the keys
    // so far; see AttentionPairs), as the fastest batched GEMM the engine has (one GEMM per
    // head, heads split across threads where that applies), not libtorch 1.13's CPU bmm.
    const int64_t bh = batch_ * c_.num_attention_heads;
    std::vector<std::pair<at::Tensor, at::Tensor>> attention;  // (queries, keys^T) per block
    const int64_t block = seq_ < 2 * kAttentionBlock ? seq_ : kAttentionBlock;
    for (int64_t start = 0; start < seq_; start += block) {
      const int64_t rows = std::min(block, seq_ - start);
      attention.emplace_back(make({bh, rows, c_.head_dim}),
                             make({bh, c_.head_dim, block == seq_ ? seq_ : start + rows}));
    }
    const int64_t chunk = std::min(rows, LossChunkRows(c_.vocab_size));
    at::Tensor hx = make({chunk, h}), hw = make({c_.vocab_size, h}), hg = make({chunk, c_.vocab_size});
    auto t0 = std::chrono::steady_clock::now();
    for (int64_t l = 0; l < c_.num_hidden_layers; ++l) {
      for (size_t p = 0; p < proj.size(); ++p) {
        const Shape& s = proj[p];
        at::matmul(s.x, s.w.t());  // forward
        if (checkpointing_ && !keeps_projections_ && p + 1 < proj.size())
          at::matmul(s.x, s.w.t());  // recompute (not down_proj)
        at::matmul(s.g, s.w);        // input gradient
      }
      // Scores and probs @ V have the same FLOPs: 2 fwd (+2 recompute) + 4 bwd products.
      for (int i = 0; i < (checkpointing_ ? 8 : 6); ++i)
        for (const auto& [qb, kb] : attention) BatchedMatmul(qb, kb);
    }
    for (int64_t b = 0; b < rows; b += chunk) {
      const int64_t n = std::min(chunk, rows - b);
      at::matmul(hx.narrow(0, 0, n), hw.t());  // logits
      at::matmul(hg.narrow(0, 0, n), hw);      // hidden gradient
    }
    Seconds seconds;
    seconds.counted = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (lora_r_ <= 0) return seconds;
    // LoRA's products on each projection's input x [rows, in] and output gradient g [rows, out]:
    // A [r, in], B [out, r], h [rows, r] (also standing in for h's gradient).
    std::vector<std::array<at::Tensor, 3>> adapters;
    for (const Shape& s : proj)
      adapters.push_back({make({lora_r_, s.x.size(1)}), make({s.w.size(0), lora_r_}), make({rows, lora_r_})});
    t0 = std::chrono::steady_clock::now();
    for (int64_t l = 0; l < c_.num_hidden_layers; ++l) {
      for (size_t p = 0; p < proj.size(); ++p) {
        const Shape& s = proj[p];
        const auto& [la, lb, lh] = adapters[p];
        for (int pass = 0; pass < (checkpointing_ ? 2 : 1); ++pass) {  // forward (+ recompute)
          at::matmul(s.x, la.t());
          at::matmul(lh, lb.t());
        }
        at::matmul(s.g, lb);      // h's gradient
        at::matmul(s.g.t(), lh);  // B's gradient
        at::matmul(lh, la);       // the input's gradient through A
        at::matmul(lh.t(), s.x);  // A's gradient
      }
    }
    seconds.lora = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    return seconds;
  }

 private:
  ModelConfig c_;
  int64_t batch_, seq_;
  bool checkpointing_, keeps_projections_;
  at::ScalarType dtype_;
  int64_t lora_r_;
};

double Median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v.size() % 2 ? v[v.size() / 2] : 0.5 * (v[v.size() / 2 - 1] + v[v.size() / 2]);
}

int64_t ArgValue(int argc, char** argv, const char* name, int64_t fallback) {
  for (int i = 1; i + 1 < argc; ++i)
    if (std::strcmp(argv[i], name) == 0) return std::atoll(argv[i + 1]);
  return fallback;
}

std::string ArgString(int argc, char** argv, const char* name, const std::string& fallback) {
  for (int i = 1; i + 1 < argc; ++i)
    if (std::strcmp(argv[i], name) == 0) return argv[i + 1];
  return fallback;
}

}  // namespace

int main(int argc, char** argv) {
  ReexecWithTunedCpuEnvironment(argc, argv);
  Args a;
  a.hidden = ArgValue(argc, argv, "--hidden", a.hidden);
  a.layers = ArgValue(argc, argv, "--layers", a.layers);
  a.seq = ArgValue(argc, argv, "--seq", a.seq);
  a.batch = ArgValue(argc, argv, "--batch", a.batch);
  a.steps = ArgValue(argc, argv, "--steps", a.steps);
  a.vocab = ArgValue(argc, argv, "--vocab", a.vocab);
  a.threads = ArgValue(argc, argv, "--threads", 0);
  const int64_t skip_sgemm = ArgValue(argc, argv, "--skip-sgemm", 0);
  a.rank = static_cast<int>(ArgValue(argc, argv, "--rank", -1));
  a.world = static_cast<int>(ArgValue(argc, argv, "--world", 1));
  a.port = static_cast<int>(ArgValue(argc, argv, "--port", 0));
  a.head_dim = ArgValue(argc, argv, "--head-dim", a.head_dim);
  a.kv_heads = ArgValue(argc, argv, "--kv-heads", 0);
  a.intermediate = ArgValue(argc, argv, "--intermediate", 0);
  a.lora_r = ArgValue(argc, argv, "--lora-r", a.lora_r);
  a.device = ArgString(argc, argv, "--device", a.device);
  a.work = ArgString(argc, argv, "--work", a.work);
  const bool cuda = a.device == "cuda";
  const int threads = a.threads > 0 ? static_cast<int>(a.threads)
                                    : std::max(1, static_cast<int>(std::thread::hardware_concurrency()) / a.world);
  ConfigureCpuThreads(threads);

  ModelConfig mc = polytune::bench::BenchModelConfig(a.hidden, a.layers, a.vocab);
  mc.head_dim = a.head_dim;
  mc.num_attention_heads = a.hidden / a.head_dim;
  mc.num_key_value_heads = a.kv_heads > 0 ? a.kv_heads : mc.num_attention_heads;
  if (a.intermediate > 0) mc.intermediate_size = a.intermediate;
  const std::string model_dir = a.work + "/model-" + std::to_string(a.hidden) + "x" + std::to_string(a.layers) + "-" +
                                std::to_string(mc.num_key_value_heads) + "kv-" + std::to_string(mc.intermediate_size) +
                                "-" + std::to_string(a.vocab) + (cuda ? "-bf16" : "");
  if (a.rank <= 0 && !fs::exists(model_dir + "/config.json")) {
    // On CUDA the base is written in bf16, as Hugging Face checkpoints of these shapes are.
    absl::Status st = WriteRandomModel(model_dir, mc, 1, cuda ? "bfloat16" : "float32");
    if (!st.ok()) {
      std::fprintf(stderr, "%s\n", std::string(st.message()).c_str());
      return 1;
    }
  }
  const std::string data = a.work + "/data-" + std::to_string(a.seq) + ".jsonl";
  if (a.rank <= 0) {
    std::mt19937 gen(3);
    std::ofstream out(data + ".tmp");
    for (int i = 0; i < 64; ++i) {
      nlohmann::json ids = nlohmann::json::array();
      for (int64_t t = 0; t < a.seq; ++t) ids.push_back(static_cast<int64_t>(gen() % a.vocab));
      out << nlohmann::json{{"input_ids", ids}, {"lang", i % 2 ? "es" : "en"}}.dump() << "\n";
    }
    out.close();
    fs::rename(data + ".tmp", data);
  }
  TrainConfig cfg;
  cfg.model.path = model_dir;
  cfg.data.train = polytune::spec::DatasetRef::Path(data);
  cfg.data.max_seq_len = a.seq;
  cfg.training.max_steps = a.steps;
  cfg.training.micro_batch_size = a.world > 1 ? a.batch / a.world : a.batch;
  cfg.training.lr = 1e-4;
  if (ArgValue(argc, argv, "--no-quant", 0)) cfg.model.quantization = Quantization::kNone;
  cfg.training.gradient_checkpointing = ArgValue(argc, argv, "--checkpointing", 1) != 0;
  // --keep-projections 1: checkpointing keeps the projections' products (no GEMMs recomputed).
  cfg.training.checkpoint_keeps_projections = ArgValue(argc, argv, "--keep-projections", 0) != 0;
  cfg.lora.dropout = static_cast<double>(ArgValue(argc, argv, "--dropout-percent", 5)) / 100.0;
  cfg.lora.r = a.lora_r;
  cfg.lora.alpha = 2.0 * a.lora_r;
  cfg.training.device = a.device;
  cfg.training.compute_dtype = ArgString(argc, argv, "--compute-dtype", "auto");
  auto parsed_dtype = ParseComputeDtype(cfg.training.compute_dtype);
  if (!parsed_dtype.ok()) {
    std::fprintf(stderr, "%s\n", std::string(parsed_dtype.status().message()).c_str());
    return 1;
  }
  const at::ScalarType compute_dtype = parsed_dtype->value_or(DefaultComputeDtype(cuda ? at::kCUDA : at::kCPU));
  // --grad-bucket-kb K: data-parallel all-reduce buckets (0: one all-reduce after backward).
  if (const int64_t kb = ArgValue(argc, argv, "--grad-bucket-kb", -1); kb >= 0)
    cfg.training.grad_bucket_mb = static_cast<double>(kb) / 1024.0;
  cfg.output_dir = a.work + "/run-" + std::to_string(a.world) + "-" + std::to_string(std::max(0, a.rank));

  std::unique_ptr<Communicator> comm;
  if (a.rank >= 0) {
    RendezvousOptions ro;
    ro.master_port = a.port;
    ro.rank = a.rank;
    ro.world_size = a.world;
    ro.cuda = cuda;
    auto c = ConnectProcessGroup(ro);
    if (!c.ok()) {
      std::fprintf(stderr, "%s\n", std::string(c.status().message()).c_str());
      return 1;
    }
    comm = std::move(*c);
  } else {
    comm = MakeSingleProcessCommunicator();
  }
  std::vector<double> step_tps;
  std::vector<SgemmReference::Seconds> sgemm_seconds;
  const bool compare_with_sgemm = !cuda && a.world == 1 && !skip_sgemm;
  const bool keeps = cfg.training.checkpoint_keeps_projections;
  SgemmReference reference(mc, a.batch, a.seq, cfg.training.gradient_checkpointing, keeps, compute_dtype, a.lora_r);
  TrainRunOptions opts;
  opts.progress = false;
  opts.on_record = [&](const polytune::MetricsRecord& r) {
    const auto* s = std::get_if<polytune::StepMetrics>(&r.value);
    if (s == nullptr) return;
    step_tps.push_back(s->tokens_per_second);
    // The trainer times each step itself, so the reference run here is outside every step.
    if (compare_with_sgemm) sgemm_seconds.push_back(reference.RunOnce());
  };
  // --profile FILE: chrome trace of the whole run (torch's legacy profiler), for finding
  // where non-matmul time goes.
  std::unique_ptr<torch::autograd::profiler::RecordProfile> profile;
  for (int i = 1; i + 1 < argc; ++i)
    if (std::strcmp(argv[i], "--profile") == 0)
      profile = std::make_unique<torch::autograd::profiler::RecordProfile>(argv[i + 1]);
  auto summary = RunTraining(cfg, *comm, opts);
  profile.reset();
  if (!summary.ok()) {
    std::fprintf(stderr, "%s\n", std::string(summary.status().message()).c_str());
    return 1;
  }
  if (comm->rank() != 0) return 0;
  // Medians over steps after the first (warm-up).
  const size_t warm = std::min<size_t>(1, step_tps.size());
  const double tokens_per_second = Median(std::vector<double>(step_tps.begin() + warm, step_tps.end()));
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);

  LoadOptions lo;
  auto model = LoadModel(model_dir, lo);
  const double bytes_per_qparam =
      model.ok() ? static_cast<double>((*model)->QuantizedBytes()) / (*model)->QuantizedParameterCount() : 0;

  nlohmann::json out = {{"hidden", a.hidden},
                        {"layers", a.layers},
                        {"vocab", a.vocab},
                        {"seq", a.seq},
                        {"global_batch", a.batch},
                        {"world_size", a.world},
                        {"threads_per_rank", threads},
                        {"grad_bucket_mb", cfg.training.grad_bucket_mb},
                        {"tokens_per_second", tokens_per_second},
                        {"peak_rss_bytes", static_cast<int64_t>(ru.ru_maxrss) * 1024},
                        {"bytes_per_quantized_param", bytes_per_qparam}};
  out["device"] = a.device;
  out["openblas_core"] = OpenBlasCoreName();       // the GEMM kernels (OPENBLAS_CORETYPE), "" without OpenBLAS
  out["openblas_library"] = LoadedOpenBlasPath();  // which build: openblas-openmp/ or openblas-pthread/
  out["lora_r"] = a.lora_r;
  out["quantization"] = ArgValue(argc, argv, "--no-quant", 0) ? "none" : "nf4";
  out["checkpointing"] = cfg.training.gradient_checkpointing;
  out["checkpoint_keeps_projections"] = keeps;
  out["compute_dtype"] = compute_dtype == at::kBFloat16 ? "bfloat16" : "float32";
  if (!cuda) out["cpu_native_bf16_matmul"] = CpuHasNativeBf16Matmul();
  if (cuda) {
    const double step_seconds = static_cast<double>(a.batch * a.seq) / tokens_per_second;
    const double flops = CountFlops(mc, a.batch, a.seq, cuda).Total(cfg.training.gradient_checkpointing, keeps);
    const double peak_tflops = static_cast<double>(ArgValue(argc, argv, "--peak-tflops", 0));
    out["matmul_tflop_per_step"] = flops / 1e12;
    out["matmul_tflop_per_s"] = flops / step_seconds / 1e12;
    if (peak_tflops > 0) out["mfu"] = flops / step_seconds / 1e12 / peak_tflops;
#ifdef POLYTUNE_CUDA_ALLOCATOR_STATS
    const auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(0);
    out["cuda_peak_allocated_bytes"] = stats.allocated_bytes[0].peak;  // index 0: all pools
    out["cuda_peak_reserved_bytes"] = stats.reserved_bytes[0].peak;
#endif
  } else if (compare_with_sgemm) {
    // Each step against the reference run right after it; the ratio's median and every ratio.
    const StepFlops counted = CountFlops(mc, a.batch, a.seq, cuda, a.lora_r);
    const double flops = counted.Total(cfg.training.gradient_checkpointing, keeps);
    const double lora_flops = counted.LoraTotal(cfg.training.gradient_checkpointing);
    std::vector<double> ratios, sgemm_rates, ratios_with_lora;
    for (size_t i = warm; i < step_tps.size() && i < sgemm_seconds.size(); ++i) {
      const double step_seconds = static_cast<double>(a.batch * a.seq) / step_tps[i];
      ratios.push_back(sgemm_seconds[i].counted / step_seconds);
      ratios_with_lora.push_back((sgemm_seconds[i].counted + sgemm_seconds[i].lora) / step_seconds);
      sgemm_rates.push_back(flops / sgemm_seconds[i].counted / 1e9);
    }
    const double step_seconds = static_cast<double>(a.batch * a.seq) / tokens_per_second;
    out["matmul_gflop_per_step"] = flops / 1e9;
    out["step_seconds"] = step_seconds;
    out["step_matmul_gflop_per_s"] = flops / step_seconds / 1e9;
    out["sgemm_gflop_per_s_same_shapes"] = Median(sgemm_rates);  // GEMMs in the compute dtype
    out["matmul_efficiency_vs_sgemm"] = Median(ratios);
    out["matmul_efficiency_vs_sgemm_per_step"] = ratios;
    // LoRA's rank-r products are matmuls the step runs too: counted here, with plain GEMMs of
    // their shapes in the reference (which run far below the projections' rate).
    out["lora_matmul_gflop_per_step"] = lora_flops / 1e9;
    out["matmul_efficiency_with_lora_vs_sgemm"] = Median(ratios_with_lora);
  }
  std::printf("%s\n", out.dump().c_str());
  return 0;
}
