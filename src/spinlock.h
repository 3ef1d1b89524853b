// A small test-and-test-and-set lock that never allocates. Contended waiters spin briefly,
// then yield the CPU.
#pragma once

#include <sched.h>

#include <atomic>

namespace tmalloc {

class SpinLock {
 public:
  constexpr SpinLock() = default;

  // Takes the lock.
  void lock() {
    // acquire: the critical section must see everything the previous holder wrote.
    if (!locked_.exchange(true, std::memory_order_acquire)) return;
    lock_slow();
  }

  // Takes the lock when it is free; returns whether it was taken.
  bool try_lock() {
    return !locked_.load(std::memory_order_relaxed) && !locked_.exchange(true, std::memory_order_acquire);
  }

  // Releases the lock.
  void unlock() {
    // release: publishes the critical section's writes to the next holder.
    locked_.store(false, std::memory_order_release);
  }

  // Forces the lock free (fork child: the parent's holder does not exist in the child).
  void reset() { locked_.store(false, std::memory_order_relaxed); }

 private:
  // Waits with read-only spinning, then sched_yield, until the lock is free.
  void lock_slow() {
    unsigned spins = 0;
    do {
      while (locked_.load(std::memory_order_relaxed)) {
        if (++spins < 64) {
          __builtin_ia32_pause();
        } else {
          sched_yield();
        }
      }
    } while (locked_.exchange(true, std::memory_order_acquire));
  }

  std::atomic<bool> locked_{false};
};

// Tag: the LockGuard takes over a lock the caller already holds.
struct AdoptLock {};
inline constexpr AdoptLock kAdoptLock{};

// Holds a SpinLock for a scope.
class LockGuard {
 public:
  explicit LockGuard(SpinLock& lock) : lock_(lock) { lock_.lock(); }
  LockGuard(SpinLock& lock, AdoptLock) : lock_(lock) {}
  ~LockGuard() { lock_.unlock(); }
  LockGuard(const LockGuard&) = delete;
  LockGuard& operator=(const LockGuard&) = delete;

 private:
  SpinLock& lock_;
};

}  // namespace tmalloc
