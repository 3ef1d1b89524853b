// Runs a harness Program in a forked child so that every run starts from the same clean
// heap: a failing run leaves its blocks allocated (the heap may be corrupt) and an
// allocator abort (tinymalloc's misuse / corruption reports) would otherwise end the whole
// property binary before RapidCheck could shrink the case. With a child per run, shrinking
// stays sound: each candidate sequence is judged on a fresh copy of the parent's heap, which
// never executes the system under test itself.
//
// TM_PROP_NO_FORK=1 runs in-process instead (for a debugger; shrinking is then only as good
// as the heap after a failure allows).
#pragma once

#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <set>
#include <string>

#include "config.h"
#include "tinymalloc.h"
#include "tm_harness.h"

// The profile runtime of a coverage build (tools/tm-coverage; absent, hence weak, elsewhere).
extern "C" int __llvm_profile_write_file(void) __attribute__((weak));
extern "C" void __llvm_profile_reset_counters(void) __attribute__((weak));

namespace tmprop {

struct RunOutcome {
  bool ok = true;
  bool crashed = false;  // the child died (signal) or exited without a result
  size_t op_index = 0;   // failing op (program size: final frees / leak check)
  std::string message;   // the Interpreter's report, or the child's stderr on a crash
  tmh::Interpreter::Counters counters;
  std::set<std::string> events;  // paths observed during the op `observe_op` (see below)
};

// Wraps a backend and, for the tm backend, classifies what each mutating call did to the
// medium tier (from tm_stats deltas): split, coalesce, in-place realloc. Events are kept only
// for ops with index in [observe_from, observe_end) (the Interpreter's op counter at the time
// of the call; the final frees run with the counter at the program size).
class ObservingBackend final : public tmh::Backend {
 public:
  ObservingBackend(std::unique_ptr<tmh::Backend> inner, bool is_tm, size_t observe_from, size_t observe_end)
      : inner_(std::move(inner)), is_tm_(is_tm), observe_from_(observe_from), observe_end_(observe_end) {}
  void attach(const tmh::Interpreter* interp) { interp_ = interp; }
  const std::set<std::string>& events() const { return events_; }

