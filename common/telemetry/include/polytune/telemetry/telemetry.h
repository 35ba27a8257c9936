// Prometheus exposition for the daemons: the /metrics endpoint, the process_* families that
// client libraries export, polytune_build_info, and helpers for collectables that compute
// their values at scrape time. Names follow Prometheus' rules (docs/metrics.md).
#pragma once

#include <prometheus/collectable.h>
#include <prometheus/exposer.h>
#include <prometheus/metric_family.h>

#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"

namespace polytune::telemetry {

using Labels = std::map<std::string, std::string>;

// A gauge or counter family with one sample per label set.
prometheus::MetricFamily ValueFamily(const std::string& name, const std::string& help, prometheus::MetricType type,
                                     const std::vector<std::pair<Labels, double>>& samples);

// process_cpu_seconds_total, process_resident_memory_bytes, process_start_time_seconds (read
// from /proc at scrape time) and polytune_build_info{version,commit} = 1.
std::shared_ptr<prometheus::Collectable> MakeProcessCollector();

// Serves `collectables` on http://LISTEN/metrics. An empty `listen` disables the endpoint
// (returns nullptr); a port that cannot be bound is an error naming it.
absl::StatusOr<std::unique_ptr<prometheus::Exposer>> StartMetricsServer(
    const std::string& listen, const std::vector<std::shared_ptr<prometheus::Collectable>>& collectables);

// The port an exposer listens on (the first), for "HOST:0" listeners.
int ListeningPort(const prometheus::Exposer& exposer);

// Renders collectables in the text format (what /metrics serves), for tests and benchmarks.
std::string Render(const std::vector<std::shared_ptr<prometheus::Collectable>>& collectables);

}  // namespace polytune::telemetry
