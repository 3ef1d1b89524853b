// Concurrent property: per-thread programs on real threads, checked against a model
// computed sequentially (Debian's RapidCheck has no checkParallel).
//
// A case is 2-4 threads, each with
//   round 1: a program over its own 8 slots: malloc, calloc, realloc (to 0 = free), free,
//            send (the slot's block goes into another thread's inbox, a mutex-guarded list);
//   handoffs: after round 1, blocks still in some thread's slot move to another thread;
//   round 2: a program over the blocks the thread received (inbox + handoffs, "foreign"
//            blocks: free, realloc, verify) mixed with ops on its own slots.
// Round 1 starts every thread together (a start barrier); the threads are joined (they exit);
// round 2 runs on new threads, so foreign blocks are freed and reallocated by threads that
// did not allocate them, after their allocating thread exited. Each thread checks what it
// does (calloc zeroing, contents before free / realloc / send, realloc's kept prefix). After
// the join the main thread checks the final heap against the sequential model: the same
// blocks live with the same sizes and contents, no two overlap, tm_check_heap() == 0, the
// tm_stats deltas (live_blocks, requested_bytes, usable_bytes) equal the model's; after it
// frees everything the counters are back at their baseline.
//
// Every case runs in a forked child (properties/prop_isolate.h: a failing case cannot
// poison the next one, and an allocator abort or a ThreadSanitizer report in the child
// fails the case with its stderr). On failure RapidCheck shrinks the programs and prints
// them, one line per thread and round.
//
// Reproduce: RC_PARAMS="reproduce=<base64>" ./tm_prop_concurrent --gtest_filter=Concurrent.<Name>
//            TM_PROP_NO_FORK=1 runs the cases in-process (for a debugger).
// Sizes are bounded independently of RC_PARAMS (programs <= 24 commands per thread and round,
// few large blocks), so 100 cases take seconds in release and stay reasonable under sanitizers.
#include <gtest/gtest.h>
#include <rapidcheck/gtest.h>

#include <algorithm>
#include <atomic>
#include <cinttypes>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <ostream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "prop_common.h"
#include "prop_isolate.h"
#include "tinymalloc.h"