  const char* name() const override { return inner_->name(); }
  void* malloc(size_t n) override {
    const Snap s = snap();
    void* p = inner_->malloc(n);
    after_alloc(s, p, "malloc");
    return p;
  }
  void* calloc(size_t c, size_t n) override {
    const Snap s = snap();
    void* p = inner_->calloc(c, n);
    after_alloc(s, p, "calloc");
    return p;
  }
  void* realloc(void* p, size_t n) override {
    const Snap s = snap();
    const size_t old_usable = (p != nullptr && n != 0 && watching()) ? inner_->usable_size(p) : 0;
    void* q = inner_->realloc(p, n);
    if (!watching() || p == nullptr || n == 0 || q == nullptr) {
      if (p == nullptr) after_alloc(s, q, "realloc(NULL)");
      return q;
    }
    const Snap t = snap();
    if (q == p) {
      const char* tier = n <= tmalloc::kSmallMax ? "small" : n <= tmalloc::kMediumMax ? "medium" : "large";
      add(std::string("realloc in place (") + tier + (n > old_usable ? ", grow)" : ", shrink or same)"));
      if (t.medium_live == s.medium_live && t.medium_free < s.medium_free)
        add("medium grow absorbed the next free block");
      if (t.medium_live == s.medium_live && t.medium_free > s.medium_free) add("medium shrink split off a free tail");
    } else {
      add("realloc moved");
    }
    return q;
  }
  void free(void* p) override {
    const Snap s = snap();
    inner_->free(p);
    if (!watching() || p == nullptr) return;
    const Snap t = snap();
    if (t.medium_live + 1 == s.medium_live && t.medium_cached != s.medium_cached) {
      // Kept in the thread's medium cache (its header stays used: nothing coalesces now);
      // fewer cached blocks than before means a full bin handed blocks back on the way.
      add(t.medium_cached > s.medium_cached ? "medium free cached" : "medium free emptied part of a cache bin");
    } else if (t.medium_live + 1 == s.medium_live) {
      // +1 for the freed block, -1 per absorbed neighbour, -1 when its segment was unmapped.
      const long destroyed = static_cast<long>(s.medium_segments) - static_cast<long>(t.medium_segments);
      const long merged = 1 - (static_cast<long>(t.medium_free) - static_cast<long>(s.medium_free)) - destroyed;
      if (merged >= 1) add("medium free coalesced");
      if (merged >= 2) add("medium free coalesced with both neighbours");
      if (merged <= 0) add("medium free without coalescing");
    }
  }
  void* aligned_alloc(size_t a, size_t n) override {
    const Snap s = snap();
    void* p = inner_->aligned_alloc(a, n);
    after_alloc(s, p, "aligned_alloc");
    return p;
  }
  int posix_memalign(void** out, size_t a, size_t n) override {
    const Snap s = snap();
    const int r = inner_->posix_memalign(out, a, n);
    after_alloc(s, r == 0 ? *out : nullptr, "posix_memalign");
    return r;
  }
  size_t usable_size(const void* p) override { return inner_->usable_size(p); }
  void release_cached() override {
    const Snap s = snap();
    inner_->release_cached();
    if (!watching()) return;
    const Snap t = snap();
    const long released = static_cast<long>(s.medium_cached) - static_cast<long>(t.medium_cached);
    if (released <= 0) return;
    add("release_cached emptied the medium cache");
    // Each released block adds a free block, less one per neighbour it merges with; an
    // emptied segment given to the pool takes its one free block away.
    const long destroyed = static_cast<long>(s.medium_segments) - static_cast<long>(t.medium_segments);
    if (static_cast<long>(t.medium_free) - static_cast<long>(s.medium_free) + destroyed < released)
      add("medium cache release coalesced");
  }
  bool strict() const override { return inner_->strict(); }
  bool has_heap_check() const override { return inner_->has_heap_check(); }
  int check_heap(std::string* message) override { return inner_->check_heap(message); }
  bool has_stats() const override { return inner_->has_stats(); }
  void stats(tmh::HeapStats* out) override { inner_->stats(out); }
  bool has_owns() const override { return inner_->has_owns(); }
  bool owns(const void* p) override { return inner_->owns(p); }
  bool has_oom_injection() const override { return inner_->has_oom_injection(); }
  void fail_os_after(long calls) override { inner_->fail_os_after(calls); }
  uint64_t max_attempt_size() const override { return inner_->max_attempt_size(); }
  uint64_t max_live_bytes() const override { return inner_->max_live_bytes(); }
  // Memory pools (v2 pool ops): forwarded unobserved.
  bool has_heaps() const override { return inner_->has_heaps(); }
  unsigned max_heaps() const override { return inner_->max_heaps(); }
  unsigned heaps_live() const override { return inner_->heaps_live(); }
  void* heap_create() override { return inner_->heap_create(); }
  void* heap_malloc(void* h, size_t n) override { return inner_->heap_malloc(h, n); }
  void* heap_calloc(void* h, size_t c, size_t n) override { return inner_->heap_calloc(h, c, n); }
  void* heap_realloc(void* h, void* p, size_t n) override { return inner_->heap_realloc(h, p, n); }
  void heap_free(void* h, void* p) override { inner_->heap_free(h, p); }
  void heap_reset(void* h) override { inner_->heap_reset(h); }
  void heap_destroy(void* h) override { inner_->heap_destroy(h); }
  void heap_stats(void* h, tmh::PoolStats* out) override { inner_->heap_stats(h, out); }

 private:
  struct Snap {
    size_t medium_live = 0, medium_free = 0, medium_segments = 0, medium_cached = 0;
  };
  bool watching() const {
    if (!is_tm_ || interp_ == nullptr) return false;
    const size_t op = interp_->counters().ops;
    return op >= observe_from_ && op < observe_end_;
  }
  Snap snap() const {
    Snap s;
    if (!watching()) return s;
    tm_stats_t st;
    tm_stats(&st);
    s.medium_live = st.medium_live_blocks;
    s.medium_free = st.medium_free_blocks;
    s.medium_segments = st.medium_segments;
    s.medium_cached = st.medium_cached_blocks;
    return s;
  }
  void add(std::string e) { events_.insert(std::move(e)); }
  void after_alloc(const Snap& s, void* p, const char* what) {
    (void)what;
    if (!watching() || p == nullptr) return;
    const Snap t = snap();
    if (t.medium_live != s.medium_live + 1) return;
    if (t.medium_cached + 1 == s.medium_cached) {
      add("medium alloc reused a cached block");
      return;
    }
    // -1 for the block taken, +1 per remainder left free, +1 per fresh segment.
    const long fresh = static_cast<long>(t.medium_segments) - static_cast<long>(s.medium_segments);
    const long left = (static_cast<long>(t.medium_free) - static_cast<long>(s.medium_free)) + 1 - fresh;
    add(left >= 1 ? "medium alloc split a free block" : "medium alloc took a whole free block");
    if (fresh > 0) add("medium alloc mapped a fresh segment");
  }

