// Pooled OS threads for the multi-threaded interpreter (see thread_pool.h).
#include "thread_pool.h"

#include <unistd.h>

#include <cstdint>

namespace tmh {

// A pooled OS thread and its mailbox (mu): `assigned` tasks handed to it, `finished` tasks it
// completed; it runs task number n once assigned reaches n.
struct ThreadPool::Handle::Slot {
  std::thread thread;
  std::mutex mu;
  std::condition_variable cv;
  Task task;
  uint64_t assigned = 0;
  uint64_t finished = 0;
  bool exiting = false;  // the last task asked the thread to end
  bool stop = false;     // the pool is going away: an idle thread ends

  // Body of the OS thread: runs each task handed to it; ends after one that asks for it, or
  // when stopped while idle.
  void loop() {
    uint64_t done = 0;
    for (;;) {
      Task current;
      {
        std::unique_lock<std::mutex> l(mu);
        cv.wait(l, [&] { return stop || assigned > done; });
        if (assigned == done) return;  // stopped while idle
        current = std::move(task);
      }
      const bool exit = current();
      current = nullptr;  // the task's captures go before its completion is announced
      std::lock_guard<std::mutex> g(mu);
      finished = ++done;
      exiting = exit;
      cv.notify_all();
      if (exit) return;
    }
  }
};

ThreadPool::Handle::Handle(Handle&& other) noexcept : pool_(other.pool_), slot_(other.slot_) {
  other.pool_ = nullptr;
  other.slot_ = nullptr;
}

ThreadPool::Handle& ThreadPool::Handle::operator=(Handle&& other) noexcept {
  if (this != &other) {
    if (joinable()) join();
    pool_ = other.pool_;
    slot_ = other.slot_;
    other.pool_ = nullptr;
    other.slot_ = nullptr;
  }
  return *this;
}

ThreadPool::Handle::~Handle() {
  if (joinable()) join();
}

void ThreadPool::Handle::join() {
  Slot* slot = slot_;
  slot_ = nullptr;
  bool exited;
  {
    std::unique_lock<std::mutex> l(slot->mu);
    slot->cv.wait(l, [&] { return slot->finished == slot->assigned; });
    exited = slot->exiting;
  }
  if (exited) {
    slot->thread.join();
    delete slot;
    return;
  }
  pool_->give_back(slot);
}

ThreadPool::~ThreadPool() {
  std::vector<Handle::Slot*> idle;
  {
    std::lock_guard<std::mutex> g(mu_);
    if (pid_ != getpid()) return;  // a fork child: the threads are not here (the slots leak)
    idle.swap(idle_);
  }
  for (Handle::Slot* slot : idle) {
    {
      std::lock_guard<std::mutex> g(slot->mu);
      slot->stop = true;
      slot->cv.notify_all();
    }
    slot->thread.join();
    delete slot;
  }
}

// In a fork child the idle threads do not exist: their slots are dropped (leaked: their
// std::thread objects must not be destroyed while joinable), and new threads are started.
void ThreadPool::forget_after_fork() {
  if (pid_ == getpid()) return;
  idle_.clear();
  pid_ = getpid();
}

ThreadPool::Handle ThreadPool::start(Task task) {
  Handle::Slot* slot = nullptr;
  {
    std::lock_guard<std::mutex> g(mu_);
    forget_after_fork();
    if (!idle_.empty()) {
      slot = idle_.back();
      idle_.pop_back();
    }
  }
  if (slot == nullptr) {
    slot = new Handle::Slot;
    slot->task = std::move(task);
    slot->assigned = 1;
    slot->thread = std::thread([slot] { slot->loop(); });
    std::lock_guard<std::mutex> g(mu_);
    ++created_;
    return Handle(this, slot);
  }
  {
    std::lock_guard<std::mutex> g(slot->mu);
    slot->task = std::move(task);
    slot->exiting = false;
    ++slot->assigned;
    slot->cv.notify_all();
  }
  return Handle(this, slot);
}

void ThreadPool::give_back(Handle::Slot* slot) {
  std::lock_guard<std::mutex> g(mu_);
  forget_after_fork();
  idle_.push_back(slot);
}

size_t ThreadPool::idle() const {
  std::lock_guard<std::mutex> g(mu_);
  return idle_.size();
}

}  // namespace tmh
