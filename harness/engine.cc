// ThreadEngine (engine.h): one thread of a multi-threaded run, the single-thread
// interpreter's Impl stepped one op at a time.
#include <cerrno>
#include <chrono>
#include <cinttypes>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <string>

#include "interpreter_impl.h"
#include "tm_harness.h"

namespace tmh {

// ---- ThreadEngine (harness/engine.h): one thread of a multi-threaded run ---------------------

namespace detail {

std::string verify_detached(const Block& b) {
  if (!b.live) return "";
  const Pattern pat(b.zeroed, b.seed);
  std::string err;
  for_windows(b.fill_len, 0, UINT64_MAX, [&](uint64_t a, uint64_t z) {
    if (!err.empty()) return;
    const uint64_t bad = pat.check(b.p, a, z);
    if (bad != kNotFound) {
      char buf[160];
      snprintf(buf, sizeof buf, "differs at offset %" PRIu64 " (address %s): expected 0x%02x, found 0x%02x", bad,
               ptr(b.p + bad).c_str(), pat.at(bad), b.p[bad]);
      err = buf;
    }
  });
  return err;
}

std::string describe_detached(const Block& b) {
  std::string d = ptr(b.p) + " (" + num(b.requested) + " bytes requested, usable " + num(b.usable) + ", ";
  d += b.zeroed ? std::string("zero-filled") : "seed " + std::to_string(b.seed);
  d += ", from " + std::string(op_name(b.how)) + ")";
  return d;
}

namespace {

constexpr const char* kHandoffWhere =
    "a thread op (send, receive, drain), a handoff at a phase end or a final free: the last of the recent ops";

}  // namespace

struct ThreadEngine::State {
  Options opt;
  Interpreter::Counters ctr;
  Program prog;
  Interpreter::Impl impl;
  unsigned own_ops = 0;  // ops run, for the periodic full verification
  std::string trace;     // this thread's ops when the run is traced (Options::trace)

  State(Backend& be, const Options& o, const Program& p) : opt(o), prog(p), impl(be, opt, ctr) {
    if (opt.trace != nullptr) opt.trace = &trace;
  }

