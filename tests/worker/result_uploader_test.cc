// The result uploader with its real thread (its own 0.3 s cadence and backoff) against a fake
// coordinator: an exited rank counts as finished only once everything it wrote arrived.
#include "result_uploader.h"

#include <gtest/gtest.h>

#include <chrono>
#include <thread>

#include "fakes.h"
#include "polytune/common/file_util.h"

namespace polytune::worker {
namespace {
using namespace testing;

TEST(ResultUploader, AnExitedRankIsFinishedOnlyWhenItsFinalCheckpointIsStored) {
  TempDirs dirs;
  FakeClock clock;
  FakeCoordinator coordinator(&clock);
  coordinator.upload_failures = 2;  // the coordinator's artifact folder is unwritable for a while
  const std::string rank = dirs.root + "/rank-0";
  std::filesystem::create_directories(rank + "/out/checkpoints/step-2");
  ASSERT_TRUE(WriteFileAtomic(rank + "/out/checkpoints/step-2/trainer_state.json", "{}").ok());
  ASSERT_TRUE(WriteFileAtomic(rank + "/out/checkpoints/step-2/adapter_model.safetensors", "weights").ok());
  StepMetrics s;
  s.step = 2;
  ASSERT_TRUE(WriteFileAtomic(rank + "/out/metrics.jsonl", MetricsRecordToJson({s}) + "\n").ok());
  ASSERT_TRUE(WriteFileAtomic(rank + "/rank.log", "step 2/2\nadapter written to out/adapter").ok());  // no final \n
  ResultUploader uploader(&coordinator);
  uploader.Track("job-1/0", "job-1", 0, 1, rank, /*results=*/true);
  uploader.Finish("job-1/0");
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  bool finished = false, finished_before_upload = false;
  while (!finished && std::chrono::steady_clock::now() < deadline) {
    finished = uploader.Finished("job-1/0");  // read first: finishing follows the upload
    finished_before_upload |= finished && coordinator.uploads == 0;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ASSERT_TRUE(finished);
  EXPECT_FALSE(finished_before_upload) << "finished while its final checkpoint was refused";
  EXPECT_EQ(coordinator.upload_attempts, 3) << "two refusals, then retried (with backoff) until stored";
  EXPECT_EQ(coordinator.uploads, 1);
  EXPECT_EQ(coordinator.metrics_records, 1);
  EXPECT_EQ(coordinator.log_lines, 2) << "the last line, without its newline, is sent too";
}

TEST(ResultUploader, DeliveredCheckpointsLeaveTheWorkerExceptTheNewest) {
  TempDirs dirs;
  FakeClock clock;
  FakeCoordinator coordinator(&clock);
  const std::string rank = dirs.root + "/rank-0";
  for (const char* step : {"step-4", "step-8", "step-12"}) {
    std::filesystem::create_directories(rank + "/out/checkpoints/" + step);
    ASSERT_TRUE(WriteFileAtomic(rank + "/out/checkpoints/" + step + "/trainer_state.json", "{}").ok());
  }
  ResultUploader uploader(&coordinator);
  uploader.Track("job-1/0", "job-1", 0, 1, rank, /*results=*/true);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (coordinator.uploads < 3 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  ASSERT_EQ(coordinator.uploads, 3);
  uploader.Finish("job-1/0");
  while (!uploader.Finished("job-1/0") && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  EXPECT_FALSE(std::filesystem::exists(rank + "/out/checkpoints/step-4"));
  EXPECT_FALSE(std::filesystem::exists(rank + "/out/checkpoints/step-8"));
  EXPECT_TRUE(std::filesystem::exists(rank + "/out/checkpoints/step-12"));
  EXPECT_EQ(coordinator.uploads, 3) << "nothing is sent twice";
}

TEST(ResultUploader, ALongMetricsBacklogGoesInBatchesTheCoordinatorAccepts) {
  TempDirs dirs;
  FakeClock clock;
  FakeCoordinator coordinator(&clock);
  const std::string rank = dirs.root + "/rank-0";
  std::filesystem::create_directories(rank + "/out");
  std::string lines;
  for (int step = 1; step <= 2500; ++step) {  // a worker that was cut off from the coordinator for a while
    StepMetrics s;
    s.step = step;
    lines += MetricsRecordToJson({s}) + "\n";
  }
  ASSERT_TRUE(WriteFileAtomic(rank + "/out/metrics.jsonl", lines).ok());
  ResultUploader uploader(&coordinator);
  uploader.Track("job-1/0", "job-1", 0, 1, rank, /*results=*/true);
  uploader.Finish("job-1/0");
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (!uploader.Finished("job-1/0") && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  EXPECT_EQ(coordinator.metrics_records, 2500);
  EXPECT_EQ(coordinator.largest_metrics_batch, 1000) << "the coordinator refuses reports of more than 2000 records";
}

}  // namespace
}  // namespace polytune::worker
