// The interpreter: runs a Program against a Backend and the shadow heap, checking every
// result. The first difference is reported with the trace position and the program aborts
// (or the report is returned, for property tests). This file holds the run itself: op
// dispatch, OOM windows, the final frees and leak check, and the failure report.
#include <fcntl.h>
#include <unistd.h>

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

void Interpreter::Impl::begin_record(size_t index) {
  rec = &ring[ring_n++ % kRing];
  *rec = Record{};
  rec->index = index;
  resolved.clear();
  touched.clear();
  whole_heap = false;
}

void Interpreter::Impl::outcome(const char* what, const void* before, const void* after, int err) {
  rec->outcome = what;
  rec->before = before;
  rec->after = after;
  rec->err = err;
}

void Interpreter::Impl::close_oom_window(const char* when) {
  if (!oom_active) return;
  be.fail_os_after(-1);
  oom_active = false;
  oom_left = -1;
  check_heap(when);
  verify_all(when, routine());
}

void Interpreter::Impl::exec(const Op& op) {
  switch (op.kind) {
    case OpKind::kMalloc:
      op_malloc(op);
      break;
    case OpKind::kCalloc:
      op_calloc(op);
      break;
    case OpKind::kRealloc:
      op_realloc(op);
      break;
    case OpKind::kFree:
      op_free(op);
      break;
    case OpKind::kAlignedAlloc:
      op_aligned(op, false);
      break;
    case OpKind::kPosixMemalign:
      op_aligned(op, true);
      break;
    case OpKind::kUsableSize:
      op_usable(op);
      break;
    case OpKind::kCheckHeap:
      verify_all("at check_heap", Coverage::kEvery);  // the input asked: every byte
      check_heap("at check_heap");
      // The heap map and the introspection tables walk the whole heap and write it out: at
      // the 1st, 2nd, 4th, 8th ... check_heap op of the input (O(log n) of them).
      ++check_heap_ops;
      if ((check_heap_ops & (check_heap_ops - 1)) == 0) {
        draw_heap_map();
        if (!mt) check_introspection();
      }
      check_foreign_owns();
      check_all_pools("at check_heap");
      outcome("ok");
      break;
    case OpKind::kRefill: {
      Block& b = slots[op.slot];
      if (!b.live) {
        outcome("empty slot");
        break;
      }
      verify_block(op.slot, "before refill", 0, UINT64_MAX, routine());
      b.zeroed = false;
      b.seed = next_seed++;
      fill_block(b, 0);
      outcome("ok");
      break;
    }
    case OpKind::kOomWindow:
      if (mt) {
        outcome("phase-level in heap_mt (armed by the runner for the whole phase)");
        break;
      }
      if (!be.has_oom_injection()) {
        outcome("no-op (backend has no failure injection)");
        break;
      }
      be.fail_os_after(static_cast<long>(op.oom_successes()));
      oom_active = true;
      oom_left = static_cast<long>(op.oom_span());
      outcome("armed");
      return;  // the window starts with the next op
    case OpKind::kFreeRange:
      for (unsigned i = 0; i < op.range_count(); ++i) release(range_slot(op, i), "before free (free_range)");
      outcome("ok");
      break;
    case OpKind::kAllocRange: {
      const uint64_t n = resolve(op.size, op.slot);
      for (unsigned i = 0; i < op.range_count(); ++i) {
        const unsigned s = range_slot(op, i);
        release(s, "before its slot was reused");
        alloc_into(s, n);
      }
      if (*rec->outcome == '\0') outcome("ok");
      break;
    }
    case OpKind::kSwap: {
      if (op.slot == op.slot2) {
        outcome("no-op");
        break;
      }
      std::swap(slots[op.slot], slots[op.slot2]);
      if (slots[op.slot].live) by_addr[reinterpret_cast<uintptr_t>(slots[op.slot].p)] = op.slot;
      if (slots[op.slot2].live) by_addr[reinterpret_cast<uintptr_t>(slots[op.slot2].p)] = op.slot2;
      outcome("ok");
      break;
    }
    case OpKind::kReleaseCached:
      be.release_cached();
      check_heap("after release_cached");
      verify_all("after release_cached", routine());
      outcome("ok");
      break;
    case OpKind::kTouchUsable: {
      Block& b = slots[op.slot];
      if (!b.live) {
        outcome("empty slot");
        break;
      }
      verify_block(op.slot, "before touch_usable", 0, UINT64_MAX, routine());
      const uint64_t old_len = b.fill_len;
      b.fill_len = tail_limit(b.requested, b.usable);
      fill_block(b, old_len <= kFullPatternMax && b.fill_len <= kFullPatternMax ? old_len : 0);
      verify_neighbours(reinterpret_cast<uintptr_t>(b.p), b.extent(), "after writing a neighbour's usable tail");
      outcome("ok");
      break;
    }
    case OpKind::kPeek: {
      Block& b = slots[op.slot];
      if (!b.live || b.fill_len == 0) {
        outcome("empty slot");
        break;
      }
      // Within the patterned bytes: blocks above kFullPatternMax only in their windows.
      const uint64_t window = b.fill_len < kPeekWindow ? b.fill_len : kPeekWindow;
      const uint64_t off = op.offset % window % (b.fill_len > kFullPatternMax ? kEdge : window);
      const Pattern pat(b.zeroed, b.seed);
      if (opt.self_test_poke) {
        b.p[off] = static_cast<uint8_t>(~b.p[off]);  // the model is not told
        outcome("POKED (self-test)");
        break;
      }
      if (!b.tainted && b.p[off] != pat.at(off)) {
        deviate(Clause::kContent, "content of %s changed: %s", describe_block(op.slot).c_str(),
                mismatch_detail(b, b.p, off, pat, b.fill_len).c_str());
        fill_block(b, 0);  // waived: the pattern back for the next check
      }
      outcome("ok");
      break;
    }
    case OpKind::kHeapCreate:
      op_heap_create(op);
      break;
    case OpKind::kHeapMalloc:
      op_heap_malloc(op);
      break;
    case OpKind::kHeapCalloc:
      op_heap_calloc(op);
      break;
    case OpKind::kHeapRealloc:
      op_heap_realloc(op);
      break;
    case OpKind::kHeapFree:
      op_heap_free(op);
      break;
    case OpKind::kHeapReset:
      op_heap_reset(op);
      break;
    case OpKind::kHeapDestroy:
      op_heap_destroy(op);
      break;
    case OpKind::kHeapStats:
      op_heap_stats(op);
      break;
    case OpKind::kHeapAllocRange:
      op_heap_alloc_range(op);
      break;
    case OpKind::kHeapFill:
      op_heap_fill();
      break;
    case OpKind::kHeapUnfill:
      op_heap_unfill();
      break;
    case OpKind::kAdvanceTime:
      op_advance_time(op);
      break;
  }
  if (!mt && oom_active && op.kind != OpKind::kOomWindow && --oom_left <= 0) {
    close_oom_window("when the OOM window closed");
  }
}

