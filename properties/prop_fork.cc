// fork() in any heap state leaves the child a working allocator (src/fork.cc: the atfork
// handlers take every allocator lock before the fork and release or reset them on both sides).
//
//   In a forked child (the "parent" of this property, so its tinymalloc is initialised and its
//   atfork handlers registered) a random history (prop_history.h) is allocated and partly freed
//   by the main thread while up to three helper threads allocate blocks of their own, free
//   some of them into their thread caches and wait, with the caches full, holding the rest.
//   Then it forks. The grandchild, whose only thread is the forking one, must find the heap
//   consistent (tm_check_heap), every block that was live still holding its bytes, free them
//   all (the helpers' too: their threads do not exist there), allocate in every tier, and end
//   with no block live and the heap consistent again: the helpers' cached blocks went back to
//   the heap, none was lost. The parent must go on the same way after the fork: its helpers
//   free their blocks and exit, and its heap is consistent with nothing live.
//
// Reproduce a failure:
//   RC_PARAMS="reproduce=<base64 printed by RapidCheck>" ./tm_prop_fork
#include <gtest/gtest.h>
#include <rapidcheck/gtest.h>

#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <ostream>
#include <string>
#include <thread>
#include <vector>

#include "prop_history.h"
#include "prop_isolate.h"
#include "tinymalloc.h"

namespace {

using tmprop::HistoryBlock;

// One helper thread: the blocks it allocates; the first `kept` stay live, the rest are freed
// (into its caches when they are on).
struct Helper {
  std::vector<size_t> sizes;
  size_t kept = 0;
};

struct Case {
  std::vector<HistoryBlock> blocks;
  std::vector<bool> freed;
  std::vector<Helper> helpers;
  bool thread_cache = true;
  bool medium_cache = true;
  bool debug = false;
};

void showValue(const Case& c, std::ostream& os) {
  os << c.helpers.size() << " helper threads (thread_cache=" << c.thread_cache << " medium_cache=" << c.medium_cache
     << " debug=" << c.debug << ")\n";
  for (size_t i = 0; i < c.helpers.size(); ++i) {
    os << "  helper " << i << ": keeps " << c.helpers[i].kept << " of";
    for (size_t s : c.helpers[i].sizes) os << " " << s;
    os << "\n";
  }
  tmprop::show_history(c.blocks, c.freed, c.blocks.size(), os);
}

rc::Gen<Helper> gen_helper() {
  return rc::gen::mapcat(tmprop::list_of(24, tmprop::tier_size()), [](std::vector<size_t> sizes) {
    const size_t n = sizes.size();
    return rc::gen::build<Helper>(rc::gen::set(&Helper::sizes, rc::gen::just(sizes)),
                                  rc::gen::set(&Helper::kept, rc::gen::inRange<size_t>(0, n + 1)));
  });
}

rc::Gen<Case> gen_case() {
  return rc::gen::mapcat(tmprop::gen_history(), [](std::vector<HistoryBlock> blocks) {
    const size_t n = blocks.size();
    return rc::gen::build<Case>(
        rc::gen::set(&Case::blocks, rc::gen::just(blocks)),
        rc::gen::set(&Case::freed, rc::gen::container<std::vector<bool>>(n, rc::gen::arbitrary<bool>())),
        rc::gen::set(&Case::helpers, tmprop::list_of(3, gen_helper())),
        rc::gen::set(&Case::thread_cache, rc::gen::arbitrary<bool>()),
        rc::gen::set(&Case::medium_cache, rc::gen::arbitrary<bool>()),
        rc::gen::set(&Case::debug, rc::gen::weightedElement<bool>({{3, false}, {1, true}})));
  });
}

// The byte every kept block starts with: its owner and index (a block of another owner, or a
// block given out twice, shows).
unsigned char mark(size_t owner, size_t index) { return static_cast<unsigned char>(0x80 | (owner * 31 + index) % 127); }

// "" or what tm_check_heap_report found, prefixed with `when`.
std::string heap_problem(const char* when) {
  tm_check_report_t report;
  if (tm_check_heap_report(&report) == TM_CHECK_OK) return "";
  return std::string(when) + ": heap check: " + report.message + "\n";
}

// "" or the blocks still live or sitting in a thread cache, prefixed with `when` (every block
// freed and the caller's cache released: a cache of a thread that is gone must have gone back
// to the heap too).
std::string live_problem(const char* when) {
  tm_stats_t stats;
  tm_stats(&stats);
  std::vector<tm_class_stats_t> classes(tm_class_stats(nullptr, 0));
  tm_class_stats(classes.data(), classes.size());
  size_t cached = 0;
  for (const tm_class_stats_t& k : classes) cached += k.cached_blocks;
  if (stats.live_blocks == 0 && cached == 0) return "";
  return std::string(when) + ": " + std::to_string(stats.live_blocks) + " blocks live, " + std::to_string(cached) +
         " in thread caches\n";
}

// Threads that allocate, fill their caches and wait until released (the fork happens then).
class Helpers {
 public:
  explicit Helpers(const std::vector<Helper>& plans) : plans_(plans), kept_(plans.size()) {
    for (size_t i = 0; i < plans_.size(); ++i) threads_.emplace_back([this, i] { run(i); });
    std::unique_lock<std::mutex> lock(mutex_);
    ready_cv_.wait(lock, [&] { return ready_ == plans_.size(); });
  }
  ~Helpers() { release(); }

