// The harness's pooled worker threads (harness/thread_pool.h), which the multi-threaded
// interpreter reuses across inputs: for any sequence of batches of concurrent tasks, some of
// which ask for their OS thread to end,
//   * every task runs exactly once, and the tasks of a batch on distinct OS threads;
//   * a thread is reused only if its previous task did not ask to end, and is reused before a
//     new one is started (threads created = what the idle ones could not cover);
//   * a task that asked to end has its thread gone when join returns: its thread-local
//     destructors ran (what tinymalloc's thread-exit flush relies on).
//
// Reproduce: RC_PARAMS="reproduce=<base64>" ./tm_prop_thread_pool
#include <gtest/gtest.h>
#include <rapidcheck/gtest.h>

#include <algorithm>
#include <atomic>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

#include "thread_pool.h"

namespace {

// Counts the thread-local destructors that ran (threads that really ended).
std::atomic<int> g_thread_ends{0};

struct EndCounter {
  bool armed = false;
  ~EndCounter() {
    if (armed) g_thread_ends.fetch_add(1, std::memory_order_relaxed);
  }
};
thread_local EndCounter t_end_counter;
// Tasks this OS thread has run (survives across tasks only on a reused thread).
thread_local int t_tasks_run = 0;

struct TaskRecord {
  std::thread::id thread;
  int tasks_before = -1;  // t_tasks_run when the task started
  int runs = 0;
};

RC_GTEST_PROP(ThreadPool, TasksRunOnceAndThreadsAreReusedUnlessATaskEndsIt, ()) {
  // Batches of 1-6 concurrent tasks; each task's flag: end its OS thread.
  const auto batches = *rc::gen::container<std::vector<std::vector<bool>>>(
      rc::gen::resize(6, rc::gen::nonEmpty(rc::gen::container<std::vector<bool>>(rc::gen::arbitrary<bool>()))));
  tmh::ThreadPool pool;
  size_t idle = 0;  // model: idle pooled threads
  std::set<std::thread::id> ended;
  for (const std::vector<bool>& exits : batches) {
    std::vector<TaskRecord> records(exits.size());
    const int ends_before = g_thread_ends.load();
    const size_t created_before = pool.created();
    std::vector<tmh::ThreadPool::Handle> handles;
    for (size_t i = 0; i < exits.size(); ++i) {
      handles.push_back(pool.start([&records, i, exit = exits[i]] {
        t_end_counter.armed = true;
        records[i].thread = std::this_thread::get_id();
        records[i].tasks_before = t_tasks_run++;
        ++records[i].runs;
        return exit;
      }));
    }
    for (auto& h : handles) h.join();

    size_t exit_count = 0;
    std::set<std::thread::id> threads;
    for (size_t i = 0; i < exits.size(); ++i) {
      RC_ASSERT(records[i].runs == 1);
      threads.insert(records[i].thread);
      // An ended thread never runs a task again (a new thread may get its recycled id: it has
      // run nothing before).
      if (records[i].tasks_before == 0) ended.erase(records[i].thread);
      RC_ASSERT(ended.count(records[i].thread) == 0);
      if (exits[i]) {
        ++exit_count;
        ended.insert(records[i].thread);
      }
    }
    RC_ASSERT(threads.size() == exits.size());  // concurrent tasks: distinct threads
    const size_t reused = std::min(idle, exits.size());
    RC_ASSERT(static_cast<size_t>(std::count_if(records.begin(), records.end(),
                                                [](const TaskRecord& r) { return r.tasks_before > 0; })) == reused);
    RC_ASSERT(pool.created() - created_before == exits.size() - reused);
    RC_ASSERT(static_cast<size_t>(g_thread_ends.load() - ends_before) == exit_count);
    idle = idle - reused + (exits.size() - exit_count);
    RC_ASSERT(pool.idle() == idle);
  }
}

// A pool whose threads ran tasks and went idle ends them when it goes away.
TEST(ThreadPool, IdleThreadsEndWithThePool) {
  const int ends_before = g_thread_ends.load();
  {
    tmh::ThreadPool pool;
    auto a = pool.start([] {
      t_end_counter.armed = true;
      return false;
    });
    auto b = pool.start([] {
      t_end_counter.armed = true;
      return false;
    });
    a.join();
    b.join();
    EXPECT_EQ(pool.idle(), 2u);
    EXPECT_EQ(g_thread_ends.load(), ends_before) << "idle threads stay alive in the pool";
  }
  EXPECT_EQ(g_thread_ends.load(), ends_before + 2) << "the pool's destructor ended and joined them";
}

}  // namespace