void Interpreter::Impl::op_advance_time(const Op& op) {
  if (!be.has_clock()) {
    outcome("no-op (backend has no virtual clock)");
    return;
  }
  be.advance_time(op.time_ms());
  outcome("ok");
}

bool Interpreter::Impl::whole_heap_due(size_t i) const {
  if (opt.paranoid) return true;
  const size_t n = i + 1;
  if (opt.heap_check_every != 0 || opt.verify_every != 0) {
    return (opt.heap_check_every != 0 && n % opt.heap_check_every == 0) ||
           (opt.verify_every != 0 && n % opt.verify_every == 0);
  }
  // Powers of two from 16 on: as often as the old fixed period of 32 ops in short inputs,
  // O(log n) in long ones (the scoped checks cover every op in between).
  return n >= 16 && (n & (n - 1)) == 0;
}

void Interpreter::Impl::check_after_op(size_t i) {
  const OpKind k = prog->ops[i].kind;
  // Read-only ops (and moving the clock, which acts at the next allocator call) change
  // nothing there is to check.
  if (k == OpKind::kSwap || k == OpKind::kPeek || k == OpKind::kUsableSize || k == OpKind::kAdvanceTime) return;
  const size_t purges_before = last.purge_calls;
  check_stats("after this op");
  const bool purged = be.has_stats() && last.purge_calls != purges_before;
  if (whole_heap || purged || whole_heap_due(i)) {
    const char* why = purged       ? "after an op during which the allocator returned memory to the OS"
                      : whole_heap ? "after an op that released a memory pool's segments"
                                   : "at a periodic whole-heap check";
    check_heap(why);
    verify_all(why, routine());
    return;
  }
  check_touched();
  // The paranoid flag: every live block after every op, sampled as large blocks always are
  // (every byte at the whole-heap checks above).
  if (prog->paranoid()) verify_all("after this op (the input's paranoid flag)", Coverage::kEdges);
}

