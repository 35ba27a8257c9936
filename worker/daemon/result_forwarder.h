// Forwards what a rank writes (its output, and for rank 0 its metrics and checkpoints) to the
// coordinator. The rank supervisor only needs this interface; ResultUploader implements it on
// its own thread, tests use a fake.
#pragma once

#include <cstdint>
#include <string>

namespace polytune::worker {

class ResultForwarder {
 public:
  virtual ~ResultForwarder() = default;
  // Starts following `rank_dir` (rank.log; out/ too when `results`) of `job_id`'s `rank` in
  // placement `attempt`.
  virtual void Track(const std::string& key, const std::string& job_id, int32_t rank, int32_t attempt,
                     const std::string& rank_dir, bool results) = 0;
  // The rank has exited: one last pass picks up its final output.
  virtual void Finish(const std::string& key) = 0;
  // Whether that last pass is done (true for keys not tracked).
  virtual bool Finished(const std::string& key) const = 0;
  // Stops following `key`: nothing more is sent.
  virtual void Forget(const std::string& key) = 0;
};

}  // namespace polytune::worker
