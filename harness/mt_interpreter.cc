// The multi-threaded interpreter (heap_mt): runs an MtProgram on real threads, phase by
// phase, with one ThreadEngine (the single-thread interpreter's shadow model) per thread,
// mailboxes for handoffs during a phase, and the global checks at phase ends. Semantics:
// harness/FORMAT.md "Multi-threaded programs".
//
// Synchronisation the harness itself adds between the worker threads (it must stay small,
// or it would hide the allocator's data races from ThreadSanitizer): the phase start and end
// (one mutex + condition variables, as any thread pool has), the mailbox of the receiving
// thread (send / recv / drain, like any producer/consumer queue) and, only in strict-overlap
// mode, the registry of live blocks. Every other harness variable is private to one thread
// or touched only while the workers are parked.
#include <sched.h>

#include <algorithm>
#include <atomic>
#include <cinttypes>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <map>
#include <mutex>
#include <thread>
#include <tuple>

#include "engine.h"
#include "tinymalloc.h"
#include "tm_harness_mt.h"

namespace tmh {

namespace {

using detail::Block;
using detail::ThreadEngine;

// "0x7f..." for reports.
std::string hexptr(uintptr_t a) {
  char b[32];
  snprintf(b, sizeof b, "0x%" PRIxPTR, a);
  return b;
}

// Serialises every call into a backend that is not thread-safe (the faulty self-test
// backends keep their blocks in an unlocked std::map).
class LockedBackend final : public Backend {
 public:
  explicit LockedBackend(Backend& inner) : in_(inner) {}
  const char* name() const override { return in_.name(); }
  void* malloc(size_t n) override {
    return locked([&] { return in_.malloc(n); });
  }
  void* calloc(size_t c, size_t n) override {
    return locked([&] { return in_.calloc(c, n); });
  }
  void* realloc(void* p, size_t n) override {
    return locked([&] { return in_.realloc(p, n); });
  }
  void free(void* p) override {
    locked([&] {
      in_.free(p);
      return 0;
    });
  }
  void* aligned_alloc(size_t a, size_t n) override {
    return locked([&] { return in_.aligned_alloc(a, n); });
  }
  int posix_memalign(void** out, size_t a, size_t n) override {
    return locked([&] { return in_.posix_memalign(out, a, n); });
  }
  size_t usable_size(const void* p) override {
    return locked([&] { return in_.usable_size(p); });
  }
  void release_cached() override {
    locked([&] {
      in_.release_cached();
      return 0;
    });
  }
  void thread_retire() override {
    locked([&] {
      in_.thread_retire();
      return 0;
    });
  }
  bool strict() const override { return in_.strict(); }
  bool has_heap_check() const override { return in_.has_heap_check(); }
  int check_heap(std::string* message) override {
    return locked([&] { return in_.check_heap(message); });
  }
  bool has_stats() const override { return in_.has_stats(); }
  void stats(HeapStats* out) override {
    locked([&] {
      in_.stats(out);
      return 0;
    });
  }
  bool has_owns() const override { return in_.has_owns(); }
  bool owns(const void* p) override {
    return locked([&] { return in_.owns(p); });
  }
  bool has_oom_injection() const override { return in_.has_oom_injection(); }
  void fail_os_after(long calls) override {
    locked([&] {
      in_.fail_os_after(calls);
      return 0;
    });
  }
  uint64_t max_attempt_size() const override { return in_.max_attempt_size(); }
  uint64_t max_live_bytes() const override { return in_.max_live_bytes(); }
  uint64_t max_attempt_alignment() const override { return in_.max_attempt_alignment(); }

 private:
  // Runs f with the lock held.
  template <typename F>
  auto locked(F&& f) -> decltype(f()) {
    std::lock_guard<std::mutex> g(mu_);
    return f();
  }
  Backend& in_;
  std::mutex mu_;
};

// Strict-overlap mode: every live block of the run, by address, under one lock.
class Registry final : public detail::OverlapRegistry {
 public:
  bool claim(const void* p, uint64_t extent, uint64_t requested, unsigned owner, std::string* other,
             bool* shares_requested) override {
    const uintptr_t a = reinterpret_cast<uintptr_t>(p);
    const uint64_t req = requested > 0 ? requested : 1;
    std::lock_guard<std::mutex> g(mu_);
    auto conflict = [&](std::map<uintptr_t, Entry>::const_iterator it) {
      *other = describe(it);
      *shares_requested = it->first < a + req && a < it->first + it->second.requested;
      return false;
    };
    auto it = map_.upper_bound(a);
    if (it != map_.end() && it->first < a + extent) return conflict(it);
    if (it != map_.begin()) {
      --it;
      if (it->first + it->second.extent > a) return conflict(it);
    }
    map_[a] = Entry{extent, req, owner};
    return true;
  }
  void unclaim(const void* p) override {
    std::lock_guard<std::mutex> g(mu_);
    map_.erase(reinterpret_cast<uintptr_t>(p));
  }