  // The blocks helper i keeps live (read once every helper is waiting, or in the child).
  const std::vector<char*>& kept(size_t i) const { return kept_[i]; }
  size_t count() const { return plans_.size(); }
  // True when every block the helpers asked for was given.
  bool allocated() const { return failures_ == 0; }

  // Lets the helpers free their kept blocks and exit; joins them.
  void release() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      go_ = true;
    }
    go_cv_.notify_all();
    for (std::thread& t : threads_) t.join();
    threads_.clear();
  }

 private:
  void run(size_t i) {
    std::vector<char*> freed_later;
    for (size_t k = 0; k < plans_[i].sizes.size(); ++k) {
      auto* p = static_cast<char*>(tm_malloc(plans_[i].sizes[k]));
      if (p == nullptr) {
        std::lock_guard<std::mutex> lock(mutex_);
        ++failures_;
        continue;
      }
      p[0] = static_cast<char>(mark(i + 1, k));
      (k < plans_[i].kept ? kept_[i] : freed_later).push_back(p);
    }
    for (char* p : freed_later) tm_free(p);  // into this thread's caches
    {
      std::unique_lock<std::mutex> lock(mutex_);
      ++ready_;
      ready_cv_.notify_all();
      go_cv_.wait(lock, [&] { return go_; });
    }
    for (char* p : kept_[i]) tm_free(p);
  }

  const std::vector<Helper>& plans_;
  std::vector<std::vector<char*>> kept_;
  std::vector<std::thread> threads_;
  std::mutex mutex_;
  std::condition_variable ready_cv_;
  std::condition_variable go_cv_;
  size_t ready_ = 0;
  size_t failures_ = 0;
  bool go_ = false;
};

// The grandchild: everything live before the fork, checked and freed, then fresh blocks.
std::string after_fork_in_child(const Case& c, const tmprop::History& h, const Helpers& helpers) {
  std::string problems = heap_problem("child, right after the fork");
  for (size_t i = 0; i < c.blocks.size(); ++i) {
    if (c.freed[i]) continue;
    if (static_cast<unsigned char>(h.p[i][0]) != 1 || tm_usable_size(h.p[i]) < h.requested[i])
      problems += "child: history block " + std::to_string(i) + " changed\n";
    h.release(i);
  }
  for (size_t t = 0; t < helpers.count(); ++t) {
    for (size_t k = 0; k < helpers.kept(t).size(); ++k) {
      char* p = helpers.kept(t)[k];
      if (static_cast<unsigned char>(p[0]) != mark(t + 1, k))
        problems += "child: helper " + std::to_string(t) + "'s block " + std::to_string(k) + " changed\n";
      tm_free(p);  // a block of a thread the child does not have
    }
  }
  // Every tier works, from the only thread there is.
  std::vector<void*> fresh;
  for (size_t size : {size_t{16}, size_t{4000}, size_t{100000}, size_t{3} << 20}) {
    for (int k = 0; k < 8; ++k) fresh.push_back(tm_malloc(size));
  }
  for (void* p : fresh) {
    if (p == nullptr) problems += "child: an allocation failed\n";
    tm_free(p);
  }
  tm_release_cached();
  problems += heap_problem("child, at the end");
  problems += live_problem("child, with everything freed");
  return problems.empty() ? "ok" : problems;
}

// The property's parent process: history, helpers, fork, then the same checks on this side.
std::string run_case(const Case& c) {
  tm_option_set("thread_cache", c.thread_cache ? 1 : 0);
  tm_option_set("medium_cache", c.medium_cache ? 1 : 0);
  if (c.debug) tm_option_set("debug", 1);
  tmprop::History h;
  if (!h.allocate(c.blocks)) return "skipped: allocation failed";
  for (size_t i = 0; i < c.blocks.size(); ++i) {
    if (c.freed[i]) h.release(i);
  }
  Helpers helpers(c.helpers);
  if (!helpers.allocated()) return "skipped: allocation failed";
  const tmprop::ChildOutcome child = tmprop::run_in_child([&] { return after_fork_in_child(c, h, helpers); });
  std::string problems;
  if (!child.returned) {
    problems += "child did not return (" + child.status + "):\n" + child.stderr_tail + "\n";
  } else if (child.result != "ok") {
    problems += child.result;
  }
  problems += heap_problem("parent, right after the fork");
  helpers.release();
  for (size_t i = 0; i < c.blocks.size(); ++i) {
    if (!c.freed[i]) h.release(i);
  }
  tm_release_cached();
  problems += heap_problem("parent, at the end");
  problems += live_problem("parent, with everything freed");
  return problems.empty() ? "ok" : problems;
}

RC_GTEST_PROP(Fork, AForkInAnyHeapStateLeavesBothSidesAWorkingAllocator, ()) {
  const Case c = *gen_case();
  const tmprop::ChildOutcome o = tmprop::run_in_child([&] { return run_case(c); });
  RC_CLASSIFY(c.helpers.empty(), "no helper threads");
  RC_CLASSIFY(c.debug, "debug mode");
  if (!o.returned) RC_FAIL("the parent did not return (" + o.status + "):\n" + o.stderr_tail);
  RC_PRE(o.result.rfind("skipped: ", 0) != 0);
  RC_ASSERT(o.result == std::string("ok"));
}

}  // namespace