void Interpreter::Impl::trace_op(size_t i) {
  if (opt.trace == nullptr) return;
  // Addresses relative to their 4 MiB segment: where the OS put a mapping is not the
  // allocator's decision, where a block lies inside it is.
  auto offset = [](const void* p) { return hex(reinterpret_cast<uintptr_t>(p) & ((uint64_t{1} << 22) - 1)); };
  const Record& r = *rec;
  std::string line = "#" + std::to_string(i) + " " + op_name(prog->ops[i].kind) + " n=" + num(r.n) + " => " +
                     (r.placed_by_kernel     ? "ok (resized)"
                      : r.outcome != nullptr ? r.outcome
                                             : "");
  if (r.before != nullptr) line += " from +" + offset(r.before);
  if (r.after != nullptr) line += " at +" + offset(r.after);
  if (r.err != 0) line += " errno " + std::to_string(r.err);
  if (be.has_stats() && !mt) {  // threads do not read the stats per op
    char buf[200];
    snprintf(buf, sizeof buf, " | mapped %zu committed %zu maps %zu unmaps %zu purges %zu pooled %zu",
             last.mapped_bytes, last.committed_bytes, last.map_calls, last.unmap_calls, last.purge_calls,
             last.pool_segments);
    line += buf;
  }
  *opt.trace += line + "\n";
}

void Interpreter::Impl::final_frees() {
  in_final = true;
  close_oom_window("at the end of the input");
  // The end of the input: the whole heap, every byte of every block.
  verify_all("at the end of the input", Coverage::kEvery);
  check_heap("at the end of the input, before the final frees");
  // Pools first: heap_fill's extra pools, then every live pool slot with its blocks.
  bool had_pools = !extra_pools.empty();
  for (void* h : extra_pools) be.heap_destroy(h);
  extra_pools.clear();
  for (unsigned pi = 0; pi < kPoolSlots; ++pi) {
    if (pools[pi].h == nullptr) continue;
    had_pools = true;
    check_pool_stats(pi, "at the end of the input");
    destroy_pool(pi, "at the final heap_destroy");
  }
  if (had_pools) check_heap("after the final heap_destroy of every pool");
  std::vector<unsigned> by_address;
  for (auto& [a, s] : by_addr) by_address.push_back(s);
  const std::vector<unsigned> order = end_order_slots(prog->end_order(), by_address);
  touched.clear();
  for (unsigned s : order) release(s, "at the final free");
  check_touched();  // around every block just freed: the whole heap was checked before
  // Blocks the final frees left in the allocator's thread cache (tinymalloc's medium blocks
  // coalesce only when they leave it) go back now, so that what they do then is checked too:
  // the reset below would flush them unseen.
  be.release_cached();
  check_heap("after the final frees and release_cached");
  if (be.has_stats()) {
    HeapStats s;
    be.stats(&s);
    if (s.live_blocks != base.live_blocks || s.requested_bytes != base.requested_bytes ||
        s.usable_bytes != base.usable_bytes) {
      deviate(Clause::kStats,
              "leak: after freeing every block, stats say live_blocks %zu, requested_bytes %zu, usable_bytes %zu; "
              "at the start of the input they were %zu, %zu, %zu",
              s.live_blocks, s.requested_bytes, s.usable_bytes, base.live_blocks, base.requested_bytes,
              base.usable_bytes);
    }
  }
  check_stats("after the final frees");
  // Back to a pristine allocator for the next input; an inconsistency the reset finds (the
  // OS accounting not back at zero with every mapping gone) belongs to this input.
  std::string msg;
  if (be.reset(&msg) > 0) {
    deviate(Clause::kHeapCheck, "after the final frees, resetting the allocator found: %s", msg.c_str());
  }
  if (be.has_stats()) be.stats(&last);
}

void Interpreter::Impl::reset() {
  failed_clause = Clause::kCount;
  for (auto& b : slots) b = Block{};
  by_addr.clear();
  unindexed_blocks = 0;
  live_count = live_requested = live_usable = live_virtual = routed_count = routed_requested = 0;
  next_seed = 1;
  prev_size = 0;
  oom_left = -1;
  oom_active = false;
  ring_n = 0;
  in_final = false;
  check_heap_ops = 0;
  for (auto& ps : pools) ps = PoolSlot{};
  extra_pools.clear();
  touched.clear();
  whole_heap = false;
  if (be.has_stats()) be.stats(&base);
  last = base;
}