 private:
  struct Entry {
    uint64_t extent;
    uint64_t requested;  // at least 1
    unsigned owner;
  };
  // "0x.. (usable N bytes, claimed by thread T)".
  static std::string describe(std::map<uintptr_t, Entry>::const_iterator it) {
    return hexptr(it->first) + " (usable " + std::to_string(it->second.extent) +
           " bytes, allocated or last held by thread " + std::to_string(it->second.owner) + ")";
  }
  std::mutex mu_;
  std::map<uintptr_t, Entry> map_;
};

// A block in a mailbox, with where it came from (for reports).
struct Message {
  Block block;
  unsigned from;
  size_t op;  // stream index of the send
};

struct Mailbox {
  std::mutex mu;
  std::deque<Message> q;
};

// What a thread runs in one phase, in order.
struct Step {
  MtKind kind;
  uint32_t index;  // kHeap: index into the thread's heap program; else into MtProgram::ops
};

struct Phase {
  std::vector<std::vector<Step>> steps;                 // per thread
  std::vector<std::pair<unsigned, uint32_t>> deferred;  // (thread, stream index): give / migrate
  bool oom = false;
  uint8_t oom_arg = 0;
  bool final_frees = false;  // owners-free finale: every thread frees its own blocks
  // Nothing for any thread to do (the phase is skipped).
  bool empty() const {
    for (const auto& s : steps) {
      if (!s.empty()) return false;
    }
    return deferred.empty() && !final_frees;
  }
};

}  // namespace

// ---- One run -------------------------------------------------------------------------------

struct MtRun {
  Backend& be;
  const Options& opt;
  const MtProgram& prog;
  const bool serial;
  MtInterpreter::Counters& ctr;
  const unsigned n;

  std::vector<Program> tprog;                       // heap ops per thread
  std::vector<std::vector<uint32_t>> stream_index;  // per thread: heap op -> stream index
  std::vector<Phase> phases;
  std::unique_ptr<Registry> registry;
  std::vector<std::unique_ptr<ThreadEngine>> eng;
  std::vector<std::unique_ptr<Mailbox>> box;
  HeapStats base;

  // Worker control (mu): go_gen[t] = the phase thread t may run; done_gen[t] = the last phase it
  // finished; exits = (thread, phase, step to resume at) of workers whose OS thread ended.
  std::mutex mu;
  std::condition_variable go_cv, done_cv;
  std::vector<long> go_gen, done_gen;
  std::vector<std::tuple<unsigned, long, size_t>> exits;
  bool quit = false;
  ThreadPool& pool;                    // OS threads reused across inputs
  std::vector<ThreadPool::Handle> os;  // current OS thread per logical thread (or not joinable)
  std::vector<unsigned> os_number;     // OS threads started so far per logical thread
  long cur_phase = -1;

  // First failure (workers stop at their next op once it is set).
  std::mutex fail_mu;
  std::atomic<bool> failed{false};
  std::string failure;
  size_t failure_op = 0;

  // The contract of the phase-end checks (the engines hold their own copies, contract.h).
  const Contract contract;

  MtRun(Backend& b, const Options& o, const MtProgram& p, bool s, MtInterpreter::Counters& c, ThreadPool& tp)
      : be(b),
        opt(o),
        prog(p),
        serial(s),
        ctr(c),
        n(p.threads()),
        pool(tp),
        contract(contract_from_env(b.strict() ? ContractProfile::kTinymalloc : ContractProfile::kGlibc)) {}

  // A phase-end check found a deviation of clause c (described by what): true when the run
  // goes on (c waived: recorded; outside the profile: no deviation), false when it is
  // enforced (*what then names the clause for the report).
  bool tolerated(Clause c, std::string* what) const {
    if (!contract.applies(c)) return true;
    if (contract.is_waived(c)) {
      record_deviation(c, *what);
      return true;
    }
    *what += "\n" + clause_report_line(c, contract.profile);
    return false;
  }

  // ---- schedule ----
  // Splits the stream into per-thread heap programs and per-phase steps (FORMAT.md).
  void build() {
    tprog.assign(n, Program{});
    stream_index.assign(n, {});
    for (auto& tp : tprog) tp.header = prog.header;
    phases.assign(1, Phase{});
    phases.back().steps.assign(n, {});
    unsigned cur = 0;
    size_t exits_seen = 0;
    for (uint32_t i = 0; i < prog.ops.size(); ++i) {
      const MtOp& m = prog.ops[i];
      Phase& ph = phases.back();
      switch (m.kind) {
        case MtKind::kHeap:
          ph.steps[cur].push_back({MtKind::kHeap, static_cast<uint32_t>(tprog[cur].ops.size())});
          tprog[cur].ops.push_back(m.op);
          stream_index[cur].push_back(i);
          if (m.op.kind == OpKind::kOomWindow && !ph.oom) {
            ph.oom = true;
            ph.oom_arg = m.op.arg;
          }
          break;
        case MtKind::kThread:
          cur = m.thread % n;
          break;
        case MtKind::kNext:
          cur = (cur + 1) % n;
          break;
        case MtKind::kBarrier:
          if (phases.size() < kMtMaxPhases) {
            phases.emplace_back();
            phases.back().steps.assign(n, {});
          }
          break;
        case MtKind::kGive:
        case MtKind::kMigrate:
          ph.deferred.push_back({cur, i});
          break;
        case MtKind::kExit:
          if (++exits_seen > kMtMaxExits) break;
          ph.steps[cur].push_back({m.kind, i});
          break;
        default:
          ph.steps[cur].push_back({m.kind, i});
          break;
      }
    }
    if (prog.owners_free()) {
      phases.emplace_back();
      phases.back().steps.assign(n, {});
      phases.back().final_frees = true;
    }
  }

  // "thread 2 (OS thread #3), phase 4" for reports and verbose lines.
  std::string context(unsigned t) const {
    return "thread " + std::to_string(t) + " (OS thread #" + std::to_string(os_number[t]) + "), phase " +
           std::to_string(cur_phase);
  }
  // "#7 @23": stream index and input offset of op i ("#end" past the last op: final frees).
  std::string at(size_t i) const {
    if (i >= prog.ops.size()) return "#end";
    return "#" + std::to_string(i) + " @" + std::to_string(prog.ops[i].pos);
  }