namespace {

constexpr unsigned kPSlots = 8;          // slots per thread
constexpr int kMaxCommands = 40;         // per thread and round (tmprop::list_of)
constexpr size_t kFullCheckMax = 65536;  // blocks up to this size are patterned entirely

// ---- Cases ---------------------------------------------------------------------------------

enum class CmdKind : uint8_t { kMalloc, kCalloc, kRealloc, kFree, kSend };

// A command on a thread's own slots. kSend: to another thread, other(self, to, threads).
struct Cmd {
  CmdKind kind = CmdKind::kMalloc;
  unsigned slot = 0;
  size_t size = 0;
  unsigned count = 1;  // calloc
  unsigned to = 1;
};

enum class FKind : uint8_t { kFree, kRealloc, kVerify, kOwn };

// Round 2: on foreign block index % (blocks received), or an own-slot command (no sends).
struct FCmd {
  FKind kind = FKind::kFree;
  unsigned index = 0;
  size_t size = 0;
  Cmd own;
};

struct Handoff {
  unsigned from = 0;
  unsigned slot = 0;
  unsigned to = 1;  // thread other(from, to, threads)
};

struct Case {
  unsigned threads = 2;
  std::vector<std::vector<Cmd>> round1;
  std::vector<Handoff> handoffs;
  std::vector<std::vector<FCmd>> round2;
};

// Sizes over the tiers, mostly small; large (> 512 KiB) ones rarely (cost under sanitizers).
rc::Gen<size_t> gen_size(bool one_class) {
  if (one_class) return rc::gen::element<size_t>(48, 33, 40, 47);  // all in the 48-byte class
  return rc::gen::weightedOneOf<size_t>({
      {10, rc::gen::inRange<size_t>(0, 1025)},
      {4, rc::gen::inRange<size_t>(1025, 8193)},
      {3, rc::gen::inRange<size_t>(8193, 524289)},
      {1, rc::gen::inRange<size_t>(524289, 2 << 20)},
  });
}

// A round-1 (with sends) or round-2 own-slot command.
rc::Gen<Cmd> gen_cmd(bool sends, bool one_class) {
  const auto slot = rc::gen::inRange<unsigned>(0, kPSlots);
  const rc::Gen<Cmd> malloc_cmd = rc::gen::apply(
      [](unsigned s, size_t n) {
        Cmd c;
        c.kind = CmdKind::kMalloc;
        c.slot = s;
        c.size = n;
        return c;
      },
      slot, gen_size(one_class));
  const rc::Gen<Cmd> calloc_cmd = rc::gen::apply(
      [](unsigned s, unsigned count, size_t n) {
        Cmd c;
        c.kind = CmdKind::kCalloc;
        c.slot = s;
        c.count = count;
        c.size = n;
        return c;
      },
      slot, rc::gen::inRange<unsigned>(1, 5), rc::gen::inRange<size_t>(0, 4097));
  const rc::Gen<Cmd> realloc_cmd = rc::gen::apply(
      [](unsigned s, size_t n) {
        Cmd c;
        c.kind = CmdKind::kRealloc;
        c.slot = s;
        c.size = n;
        return c;
      },
      slot, gen_size(one_class));
  const rc::Gen<Cmd> free_cmd = rc::gen::map(slot, [](unsigned s) {
    Cmd c;
    c.kind = CmdKind::kFree;
    c.slot = s;
    return c;
  });
  const rc::Gen<Cmd> send_cmd = rc::gen::apply(
      [](unsigned s, unsigned to) {
        Cmd c;
        c.kind = CmdKind::kSend;
        c.slot = s;
        c.to = to;
        return c;
      },
      slot, rc::gen::inRange<unsigned>(1, 4));
  if (!sends) return rc::gen::weightedOneOf<Cmd>({{5, malloc_cmd}, {1, calloc_cmd}, {3, realloc_cmd}, {3, free_cmd}});
  return rc::gen::weightedOneOf<Cmd>(
      {{5, malloc_cmd}, {1, calloc_cmd}, {3, realloc_cmd}, {3, free_cmd}, {4, send_cmd}});
}

// A round-2 command: on a foreign block, or on the own slots.
rc::Gen<FCmd> gen_fcmd(bool one_class) {
  auto index = rc::gen::inRange<unsigned>(0, 32);
  return rc::gen::weightedOneOf<FCmd>({
      {4, rc::gen::map(index,
                       [](unsigned i) {
                         FCmd f;
                         f.kind = FKind::kFree;
                         f.index = i;
                         return f;
                       })},
      {4, rc::gen::apply(
              [](unsigned i, size_t n) {
                FCmd f;
                f.kind = FKind::kRealloc;
                f.index = i;
                f.size = n;
                return f;
              },
              index, gen_size(one_class))},
      {1, rc::gen::map(index,
                       [](unsigned i) {
                         FCmd f;
                         f.kind = FKind::kVerify;
                         f.index = i;
                         return f;
                       })},
      {3, rc::gen::map(gen_cmd(false, one_class),
                       [](Cmd c) {
                         FCmd f;
                         f.kind = FKind::kOwn;
                         f.own = c;
                         return f;
                       })},
  });
}

// 2-4 threads with their round-1 programs, the handoffs and the round-2 programs.
rc::Gen<Case> gen_case(bool one_class) {
  return rc::gen::mapcat(rc::gen::inRange<unsigned>(2, 5), [one_class](unsigned n) {
    return rc::gen::apply(
        [n](std::vector<std::vector<Cmd>> r1, std::vector<Handoff> h, std::vector<std::vector<FCmd>> r2) {
          Case c;
          c.threads = n;
          c.round1 = std::move(r1);
          c.handoffs = std::move(h);
          c.round2 = std::move(r2);
          return c;
        },
        rc::gen::container<std::vector<std::vector<Cmd>>>(n, tmprop::list_of(kMaxCommands, gen_cmd(true, one_class))),
        tmprop::list_of(8, rc::gen::apply(
                               [n](unsigned from, unsigned slot, unsigned to) {
                                 Handoff h;
                                 h.from = from % n;
                                 h.slot = slot;
                                 h.to = to;
                                 return h;
                               },
                               rc::gen::inRange<unsigned>(0, 4), rc::gen::inRange<unsigned>(0, kPSlots),
                               rc::gen::inRange<unsigned>(1, 4))),
        rc::gen::container<std::vector<std::vector<FCmd>>>(n, tmprop::list_of(kMaxCommands, gen_fcmd(one_class))));
  });
}

// The thread a send or handoff with operand k (1..3) goes to: never the sender itself.
unsigned other(unsigned self, unsigned k, unsigned n) { return (self + 1 + (k - 1) % (n - 1)) % n; }

// ---- Printing (the shrunk counterexample) ------------------------------------------------------

// "malloc s3 100", "send s1 -> t2".
std::string show_cmd(const Cmd& c, unsigned self, unsigned n) {
  std::ostringstream os;
  switch (c.kind) {
    case CmdKind::kMalloc:
      os << "malloc s" << c.slot << " " << c.size;
      break;
    case CmdKind::kCalloc:
      os << "calloc s" << c.slot << " " << c.count << "x" << c.size;
      break;
    case CmdKind::kRealloc:
      os << "realloc s" << c.slot << " " << c.size;
      break;
    case CmdKind::kFree:
      os << "free s" << c.slot;
      break;
    case CmdKind::kSend:
      os << "send s" << c.slot << " -> t" << other(self, c.to, n);
      break;
  }
  return os.str();
}

// "realloc foreign #2 5000", "own free s1".
std::string show_fcmd(const FCmd& f, unsigned self, unsigned n) {
  switch (f.kind) {
    case FKind::kFree:
      return "free foreign #" + std::to_string(f.index);
    case FKind::kRealloc:
      return "realloc foreign #" + std::to_string(f.index) + " " + std::to_string(f.size);
    case FKind::kVerify:
      return "verify foreign #" + std::to_string(f.index);
    case FKind::kOwn:
      return "own " + show_cmd(f.own, self, n);
  }
  return "?";
}

// Prints a case as its per-thread programs (RapidCheck's counterexample output).
void showValue(const Case& c, std::ostream& os) {
  os << c.threads << " threads\nround 1 (all threads start together):\n";
  for (unsigned t = 0; t < c.threads; ++t) {
    os << "  t" << t << ":";
    for (const Cmd& x : c.round1[t]) os << " " << show_cmd(x, t, c.threads) << ";";
    os << "\n";
  }
  os << "handoffs after round 1 (threads joined):";
  for (const Handoff& h : c.handoffs) {
    os << " t" << h.from << ".s" << h.slot << " -> t" << other(h.from, h.to, c.threads) << ";";
  }
  os << "\nround 2 (new threads; foreign = inbox in (sender, order), then handoffs):\n";
  for (unsigned t = 0; t < c.threads; ++t) {
    os << "  t" << t << ":";
    for (const FCmd& x : c.round2[t]) os << " " << show_fcmd(x, t, c.threads) << ";";
    os << "\n";
  }
}

// ---- Contents ----------------------------------------------------------------------------------

// Byte i of the fill pattern of a block with this seed.
uint8_t pbyte(uint64_t seed, size_t i) {
  uint64_t x = seed * 0x9e3779b97f4a7c15ULL + i * 0xd6e8feb86659fd93ULL;
  x ^= x >> 29;
  return static_cast<uint8_t>(x ^ (x >> 8));
}

// Calls f(i) for each patterned byte of an n-byte block: all of it up to 64 KiB, else the
// first and last 4 KiB and one byte every 4093.
template <typename F>
void for_pattern(size_t n, F&& f) {
  if (n <= kFullCheckMax) {
    for (size_t i = 0; i < n; ++i) f(i);
    return;
  }
  for (size_t i = 0; i < 4096; ++i) f(i);
  for (size_t i = 4096; i + 4096 < n; i += 4093) f(i);
  for (size_t i = n - 4096; i < n; ++i) f(i);
}

// Writes the pattern of an n-byte block.
void fill(uint8_t* p, size_t n, uint64_t seed) {
  for_pattern(n, [&](size_t i) { p[i] = pbyte(seed, i); });
}

// Offset of the first byte below `limit` that differs from the pattern, or SIZE_MAX.
size_t check(const uint8_t* p, size_t n, uint64_t seed, size_t limit) {
  size_t bad = SIZE_MAX;
  for_pattern(n, [&](size_t i) {
    if (bad == SIZE_MAX && i < limit && p[i] != pbyte(seed, i)) bad = i;
  });
  return bad;
}

// Deterministic seed of the block an op creates.
uint64_t seed_of(unsigned round, unsigned thread, size_t cmd, unsigned sub) {
  return (uint64_t{round} << 48) ^ (uint64_t{thread} << 40) ^ (uint64_t{cmd} << 8) ^ sub ^ 0x5eed;
}

// ---- The model (sequential) and the real run share these structures ------------------------------

struct Blk {
  uint8_t* p = nullptr;  // real run only
  size_t n = 0;
  size_t usable = 0;  // real run only
  uint64_t seed = 0;
  bool live = false;
};

struct Msg {
  unsigned from;
  size_t seq;
  Blk blk;
};

// State of one thread: its slots and, in round 2, its foreign blocks.
struct ThreadState {
  Blk slots[kPSlots];
  std::vector<Blk> foreign;
};

// Executes the ops of a case either on the model (real = false: sizes and seeds only) or on
// tinymalloc (real = true), with the same control flow, so the final states line up.
class Runner {
 public:
  Runner(const Case& c, bool real) : c_(c), real_(real), st_(c.threads), inbox_(c.threads) {}

