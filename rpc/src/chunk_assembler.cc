#include "polytune/rpc/chunk_assembler.h"

#include <utility>

#include "polytune/common/sha256.h"

namespace polytune::rpc {

ChunkAssembler::ChunkAssembler(size_t expected_bytes) {
  data_.reserve(expected_bytes);
  helper_ = std::thread([this] { Run(); });
}

ChunkAssembler::~ChunkAssembler() {
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
  }
  if (helper_.joinable()) helper_.join();
}

void ChunkAssembler::Add(std::string chunk) {
  absl::MutexLock lock(&mu_);
  mu_.Await(absl::Condition(
      +[](std::deque<std::string>* q) { return q->size() < kMaxQueuedChunks; }, &queue_));
  queue_.push_back(std::move(chunk));
}

void ChunkAssembler::Run() {
  Sha256 hash;
  for (;;) {
    std::string chunk;
    {
      absl::MutexLock lock(&mu_);
      mu_.Await(absl::Condition(
          +[](ChunkAssembler* self) ABSL_EXCLUSIVE_LOCKS_REQUIRED(self->mu_) {
            return !self->queue_.empty() || self->finishing_ || self->stop_;
          },
          this));
      if (stop_) return;
      if (queue_.empty()) break;  // finishing, and everything is in
      chunk = std::move(queue_.front());
      queue_.pop_front();
    }
    hash.Update(chunk);
    data_ += chunk;
  }
  sha256_hex_ = hash.HexDigest();
}

ChunkAssembler::Result ChunkAssembler::Finish() {
  {
    absl::MutexLock lock(&mu_);
    finishing_ = true;
  }
  helper_.join();
  return Result{std::move(data_), std::move(sha256_hex_)};
}

}  // namespace polytune::rpc