  // ---- failures ----
  // Records the first failure; aborts at once when the options say so.
  void record_failure(const std::string& report, size_t op) {
    std::lock_guard<std::mutex> g(fail_mu);
    if (opt.abort_on_failure) {
      fputs(report.c_str(), opt.out);
      fflush(opt.out);
      abort();
    }
    if (failed.load(std::memory_order_relaxed)) return;
    failure = report;
    failure_op = op;
    failed.store(true, std::memory_order_relaxed);
  }

  // Report of a check by the main thread: a header, what differed, the heap check, and the
  // recent ops and live blocks of the named threads (all threads when none is named).
  std::string boundary_report(const std::string& what, std::vector<unsigned> threads) {
    std::string r;
    char buf[512];
    snprintf(buf, sizeof buf,
             "\n==== tinymalloc harness: FAILURE (target %s, backend %s, heap_mt: %u threads) ====\n"
             "at: %s\nwhat: %s\n",
             opt.target.c_str(), be.name(), n,
             cur_phase >= 0 ? ("the end of phase " + std::to_string(cur_phase) + " (workers parked)").c_str()
                            : "the end of the run (every worker joined)",
             what.c_str());
    r += buf;
    if (threads.empty()) {
      for (unsigned t = 0; t < n; ++t) threads.push_back(t);
    }
    for (unsigned t : threads) {
      std::string er = eng[t]->report(context(t), what);
      // Keep the per-thread part only (from "recent ops").
      const size_t k = er.find("recent ops");
      r += "---- thread " + std::to_string(t) + ": " + (k == std::string::npos ? er : er.substr(k));
    }
    r += "reproduce: tools/tm-repro <input file> --target " + opt.target +
         "   (TM_HARNESS_MT_SERIAL=1 runs the threads of a phase one after another)\n";
    return r;
  }

  // ---- workers ----
  // Runs thread t's steps of phase `ph` from `from`; returns the step after an exit op, or
  // SIZE_MAX when the phase's steps are done.
  size_t run_steps(unsigned t, const Phase& ph, size_t from) {
    ThreadEngine& e = *eng[t];
    const std::vector<Step>& steps = ph.steps[t];
    std::string report;
    const std::string ctx = context(t);
    for (size_t k = from; k < steps.size(); ++k) {
      if (failed.load(std::memory_order_relaxed)) return SIZE_MAX;
      const Step& st = steps[k];
      if (st.kind == MtKind::kHeap) {
        if (!e.step(st.index, ctx, &report)) {
          record_failure(report, stream_index[t][st.index]);
          return SIZE_MAX;
        }
        continue;
      }
      const MtOp& m = prog.ops[st.index];
      switch (m.kind) {
        case MtKind::kSend:
          send(t, m.slot, m.thread, st.index, ctx);
          break;
        case MtKind::kSendRange:
          for (unsigned i = 0; i < m.range_count(); ++i) send(t, (m.slot + i) % kSlots, m.thread, st.index, ctx);
          break;
        case MtKind::kRecv:
          recv(t, m.slot, st.index, ctx);
          break;
        case MtKind::kDrain:
          drain(t, st.index, ctx);
          break;
        case MtKind::kYield:
          e.note(st.index, at(st.index) + " yield");
          if (m.arg & 128) {
            for (unsigned i = 0; i < ((m.arg & 127u) + 1) * 64; ++i) asm volatile("" ::: "memory");
          } else {
            for (unsigned i = 0; i <= (m.arg & 7u); ++i) sched_yield();
          }
          break;
        case MtKind::kExit:
          e.note(st.index, at(st.index) + " exit: OS thread #" + std::to_string(os_number[t]) + " ends here");
          return k + 1;
        default:
          break;
      }
    }
    if (ph.final_frees) final_frees_by_owner(t, ctx);
    return SIZE_MAX;
  }

  // send: thread t moves slot s's block (verified) into thread `to`'s mailbox.
  void send(unsigned t, unsigned slot, unsigned to, uint32_t i, const std::string& ctx) {
    ThreadEngine& e = *eng[t];
    if (!e.live(slot)) {
      e.note(i, at(i) + " send slot " + std::to_string(slot) + ": empty slot, nothing sent");
      return;
    }
    const std::string desc = e.describe(slot);
    Message msg{Block{}, t, i};
    std::string report;
    if (!e.take(slot, &msg.block, "before it was sent to another thread", ctx, &report)) {
      record_failure(report, i);
      return;
    }
    {
      std::lock_guard<std::mutex> g(box[to % n]->mu);
      box[to % n]->q.push_back(msg);
    }
    e.note(i, at(i) + " sent " + desc + " -> mailbox of thread " + std::to_string(to % n));
  }

  // recv: the oldest block of thread t's mailbox goes into slot s (its old block is freed).
  void recv(unsigned t, unsigned slot, uint32_t i, const std::string& ctx) {
    ThreadEngine& e = *eng[t];
    Message msg;
    bool got = false;
    {
      std::lock_guard<std::mutex> g(box[t]->mu);
      if (!box[t]->q.empty()) {
        msg = box[t]->q.front();
        box[t]->q.pop_front();
        got = true;
      }
    }
    if (!got) {
      e.note(i, at(i) + " recv slot " + std::to_string(slot) + ": mailbox empty");
      return;
    }
    std::string report;
    if (e.live(slot) && !e.release(slot, "before its slot received a block", ctx, &report)) {
      record_failure(report, i);
      return;
    }
    e.note(i, at(i) + " recv slot " + std::to_string(slot) + " <- " + detail::describe_detached(msg.block) +
                  " from thread " + std::to_string(msg.from) + " (sent by op #" + std::to_string(msg.op) + ")");
    if (!e.put(slot, msg.block, "when it was received from another thread", ctx, &report)) {
      record_failure(report, i);
      return;
    }
    ++received_by[t];
  }