  const std::vector<ThreadState>& state() const { return st_; }
  const std::string& failure() const { return failure_; }

  // Round 1 on thread t.
  void round1(unsigned t) {
    const std::vector<Cmd>& prog = c_.round1[t];
    for (size_t i = 0; i < prog.size() && ok(); ++i) own(t, prog[i], 1, i);
  }

  // Inboxes (sorted by sender and order) and handoffs become the foreign lists.
  void handoffs() {
    for (unsigned t = 0; t < c_.threads; ++t) {
      std::vector<Msg>& in = inbox_[t];
      std::sort(in.begin(), in.end(),
                [](const Msg& a, const Msg& b) { return a.from != b.from ? a.from < b.from : a.seq < b.seq; });
      for (Msg& m : in) st_[t].foreign.push_back(m.blk);
      in.clear();
    }
    for (const Handoff& h : c_.handoffs) {
      Blk& b = st_[h.from].slots[h.slot];
      if (!b.live) continue;
      st_[other(h.from, h.to, c_.threads)].foreign.push_back(b);
      b = Blk{};
    }
  }

  // Round 2 on thread t.
  void round2(unsigned t) {
    const std::vector<FCmd>& prog = c_.round2[t];
    std::vector<Blk>& f = st_[t].foreign;
    for (size_t i = 0; i < prog.size() && ok(); ++i) {
      const FCmd& x = prog[i];
      if (x.kind == FKind::kOwn) {
        own(t, x.own, 2, i);
        continue;
      }
      if (f.empty()) continue;
      Blk& b = f[x.index % f.size()];
      if (!b.live) continue;
      const std::string where =
          "t" + std::to_string(t) + " round 2 cmd " + std::to_string(i) + " (" + show_fcmd(x, t, c_.threads) + ")";
      if (x.kind == FKind::kFree) {
        release(b, where);
      } else if (x.kind == FKind::kVerify) {
        verify(b, where);
      } else {
        realloc_block(b, x.size, seed_of(2, t, i, 1), where);
      }
    }
  }

