#include "polytune/telemetry/telemetry.h"

#include <prometheus/text_serializer.h>
#include <unistd.h>

#include <fstream>
#include <sstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "polytune/common/build_info.h"

namespace polytune::telemetry {
namespace {

using prometheus::ClientMetric;
using prometheus::MetricFamily;
using prometheus::MetricType;

// /proc/self/stat fields after the command name: utime (14), stime (15), starttime (22), in
// clock ticks; rss (24) in pages.
struct ProcStat {
  double cpu_seconds = 0;
  double start_seconds_since_boot = 0;
  double rss_bytes = 0;
};

ProcStat ReadProcStat() {
  ProcStat s;
  std::ifstream in("/proc/self/stat");
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const size_t close = text.rfind(')');
  if (close == std::string::npos) return s;
  std::vector<std::string> f = absl::StrSplit(text.substr(close + 2), ' ');
  // f[0] is field 3 (state); field N is f[N - 3].
  const double tick = static_cast<double>(::sysconf(_SC_CLK_TCK));
  double utime = 0, stime = 0, start = 0, rss = 0;
  if (f.size() > 21 && absl::SimpleAtod(f[11], &utime) && absl::SimpleAtod(f[12], &stime) &&
      absl::SimpleAtod(f[19], &start) && absl::SimpleAtod(f[21], &rss)) {
    s.cpu_seconds = (utime + stime) / tick;
    s.start_seconds_since_boot = start / tick;
    s.rss_bytes = rss * static_cast<double>(::sysconf(_SC_PAGESIZE));
  }
  return s;
}

double BootTimeSeconds() {
  std::ifstream in("/proc/stat");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("btime ", 0) == 0) {
      double v = 0;
      if (absl::SimpleAtod(line.substr(6), &v)) return v;
    }
  return 0;
}

class ProcessCollector : public prometheus::Collectable {
 public:
  std::vector<MetricFamily> Collect() const override {
    const ProcStat s = ReadProcStat();
    return {
        ValueFamily("process_cpu_seconds_total", "Total user and system CPU time spent in seconds.",
                    MetricType::Counter, {{{}, s.cpu_seconds}}),
        ValueFamily("process_resident_memory_bytes", "Resident memory size in bytes.", MetricType::Gauge,
                    {{{}, s.rss_bytes}}),
        ValueFamily("process_start_time_seconds", "Start time of the process since unix epoch in seconds.",
                    MetricType::Gauge, {{{}, boot_ + s.start_seconds_since_boot}}),
        ValueFamily("polytune_build_info", "Polytune build: version and git commit; always 1.", MetricType::Gauge,
                    {{{{"version", BuildVersion()}, {"commit", BuildCommit()}}, 1.0}}),
    };
  }

 private:
  double boot_ = BootTimeSeconds();
};

}  // namespace

MetricFamily ValueFamily(const std::string& name, const std::string& help, MetricType type,
                         const std::vector<std::pair<Labels, double>>& samples) {
  MetricFamily f;
  f.name = name;
  f.help = help;
  f.type = type;
  for (const auto& [labels, value] : samples) {
    ClientMetric m;
    for (const auto& [k, v] : labels) m.label.push_back({k, v});
    if (type == MetricType::Counter) {
      m.counter.value = value;
    } else {
      m.gauge.value = value;
    }
    f.metric.push_back(std::move(m));
  }
  return f;
}

std::shared_ptr<prometheus::Collectable> MakeProcessCollector() { return std::make_shared<ProcessCollector>(); }

absl::StatusOr<std::unique_ptr<prometheus::Exposer>> StartMetricsServer(
    const std::string& listen, const std::vector<std::shared_ptr<prometheus::Collectable>>& collectables) {
  if (listen.empty()) return std::unique_ptr<prometheus::Exposer>();
  std::unique_ptr<prometheus::Exposer> exposer;
  try {
    exposer = std::make_unique<prometheus::Exposer>(listen, 2);
  } catch (const std::exception& e) {
    return absl::UnavailableError(absl::StrCat("cannot serve metrics on ", listen, " (", e.what(),
                                               "): is the port in use? choose another with --metrics-listen, or "
                                               "--metrics-listen \"\" to turn the endpoint off"));
  }
  for (const auto& c : collectables) exposer->RegisterCollectable(c);
  return exposer;
}

int ListeningPort(const prometheus::Exposer& exposer) {
  auto ports = exposer.GetListeningPorts();
  return ports.empty() ? 0 : ports[0];
}

std::string Render(const std::vector<std::shared_ptr<prometheus::Collectable>>& collectables) {
  std::vector<MetricFamily> families;
  for (const auto& c : collectables) {
    auto f = c->Collect();
    families.insert(families.end(), f.begin(), f.end());
  }
  return prometheus::TextSerializer().Serialize(families);
}

}  // namespace polytune::telemetry
