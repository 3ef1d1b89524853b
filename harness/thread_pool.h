// OS threads reused across the inputs of the multi-threaded interpreter (mt_interpreter.cc).
//
// Starting a thread per logical thread and input costs more than the thread: AddressSanitizer
// keeps metadata for every thread that ever existed (clang 14 never frees a dead thread's
// context), so a fuzzer that starts new threads for every input grows without bound (heap_mt:
// about 13 MB a minute). A task runs on an idle pooled thread, or a new one when none is idle;
// when it finishes the thread goes back to the pool, unless the task asked for its thread to
// end (the harness's exit op: the OS thread really exits and its thread-local destructors run).
#pragma once

#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace tmh {

class ThreadPool {
 public:
  // A task: returns true when its OS thread must exit instead of going back to the pool.
  using Task = std::function<bool()>;

  // One task running on a pooled thread (default-constructed: none).
  class Handle {
   public:
    Handle() = default;
    Handle(Handle&& other) noexcept;
    Handle& operator=(Handle&& other) noexcept;
    Handle(const Handle&) = delete;
    Handle& operator=(const Handle&) = delete;
    ~Handle();
    // True from start until join.
    bool joinable() const { return slot_ != nullptr; }
    // Waits for the task to finish; then the thread is back in the pool, or, when the task
    // asked for it to exit, it has ended (joined: its thread-local destructors have run).
    void join();

   private:
    friend class ThreadPool;
    struct Slot;
    Handle(ThreadPool* pool, Slot* slot) : pool_(pool), slot_(slot) {}
    ThreadPool* pool_ = nullptr;
    Slot* slot_ = nullptr;
  };

  ThreadPool() = default;
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;
  // Ends and joins the idle threads. Every handle must have been joined.
  ~ThreadPool();

  // Runs task on an idle thread (a new one when none is idle).
  Handle start(Task task);
  // Threads created so far, and idle now.
  size_t created() const { return created_; }
  size_t idle() const;

 private:
  void give_back(Handle::Slot* slot);
  void forget_after_fork();

  mutable std::mutex mu_;
  std::vector<Handle::Slot*> idle_;
  size_t created_ = 0;
  int pid_ = 0;  // the process the idle threads live in (a fork child has none of them)
};

}  // namespace tmh