// TM_HARNESS_HEAPMAP=path: the backend's heap map at the moment of the failure, written to
// path (SVG when it ends in ".svg", text otherwise); returns the report's line about it.
static std::string attach_heap_map(Backend& be) {
  const char* path = getenv("TM_HARNESS_HEAPMAP");
  if (path == nullptr || *path == '\0') return "";
  const std::string file = path;
  const bool svg = file.size() >= 4 && file.compare(file.size() - 4, 4, ".svg") == 0;
  const int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return "heap map: cannot open " + file + ": " + strerror(errno) + "\n";
  const bool written = be.heap_map(fd, svg);
  close(fd);
  if (!written) return "heap map: backend " + std::string(be.name()) + " has none\n";
  return "heap map: " + file + "\n";
}

std::string Interpreter::Impl::report(const std::string& what) const {
  std::string r;
  char buf[512];
  const size_t total = prog->ops.size();
  snprintf(buf, sizeof buf, "\n==== tinymalloc harness: FAILURE (target %s, backend %s, profile %s) ====\n",
           opt.target.c_str(), be.name(), profile_name(opt.profile));
  r += buf;
  if (!context.empty()) r += "thread: " + context + " (op numbers below count this thread's heap ops)\n";
  if (!where.empty()) {
    r += "at: " + where + "\n";
  } else if (in_final) {
    snprintf(buf, sizeof buf, "at: end of input, after op #%zu of %zu (final verification and frees)\n",
             total ? total - 1 : 0, total);
    r += buf;
  } else {
    const Op& op = prog->ops[cur];
    snprintf(buf, sizeof buf, "at: op #%zu of %zu (input offset %u): %s\n", cur, total, op.pos,
             format_op(op, cur).c_str());
    r += buf;
    if (!resolved.empty()) r += "    resolved: " + resolved + "\n";
  }
  r += "what: " + what + "\n";
  if (failed_clause != Clause::kCount) r += clause_report_line(failed_clause, contract.profile) + "\n";
  if (be.has_heap_check()) {
    std::string msg;
    const int code = be.check_heap(&msg);
    r += code == 0 ? std::string("heap check now: ok\n") : "heap check now: " + msg + "\n";
  }
  r += attach_heap_map(be);
  r += "recent ops (oldest first):\n";
  const size_t first = ring_n > kRing ? ring_n - kRing : 0;
  for (size_t i = first; i < ring_n; ++i) {
    const Record& rc = ring[i % kRing];
    if (!rc.note.empty()) {
      r += "  " + rc.note + "\n";
      continue;
    }
    std::string line = "  " + format_op(prog->ops[rc.index], rc.index);
    if (rc.outcome && *rc.outcome) {
      line += "  => ";
      line += rc.outcome;
      if (rc.before) line += " " + ptr(rc.before);
      if (rc.after) line += std::string(rc.before ? " -> " : " ") + ptr(rc.after);
      if (rc.err) line += " errno " + std::to_string(rc.err);
    }
    if (!in_final && where.empty() && rc.index == cur && i + 1 == ring_n) line += "   <== FAILED HERE";
    r += line + "\n";
  }
  unsigned shown = 0;
  std::string live;
  for (auto& [a, s] : by_addr) {
    if (shown++ < 12) live += "  " + describe_block(s) + "\n";
  }
  snprintf(buf, sizeof buf, "live blocks in the model (%" PRIu64 ", by address%s):\n", live_count,
           live_count > 12 ? ", first 12" : "");
  r += buf + live;
  std::string pl;
  for (unsigned pi = 0; pi < kPoolSlots; ++pi) {
    if (pools[pi].h == nullptr) continue;
    uint64_t n, usable;
    pool_totals(pi, &n, &usable);
    snprintf(buf, sizeof buf, "  pool %u: %s, created at #%zu, %" PRIu64 " blocks, %" PRIu64 " usable bytes\n", pi,
             ptr(pools[pi].h).c_str(), pools[pi].birth_op, n, usable);
    pl += buf;
  }
  if (!pl.empty() || !extra_pools.empty()) {
    snprintf(buf, sizeof buf, "live pools in the model (+ %zu extra pools of heap_fill):\n", extra_pools.size());
    r += buf + pl;
  }
  snprintf(buf, sizeof buf,
           "reproduce: tools/tm-repro <input file> --target %s   (prints the full trace and replays it)\n"
           "====\n",
           opt.target.c_str());
  r += buf;
  return r;
}

