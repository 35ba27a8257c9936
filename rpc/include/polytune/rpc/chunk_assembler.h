// Joins a download's chunks into one string and hashes them on a helper thread, so receiving
// (socket reads and protobuf parsing, on the caller's thread) overlaps with hashing and
// copying, which had run one after the other on one core (sha256 alone is ~1.2 GB/s here).
#pragma once

#include <cstddef>
#include <deque>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace polytune::rpc {

class ChunkAssembler {
 public:
  // `expected_bytes`: room reserved up front when known (0: grow as chunks come).
  explicit ChunkAssembler(size_t expected_bytes = 0);
  ~ChunkAssembler();  // stops the helper; chunks not yet assembled are dropped
  ChunkAssembler(const ChunkAssembler&) = delete;
  ChunkAssembler& operator=(const ChunkAssembler&) = delete;

  // Queues a chunk (taking its bytes); waits while kMaxQueuedChunks are already queued, so
  // memory stays bounded when the network is faster than hashing.
  void Add(std::string chunk);

  struct Result {
    std::string data;
    std::string sha256_hex;  // of `data`, lower-case
  };
  // Waits until every added chunk is in, then returns the whole and its hash. Call once;
  // Add() must not be called afterwards.
  Result Finish();

  static constexpr size_t kMaxQueuedChunks = 8;

 private:
  void Run();

  absl::Mutex mu_;
  std::deque<std::string> queue_ ABSL_GUARDED_BY(mu_);
  bool finishing_ ABSL_GUARDED_BY(mu_) = false;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  // Owned by the helper thread until it exits.
  std::string data_;
  std::string sha256_hex_;
  std::thread helper_;
};

}  // namespace polytune::rpc
