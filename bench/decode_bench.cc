// Generation benchmark: the bench model of train_bench (random Llama, hidden 512, 8 layers,
// vocab 32000, head_dim 64), NF4 base + a LoRA adapter (r16, all seven projections), greedy
// decoding with the KV cache. Prefill and decode are timed separately at each batch size, and
// decoding without a cache (the whole sequence rerun per token) gives the cache's speedup.
// Prints one JSON object.
//
//   build/bench/decode_bench [--hidden 512] [--layers 8] [--vocab 32000] [--prompt 128]
//                            [--new 64] [--batches 1,8] [--quantization nf4|none] [--threads N]
#include <sys/resource.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "bench_model.h"
#include "nlohmann/json.hpp"
#include "polytune/engine/cpu_threads.h"
#include "polytune/engine/generation.h"
#include "polytune/engine/model_io.h"
#include "polytune/engine/model_loader.h"

using namespace polytune::engine;
namespace fs = std::filesystem;

namespace {

using Clock = std::chrono::steady_clock;
double Since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

int64_t PeakRssBytes() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<int64_t>(u.ru_maxrss) * 1024;
}

struct Args {
  int64_t hidden = 512, layers = 8, vocab = 32000, prompt = 128, new_tokens = 64, threads = 0;
  std::vector<int64_t> batches = {1, 8};
  std::string quantization = "nf4", work = "/tmp/polytune-decode-bench";
};

// One greedy run with the cache: (prefill seconds, decode seconds, cache bytes per token).
struct Timing {
  double prefill = 0, decode = 0;
  int64_t cache_bytes_per_token = 0;
};

Timing CachedRun(const LlamaModel& model, const at::Tensor& prompts, int64_t new_tokens) {
  at::NoGradGuard no_grad;
  const int64_t batch = prompts.size(0), len = prompts.size(1);
  KvCache cache = model.NewKvCache(batch, len + new_tokens);
  Timing t;
  t.cache_bytes_per_token = cache.BytesPerToken();
  auto start = Clock::now();
  at::Tensor positions = at::arange(len, at::kLong).unsqueeze(0).expand({batch, len}).contiguous();
  at::Tensor hidden = model.ForwardCached(prompts, positions, &cache);
  at::Tensor next = model.Logits(hidden.select(1, len - 1)).argmax(-1);
  t.prefill = Since(start);
  start = Clock::now();
  for (int64_t s = 0; s + 1 < new_tokens; ++s) {
    hidden = model.ForwardCached(next.view({batch, 1}), at::full({batch, 1}, len + s, at::kLong), &cache);
    next = model.Logits(hidden.select(1, 0)).argmax(-1);
  }
  t.decode = Since(start);
  return t;
}

// Greedy tokens/s without a cache: every step reruns the whole sequence.
double UncachedTokensPerSecond(const LlamaModel& model, const at::Tensor& prompts, int64_t new_tokens) {
  at::NoGradGuard no_grad;
  at::Tensor seq = prompts;
  const auto start = Clock::now();
  for (int64_t s = 0; s < new_tokens; ++s) {
    at::Tensor hidden = model.ForwardHidden(seq, ForwardOptions{});
    at::Tensor next = model.Logits(hidden.select(1, seq.size(1) - 1)).argmax(-1);
    seq = at::cat({seq, next.view({-1, 1})}, 1);
  }
  return static_cast<double>(prompts.size(0) * new_tokens) / Since(start);
}

bool Parse(int argc, char** argv, Args* a) {
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i], v = argv[i + 1];
    int64_t n = 0;
    const bool num = absl::SimpleAtoi(v, &n);
    if (k == "--hidden" && num)
      a->hidden = n;
    else if (k == "--layers" && num)
      a->layers = n;
    else if (k == "--vocab" && num)
      a->vocab = n;
    else if (k == "--prompt" && num)
      a->prompt = n;
    else if (k == "--new" && num)
      a->new_tokens = n;
    else if (k == "--threads" && num)
      a->threads = n;
    else if (k == "--quantization")
      a->quantization = v;
    else if (k == "--batches") {
      a->batches.clear();
      for (absl::string_view b : absl::StrSplit(v, ',')) {
        if (!absl::SimpleAtoi(b, &n) || n < 1) return false;
        a->batches.push_back(n);
      }
    } else {
      return false;
    }
  }
  return argc % 2 == 1;
}

}  // namespace