  // drain: thread t verifies and frees every block of its mailbox.
  void drain(unsigned t, uint32_t i, const std::string& ctx) {
    std::deque<Message> q;
    {
      std::lock_guard<std::mutex> g(box[t]->mu);
      q.swap(box[t]->q);
    }
    eng[t]->note(i, at(i) + " drain: " + std::to_string(q.size()) + " block(s)");
    for (Message& msg : q) {
      if (!free_detached(msg, t, ctx)) return;
      ++drained_by[t];
    }
  }

  // Verifies and frees a block taken from a mailbox (by its receiver or the main thread).
  bool free_detached(const Message& msg, unsigned t, const std::string& ctx) {
    const std::string err = msg.block.tainted ? std::string() : detail::verify_detached(msg.block);
    if (!err.empty()) {
      std::string what = "content of " + detail::describe_detached(msg.block) + " (sent by thread " +
                         std::to_string(msg.from) + ", op #" + std::to_string(msg.op) +
                         ") changed while it waited in a mailbox: " + err;
      if (!tolerated(Clause::kContent, &what)) {
        record_failure(t < n ? eng[t]->report(ctx, what) : what, msg.op);
        return false;
      }
    }
    if (registry) registry->unclaim(msg.block.p);
    be.free(msg.block.p);
    return true;
  }

  // owners-free finale: thread t frees its own blocks (header order) and its mailbox.
  void final_frees_by_owner(unsigned t, const std::string& ctx) {
    ThreadEngine& e = *eng[t];
    std::vector<unsigned> order = end_order_of(t);
    std::string report;
    for (unsigned s : order) {
      if (!e.release(s, "at the final free (by its owner)", ctx, &report)) {
        record_failure(report, prog.ops.size());
        return;
      }
    }
    drain(t, static_cast<uint32_t>(prog.ops.size()), ctx);  // "#end" in the notes
  }

  // Slots of thread t in the header's final-free order.
  std::vector<unsigned> end_order_of(unsigned t) const {
    std::vector<unsigned> by_address;
    for (auto& b : eng[t]->live_blocks()) by_address.push_back(b.slot);
    return end_order_slots(prog.end_order(), by_address);
  }

  std::vector<size_t> received_by, drained_by;

  // Body of a worker OS thread: phase `gen` from step `from`, then every later phase it is
  // let go on, until an exit op (returns true: the OS thread ends) or quit (returns false:
  // the thread has done what the allocator does at thread exit and goes back to the pool).
  bool worker(unsigned t, long gen, size_t from) {
    for (;;) {
      const size_t resume = run_steps(t, phases[static_cast<size_t>(gen)], from);
      {
        std::lock_guard<std::mutex> g(mu);
        if (resume != SIZE_MAX) {
          exits.emplace_back(t, gen, resume);
        } else {
          done_gen[t] = gen;
        }
        done_cv.notify_all();
      }
      if (resume != SIZE_MAX) return true;  // exit op: this OS thread ends (TLS destructors run)
      std::unique_lock<std::mutex> l(mu);
      go_cv.wait(l, [&] { return quit || go_gen[t] > gen; });
      if (quit) {
        l.unlock();
        be.thread_retire();  // as if the thread exited: its cache goes back before the leak check
        return false;
      }
      gen = go_gen[t];
      from = 0;
    }
  }

  // Starts a new OS thread for logical thread t at step `from` of phase `gen`.
  void start(unsigned t, long gen, size_t from) {
    ++os_number[t];
    ++ctr.os_threads;
    os[t] = pool.start([this, t, gen, from] { return worker(t, gen, from); });
  }

  // Lets thread t run phase `gen` (starting an OS thread when it has none) and waits until
  // the given threads are done with it, replacing the OS threads that exited on the way.
  void run_threads(long gen, const std::vector<unsigned>& which) {
    {
      std::lock_guard<std::mutex> g(mu);
      for (unsigned t : which) go_gen[t] = gen;
    }
    for (unsigned t : which) {
      if (!os[t].joinable()) start(t, gen, 0);
    }
    go_cv.notify_all();
    std::unique_lock<std::mutex> l(mu);
    for (;;) {
      while (!exits.empty()) {
        auto [t, g, resume] = exits.back();
        exits.pop_back();
        l.unlock();
        os[t].join();  // the exited thread is gone (its thread-local destructors ran)
        ++ctr.exits;
        const bool more = resume < phases[static_cast<size_t>(g)].steps[t].size();
        if (more && !failed.load(std::memory_order_relaxed)) {
          start(t, g, resume);
          l.lock();
        } else {
          l.lock();
          done_gen[t] = g;
        }
      }
      bool all = true;
      for (unsigned t : which) all = all && done_gen[t] >= gen;
      if (all) return;
      done_cv.wait(l);
    }
  }

