// Scrape cost of the coordinator's /metrics: render time and size with 1,000 workers and 100
// running jobs with 20 languages each (their typed metrics fed as workers would), and the
// CPU share that costs at a 1 s scrape interval. Prints one JSON object.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include "polytune/common/clock.h"
#include "polytune/coordinator/coordinator_metrics.h"
#include "polytune/telemetry/telemetry.h"

using namespace polytune;
using namespace polytune::coordinator;

int main(int argc, char** argv) {
  const int workers = 1000, jobs = 100, langs = 20, iterations = argc > 1 ? std::atoi(argv[1]) : 50;
  FakeClock clock;
  auto store = MakeInMemoryStore();
  auto metrics = std::make_shared<CoordinatorMetrics>(&clock);
  JobManager jm(store.get(), &clock);
  jm.SetObserver(metrics.get());
  metrics->SetClusterSource([&jm] { return jm.Workers(); }, [&jm] { return jm.FreeDevices(); });
  for (int w = 0; w < workers; ++w) {
    Worker worker;
    worker.id = "w" + std::to_string(w);
    worker.incarnation = "i";
    worker.address = "10.0." + std::to_string(w / 250) + "." + std::to_string(w % 250);
    worker.devices = {{"cuda", 0, 80LL << 30}, {"cuda", 1, 80LL << 30}};
    if (!jm.RegisterWorker(worker).ok()) return 1;
  }
  std::vector<std::string> ids;
  for (int j = 0; j < jobs; ++j) {
    auto job = jm.Submit("job" + std::to_string(j), 0, 4, "spec", "/models/llama-3.2-1b");
    if (!job.ok()) return 1;
    ids.push_back(job->id);
  }
  for (const auto& job : jm.List())
    for (size_t r = 0; r < job.assigned_workers.size(); ++r)
      (void)jm.Heartbeat(job.assigned_workers[r], "i",
                         {{job.id, static_cast<int32_t>(r), RankReport::Phase::kRunning, 0, "", job.attempt}});
  for (const auto& id : ids) {
    StepMetrics s;
    s.step = 100;
    s.total_steps = 1000;
    s.loss = 1.5;
    s.tokens = 65536;
    EvalMetrics e;
    for (int l = 0; l < langs; ++l) e.languages["l" + std::to_string(l)] = {2.0, 7.4, 0.4, 1000};
    metrics->OnMetricsRecords(id, {{s}, {e}});
  }
  const std::vector<std::shared_ptr<prometheus::Collectable>> all = {metrics, metrics->shared_registry(),
                                                                     telemetry::MakeProcessCollector()};
  std::vector<double> ms;
  std::string text;
  for (int i = 0; i < iterations; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    text = telemetry::Render(all);
    ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(ms.begin(), ms.end());
  int64_t series = 0;
  for (size_t pos = 0; pos < text.size();) {
    const size_t end = text.find('\n', pos);
    if (text[pos] != '#') ++series;
    pos = end == std::string::npos ? text.size() : end + 1;
  }
  std::printf(
      "{\"workers\": %d, \"running_jobs\": %d, \"languages\": %d, \"series\": %lld, \"bytes\": %zu, "
      "\"render_ms_p50\": %.3f, \"render_ms_p95\": %.3f, \"cpu_share_at_1s_scrape\": %.5f}\n",
      workers, jobs, langs, static_cast<long long>(series), text.size(), ms[ms.size() / 2],
      ms[std::min(ms.size() - 1, ms.size() * 95 / 100)], ms[ms.size() / 2] / 1000.0);
  return 0;
}