int main(int argc, char** argv) {
  ReexecWithTunedCpuEnvironment(argc, argv);
  Args a;
  if (!Parse(argc, argv, &a)) {
    std::fprintf(stderr,
                 "usage: decode_bench [--hidden N] [--layers N] [--vocab N] [--prompt N] [--new N] [--batches 1,8] "
                 "[--quantization nf4|none] [--threads N]\n");
    return 2;
  }
  const int threads =
      a.threads > 0 ? static_cast<int>(a.threads) : static_cast<int>(std::thread::hardware_concurrency());
  ConfigureCpuThreads(threads);
  const ModelConfig mc = polytune::bench::BenchModelConfig(a.hidden, a.layers, a.vocab);
  const std::string model_dir = a.work + "/model";
  fs::create_directories(model_dir);
  if (absl::Status st = WriteRandomModel(model_dir, mc, 1); !st.ok()) {
    std::fprintf(stderr, "decode_bench: %s\n", std::string(st.message()).c_str());
    return 1;
  }
  LoadOptions lo;
  lo.quantization = a.quantization == "none" ? Quantization::kNone : Quantization::kNf4;
  auto model = LoadModel(model_dir, lo);
  if (!model.ok()) {
    std::fprintf(stderr, "decode_bench: %s\n", std::string(model.status().message()).c_str());
    return 1;
  }
  LoraSettings lora;
  lora.r = 16;
  lora.alpha = 32;
  lora.target_modules = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"};
  (*model)->AttachLora(lora, 7);
  {  // B = 0 would make the adapter a no-op; give it weights so its matmuls are real work.
    at::NoGradGuard no_grad;
    for (auto& [name, t] : (*model)->LoraParameters()) t.normal_(0, 0.01);
  }
  std::mt19937_64 rng(5);
  nlohmann::json out = {{"model", {{"hidden", a.hidden}, {"layers", a.layers}, {"vocab", a.vocab}}},
                        {"quantization", a.quantization},
                        {"adapter", "LoRA r16 on all seven projections"},
                        {"threads", threads},
                        {"prompt_tokens", a.prompt},
                        {"new_tokens", a.new_tokens},
                        {"runs", nlohmann::json::array()}};
  for (int64_t batch : a.batches) {
    std::vector<int64_t> ids(static_cast<size_t>(batch * a.prompt));
    for (auto& id : ids) id = static_cast<int64_t>(rng() % static_cast<uint64_t>(a.vocab));
    at::Tensor prompts = at::tensor(ids, at::kLong).view({batch, a.prompt});
    CachedRun(**model, prompts.narrow(1, 0, 16), 4);  // warm-up: thread pool, allocator
    Timing best;
    for (int rep = 0; rep < 3; ++rep) {
      Timing t = CachedRun(**model, prompts, a.new_tokens);
      if (rep == 0 || t.prefill + t.decode < best.prefill + best.decode) best = t;
    }
    const int64_t uncached_tokens = std::min<int64_t>(a.new_tokens, 16);
    const double uncached = UncachedTokensPerSecond(**model, prompts, uncached_tokens);
    const double decode_tps = static_cast<double>(batch * (a.new_tokens - 1)) / best.decode;
    out["runs"].push_back(
        {{"batch", batch},
         {"prefill_tokens_per_s", static_cast<double>(batch * a.prompt) / best.prefill},
         {"prefill_ms", best.prefill * 1e3},
         {"decode_tokens_per_s", decode_tps},
         {"decode_ms_per_step", best.decode * 1e3 / static_cast<double>(a.new_tokens - 1)},
         {"uncached_decode_tokens_per_s", uncached},
         {"kv_cache_speedup", decode_tps / uncached},
         {"kv_cache_bytes_per_token", best.cache_bytes_per_token},
         {"kv_cache_bytes_at_capacity", best.cache_bytes_per_token * batch * (a.prompt + a.new_tokens)}});
  }
  out["base_weight_bytes"] = (*model)->BaseWeightBytes();
  out["peak_rss_bytes"] = PeakRssBytes();
  std::printf("%s\n", out.dump(2).c_str());
  fs::remove_all(a.work);
  return 0;
}
