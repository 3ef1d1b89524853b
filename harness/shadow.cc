// The shadow heap: the model's view of every live block (contents, placement, sizes), its
// bookkeeping, and the checks against the allocator's own view (heap check, statistics).
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cinttypes>
#include <cstdlib>
#include <cstring>
#include <string>

#include "interpreter_impl.h"
#include "tm_harness.h"

namespace tmh {

std::string Interpreter::Impl::describe_block(unsigned s) const {
  const Block& b = slots[s];
  std::string d = "slot " + std::to_string(s) + " (" + ptr(b.p) + ", " + num(b.requested) +
                  " bytes requested, usable " + num(b.usable) + ", ";
  d += b.zeroed ? std::string("zero-filled") : "seed " + std::to_string(b.seed);
  d += ", from #" + std::to_string(b.birth_op) + " " + op_name(b.how);
  if (b.pool >= 0) d += ", in pool " + std::to_string(b.pool);
  d += ")";
  return d;
}

std::string Interpreter::Impl::mismatch_detail(const Block& b, const uint8_t* p, uint64_t off, const Pattern& pat,
                                               uint64_t limit) const {
  char buf[512];
  const uint64_t from = off & ~uint64_t{15};
  uint64_t to = from + 32;
  if (to > limit) to = limit;
  std::string found, want;
  for (uint64_t i = from; i < to; ++i) {
    char h[4];
    snprintf(h, sizeof h, "%02x", p[i]);
    found += h;
    snprintf(h, sizeof h, "%02x", pat.at(i));
    want += h;
    if ((i & 3) == 3) {
      found += ' ';
      want += ' ';
    }
  }
  // Differences among the patterned bytes (a windowed block's windows) of the next 4096.
  uint64_t bad = 0;
  uint64_t last = off;
  const uint64_t end = limit < off + 4096 ? limit : off + 4096;
  for_windows(b.fill_len, off, end, [&](uint64_t a, uint64_t z) {
    for (uint64_t i = a; i < z; ++i) {
      if (p[i] != pat.at(i)) {
        ++bad;
        last = i;
      }
    }
  });
  snprintf(buf, sizeof buf,
           "differs at offset %" PRIu64 " (address %s): expected 0x%02x, found 0x%02x; %" PRIu64
           " of the next 4096 bytes differ (last at offset %" PRIu64
           ")\n"
           "      bytes %" PRIu64 "..%" PRIu64 ": %s\n      expected:    %s",
           off, ptr(p + off).c_str(), pat.at(off), p[off], bad, last, from, to - 1, found.c_str(), want.c_str());
  return buf;
}

void Interpreter::Impl::deviate(Clause c, const char* fmt, ...) {
  if (!contract.applies(c)) return;
  char buf[2048];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  if (contract.is_waived(c)) {
    record_deviation(c, buf);
    return;
  }
  failed_clause = c;
  throw Failure{buf};
}

void Interpreter::Impl::verify_block(unsigned s, const char* when, uint64_t lo, uint64_t hi, Coverage coverage,
                                     Clause clause) {
  Block& b = slots[s];
  if (!b.live || b.tainted) return;
  const Pattern pat(b.zeroed, b.seed);
  bool deviated = false;
  for_windows(
      b.fill_len, lo, hi,
      [&](uint64_t a, uint64_t z) {
        if (deviated) return;
        const uint64_t bad = pat.check(b.p, a, z);
        if (bad != kNotFound) {
          deviate(clause, "content of %s changed (%s): %s", describe_block(s).c_str(), when,
                  mismatch_detail(b, b.p, bad, pat, b.fill_len).c_str());
          deviated = true;
        }
      },
      coverage);
  // Waived: the block gets its pattern back, so the next check looks for a new change.
  if (deviated) fill_block(b, 0);
}

void Interpreter::Impl::verify_all(const char* when, Coverage coverage) {
  for (unsigned s = 0; s < kSlots; ++s) verify_block(s, when, 0, UINT64_MAX, coverage);
}

void Interpreter::Impl::verify_neighbours(uintptr_t addr, uint64_t len, const char* when) {
  auto it = by_addr.lower_bound(addr + (len ? len : 1));
  if (it != by_addr.end()) verify_block(it->second, when, 0, kNeighbourEdge);
  it = by_addr.lower_bound(addr);
  if (it != by_addr.begin()) {
    --it;
    const Block& b = slots[it->second];
    verify_block(it->second, when, b.fill_len > kNeighbourEdge ? b.fill_len - kNeighbourEdge : 0);
  }
}

void Interpreter::Impl::fill_block(Block& b, uint64_t from) {
  const Pattern pat(b.zeroed, b.seed);
  for_windows(b.fill_len, from, UINT64_MAX, [&](uint64_t a, uint64_t z) { pat.fill(b.p, a, z); });
}

void Interpreter::Impl::check_overlap(const uint8_t* p, uint64_t extent, uint64_t requested, const char* what,
                                      bool* tainted) {
  const uintptr_t a = reinterpret_cast<uintptr_t>(p);
  if (a + extent < a) {
    deviate(Clause::kUsableSize, "%s returned %s whose usable range wraps the address space", what, ptr(p).c_str());
    return;
  }
  // Every live block whose usable range meets [a, a + extent): blocks start in address
  // order, so those starting before a + extent, back to the first that ends before a.
  const uint64_t own_req = requested > 0 ? requested : 1;
  auto it = by_addr.lower_bound(a + extent);
  while (it != by_addr.begin()) {
    --it;
    Block& o = slots[it->second];
    // Blocks before it end before a too (live blocks do not overlap; after a waived overlap
    // an earlier, larger block may still reach a: its overlap was recorded when it came).
    if (it->first + o.extent() <= a) break;
    // The requested bytes overlap: two blocks share memory (no-overlap). Only the usable
    // tails do: a usable size claims bytes that belong to another block (usable-size).
    const uint64_t o_req = o.requested > 0 ? o.requested : 1;
    const bool requested_overlap = it->first < a + own_req && a < it->first + o_req;
    deviate(requested_overlap ? Clause::kNoOverlap : Clause::kUsableSize,
            "%s returned %s (%s bytes requested, usable %s) which overlaps%s live %s", what, ptr(p).c_str(),
            num(requested).c_str(), num(extent).c_str(), requested_overlap ? "" : " (in the usable tail only)",
            describe_block(it->second).c_str());
    // Waived: neither block's contents can be checked any more (each write changes the other).
    o.tainted = true;
    *tainted = true;
  }
}

void Interpreter::Impl::link(unsigned s, bool global) {
  Block& b = slots[s];
  if (global && registry != nullptr) {
    std::string other;
    bool shared = true;
    if (!registry->claim(b.p, b.extent(), b.requested, engine_id, &other, &shared)) {
      deviate(shared ? Clause::kNoOverlap : Clause::kUsableSize,
              "%s (usable %s bytes, now in %s) overlaps%s a live block of another thread: %s", ptr(b.p).c_str(),
              num(b.extent()).c_str(), describe_block(s).c_str(), shared ? "" : " (in the usable tail only)",
              other.c_str());
      b.tainted = true;
    }
  }
  // A waived deviation may have handed out an address that a live block starts at too: the
  // first one keeps the address map's entry.
  b.unindexed = !by_addr.emplace(reinterpret_cast<uintptr_t>(b.p), s).second;
  if (b.unindexed) ++unindexed_blocks;
  ++live_count;
  live_requested += b.requested;
  live_usable += b.usable;
  live_virtual += b.virt();
  if (b.pool < 0) {
    ++routed_count;
    routed_requested += b.requested;
  }
}

void Interpreter::Impl::unlink(unsigned s, bool global) {
  Block& b = slots[s];
  if (global && registry != nullptr) registry->unclaim(b.p);
  if (b.unindexed) {
    --unindexed_blocks;
  } else {
    by_addr.erase(reinterpret_cast<uintptr_t>(b.p));
    // A block sharing the address (waived deviations only) takes the entry over.
    for (unsigned o = 0; unindexed_blocks > 0 && o < kSlots; ++o) {
      Block& other = slots[o];
      if (o != s && other.live && other.unindexed && other.p == b.p) {
        by_addr[reinterpret_cast<uintptr_t>(b.p)] = o;
        other.unindexed = false;
        --unindexed_blocks;
        break;
      }
    }
  }
  b.unindexed = false;
  --live_count;
  live_requested -= b.requested;
  live_usable -= b.usable;
  live_virtual -= b.virt();
  if (b.pool < 0) {
    --routed_count;
    routed_requested -= b.requested;
  }
}

uint64_t Interpreter::Impl::check_returned(const uint8_t* p, uint64_t n, uint64_t need, const char* what,
                                           bool* tainted) {
  if (reinterpret_cast<uintptr_t>(p) % need != 0) {
    deviate(need > min_align(n) ? Clause::kAlignPow2 : Clause::kAlignMin, "%s returned %s, which is not aligned to %s",
            what, ptr(p).c_str(), num(need).c_str());
  }
  uint64_t usable = be.usable_size(p);
  if (usable < n) {
    deviate(Clause::kUsableSize, "%s returned %s with usable size %s < %s bytes requested", what, ptr(p).c_str(),
            num(usable).c_str(), num(n).c_str());
    usable = n;  // waived: the model holds the block at its requested size
  }
  *tainted = false;
  check_overlap(p, usable > 0 ? usable : 1, n, what, tainted);
  if (be.has_owns()) {
    if (!be.owns(p))
      deviate(Clause::kOwns, "%s returned %s but owns() says the allocator does not own it", what, ptr(p).c_str());
    if (usable > 1 && !be.owns(p + usable - 1)) {
      deviate(Clause::kOwns, "%s returned %s but owns() is false for its last usable byte %s", what, ptr(p).c_str(),
              ptr(p + usable - 1).c_str());
    }
  }
  return usable;
}

void Interpreter::Impl::adopt(unsigned s, void* vp, uint64_t n, uint64_t align, OpKind how, bool zeroed,
                              const char* what, int pool) {
  uint8_t* p = static_cast<uint8_t*>(vp);
  bool tainted = false;
  const uint64_t usable = check_returned(p, n, align > min_align(n) ? align : min_align(n), what, &tainted);
  Block& b = slots[s];
  b = Block{};
  b.tainted = tainted;
  b.p = p;
  b.live = true;
  b.requested = n;
  b.usable = usable;
  b.align = align;
  b.birth_op = cur;
  b.how = how;
  b.last_size = n;
  b.last_usable = usable;
  b.zeroed = zeroed;
  b.seed = zeroed ? 0 : next_seed++;
  b.pool = static_cast<int8_t>(pool);
  if (zeroed) {
    const Pattern zero(true, 0);
    b.fill_len = n;
    bool deviated = false;
    for_windows(n, 0, UINT64_MAX, [&](uint64_t a, uint64_t z) {
      const uint64_t bad = deviated ? kNotFound : zero.check(p, a, z);
      if (bad != kNotFound) {
        deviate(Clause::kCallocZero, "%s returned %s whose memory is not zeroed: %s", what, ptr(p).c_str(),
                mismatch_detail(b, p, bad, zero, n).c_str());
        deviated = true;
      }
    });
    if (deviated) memset(p, 0, n);  // waived: the block as calloc should have returned it
  }
  b.fill_len = prog->fill_usable() ? tail_limit(n, usable) : n;
  fill_block(b, zeroed ? n : 0);
  link(s);
  ++ctr.allocs;
  touched.push_back(p);
  verify_neighbours(reinterpret_cast<uintptr_t>(p), b.extent(), "after a neighbouring allocation");
}

void Interpreter::Impl::release(unsigned s, const char* why, bool heap_free) {
  Block& b = slots[s];
  if (!b.live) return;
  verify_block(s, why, 0, UINT64_MAX, routine());
  unlink(s);
  uint8_t* p = b.p;
  const uint64_t ext = b.extent();
  const int pool = b.pool;
  if (heap_free && pool >= 0) {
    be.heap_free(pools[pool].h, p);
  } else if (s % 2 == 1 && pool < 0) {
    be.free_sized(p, b.requested);  // odd slots: the sized free, with the size requested
  } else {
    be.free(p);
  }
  b.live = false;
  b.p = nullptr;
  ++ctr.frees;
  touched.push_back(p);
  verify_neighbours(reinterpret_cast<uintptr_t>(p), ext, "after a neighbouring free");
  if (pool >= 0) check_pool_stats(static_cast<unsigned>(pool), heap_free ? "after heap_free" : "after free()");
}

void Interpreter::Impl::check_foreign_owns() {
  if (!be.has_owns()) return;
  int local = 0;
  if (be.owns(nullptr)) deviate(Clause::kOwns, "owns(NULL) is true");
  if (be.owns(&local)) deviate(Clause::kOwns, "owns(%s) is true for a stack address", ptr(&local).c_str());
  if (be.owns(this))
    deviate(Clause::kOwns, "owns(%s) is true for a harness object in the system heap", ptr(this).c_str());
  if (be.owns(reinterpret_cast<const void*>(&hex))) deviate(Clause::kOwns, "owns() is true for a code address");
}

void Interpreter::Impl::check_heap(const char* when) {
  if (!be.has_heap_check()) return;
  std::string msg;
  const int code = be.check_heap(&msg);
  if (code != 0) deviate(Clause::kHeapCheck, "heap check failed %s: %s", when, msg.c_str());
}

void Interpreter::Impl::draw_heap_map() {
  if (!be.has_heap_map()) return;
  const int fd = open("/dev/null", O_WRONLY | O_CLOEXEC);
  if (fd < 0) return;  // no /dev/null (a sandbox): nothing to draw into
  const bool svg = (cur & 1) != 0;
  const bool drawn = be.heap_map(fd, svg);
  const int err = errno;
  close(fd);
  if (!drawn) {
    deviate(Clause::kHeapCheck, "the heap map (%s) of this heap failed: errno %d (%s)", svg ? "SVG" : "text", err,
            strerror(err));
  }
}

void Interpreter::Impl::check_introspection() {
  std::string msg;
  if (be.check_introspection(&msg) != 0) deviate(Clause::kStats, "at check_heap: %s", msg.c_str());
}

void Interpreter::Impl::check_touched() {
  if (!be.has_heap_check()) return;
  std::string msg;
  for (const void* p : touched) {
    const int code = be.check_heap_around(p, &msg);
    if (code != 0) {
      deviate(Clause::kHeapCheck, "heap check failed around %s (an address this op touched): %s", ptr(p).c_str(),
              msg.c_str());
    }
  }
}

void Interpreter::Impl::check_stats(const char* when) {
  if (!be.has_stats()) return;
  HeapStats& s = last;
  be.stats(&s);
  auto diff = [](size_t now, size_t b) { return static_cast<uint64_t>(now - b); };
  if (s.debug_view) {
    check_debug_stats(when);
  } else {
    if (diff(s.live_blocks, base.live_blocks) != live_count) {
      deviate(Clause::kStats,
              "stats %s: live_blocks is %zu (baseline %zu, so %" PRId64 " blocks of this run); the model has %" PRIu64
              " live blocks",
              when, s.live_blocks, base.live_blocks, static_cast<int64_t>(diff(s.live_blocks, base.live_blocks)),
              live_count);
    }
    if (s.requested_exact && diff(s.requested_bytes, base.requested_bytes) != live_requested) {
      deviate(Clause::kStats,
              "stats %s: requested_bytes is %zu (baseline %zu, so %" PRId64
              " bytes of this run); the model has %" PRIu64,
              when, s.requested_bytes, base.requested_bytes,
              static_cast<int64_t>(diff(s.requested_bytes, base.requested_bytes)), live_requested);
    }
    if (diff(s.usable_bytes, base.usable_bytes) != live_usable) {
      deviate(Clause::kStats,
              "stats %s: usable_bytes is %zu (baseline %zu, so %" PRId64
              " bytes of this run); the model's sum of usable_size() is %" PRIu64,
              when, s.usable_bytes, base.usable_bytes, static_cast<int64_t>(diff(s.usable_bytes, base.usable_bytes)),
              live_usable);
    }
  }
  // Self-consistency of the snapshot (tinymalloc.h field definitions).
  if (s.small_live_blocks + s.medium_live_blocks + s.large_live_blocks != s.live_blocks) {
    deviate(Clause::kStats, "stats %s: small %zu + medium %zu + large %zu live blocks != live_blocks %zu", when,
            s.small_live_blocks, s.medium_live_blocks, s.large_live_blocks, s.live_blocks);
  }
  if (s.class_live_sum != s.small_live_blocks) {
    deviate(Clause::kStats, "stats %s: sum of class_live_blocks %zu != small_live_blocks %zu", when, s.class_live_sum,
            s.small_live_blocks);
  }
  if (s.usable_bytes < s.requested_bytes) {
    deviate(Clause::kStats, "stats %s: usable_bytes %zu < requested_bytes %zu", when, s.usable_bytes,
            s.requested_bytes);
  }
  if (s.peak_requested_bytes < s.requested_bytes) {
    deviate(Clause::kStats, "stats %s: peak_requested_bytes %zu < requested_bytes %zu", when, s.peak_requested_bytes,
            s.requested_bytes);
  }
  if (s.peak_mapped_bytes < s.mapped_bytes) {
    deviate(Clause::kStats, "stats %s: peak_mapped_bytes %zu < mapped_bytes %zu", when, s.peak_mapped_bytes,
            s.mapped_bytes);
  }
  if (s.committed_bytes > s.mapped_bytes) {
    deviate(Clause::kStats, "stats %s: committed_bytes %zu > mapped_bytes %zu", when, s.committed_bytes,
            s.mapped_bytes);
  }
  if (s.medium_largest_free > s.medium_free_bytes || (s.medium_free_blocks == 0) != (s.medium_free_bytes == 0)) {
    deviate(Clause::kStats, "stats %s: medium free space inconsistent: %zu blocks, %zu bytes, largest %zu", when,
            s.medium_free_blocks, s.medium_free_bytes, s.medium_largest_free);
  }
}

void Interpreter::Impl::check_debug_stats(const char* when) {
  const HeapStats& s = last;
  auto diff = [](size_t now, size_t b) { return static_cast<uint64_t>(now - b); };
  const uint64_t recorded = diff(s.debug_live_blocks, base.debug_live_blocks);
  const uint64_t recorded_bytes = diff(s.debug_live_bytes, base.debug_live_bytes);
  const uint64_t quarantined = diff(s.debug_quarantined, base.debug_quarantined);
  if (recorded != routed_count || recorded_bytes != routed_requested) {
    deviate(Clause::kStats,
            "debug mode's records %s: %" PRIu64 " live blocks of %" PRIu64 " requested bytes; the model has %" PRIu64
            " blocks of %" PRIu64 " bytes outside pools",
            when, recorded, recorded_bytes, routed_count, routed_requested);
  }
  // Every recorded block and every quarantined one is one core block; pool blocks are not routed.
  if (diff(s.live_blocks, base.live_blocks) != live_count + quarantined) {
    deviate(Clause::kStats,
            "stats %s (debug mode): live_blocks is %zu (baseline %zu, so %" PRId64
            " blocks of this run); the model has %" PRIu64 " live blocks and debug mode's quarantine %" PRIu64,
            when, s.live_blocks, base.live_blocks, static_cast<int64_t>(diff(s.live_blocks, base.live_blocks)),
            live_count, quarantined);
  }
}

}  // namespace tmh