  // ---- phase-end checks (workers parked) ----
  // Overlaps of all live blocks, contents, heap check and stats; false after a failure.
  bool phase_end_checks(const char* when) {
    // Every live block of every thread and mailbox, by address: no two may overlap.
    struct Item {
      uintptr_t a;
      uint64_t extent;
      uint64_t requested;
      std::string who;
      unsigned thread;
    };
    std::vector<Item> all;
    for (unsigned t = 0; t < n; ++t) {
      for (const auto& b : eng[t]->live_blocks()) all.push_back({b.addr, b.extent, b.requested, "", t});
      for (const Message& m : box[t]->q) {
        const std::string err = m.block.tainted ? std::string() : detail::verify_detached(m.block);
        std::string what = "content of " + detail::describe_detached(m.block) + " in the mailbox of thread " +
                           std::to_string(t) + " changed: " + err;
        if (!err.empty() && !tolerated(Clause::kContent, &what)) {
          record_failure(boundary_report(what, {t, m.from}), prog.ops.size());
          return false;
        }
        all.push_back({reinterpret_cast<uintptr_t>(m.block.p), m.block.extent(),
                       m.block.requested > 0 ? m.block.requested : 1, "in the mailbox of thread " + std::to_string(t),
                       t});
      }
    }
    std::sort(all.begin(), all.end(), [](const Item& x, const Item& y) { return x.a < y.a; });
    bool overlapped = false;
    for (size_t k = 1; k < all.size(); ++k) {
      if (all[k - 1].a + all[k - 1].extent > all[k].a) {
        const Item& x = all[k - 1];
        const Item& y = all[k];
        std::string what = "live blocks overlap: " + hexptr(x.a) + " (usable " + std::to_string(x.extent) +
                           " bytes, thread " + std::to_string(x.thread) + (x.who.empty() ? "" : ", ") + x.who +
                           ") and " + hexptr(y.a) + " (usable " + std::to_string(y.extent) + " bytes, thread " +
                           std::to_string(y.thread) + (y.who.empty() ? "" : ", ") + y.who + ")";
        // Usable tails only (the first block's requested bytes end before the second) is a
        // usable-size deviation; shared requested bytes a no-overlap one.
        const Clause c = x.a + x.requested > y.a ? Clause::kNoOverlap : Clause::kUsableSize;
        if (!tolerated(c, &what)) {
          record_failure(boundary_report(what, {x.thread, y.thread}), prog.ops.size());
          return false;
        }
        overlapped = true;
      }
    }
    // A waived overlap changes the contents of both blocks: their checks would only repeat it.
    if (overlapped) return check_stats(when);
    // Then the contents (an overlap shows up as changed contents too; the overlap is the
    // better diagnosis).
    std::string report;
    for (unsigned t = 0; t < n; ++t) {
      if (!eng[t]->verify_all(when, context(t), &report)) {
        record_failure(report, prog.ops.size());
        return false;
      }
    }
    if (be.has_heap_check()) {
      std::string msg;
      if (be.check_heap(&msg) != 0) {
        std::string what = std::string("heap check failed ") + when + ": " + msg;
        if (!tolerated(Clause::kHeapCheck, &what)) {
          record_failure(boundary_report(what, {}), prog.ops.size());
          return false;
        }
      }
    }
    return check_stats(when);
  }

  // Model totals over every thread and mailbox.
  void model_totals(uint64_t* count, uint64_t* requested, uint64_t* usable) const {
    *count = *requested = *usable = 0;
    for (unsigned t = 0; t < n; ++t) {
      *count += eng[t]->live_count();
      *requested += eng[t]->live_requested();
      *usable += eng[t]->live_usable();
      for (const Message& m : box[t]->q) {
        ++*count;
        *requested += m.block.requested;
        *usable += m.block.usable;
      }
    }
  }

  // The same for the blocks outside memory pools only.
  void model_routed(uint64_t* count, uint64_t* requested) const {
    *count = *requested = 0;
    for (unsigned t = 0; t < n; ++t) {
      *count += eng[t]->routed_count();
      *requested += eng[t]->routed_requested();
      for (const Message& m : box[t]->q) {
        if (m.block.pool >= 0) continue;
        ++*count;
        *requested += m.block.requested;
      }
    }
  }

