#include "polytune/engine/cpu_threads.h"

#include <dlfcn.h>
#include <unistd.h>
#if defined(__x86_64__)
#include <cpuid.h>
#endif

#include <cstdlib>
#include <string>
#include <vector>

#include <ATen/Parallel.h>

namespace polytune::engine {
namespace {

// Whether the core's GEMM kernels use AVX2 + FMA or wider (not SSE-era, AVX1 or unknown ones).
bool WideKernels(std::string_view core) {
  for (std::string_view wide : {"SkylakeX", "Cooperlake", "SapphireRapids", "Haswell", "Zen", "Excavator"})
    if (core == wide) return true;
  return false;
}

}  // namespace

bool CpuHasAvx2Fma() {
#if defined(__x86_64__) || defined(__i386__)
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
  return false;
#endif
}

bool CpuHasAvx512() {
#if defined(__x86_64__) || defined(__i386__)
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
         __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512cd");
#else
  return false;
#endif
}

bool CpuHasNativeBf16Matmul() {
#if defined(__x86_64__)
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  if (!CpuHasAvx512() || !__get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx)) return false;
  const bool amx_bf16 = (edx >> 22) & 1u;
  if (!__get_cpuid_count(7, 1, &eax, &ebx, &ecx, &edx)) return amx_bf16;
  const bool avx512_bf16 = (eax >> 5) & 1u;
  return amx_bf16 || avx512_bf16;
#else
  return false;
#endif
}

void ConfigureCpuThreads(int threads) {
  if (threads < 1) threads = 1;
  at::set_num_threads(threads);
  using SetThreads = void (*)(int);
  if (auto fn = reinterpret_cast<SetThreads>(::dlsym(RTLD_DEFAULT, "openblas_set_num_threads"))) fn(threads);
}

std::string OpenBlasCoreName() {
  using CoreName = char* (*)();
  auto fn = reinterpret_cast<CoreName>(::dlsym(RTLD_DEFAULT, "openblas_get_corename"));
  const char* name = fn != nullptr ? fn() : nullptr;
  return name != nullptr ? std::string(name) : std::string();
}

std::string OpenBlasCoreTypeToForce(std::string_view detected, bool avx2_fma, bool avx512) {
  if (detected.empty() || WideKernels(detected)) return "";
  if (avx512) return "SkylakeX";
  if (avx2_fma) return "Haswell";
  return "";
}

int OpenBlasThreading() {
  using GetParallel = int (*)();
  auto fn = reinterpret_cast<GetParallel>(::dlsym(RTLD_DEFAULT, "openblas_get_parallel"));
  return fn != nullptr ? fn() : -1;
}

std::string LoadedOpenBlasPath() {
  void* fn = ::dlsym(RTLD_DEFAULT, "openblas_get_parallel");
  Dl_info info{};
  if (fn == nullptr || ::dladdr(fn, &info) == 0 || info.dli_fname == nullptr) return "";
  // Loaded through symlinks (/lib/<triplet>/libopenblas.so.0 -> /etc/alternatives/...): the
  // real file says which build it is.
  char* real = ::realpath(info.dli_fname, nullptr);
  if (real == nullptr) return info.dli_fname;
  std::string path(real);
  std::free(real);
  return path;
}

std::string OpenMpOpenBlasDirectory(std::string_view loaded_library, bool (*exists)(const std::string&)) {
  constexpr std::string_view kPthreadDir = "/openblas-pthread/";
  const size_t at = loaded_library.rfind(kPthreadDir);
  if (at == std::string_view::npos) return "";
  const std::string dir = std::string(loaded_library.substr(0, at)) + "/openblas-openmp";
  return exists(dir + "/libopenblas.so.0") ? dir : "";
}

void ReexecWithTunedCpuEnvironment(int argc, char** argv) {
  // Set by the re-executed process's parent: never exec twice (if a change did not take, say
  // LD_LIBRARY_PATH overridden by an RPATH, carry on rather than loop).
  constexpr const char* kTunedMarker = "POLYTUNE_CPU_ENVIRONMENT_TUNED";
  if (std::getenv(kTunedMarker) != nullptr) return;
  bool changed = false;
  if (std::getenv("OMP_WAIT_POLICY") == nullptr) {
    ::setenv("OMP_WAIT_POLICY", "PASSIVE", 1);
    changed = true;
  }
  if (std::getenv("OPENBLAS_CORETYPE") == nullptr) {
    const std::string core = OpenBlasCoreTypeToForce(OpenBlasCoreName(), CpuHasAvx2Fma(), CpuHasAvx512());
    if (!core.empty()) {
      ::setenv("OPENBLAS_CORETYPE", core.c_str(), 1);
      changed = true;
    }
  }
  if (OpenBlasThreading() == 1 && std::getenv("POLYTUNE_OPENBLAS_PTHREADS") == nullptr) {
    const std::string dir = OpenMpOpenBlasDirectory(
        LoadedOpenBlasPath(), [](const std::string& path) { return ::access(path.c_str(), R_OK) == 0; });
    if (!dir.empty()) {
      const char* old = std::getenv("LD_LIBRARY_PATH");
      const std::string value = old != nullptr && *old != '\0' ? dir + ":" + old : dir;
      ::setenv("LD_LIBRARY_PATH", value.c_str(), 1);
      changed = true;
    }
  }
  if (!changed) return;
  ::setenv(kTunedMarker, "1", 1);
  std::vector<char*> args(argv, argv + argc);
  args.push_back(nullptr);
  ::execv("/proc/self/exe", args.data());
  // exec failed: carry on as we are; only speed is affected, never results' correctness.
}

}  // namespace polytune::engine
