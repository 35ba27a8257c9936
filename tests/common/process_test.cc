// The process helper with real child processes.
#include "polytune/common/process.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>
#include <thread>

#include "polytune/common/file_util.h"

namespace polytune {
namespace {

ExitStatus WaitFor(pid_t pid) {
  for (;;) {
    if (auto s = TryReap(pid)) return *s;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

TEST(Process, OutputGoesToTheFileAndTheExitCodeIsReported) {
  char dir[] = "/tmp/polytune-proc-XXXXXX";
  ASSERT_NE(::mkdtemp(dir), nullptr);
  const std::string log = std::string(dir) + "/out.log";
  auto pid = SpawnProcess({{"/bin/sh", "-c", "echo hello; echo oops >&2; exit 3"}, log});
  ASSERT_TRUE(pid.ok()) << pid.status();
  ExitStatus s = WaitFor(*pid);
  EXPECT_FALSE(s.signaled);
  EXPECT_EQ(s.code, 3);
  EXPECT_EQ(s.Describe(), "exited with code 3");
  EXPECT_EQ(*ReadFileToString(log), "hello\noops\n");
}

TEST(Process, TerminateEscalatesToSigkillForAChildIgnoringSigterm) {
  // The child and its own child ignore SIGTERM; the whole group must still go.
  auto pid = SpawnProcess({{"/bin/sh", "-c", "trap '' TERM; sleep 30 & wait"}, ""});
  ASSERT_TRUE(pid.ok()) << pid.status();
  std::this_thread::sleep_for(std::chrono::milliseconds(100));  // let the shell install its trap
  ExitStatus s = TerminateAndReap(*pid, 200'000);
  EXPECT_TRUE(s.signaled);
  EXPECT_EQ(s.signal, SIGKILL);
  EXPECT_EQ(s.ShellCode(), 137);
  // The grandchild got the same SIGKILL; it disappears once init has reaped it.
  bool gone = false;
  for (int i = 0; i < 1000 && !gone; ++i) {  // up to 10 s: the container's init may reap slowly
    gone = ::kill(-*pid, 0) != 0;
    if (!gone) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_TRUE(gone) << "no process of the group survives";
}

TEST(Process, AChildSpawnedToDieWithItsParentDoesWhenTheParentIsKilled) {
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  const pid_t supervisor = ::fork();
  ASSERT_GE(supervisor, 0);
  if (supervisor == 0) {  // stands in for a worker daemon: spawns a rank, then waits
    SpawnOptions o{{"/bin/sleep", "60"}, ""};
    o.die_with_parent = true;
    auto pid = SpawnProcess(o);
    const pid_t child = pid.ok() ? *pid : -1;
    (void)!::write(fds[1], &child, sizeof(child));
    ::pause();
    ::_exit(0);
  }
  pid_t rank = -1;
  ASSERT_EQ(::read(fds[0], &rank, sizeof(rank)), static_cast<ssize_t>(sizeof(rank)));
  ASSERT_GT(rank, 0);
  EXPECT_EQ(::kill(rank, 0), 0) << "the rank runs while its supervisor lives";
  ::kill(supervisor, SIGKILL);  // kill -9 of the daemon
  ::waitpid(supervisor, nullptr, 0);
  bool gone = false;
  for (int i = 0; i < 1000 && !gone; ++i) {  // up to 10 s: the container's init reaps the orphan
    gone = ::kill(rank, 0) != 0;
    if (!gone) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_TRUE(gone) << "the rank died with its supervisor";
  ::close(fds[0]);
  ::close(fds[1]);
}

TEST(Process, MissingExecutableExitsWith127) {
  auto pid = SpawnProcess({{"/nonexistent/binary"}, ""});
  ASSERT_TRUE(pid.ok());
  EXPECT_EQ(WaitFor(*pid).code, 127);
}

}  // namespace
}  // namespace polytune