  // The main thread's final frees (real run).
  void free_all() {
    for (ThreadState& s : st_) {
      for (Blk& b : s.slots) release(b, "final free");
      for (Blk& b : s.foreign) release(b, "final free");
    }
  }

 private:
  // No failure yet (a relaxed flag: the harness adds no ordering between the threads).
  bool ok() const { return !failed_.load(std::memory_order_relaxed); }
  // Records the first failure.
  void fail(const std::string& what) {
    std::lock_guard<std::mutex> g(mu_);
    if (failure_.empty()) failure_ = what;
    failed_.store(true, std::memory_order_relaxed);
  }

  // Checks a live block's contents (real run).
  void verify(const Blk& b, const std::string& where) {
    if (!real_ || !b.live) return;
    const size_t bad = check(b.p, b.n, b.seed, b.n);
    if (bad != SIZE_MAX) {
      char buf[160];
      snprintf(buf, sizeof buf, ": block %p (%zu bytes) differs at offset %zu", static_cast<void*>(b.p), b.n, bad);
      fail(where + buf);
    }
  }

  // Verifies and frees a live block; the slot becomes empty.
  void release(Blk& b, const std::string& where) {
    if (!b.live) return;
    verify(b, where + ", before free");
    if (real_) tm_free(b.p);
    b = Blk{};
  }