void Interpreter::Impl::print_verbose(double ms) const {
  if (!opt.verbose) return;
  const Record& rc = *rec;
  std::string line = context.empty() ? std::string() : "[" + context + "] ";
  line += format_op(prog->ops[rc.index], rc.index);
  if (!resolved.empty()) line += "  {" + resolved + "}";
  line += "  => ";
  line += rc.outcome;
  if (rc.before) line += " " + ptr(rc.before);
  if (rc.after) line += std::string(rc.before ? " -> " : " ") + ptr(rc.after);
  if (ms >= 1.0) line += "  (" + std::to_string(static_cast<long>(ms)) + " ms)";
  fprintf(opt.out, "%s\n", line.c_str());
}

// ---- Interpreter -----------------------------------------------------------------------------------

Interpreter::Interpreter(Backend& backend, Options options)
    : backend_(backend), options_(std::move(options)), impl_(std::make_unique<Impl>(backend_, options_, counters_)) {}

Interpreter::~Interpreter() = default;

Result Interpreter::run(const Program& program) {
  Impl& m = *impl_;
  counters_ = Counters{};
  m.prog = &program;
  // A pristine allocator: what ran before this input must not change its outcome. (After a
  // failed run that left blocks live the backend cannot reset; the run goes on all the same.)
  std::string reset_message;
  backend_.reset(&reset_message);
  m.reset();
  Result res;
  try {
    for (size_t i = 0; i < program.ops.size(); ++i) {
      m.cur = i;
      m.begin_record(i);
      const auto t0 = options_.verbose ? std::chrono::steady_clock::now() : std::chrono::steady_clock::time_point{};
      m.exec(program.ops[i]);
      ++counters_.ops;
      m.check_after_op(i);
      m.trace_op(i);
      if (options_.verbose) {
        m.print_verbose(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
      }
    }
    m.final_frees();
    if (options_.trace != nullptr) *options_.trace += "end: ok\n";
  } catch (Failure& f) {
    if (options_.trace != nullptr) {
      const size_t nl = f.what.find('\n');
      *options_.trace += "end: FAILED at " + (m.in_final ? std::string("the end") : "#" + std::to_string(m.cur)) +
                         ": " + f.what.substr(0, nl) + "\n";
    }
    if (m.oom_active) backend_.fail_os_after(-1);
    m.oom_active = false;
    res.ok = false;
    res.op_index = m.in_final ? program.ops.size() : m.cur;
    res.message = m.report(f.what);
    if (options_.abort_on_failure) {
      fputs(res.message.c_str(), options_.out);
      fflush(options_.out);
      abort();
    }
    if (options_.free_after_failure) {
      // Plain blocks first (an emulated pool forgets a block freed with free()), then the
      // pools with their blocks.
      for (unsigned s = 0; s < kSlots; ++s) {
        Block& b = m.slots[s];
        if (b.live && b.pool < 0) backend_.free(b.p);
        if (b.pool < 0) b.live = false;
      }
      for (auto& ps : m.pools) {
        if (ps.h != nullptr) backend_.heap_destroy(ps.h);
        ps = Impl::PoolSlot{};
      }
      for (void* h : m.extra_pools) backend_.heap_destroy(h);
      m.extra_pools.clear();
      for (auto& b : m.slots) b.live = false;
      m.by_addr.clear();
      m.unindexed_blocks = 0;
    }
  }
  m.prog = nullptr;
  return res;
}

Options options_from_env(Profile profile, std::string_view target) {
  Options o;
  o.profile = profile;
  o.target = std::string(target);
  const char* st = getenv("TM_HARNESS_SELFTEST");
  if (st != nullptr && strcmp(st, "poke") == 0) o.self_test_poke = true;
  const char* v = getenv("TM_HARNESS_VERBOSE");
  if (v != nullptr && *v && strcmp(v, "0") != 0) o.verbose = true;
  const char* paranoid = getenv("TM_HARNESS_PARANOID");
  if (paranoid != nullptr && *paranoid && strcmp(paranoid, "0") != 0) o.paranoid = true;
  if (const char* h = getenv("TM_HARNESS_HEAP_CHECK_EVERY")) {
    const long n = strtol(h, nullptr, 10);
    if (n > 0) o.heap_check_every = static_cast<unsigned>(n);
  }
  if (const char* f = getenv("TM_HARNESS_VERIFY_EVERY")) {
    const long n = strtol(f, nullptr, 10);
    if (n > 0) o.verify_every = static_cast<unsigned>(n);
  }
  return o;
}

}  // namespace tmh