  // tm_stats deltas against the model (only meaningful while no worker runs), and the
  // snapshot's self-consistency (as in the single-thread interpreter).
  bool check_stats(const char* when) {
    if (!be.has_stats()) return true;
    HeapStats s;
    be.stats(&s);
    if (opt.trace != nullptr) {
      char line[300];
      snprintf(line, sizeof line,
               "phase %ld, %s: live %zu usable %zu | mapped %zu committed %zu maps %zu unmaps %zu purges %zu pooled "
               "%zu\n",
               cur_phase, when, s.live_blocks, s.usable_bytes, s.mapped_bytes, s.committed_bytes, s.map_calls,
               s.unmap_calls, s.purge_calls, s.pool_segments);
      *opt.trace += line;
    }
    uint64_t count, requested, usable;
    model_totals(&count, &requested, &usable);
    char buf[512];
    auto bad = [&](const char* fmt, auto... args) {
      snprintf(buf, sizeof buf, fmt, args...);
      std::string what = std::string("stats ") + when + ": " + buf;
      if (tolerated(Clause::kStats, &what)) return true;
      record_failure(boundary_report(what, {}), prog.ops.size());
      return false;
    };
    if (s.debug_view) {
      // Debug mode (HeapStats::debug_view): its records against the model's blocks outside
      // pools, the core's live blocks against the model's plus the quarantine.
      uint64_t routed = 0, routed_bytes = 0;
      model_routed(&routed, &routed_bytes);
      const uint64_t recorded = s.debug_live_blocks - base.debug_live_blocks;
      const uint64_t recorded_bytes = s.debug_live_bytes - base.debug_live_bytes;
      const uint64_t quarantined = s.debug_quarantined - base.debug_quarantined;
      if (recorded != routed || recorded_bytes != routed_bytes) {
        return bad("debug mode's records: %" PRIu64 " live blocks of %" PRIu64
                   " requested bytes; the model has %" PRIu64 " blocks of %" PRIu64
                   " bytes outside pools in all threads and mailboxes",
                   recorded, recorded_bytes, routed, routed_bytes);
      }
      if (s.live_blocks - base.live_blocks != count + quarantined) {
        return bad("live_blocks is %zu (baseline %zu); the model has %" PRIu64
                   " live blocks in all threads and mailboxes and debug mode's quarantine %" PRIu64,
                   s.live_blocks, base.live_blocks, count, quarantined);
      }
    } else if (s.live_blocks - base.live_blocks != count) {
      return bad("live_blocks is %zu (baseline %zu, so %" PRId64 " blocks of this run); the model has %" PRIu64
                 " live blocks in all threads and mailboxes",
                 s.live_blocks, base.live_blocks, static_cast<int64_t>(s.live_blocks - base.live_blocks), count);
    }
    if (!s.debug_view && s.requested_exact && s.requested_bytes - base.requested_bytes != requested) {
      return bad("requested_bytes is %zu (baseline %zu, so %" PRId64 " bytes of this run); the model has %" PRIu64,
                 s.requested_bytes, base.requested_bytes,
                 static_cast<int64_t>(s.requested_bytes - base.requested_bytes), requested);
    }
    if (!s.debug_view && s.usable_bytes - base.usable_bytes != usable) {
      return bad("usable_bytes is %zu (baseline %zu, so %" PRId64
                 " bytes of this run); the model's sum of usable_size() is %" PRIu64,
                 s.usable_bytes, base.usable_bytes, static_cast<int64_t>(s.usable_bytes - base.usable_bytes), usable);
    }
    if (s.small_live_blocks + s.medium_live_blocks + s.large_live_blocks != s.live_blocks) {
      return bad("small %zu + medium %zu + large %zu live blocks != live_blocks %zu", s.small_live_blocks,
                 s.medium_live_blocks, s.large_live_blocks, s.live_blocks);
    }
    if (s.class_live_sum != s.small_live_blocks) {
      return bad("sum of class_live_blocks %zu != small_live_blocks %zu", s.class_live_sum, s.small_live_blocks);
    }
    if (s.usable_bytes < s.requested_bytes) {
      return bad("usable_bytes %zu < requested_bytes %zu", s.usable_bytes, s.requested_bytes);
    }
    if (s.peak_requested_bytes < s.requested_bytes) {
      return bad("peak_requested_bytes %zu < requested_bytes %zu", s.peak_requested_bytes, s.requested_bytes);
    }
    if (s.peak_mapped_bytes < s.mapped_bytes) {
      return bad("peak_mapped_bytes %zu < mapped_bytes %zu", s.peak_mapped_bytes, s.mapped_bytes);
    }
    if (s.committed_bytes > s.mapped_bytes) {
      return bad("committed_bytes %zu > mapped_bytes %zu", s.committed_bytes, s.mapped_bytes);
    }
    if (s.medium_largest_free > s.medium_free_bytes || (s.medium_free_blocks == 0) != (s.medium_free_bytes == 0)) {
      return bad("medium free space inconsistent: %zu blocks, %zu bytes, largest %zu", s.medium_free_blocks,
                 s.medium_free_bytes, s.medium_largest_free);
    }
    return true;
  }

  // ---- handoffs at a phase end (main thread, workers parked) ----
  // Moves the block of thread a's slot s into thread b's slot d (exchanging with a block there).
  bool move_block(unsigned a, unsigned s, unsigned b, unsigned d, uint32_t i) {
    ThreadEngine& from = *eng[a];
    ThreadEngine& to = *eng[b];
    if (!from.live(s)) return true;
    if (a == b && s == d) return true;
    std::string report;
    Block blk, other;
    const std::string desc = from.describe(s);
    if (!from.take(s, &blk, "before it was given to another thread", context(a), &report)) {
      record_failure(report, i);
      return false;
    }
    const bool exchange = to.live(d);
    if (exchange && !to.take(d, &other, "before it was exchanged with another thread's block", context(b), &report)) {
      record_failure(report, i);
      return false;
    }
    if (!to.put(d, blk, "when it was given to this thread", context(b), &report) ||
        (exchange && !from.put(s, other, "when it was given back in exchange", context(a), &report))) {
      record_failure(report, i);
      return false;
    }
    from.note(i, at(i) + " gave " + desc + " -> thread " + std::to_string(b) + " slot " + std::to_string(d) +
                     (exchange ? " (exchanged)" : ""));
    to.note(i, at(i) + " got slot " + std::to_string(d) + " <- thread " + std::to_string(a) + " slot " +
                   std::to_string(s) + (exchange ? " (exchanged)" : ""));
    ctr.handoffs += exchange ? 2 : 1;
    return true;
  }

  // The phase's gives and migrates, in stream order (main thread, workers parked).
  bool apply_deferred(const Phase& ph) {
    for (const auto& [a, i] : ph.deferred) {
      const MtOp& m = prog.ops[i];
      const unsigned b = m.thread % n;
      if (m.kind == MtKind::kGive) {
        if (!move_block(a, m.slot, b, m.slot2, i)) return false;
      } else if (a != b) {  // migrate
        for (unsigned s = 0; s < kSlots; ++s) {
          if (!move_block(a, s, b, s, i)) return false;
        }
      }
    }
    return true;
  }