  // A report about a check outside a heap op.
  std::string report_at(const std::string& context, const std::string& what, const char* where) {
    impl.context = context;
    impl.where = where;
    std::string r = impl.report(what);
    impl.where.clear();
    return r;
  }
};

ThreadEngine::ThreadEngine(Backend& backend, const Options& options, const Program& program, unsigned id,
                           unsigned budget_divisor, OverlapRegistry* registry)
    : s_(std::make_unique<State>(backend, options, program)) {
  Interpreter::Impl& m = s_->impl;
  m.prog = &s_->prog;
  m.mt = true;
  m.engine_id = id;
  m.budget_divisor = budget_divisor ? budget_divisor : 1;
  m.registry = registry;
  m.next_seed = (id + 1) << 24;
}

ThreadEngine::~ThreadEngine() = default;

bool ThreadEngine::step(size_t index, const std::string& context, std::string* report) {
  Interpreter::Impl& m = s_->impl;
  m.context = context;
  try {
    m.cur = index;
    m.begin_record(index);
    const bool verbose = s_->opt.verbose;
    const auto t0 = verbose ? std::chrono::steady_clock::now() : std::chrono::steady_clock::time_point{};
    m.exec(s_->prog.ops[index]);
    ++s_->ctr.ops;
    // Scoped heap checks around the blocks the op left live in this thread (a block it freed
    // may be in a segment another thread is releasing meanwhile: not looked at).
    for (const void* p : m.touched) {
      if (m.by_addr.count(reinterpret_cast<uintptr_t>(p)) == 0) continue;
      std::string msg;
      const int code = m.be.check_heap_around(p, &msg);
      if (code != 0) {
        m.deviate(Clause::kHeapCheck, "heap check failed around %s (an address this op touched): %s", ptr(p).c_str(),
                  msg.c_str());
      }
    }
    // Every block's contents after this thread's ops 16, 32, 64, ... (or as the options ask);
    // with the input's paranoid flag, sampled after every op.
    const unsigned n = ++s_->own_ops;
    const bool due =
        s_->opt.paranoid || (s_->opt.verify_every != 0 ? n % s_->opt.verify_every == 0 : n >= 16 && (n & (n - 1)) == 0);
    if (due) {
      m.verify_all("at a periodic verification", m.routine());
    } else if (s_->prog.paranoid()) {
      m.verify_all("after this op (the input's paranoid flag)", Coverage::kEdges);
    }
    m.trace_op(index);
    if (verbose)
      m.print_verbose(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
    return true;
  } catch (Failure& f) {
    *report = m.report(f.what);
    return false;
  }
}

bool ThreadEngine::verify_all(const char* when, const std::string& context, std::string* report, bool every_byte) {
  Interpreter::Impl& m = s_->impl;
  m.context = context;
  try {
    m.verify_all(when, every_byte ? Coverage::kEvery : m.routine());
    return true;
  } catch (Failure& f) {
    *report = this->report(context, f.what);
    return false;
  }
}

void ThreadEngine::note(size_t index, const std::string& text) {
  Interpreter::Impl& m = s_->impl;
  m.begin_record(index);
  m.rec->note = text;
  m.rec->outcome = "";
  if (s_->opt.verbose) fprintf(s_->opt.out, "[%s] %s\n", m.context.c_str(), text.c_str());
}

std::string ThreadEngine::report(const std::string& context, const std::string& what) {
  return s_->report_at(context, what, "a phase boundary of the multi-threaded run (checks by the main thread)");
}

void ThreadEngine::set_oom(bool on) {
  s_->impl.oom_active = on;
  s_->impl.oom_left = on ? LONG_MAX : -1;
}

bool ThreadEngine::live(unsigned slot) const { return s_->impl.slots[slot % kSlots].live; }

bool ThreadEngine::take(unsigned slot, Block* out, const char* why, const std::string& context, std::string* report) {
  Interpreter::Impl& m = s_->impl;
  m.context = context;
  slot %= kSlots;
  try {
    m.verify_block(slot, why, 0, UINT64_MAX, m.routine());
    *out = m.slots[slot];
    m.unlink(slot, /*global=*/false);  // still live: it moves to another thread
    m.slots[slot].live = false;
    m.slots[slot].p = nullptr;
    return true;
  } catch (Failure& f) {
    *report = s_->report_at(context, f.what, kHandoffWhere);
    return false;
  }
}

bool ThreadEngine::put(unsigned slot, const Block& b, const char* why, const std::string& context,
                       std::string* report) {
  Interpreter::Impl& m = s_->impl;
  m.context = context;
  slot %= kSlots;
  try {
    bool tainted = false;
    m.check_overlap(b.p, b.extent(), b.requested, why, &tainted);
    m.slots[slot] = b;
    m.slots[slot].tainted |= tainted;
    m.link(slot, /*global=*/false);
    m.verify_block(slot, why, 0, UINT64_MAX, m.routine());
    return true;
  } catch (Failure& f) {
    *report = s_->report_at(context, f.what, kHandoffWhere);
    return false;
  }
}

bool ThreadEngine::release(unsigned slot, const char* why, const std::string& context, std::string* report) {
  Interpreter::Impl& m = s_->impl;
  m.context = context;
  try {
    m.release(slot % kSlots, why);
    return true;
  } catch (Failure& f) {
    *report = s_->report_at(context, f.what, kHandoffWhere);
    return false;
  }
}

std::vector<ThreadEngine::LiveBlock> ThreadEngine::live_blocks() const {
  std::vector<LiveBlock> v;
  for (const auto& [a, s] : s_->impl.by_addr) {
    const Block& b = s_->impl.slots[s];
    v.push_back({a, b.extent(), b.requested > 0 ? b.requested : 1, s});
  }
  return v;
}

std::string ThreadEngine::describe(unsigned slot) const { return s_->impl.describe_block(slot % kSlots); }
uint64_t ThreadEngine::live_count() const { return s_->impl.live_count; }
uint64_t ThreadEngine::live_requested() const { return s_->impl.live_requested; }
uint64_t ThreadEngine::live_usable() const { return s_->impl.live_usable; }
uint64_t ThreadEngine::live_virtual() const { return s_->impl.live_virtual; }
uint64_t ThreadEngine::routed_count() const { return s_->impl.routed_count; }
uint64_t ThreadEngine::routed_requested() const { return s_->impl.routed_requested; }
const Interpreter::Counters& ThreadEngine::counters() const { return s_->ctr; }
const std::string& ThreadEngine::trace() const { return s_->trace; }

void ThreadEngine::forget_all(bool free_them) {
  Interpreter::Impl& m = s_->impl;
  for (unsigned s = 0; s < kSlots; ++s) {
    Block& b = m.slots[s];
    if (!b.live) continue;
    if (m.registry != nullptr) m.registry->unclaim(b.p);
    if (free_them) m.be.free(b.p);
    b.live = false;
    b.p = nullptr;
  }
  m.by_addr.clear();
  m.unindexed_blocks = 0;
  m.live_count = m.live_requested = m.live_usable = m.live_virtual = m.routed_count = m.routed_requested = 0;
}

}  // namespace detail

}  // namespace tmh