  std::unique_ptr<tmh::Backend> inner_;
  bool is_tm_;
  size_t observe_from_, observe_end_;
  const tmh::Interpreter* interp_ = nullptr;
  std::set<std::string> events_;
};

// Runs `program` on backend `backend_name` ("tm", "system", "faulty:<mode>") with the
// Interpreter (abort_on_failure = false). Events are recorded for ops [observe_from, observe_end).
inline RunOutcome run_program_here(const std::string& backend_name, const tmh::Program& program,
                                   size_t observe_from = SIZE_MAX, size_t observe_end = SIZE_MAX,
                                   tmh::Profile profile = tmh::Profile::kGeneral) {
  RunOutcome out;
  auto inner = tmh::make_backend(backend_name);
  if (!inner) {
    out.ok = false;
    out.message = "unknown backend " + backend_name;
    return out;
  }
  ObservingBackend backend(std::move(inner), backend_name == "tm", observe_from, observe_end);
  tmh::Options options;
  options.abort_on_failure = false;
  options.profile = profile;
  options.target = "property";
  tmh::Interpreter interp(backend, options);
  backend.attach(&interp);
  const tmh::Result r = interp.run(program);
  out.ok = r.ok;
  out.op_index = r.op_index;
  out.message = r.message;
  out.counters = interp.counters();
  out.events = backend.events();
  return out;
}

namespace detail {

inline void write_all(int fd, const void* data, size_t n) {
  const char* p = static_cast<const char*>(data);
  while (n > 0) {
    const ssize_t w = ::write(fd, p, n);
    if (w <= 0) return;
    p += w;
    n -= static_cast<size_t>(w);
  }
}

inline std::string read_fd(int fd) {
  std::string s;
  ::lseek(fd, 0, SEEK_SET);
  char buf[4096];
  for (;;) {
    const ssize_t r = ::read(fd, buf, sizeof buf);
    if (r <= 0) break;
    s.append(buf, static_cast<size_t>(r));
  }
  return s;
}

inline void put_u64(std::string& out, uint64_t v) { out.append(reinterpret_cast<const char*>(&v), sizeof v); }
inline bool get_u64(const std::string& in, size_t& pos, uint64_t* v) {
  if (pos + sizeof *v > in.size()) return false;
  std::memcpy(v, in.data() + pos, sizeof *v);
  pos += sizeof *v;
  return true;
}
inline void put_str(std::string& out, const std::string& s) {
  put_u64(out, s.size());
  out += s;
}
inline bool get_str(const std::string& in, size_t& pos, std::string* s) {
  uint64_t n;
  if (!get_u64(in, pos, &n) || pos + n > in.size()) return false;
  s->assign(in.data() + pos, n);
  pos += n;
  return true;
}

// In a coverage build a forked child counts what it runs itself: the parent adds its counters
// to the profile and zeroes them just before the fork (parent_coverage_flush), so the child
// starts from zero with what the atfork handlers run inside fork() counted, and writes its
// counters when it ends, by _exit, by the abort of an allocator report or by the fault of a
// sampled block's guard page (the allocator's fault handler reports, then hands the fault to
// the handler installed before it: this one). Both signals skip the runtime's atexit writer.
// tools/tm-coverage merges every process's profile of a binary into one file (%m): each write
// adds the counters, so nothing is counted twice.
inline void parent_coverage_flush() {
  if (__llvm_profile_write_file == nullptr || __llvm_profile_reset_counters == nullptr) return;
  __llvm_profile_write_file();
  __llvm_profile_reset_counters();
}
inline void child_coverage_write() {
  if (__llvm_profile_write_file != nullptr) __llvm_profile_write_file();
}
inline void write_coverage_then_die(int signal_number) {
  child_coverage_write();
  ::signal(signal_number, SIG_DFL);
  ::raise(signal_number);  // delivered when this handler returns
}
inline void child_coverage_start() {
  if (__llvm_profile_write_file == nullptr) return;
  ::signal(SIGABRT, write_coverage_then_die);
  ::signal(SIGSEGV, write_coverage_then_die);
}

}  // namespace detail

inline bool no_fork() {
  const char* e = std::getenv("TM_PROP_NO_FORK");
  return e != nullptr && *e != '\0' && std::strcmp(e, "0") != 0;
}

// What a child produced: `result` is fn's return value when it returned normally.
struct ChildOutcome {
  bool returned = false;
  std::string result;
  std::string status;  // "signal 6 (Aborted)" / "exit status 1" when it did not return
  std::string stderr_tail;
};

// Runs fn in a forked child (in-process with TM_PROP_NO_FORK=1) and hands back its result
// string; the child's stderr is captured (allocator misuse reports, sanitizer reports).
inline ChildOutcome run_in_child(const std::function<std::string()>& fn) {
  ChildOutcome out;
  if (no_fork()) {
    out.returned = true;
    out.result = fn();
    return out;
  }
  const int result_fd = memfd_create("tm_prop_result", 0);
  const int err_fd = memfd_create("tm_prop_stderr", 0);
  if (result_fd < 0 || err_fd < 0) {
    out.status = "memfd_create failed";
    return out;
  }
  std::fflush(nullptr);
  detail::parent_coverage_flush();
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::dup2(err_fd, 2);
    detail::child_coverage_start();
    const std::string r = fn();
    detail::write_all(result_fd, r.data(), r.size());
    detail::child_coverage_write();
    ::_exit(0);  // no atexit handlers, no leak check: the parent owns the verdict
  }
  if (pid < 0) {
    out.status = "fork failed";
    ::close(result_fd);
    ::close(err_fd);
    return out;
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  const std::string result = detail::read_fd(result_fd);
  const std::string err = detail::read_fd(err_fd);
  ::close(result_fd);
  ::close(err_fd);
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
    out.returned = true;
    out.result = result;
    return out;
  }
  out.status = WIFSIGNALED(status)
                   ? "signal " + std::to_string(WTERMSIG(status)) + " (" + strsignal(WTERMSIG(status)) + ")"
                   : "exit status " + std::to_string(WEXITSTATUS(status));
  out.stderr_tail = err.size() > 8000 ? err.substr(err.size() - 8000) : err;
  return out;
}

