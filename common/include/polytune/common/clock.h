// Time behind an interface, so timeouts and scheduling are tested with a fake clock in
// microseconds instead of sleeps.
#pragma once

#include <atomic>
#include <cstdint>

namespace polytune {

class Clock {
 public:
  virtual ~Clock() = default;
  // Microseconds since the Unix epoch.
  virtual int64_t NowMicros() const = 0;
};

class SystemClock : public Clock {
 public:
  int64_t NowMicros() const override;
  static SystemClock* Default();
};

class FakeClock : public Clock {
 public:
  explicit FakeClock(int64_t start_micros = 1'700'000'000'000'000) : now_(start_micros) {}
  int64_t NowMicros() const override { return now_.load(); }
  void AdvanceMicros(int64_t d) { now_ += d; }
  void AdvanceSeconds(double s) { now_ += static_cast<int64_t>(s * 1e6); }

 private:
  std::atomic<int64_t> now_;
};

}  // namespace polytune
