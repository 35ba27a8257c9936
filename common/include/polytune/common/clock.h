// Time behind an interface, so timeouts and scheduling are tested with a fake clock in
// microseconds instead of sleeps.
#pragma once

#include <atomic>
#include <cstdint>

namespace polytune {

class Clock {
 public:
  virtual ~Clock() = default;
  // Microseconds since the Unix epoch: for timestamps people read.
  virtual int64_t NowMicros() const = 0;
  // Monotonic microseconds from an arbitrary origin: for intervals, deadlines and timeouts,
  // which must not jump when the wall clock is set.
  virtual int64_t SteadyNowMicros() const = 0;
};

class SystemClock : public Clock {
 public:
  int64_t NowMicros() const override;
  int64_t SteadyNowMicros() const override;
  static SystemClock* Default();
};

// Time stands still until a test advances it; both readings move together.
class FakeClock : public Clock {
 public:
  explicit FakeClock(int64_t start_micros = 1'700'000'000'000'000) : now_(start_micros) {}
  int64_t NowMicros() const override { return now_.load(); }
  int64_t SteadyNowMicros() const override { return now_.load() - kSteadyOffset; }
  void AdvanceMicros(int64_t d) { now_ += d; }
  void AdvanceSeconds(double s) { now_ += static_cast<int64_t>(s * 1e6); }

 private:
  // The steady origin differs from the epoch, as it does on a real machine, so code that
  // mixes the two readings fails its tests.
  static constexpr int64_t kSteadyOffset = 1'600'000'000'000'000;
  std::atomic<int64_t> now_;
};

}  // namespace polytune