// run_program_here in a forked child (see the file comment).
inline RunOutcome run_program_isolated(const std::string& backend_name, const tmh::Program& program,
                                       size_t observe_from = SIZE_MAX, size_t observe_end = SIZE_MAX,
                                       tmh::Profile profile = tmh::Profile::kGeneral) {
  const ChildOutcome c = run_in_child([&]() {
    const RunOutcome r = run_program_here(backend_name, program, observe_from, observe_end, profile);
    std::string blob;
    const tmh::Interpreter::Counters& k = r.counters;
    for (uint64_t v :
         {uint64_t{r.ok}, uint64_t{r.op_index}, uint64_t{k.ops}, uint64_t{k.allocs}, uint64_t{k.frees},
          uint64_t{k.reallocs}, uint64_t{k.realloc_in_place}, uint64_t{k.expected_failures}, uint64_t{k.oom_failures},
          uint64_t{k.skipped}, uint64_t{k.pool_blocks_dropped}, uint64_t{r.events.size()}}) {
      detail::put_u64(blob, v);
    }
    detail::put_str(blob, r.message);
    for (const std::string& e : r.events) detail::put_str(blob, e);
    return blob;
  });
  RunOutcome out;
  if (c.returned) {
    uint64_t v[12];
    size_t pos = 0;
    bool good = true;
    for (uint64_t& x : v) good = good && detail::get_u64(c.result, pos, &x);
    good = good && detail::get_str(c.result, pos, &out.message);
    if (good) {
      out.ok = v[0] != 0;
      out.op_index = v[1];
      out.counters.ops = v[2];
      out.counters.allocs = v[3];
      out.counters.frees = v[4];
      out.counters.reallocs = v[5];
      out.counters.realloc_in_place = v[6];
      out.counters.expected_failures = v[7];
      out.counters.oom_failures = v[8];
      out.counters.skipped = v[9];
      out.counters.pool_blocks_dropped = v[10];
      for (uint64_t i = 0; i < v[11]; ++i) {
        std::string e;
        if (!detail::get_str(c.result, pos, &e)) break;
        out.events.insert(e);
      }
      return out;
    }
  }
  out.ok = false;
  out.crashed = true;
  out.op_index = program.ops.size();
  out.message = "the run died (" + (c.returned ? std::string("garbled result") : c.status) +
                ") before the Interpreter could report; its stderr:\n" + c.stderr_tail;
  return out;
}

}  // namespace tmprop