  // ---- the run ----
  // Runs the program: phases, then the joins, final frees and leak check.
  Result go() {
    build();
    received_by.assign(n, 0);
    drained_by.assign(n, 0);
    go_gen.assign(n, -1);
    done_gen.assign(n, -1);
    os.resize(n);
    os_number.assign(n, 0);
    box.clear();
    for (unsigned t = 0; t < n; ++t) box.push_back(std::make_unique<Mailbox>());
    // Strict-overlap mode by the input's flag, and always when the contract waives a clause
    // (tools/tm-check-allocator): an overlap across threads is then found when the block is
    // handed out, so the contents one thread sees changed are known to be its consequence.
    if (prog.strict_overlap() || contract.waived != 0) registry = std::make_unique<Registry>();
    for (unsigned t = 0; t < n; ++t) {
      eng.push_back(std::make_unique<ThreadEngine>(be, opt, tprog[t], t, n, registry.get()));
    }
    if (be.has_stats()) be.stats(&base);

    for (size_t p = 0; p < phases.size() && !failed.load(std::memory_order_relaxed); ++p) {
      const Phase& ph = phases[p];
      if (ph.empty()) continue;
      cur_phase = static_cast<long>(p);
      ++ctr.phases;
      const bool oom = ph.oom && be.has_oom_injection();
      if (oom) {
        be.fail_os_after(static_cast<long>(ph.oom_arg & 7u));
        for (auto& e : eng) e->set_oom(true);
      }
      if (serial) {
        for (unsigned t = 0; t < n; ++t) run_threads(cur_phase, {t});
      } else {
        std::vector<unsigned> all(n);
        for (unsigned t = 0; t < n; ++t) all[t] = t;
        run_threads(cur_phase, all);
      }
      if (oom) {
        be.fail_os_after(-1);
        for (auto& e : eng) e->set_oom(false);
      }
      if (failed.load(std::memory_order_relaxed)) break;
      if (!apply_deferred(ph)) break;
      if (!phase_end_checks(ph.final_frees ? "after the owners' final frees" : "at the end of the phase")) break;
    }
    // Every worker is done (retired, or exited) and joined before the final frees and the leak
    // check.
    {
      std::lock_guard<std::mutex> g(mu);
      quit = true;
    }
    go_cv.notify_all();
    for (auto& th : os) {
      if (th.joinable()) th.join();
    }
    cur_phase = -1;
    for (unsigned t = 0; t < n; ++t) {
      ctr.received += received_by[t];
      ctr.drained += drained_by[t];
    }
    if (!failed.load(std::memory_order_relaxed)) final_frees();

    for (unsigned t = 0; t < n; ++t) {
      const Interpreter::Counters& c = eng[t]->counters();
      ctr.heap.ops += c.ops;
      ctr.heap.allocs += c.allocs;
      ctr.heap.frees += c.frees;
      ctr.heap.reallocs += c.reallocs;
      ctr.heap.realloc_in_place += c.realloc_in_place;
      ctr.heap.expected_failures += c.expected_failures;
      ctr.heap.oom_failures += c.oom_failures;
      ctr.heap.skipped += c.skipped;
    }
    Result res;
    if (opt.trace != nullptr) {
      for (unsigned t = 0; t < n; ++t) *opt.trace += "thread " + std::to_string(t) + ":\n" + eng[t]->trace();
      if (failed.load(std::memory_order_relaxed)) {
        const size_t w = failure.find("what: ");
        *opt.trace += "end: FAILED: " +
                      (w == std::string::npos ? failure.substr(0, 80) : failure.substr(w, failure.find('\n', w) - w)) +
                      "\n";
      } else {
        *opt.trace += "end: ok\n";
      }
    }
    if (failed.load(std::memory_order_relaxed)) {
      res.ok = false;
      res.op_index = failure_op;
      res.message = failure;
      if (be.has_oom_injection()) be.fail_os_after(-1);
      for (auto& e : eng) e->forget_all(opt.free_after_failure);
      for (auto& b : box) {
        if (opt.free_after_failure) {
          for (const Message& m : b->q) be.free(m.block.p);
        }
        b->q.clear();
      }
    }
    return res;
  }

