// One-time initialisation that a fork() cannot wedge.
//
// A claim word holds kInitNotStarted, kInitDone, or the negated process id of the process
// one of whose threads is running the initialisation. A thread that finds its own process's
// tag waits for that thread. A fork() child inherits the word as it was: when another
// thread of the parent was in the middle of the initialisation, that thread does not exist
// in the child, and waiting for it would hang the child's first allocation forever. The
// child sees a tag that is not its own and takes the claim over (measured: a fork made
// while a freshly started thread initialised the runtime hung 4 of 30 ASan runs of
// Arenas.ForkChildAllocatesWhileOtherThreadsAreBusy). The initialisation must therefore be
// safe to run again from the start in a child.
#pragma once

#include <sched.h>
#include <unistd.h>

#include <atomic>

namespace tmalloc {

inline constexpr int kInitNotStarted = 0;
inline constexpr int kInitDone = 2;

enum class InitClaim {
  kRun,       // the caller runs the initialisation, then stores kInitDone (release)
  kDone,      // already done
  kHeldHere,  // a thread of this process is running it (possibly the caller itself)
};

// One attempt to claim the initialisation guarded by `state`.
inline InitClaim init_try_claim(std::atomic<int>& state) {
  // getpid is a system call; it runs only until the initialisation is done.
  const int mine = -static_cast<int>(getpid());
  // acquire: a thread that sees kInitDone sees everything the initialiser wrote before
  // its release store.
  int seen = state.load(std::memory_order_acquire);
  for (;;) {
    if (seen == kInitDone) return InitClaim::kDone;
    if (seen == mine) return InitClaim::kHeldHere;
    // Not started, or started by a thread of a parent process (gone in this child).
    if (state.compare_exchange_weak(seen, mine, std::memory_order_acquire, std::memory_order_acquire)) {
      return InitClaim::kRun;
    }
  }
}

// Claims the initialisation or waits until another thread of this process has done it:
// true when the caller must run it. Never call it from inside the initialisation.
inline bool init_claim_or_wait(std::atomic<int>& state) {
  for (;;) {
    const InitClaim claim = init_try_claim(state);
    if (claim == InitClaim::kRun) return true;
    if (claim == InitClaim::kDone) return false;
    sched_yield();
  }
}

}  // namespace tmalloc
