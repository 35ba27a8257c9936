// Exit codes of `polytune train` (and so of every rank): a contract between the trainer and
// the worker daemon that supervises it (docs/control-plane.md).
#pragma once

namespace polytune {

constexpr int kExitOk = 0;
constexpr int kExitFailed = 1;  // the run failed; the last "error" line of its output says why
// Rank 0 could not bind its rendezvous port: another process took it after the worker
// checked it. The worker reports the port busy and the coordinator places the job again.
constexpr int kExitRendezvousPortBusy = 3;

}  // namespace polytune
