// Exit codes of `polytune train` (and so of every rank): a contract between the trainer and
// the worker daemon that supervises it, and through it the coordinator's restart policy
// (docs/control-plane.md, "Exit codes").
#pragma once

namespace polytune {

constexpr int kExitOk = 0;
// The run failed for a reason a restart may fix (a lost peer, a collective timeout, a full
// disk, a crash); the last "error" line of its output says why. The coordinator restarts the
// job from its last checkpoint, up to resources.max_restarts times. A rank killed by signal N
// exits 128 + N and counts the same.
constexpr int kExitFailed = 1;
// The run cannot succeed as specified: the spec, the data, the model or the checkpoint it
// was told to resume from is invalid, or training diverged with on_nonfinite: fail. A restart
// would fail the same way, so the job fails at once.
constexpr int kExitBadInput = 2;
// Rank 0 could not bind its rendezvous port: another process took it after the worker
// checked it. The worker reports the port busy and the coordinator places the job again.
constexpr int kExitRendezvousPortBusy = 3;
// Stopped on request (SIGTERM): the step in flight was finished, a checkpoint of it written
// (by rank 0), and the rank exited. The job resumes from that checkpoint without counting a
// restart.
constexpr int kExitPreempted = 4;

}  // namespace polytune