  // After every worker exited: the main thread frees what is left (blocks of exited threads:
  // foreign frees), then the heap check and the leak check against the baseline.
  void final_frees() {
    std::string report;
    for (unsigned t = 0; t < n; ++t) {
      if (!eng[t]->verify_all("at the end of the input", context(t), &report, /*every_byte=*/true)) {
        record_failure(report, prog.ops.size());
        return;
      }
    }
    // Mailboxes first (blocks nobody received), then every thread's slots.
    for (unsigned t = 0; t < n; ++t) {
      std::deque<Message> q;
      q.swap(box[t]->q);
      for (const Message& m : q) {
        if (!free_detached(m, t, context(t))) return;
        ++ctr.foreign_frees;
      }
    }
    std::vector<std::pair<unsigned, unsigned>> order;  // (thread, slot)
    if (prog.end_order() == EndOrder::kAddressAscending || prog.end_order() == EndOrder::kAddressDescending) {
      std::vector<std::pair<uintptr_t, std::pair<unsigned, unsigned>>> v;
      for (unsigned t = 0; t < n; ++t) {
        for (const auto& b : eng[t]->live_blocks()) v.push_back({b.addr, {t, b.slot}});
      }
      std::sort(v.begin(), v.end());
      if (prog.end_order() == EndOrder::kAddressDescending) std::reverse(v.begin(), v.end());
      for (auto& x : v) order.push_back(x.second);
    } else {
      for (unsigned t = 0; t < n; ++t) {
        for (unsigned s : end_order_of(t)) order.push_back({t, s});
      }
    }
    for (auto [t, s] : order) {
      if (!eng[t]->live(s)) continue;
      if (!eng[t]->release(s, "at the final free (by the main thread, after every worker exited)",
                           "main thread, final frees of thread " + std::to_string(t) + "'s blocks", &report)) {
        record_failure(report, prog.ops.size());
        return;
      }
      ++ctr.foreign_frees;
    }
    // The main thread's cache back into the heap (cached medium blocks coalesce then), so the
    // check below sees it; the reset would flush it unseen.
    be.release_cached();
    if (be.has_heap_check()) {
      std::string msg;
      if (be.check_heap(&msg) != 0) {
        record_failure(boundary_report("heap check failed after the final frees and release_cached: " + msg, {}),
                       prog.ops.size());
        return;
      }
    }
    if (be.has_stats()) {
      HeapStats s;
      be.stats(&s);
      if (s.live_blocks != base.live_blocks || s.requested_bytes != base.requested_bytes ||
          s.usable_bytes != base.usable_bytes) {
        char buf[600];
        snprintf(buf, sizeof buf,
                 "leak: after every worker thread retired (thread-exit flush) or exited, and every block was "
                 "freed, stats say live_blocks %zu, requested_bytes %zu, usable_bytes %zu; at the start of the "
                 "input they were %zu, %zu, %zu (%zu OS threads ran, %zu exited early): blocks cached by a "
                 "retired or exited thread not returned, or a cross-thread free lost?",
                 s.live_blocks, s.requested_bytes, s.usable_bytes, base.live_blocks, base.requested_bytes,
                 base.usable_bytes, ctr.os_threads, ctr.exits);
        record_failure(boundary_report(buf, {}), prog.ops.size());
        return;
      }
      check_stats("after the final frees");
    }
    // A pristine allocator for the next input; what the reset finds belongs to this one.
    std::string msg;
    if (be.reset(&msg) > 0) {
      record_failure(boundary_report("after the final frees, resetting the allocator found: " + msg, {}),
                     prog.ops.size());
    }
  }
};

// Sets tinymalloc's options for a run's arena mode and eager-purge bit (tm backend only) and
// restores the previous values when it goes out of scope (after every worker was joined).
class RunOptions {
 public:
  RunOptions(const Backend& be, const MtProgram& p) {
    if (std::string_view(be.name()) != "tm") return;
    if (p.eager_purge() && tm_option_get("purge_delay_ms", &purge_) == 0) {
      purge_set_ = tm_option_set("purge_delay_ms", 0) == 0;
    }
    const MtArenaMode mode = p.arena_mode();
    if (mode == MtArenaMode::kDefault) return;
    if (tm_option_get("arenas", &arenas_) != 0 || tm_option_get("arena_select", &select_) != 0) return;
    arenas_set_ = true;
    switch (mode) {
      case MtArenaMode::kPerThread:
        tm_option_set("arena_select", 1);
        tm_option_set("arenas", static_cast<long>(p.threads()));
        break;
      case MtArenaMode::kShared:
        tm_option_set("arenas", 1);
        break;
      case MtArenaMode::kTwo:
        tm_option_set("arena_select", 1);
        tm_option_set("arenas", 2);
        break;
      case MtArenaMode::kDefault:
        break;
    }
  }
  // Puts the saved options back.
  ~RunOptions() {
    if (arenas_set_) {
      tm_option_set("arenas", arenas_);
      tm_option_set("arena_select", select_);
    }
    if (purge_set_) tm_option_set("purge_delay_ms", purge_);
  }
  RunOptions(const RunOptions&) = delete;
  RunOptions& operator=(const RunOptions&) = delete;

 private:
  bool arenas_set_ = false;
  bool purge_set_ = false;
  long arenas_ = 0;
  long select_ = 0;
  long purge_ = 0;
};

// ---- MtInterpreter ----------------------------------------------------------------------------

MtInterpreter::MtInterpreter(Backend& backend, Options options) : backend_(backend), options_(std::move(options)) {}

MtInterpreter::~MtInterpreter() = default;

// One run; a faulty (not thread-safe) backend is serialised by LockedBackend.
Result MtInterpreter::run(const MtProgram& program) {
  counters_ = Counters{};
  // A pristine allocator (before the run's own options are set: the reset restores the
  // options the process started with). Not possible after a failed run left blocks live.
  std::string reset_message;
  backend_.reset(&reset_message);
  const RunOptions run_options(backend_, program);
  const bool faulty = std::string_view(backend_.name()).rfind("faulty", 0) == 0;
  if (faulty) {
    LockedBackend locked(backend_);
    MtRun r(locked, options_, program, serial_, counters_, pool_);
    return r.go();
  }
  MtRun r(backend_, options_, program, serial_, counters_, pool_);
  return r.go();
}

// TM_HARNESS_MT_SERIAL set and not "0".
bool mt_serial_from_env() {
  const char* e = getenv("TM_HARNESS_MT_SERIAL");
  return e != nullptr && *e != '\0' && strcmp(e, "0") != 0;
}

}  // namespace tmh