  // A new block of n bytes (calloc: count x size, checked zero) with the given seed.
  void allocate(Blk& b, size_t count, size_t n, bool zero, uint64_t seed, const std::string& where) {
    release(b, where + ", slot reuse");
    const size_t total = count * n;
    if (real_) {
      void* p = zero ? tm_calloc(count, n) : tm_malloc(total);
      if (p == nullptr) {
        fail(where + ": allocation of " + std::to_string(total) + " bytes returned NULL");
        return;
      }
      auto* q = static_cast<uint8_t*>(p);
      if (zero) {
        for_pattern(total, [&](size_t i) {
          if (q[i] != 0 && ok()) fail(where + ": calloc block not zero at offset " + std::to_string(i));
        });
      }
      b.p = q;
      b.usable = tm_usable_size(p);
      if (b.usable < total) fail(where + ": usable size below the request");
      fill(q, total, seed);
    }
    b.n = total;
    b.seed = seed;
    b.live = true;
  }

  // realloc to n bytes (0: free; empty: malloc), keeping and checking the prefix.
  void realloc_block(Blk& b, size_t n, uint64_t seed, const std::string& where) {
    if (!b.live) {
      allocate(b, 1, n, false, seed, where);
      return;
    }
    verify(b, where + ", before realloc");
    if (n == 0) {  // tinymalloc: realloc(p, 0) frees p and returns NULL
      if (real_) {
        void* r = tm_realloc(b.p, 0);
        if (r != nullptr) fail(where + ": realloc(p, 0) returned non-NULL");
      }
      b = Blk{};
      return;
    }
    if (real_) {
      auto* q = static_cast<uint8_t*>(tm_realloc(b.p, n));
      if (q == nullptr) {
        fail(where + ": realloc to " + std::to_string(n) + " returned NULL");
        return;
      }
      const size_t bad = check(q, b.n, b.seed, std::min(b.n, n));
      if (bad != SIZE_MAX) fail(where + ": realloc did not keep the prefix (offset " + std::to_string(bad) + ")");
      b.p = q;
      b.usable = tm_usable_size(q);
      if (b.usable < n) fail(where + ": usable size below the request after realloc");
      fill(q, n, seed);
    }
    b.n = n;
    b.seed = seed;
  }

  // Command i of thread t's own-slot program in `round`.
  void own(unsigned t, const Cmd& x, unsigned round, size_t i) {
    Blk& b = st_[t].slots[x.slot];
    const std::string where = "t" + std::to_string(t) + " round " + std::to_string(round) + " cmd " +
                              std::to_string(i) + " (" + show_cmd(x, t, c_.threads) + ")";
    const uint64_t seed = seed_of(round, t, i, 0);
    switch (x.kind) {
      case CmdKind::kMalloc:
        allocate(b, 1, x.size, false, seed, where);
        break;
      case CmdKind::kCalloc:
        allocate(b, x.count, x.size, true, seed, where);
        break;
      case CmdKind::kRealloc:
        realloc_block(b, x.size, seed, where);
        break;
      case CmdKind::kFree:
        release(b, where);
        break;
      case CmdKind::kSend: {
        if (!b.live || round != 1) break;
        verify(b, where + ", before send");
        const unsigned to = other(t, x.to, c_.threads);
        {
          std::lock_guard<std::mutex> g(mu_);
          inbox_[to].push_back(Msg{t, i, b});
        }
        b = Blk{};
        break;
      }
    }
  }

