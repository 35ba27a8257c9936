#include "polytune/coordinator/scheduler.h"

#include <algorithm>
#include <set>

#include "absl/strings/str_cat.h"

namespace polytune::coordinator {
namespace {
std::string Devices(int32_t n) { return absl::StrCat(n, n == 1 ? " device" : " devices"); }
}  // namespace

namespace {

// Free devices by count: bucket f holds the workers with f free devices, in input order. A
// gang takes from the fullest buckets down, in input order within a bucket: the order a
// stable sort by free devices (descending) gives, without sorting every worker per placement.
class FreeDeviceIndex {
 public:
  explicit FreeDeviceIndex(const std::vector<WorkerCapacity>& workers) : free_(workers.size()) {
    int32_t most = 0;
    for (const auto& w : workers) most = std::max(most, w.free);
    buckets_.resize(static_cast<size_t>(most) + 1);
    for (size_t i = 0; i < workers.size(); ++i) {
      free_[i] = std::max(0, workers[i].free);
      if (free_[i] > 0) buckets_[free_[i]].insert(i);
    }
  }

  // Workers (with repeats, one per rank) for `need` devices; the caller checked they exist.
  std::vector<size_t> Take(int32_t need) {
    std::vector<std::pair<size_t, int32_t>> takes;  // worker, devices
    int32_t remaining = need;
    for (size_t f = buckets_.size(); f-- > 1 && remaining > 0;) {
      for (size_t i : buckets_[f]) {
        const int32_t k = std::min(static_cast<int32_t>(f), remaining);
        takes.emplace_back(i, k);
        remaining -= k;
        if (remaining == 0) break;
      }
    }
    std::vector<size_t> ranks;
    for (const auto& [i, k] : takes) {
      buckets_[free_[i]].erase(i);
      free_[i] -= k;
      if (free_[i] > 0) buckets_[free_[i]].insert(i);
      for (int32_t r = 0; r < k; ++r) ranks.push_back(i);
    }
    return ranks;
  }

 private:
  std::vector<int32_t> free_;
  std::vector<std::set<size_t>> buckets_;
};

}  // namespace

const std::string& ScheduleDecision::WaitingReason(const std::string& job_id) const {
  static const std::string* const kNone = new std::string();
  for (const auto& [id, why] : waiting)
    if (id == job_id) return why;
  return *kNone;
}

ScheduleDecision DecideSchedule(const std::vector<Job>& pending, const std::vector<WorkerCapacity>& workers) {
  std::vector<const Job*> order;
  order.reserve(pending.size());
  for (const auto& j : pending) order.push_back(&j);
  std::stable_sort(order.begin(), order.end(), [](const Job* a, const Job* b) {
    return a->priority != b->priority ? a->priority > b->priority : a->sequence < b->sequence;
  });
  int32_t cluster_total = 0, free_total = 0;
  for (const auto& w : workers) {
    cluster_total += w.total;
    free_total += w.free;
  }
  FreeDeviceIndex index(workers);
  int32_t held = 0;  // free devices reserved by blocked jobs ahead in the queue
  const Job* first_blocked = nullptr;
  ScheduleDecision d;
  for (const Job* job : order) {
    const int32_t need = job->world_size;
    if (need > cluster_total) {
      d.waiting.emplace_back(job->id, absl::StrCat("needs ", Devices(need), "; the cluster has ", cluster_total,
                                                   " in all (add workers or lower resources.world_size)"));
      continue;
    }
    const int32_t available = free_total - held;
    if (need <= available) {
      // Fewest workers first (workers with the most free devices), so a gang spans as few
      // machines as possible.
      Placement p{job->id, {}};
      for (size_t i : index.Take(need)) p.rank_workers.push_back(workers[i].id);
      free_total -= need;
      d.placements.push_back(std::move(p));
      continue;
    }
    if (!first_blocked) {
      d.waiting.emplace_back(job->id, absl::StrCat("needs ", Devices(need), "; the largest free gang is ", available));
      first_blocked = job;
    } else {
      d.waiting.emplace_back(job->id, absl::StrCat("needs ", Devices(need), "; ", available, " free but held for job ",
                                                   first_blocked->id, " ahead in the queue"));
    }
    held += std::min(need, available);
  }
  return d;
}

std::vector<std::string> ChoosePreemptions(const Job& waiting, int32_t free, const std::vector<PlacedJob>& placed) {
  int32_t available = free;
  std::vector<PlacedJob> candidates;
  for (const auto& p : placed) {
    if (p.stopping) {
      available += p.devices;
    } else if (p.preemptible && p.priority < waiting.priority && p.devices > 0) {
      candidates.push_back(p);
    }
  }
  if (available >= waiting.world_size) return {};
  std::sort(candidates.begin(), candidates.end(), [](const PlacedJob& a, const PlacedJob& b) {
    if (a.priority != b.priority) return a.priority < b.priority;
    return a.sequence > b.sequence;
  });
  std::vector<PlacedJob> chosen;
  for (const auto& c : candidates) {
    if (available >= waiting.world_size) break;
    chosen.push_back(c);
    available += c.devices;
  }
  if (available < waiting.world_size) return {};
  // Drop picks the rest covers, from the highest priority down (the last picked first).
  for (size_t i = chosen.size(); i-- > 0;) {
    if (available - chosen[i].devices >= waiting.world_size) {
      available -= chosen[i].devices;
      chosen.erase(chosen.begin() + static_cast<std::ptrdiff_t>(i));
    }
  }
  std::vector<std::string> out;
  for (const auto& c : chosen) out.push_back(c.id);
  return out;
}

}  // namespace polytune::coordinator
