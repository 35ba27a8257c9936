#include "polytune/coordinator/scheduler.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace polytune::coordinator {
namespace {
std::string Devices(int32_t n) { return absl::StrCat(n, n == 1 ? " device" : " devices"); }
}  // namespace

ScheduleDecision DecideSchedule(const std::vector<Job>& pending, const std::vector<WorkerCapacity>& workers) {
  std::vector<const Job*> order;
  for (const auto& j : pending) order.push_back(&j);
  std::stable_sort(order.begin(), order.end(), [](const Job* a, const Job* b) {
    return a->priority != b->priority ? a->priority > b->priority : a->sequence < b->sequence;
  });
  std::vector<WorkerCapacity> free = workers;
  int32_t cluster_total = 0, free_total = 0;
  for (const auto& w : free) {
    cluster_total += w.total;
    free_total += w.free;
  }
  int32_t held = 0;  // free devices reserved by blocked jobs ahead in the queue
  const Job* first_blocked = nullptr;
  ScheduleDecision d;
  for (const Job* job : order) {
    const int32_t need = job->world_size;
    if (need > cluster_total) {
      d.waiting[job->id] = absl::StrCat("needs ", Devices(need), "; the cluster has ", cluster_total,
                                        " in all (add workers or lower resources.world_size)");
      continue;
    }
    const int32_t available = free_total - held;
    if (need <= available) {
      // Fewest workers first (workers with the most free devices), so a gang spans as few
      // machines as possible.
      std::vector<size_t> idx(free.size());
      for (size_t i = 0; i < idx.size(); ++i) idx[i] = i;
      std::stable_sort(idx.begin(), idx.end(), [&](size_t a, size_t b) { return free[a].free > free[b].free; });
      Placement p{job->id, {}};
      for (size_t i : idx) {
        while (free[i].free > 0 && static_cast<int32_t>(p.rank_workers.size()) < need) {
          p.rank_workers.push_back(free[i].id);
          --free[i].free;
        }
      }
      free_total -= need;
      d.placements.push_back(std::move(p));
      continue;
    }
    if (!first_blocked) {
      d.waiting[job->id] = absl::StrCat("needs ", Devices(need), "; the largest free gang is ", available);
      first_blocked = job;
    } else {
      d.waiting[job->id] = absl::StrCat("needs ", Devices(need), "; ", available, " free but held for job ",
                                        first_blocked->id, " ahead in the queue");
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