  const Case& c_;
  const bool real_;
  std::vector<ThreadState> st_;
  std::vector<std::vector<Msg>> inbox_;
  std::mutex mu_;
  std::string failure_;
  std::atomic<bool> failed_{false};
};

// Runs round `r` of every thread on its own new thread, all released by one start barrier.
void run_threads(Runner& run, unsigned n, int r) {
  std::atomic<unsigned> ready{0};
  std::vector<std::thread> th;
  for (unsigned t = 0; t < n; ++t) {
    th.emplace_back([&, t] {
      ready.fetch_add(1);
      while (ready.load() < n) std::this_thread::yield();
      if (r == 1) {
        run.round1(t);
      } else {
        run.round2(t);
      }
    });
  }
  for (auto& x : th) x.join();
}

// Runs the case on real threads and checks it against the sequential model. Returns "" or
// what went wrong. `poke`: corrupt one surviving block first (the checker's self-test).
std::string run_case(const Case& c, bool poke) {
  tm_stats_t base;
  tm_stats(&base);
  Runner model(c, false);
  for (unsigned t = 0; t < c.threads; ++t) model.round1(t);
  model.handoffs();
  for (unsigned t = 0; t < c.threads; ++t) model.round2(t);

  Runner real(c, true);
  run_threads(real, c.threads, 1);
  if (!real.failure().empty()) return "round 1: " + real.failure();
  real.handoffs();
  run_threads(real, c.threads, 2);
  if (!real.failure().empty()) return "round 2: " + real.failure();

  // Final state: same blocks as the model, contents intact, no overlaps.
  std::vector<std::pair<uintptr_t, size_t>> spans;
  uint64_t count = 0, requested = 0, usable = 0;
  bool poked = false;
  for (unsigned t = 0; t < c.threads; ++t) {
    const ThreadState& m = model.state()[t];
    const ThreadState& s = real.state()[t];
    auto compare = [&](const Blk& mb, const Blk& rb, const std::string& where) -> std::string {
      if (mb.live != rb.live || mb.n != rb.n || mb.seed != rb.seed) {
        return where + ": the run has " + (rb.live ? std::to_string(rb.n) + " bytes" : "no block") + ", the model " +
               (mb.live ? std::to_string(mb.n) + " bytes" : "no block");
      }
      if (!rb.live) return "";
      if (poke && !poked && rb.n > 0) {
        rb.p[rb.n / 2] ^= 0xff;
        poked = true;
      }
      const size_t bad = check(rb.p, rb.n, rb.seed, rb.n);
      if (bad != SIZE_MAX) {
        return where + ": contents of " + std::to_string(rb.n) + "-byte block changed at offset " + std::to_string(bad);
      }
      spans.push_back({reinterpret_cast<uintptr_t>(rb.p), rb.usable ? rb.usable : 1});
      ++count;
      requested += rb.n;
      usable += rb.usable;
      return "";
    };
    for (unsigned k = 0; k < kPSlots; ++k) {
      const std::string e = compare(m.slots[k], s.slots[k], "t" + std::to_string(t) + " slot " + std::to_string(k));
      if (!e.empty()) return "final state: " + e;
    }
    if (m.foreign.size() != s.foreign.size()) return "final state: foreign block lists differ in length";
    for (size_t k = 0; k < m.foreign.size(); ++k) {
      const std::string e =
          compare(m.foreign[k], s.foreign[k], "t" + std::to_string(t) + " foreign #" + std::to_string(k));
      if (!e.empty()) return "final state: " + e;
    }
  }
  std::sort(spans.begin(), spans.end());
  for (size_t k = 1; k < spans.size(); ++k) {
    if (spans[k - 1].first + spans[k - 1].second > spans[k].first) {
      char buf[160];
      snprintf(buf, sizeof buf, "final state: live blocks 0x%" PRIxPTR " (usable %zu) and 0x%" PRIxPTR " overlap",
               spans[k - 1].first, spans[k - 1].second, spans[k].first);
      return buf;
    }
  }
  tm_check_report_t rep;
  memset(&rep, 0, sizeof rep);
  if (tm_check_heap_report(&rep) != 0) return std::string("tm_check_heap after the join: ") + rep.message;
  tm_stats_t s;
  tm_stats(&s);
  char buf[400];
  if (s.live_blocks - base.live_blocks != count || s.requested_bytes - base.requested_bytes != requested ||
      s.usable_bytes - base.usable_bytes != usable) {
    snprintf(buf, sizeof buf,
             "stats after the join: live_blocks +%zu, requested_bytes +%zu, usable_bytes +%zu; the model: %" PRIu64
             " blocks, %" PRIu64 " bytes requested, %" PRIu64 " usable",
             s.live_blocks - base.live_blocks, s.requested_bytes - base.requested_bytes,
             s.usable_bytes - base.usable_bytes, count, requested, usable);
    return buf;
  }
  real.free_all();
  if (!real.failure().empty()) return "final frees: " + real.failure();
  if (tm_check_heap_report(&rep) != 0) return std::string("tm_check_heap after the final frees: ") + rep.message;
  tm_stats(&s);
  if (s.live_blocks != base.live_blocks || s.requested_bytes != base.requested_bytes ||
      s.usable_bytes != base.usable_bytes) {
    snprintf(buf, sizeof buf,
             "leak: after freeing everything live_blocks %zu, requested_bytes %zu, usable_bytes %zu; baseline %zu, "
             "%zu, %zu",
             s.live_blocks, s.requested_bytes, s.usable_bytes, base.live_blocks, base.requested_bytes,
             base.usable_bytes);
    return buf;
  }
  return "";
}

// run_case in a forked child; "" when it passed, else the failure (or the child's stderr).
std::string run_isolated(const Case& c, bool poke = false) {
  const tmprop::ChildOutcome o = tmprop::run_in_child([&] { return run_case(c, poke); });
  if (!o.returned) return "the child died (" + o.status + "):\n" + o.stderr_tail;
  return o.result;
}

// run_isolated for the properties: the first failures are also printed at once, since a data
// race (a ThreadSanitizer report in the child) may not recur when RapidCheck replays the shrunk
// case.
std::string run_checked(const Case& c) {
  const std::string err = run_isolated(c);
  static int printed = 0;  // the first few failures of the process (shrinking repeats them)
  if (!err.empty() && ++printed <= 3) {
    // Long reports (a sanitizer's) keep their head and their SUMMARY tail.
    const std::string shown = err.size() > 6000 ? err.substr(0, 2500) + "\n...\n" + err.substr(err.size() - 3500) : err;
    std::fprintf(stderr, "[concurrent property] case failed: %s\n", shown.c_str());
  }
  return err;
}

// Counts the cross-thread traffic of a case (for the classification printed on success).
size_t sends_of(const Case& c) {
  size_t k = 0;
  for (const auto& p : c.round1) {
    for (const Cmd& x : p) k += x.kind == CmdKind::kSend;
  }
  return k;
}

RC_GTEST_PROP(Concurrent, HandoffsMatchSequentialModel, ()) {
  const Case c = *gen_case(false);
  RC_CLASSIFY(sends_of(c) > 0, "mailbox sends");
  RC_CLASSIFY(!c.handoffs.empty(), "handoffs");
  RC_CLASSIFY(c.threads >= 3, "3+ threads");
  const std::string err = run_checked(c);
  RC_ASSERT(err == "");
}

// Every block in one size class: the threads contend on the same runs and free each other's
// blocks into them.
RC_GTEST_PROP(Concurrent, SameSizeClassCrossThreadFrees, ()) {
  const Case c = *gen_case(true);
  const std::string err = run_checked(c);
  RC_ASSERT(err == "");
}

// The checker itself: a case whose surviving block is corrupted before the final check must
// be reported (so a silent pass above means something).
TEST(Concurrent, CheckerReportsACorruptedBlock) {
  Case c;
  c.threads = 2;
  Cmd m;
  m.kind = CmdKind::kMalloc;
  m.slot = 0;
  m.size = 1000;
  Cmd send = m;
  send.kind = CmdKind::kSend;
  send.to = 1;
  c.round1 = {{m, send, m}, {m}};
  FCmd keep;
  keep.kind = FKind::kVerify;
  c.round2 = {{}, {keep}};
  EXPECT_EQ(run_isolated(c, false), "");
  const std::string err = run_isolated(c, true);
  EXPECT_NE(err.find("contents of 1000-byte block changed at offset 500"), std::string::npos) << err;
}

}  // namespace
