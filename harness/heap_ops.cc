// The malloc-family ops of an op program (malloc, calloc, realloc, free, aligned_alloc,
// posix_memalign, usable_size) and the outcome each size and alignment must have
// (FORMAT.md "Expected outcomes").
#include <cerrno>
#include <cinttypes>
#include <cstdlib>
#include <cstring>
#include <string>

#include "config.h"
#include "interpreter_impl.h"
#include "tm_harness.h"

namespace tmh {

Expect Interpreter::Impl::expect_size(uint64_t n, uint64_t extra_virtual) const {
  if (n >= kImpossibleMin) return Expect::kMustFail;
  if (mt_over_budget(n, extra_virtual, live_virtual) || over_fill_budget(n, extra_virtual, live_virtual)) {
    return Expect::kSkip;
  }
  if (n <= kSaneMax) return oom_active ? Expect::kMayFail : Expect::kSucceed;
  if (n > be.max_attempt_size()) return Expect::kSkip;
  if (live_virtual + n + extra_virtual > live_budget()) return Expect::kSkip;
  return Expect::kMayFail;
}

bool Interpreter::Impl::over_fill_budget(uint64_t n, uint64_t extra_virtual, uint64_t others) const {
  const uint64_t cap = be.max_filled_size();
  if (cap == UINT64_MAX) return false;
  return n + extra_virtual > cap || others + n + extra_virtual > be.max_live_bytes();
}

bool Interpreter::Impl::mt_over_budget(uint64_t n, uint64_t extra_virtual, uint64_t others) const {
  if (!mt || n <= (uint64_t{1} << 20) || n > kSaneMax) return false;
  return others + n + extra_virtual > be.max_live_bytes() / budget_divisor;
}

uint64_t Interpreter::Impl::resolve(const SizeExpr& s, unsigned own_slot) {
  uint64_t n;
  if (s.cat == SizeCat::kRelative) {
    const unsigned src = (s.args[0] & 128) ? own_slot : (s.args[0] & 63u);
    const Block& b = slots[src];
    const bool usable = (s.args[0] & 64) != 0;
    const uint64_t base = b.live ? (usable ? b.usable : b.requested) : (usable ? b.last_usable : b.last_size);
    n = add_size_delta(scale_size(base, s.param), kRelDeltas[s.args[1] % 32]);
  } else if (s.cat == SizeCat::kSameAsPrev) {
    n = add_size_delta(scale_size(prev_size, s.param), kRelDeltas[s.args[0] % 32]);
  } else {
    n = s.static_value();
  }
  prev_size = n;
  rec->n = n;
  if (s.is_dynamic()) resolved = s.describe() + " = " + num(n);
  return n;
}

void Interpreter::Impl::null_result(Expect e, int err, const char* what, uint64_t n, Allowed allowed) {
  if (e == Expect::kSucceed) {
    deviate(Clause::kSaneSuccess, "%s returned NULL (errno %d: %s) for %s bytes, a size that must succeed", what, err,
            strerror(err), num(n).c_str());
    // Outside the profile or waived: a failure like any other, its errno checked below (a
    // waived failure is one deviation: its errno is not judged on top of it).
    if (contract.applies(Clause::kSaneSuccess)) {
      ++ctr.oom_failures;
      outcome("NULL (must have succeeded: deviation recorded)", nullptr, nullptr, err);
      return;
    }
  }
  bool ok = false;
  for (int i = 0; i < allowed.n; ++i) ok |= (allowed.e[i] == err);
  if (!ok) {
    std::string list;
    for (int i = 0; i < allowed.n; ++i) list += std::string(list.empty() ? "" : " or ") + strerrorname(allowed.e[i]);
    // EINVAL alone is what posix_memalign / aligned_alloc owe an invalid alignment.
    const Clause c = allowed.n == 1 && allowed.e[0] == EINVAL
                         ? (strncmp(what, "aligned_alloc", 13) == 0 ? Clause::kAlignedAllocEinval : Clause::kEinval)
                         : Clause::kErrnoEnomem;
    deviate(c, "%s returned NULL with errno %d (%s); expected %s", what, err, strerror(err), list.c_str());
  }
  if (e == Expect::kMustFail)
    ++ctr.expected_failures;
  else
    ++ctr.oom_failures;
  outcome(e == Expect::kMustFail ? "NULL (expected)" : "NULL (allowed)", nullptr, nullptr, err);
}

void Interpreter::Impl::impossible_block(void* p, const char* what) {
  deviate(Clause::kImpossibleFails, "%s returned %s; a size >= 2^47 must fail with ENOMEM", what, ptr(p).c_str());
  // Waived: the pointer names no real block of that size; it is left alone (not even freed).
  outcome("ok (must have failed: deviation recorded, pointer left alone)", nullptr, p);
}

void Interpreter::Impl::set_usable(unsigned s, uint64_t u) {
  Block& b = slots[s];
  live_usable = live_usable - b.usable + u;
  b.usable = u;
  b.last_usable = u;
  if (b.fill_len > u) b.fill_len = u;  // never below requested (callers check u >= requested)
}

const char* Interpreter::Impl::strerrorname(int e) {
  switch (e) {
    case ENOMEM:
      return "ENOMEM";
    case EINVAL:
      return "EINVAL";
    case 0:
      return "0";
    default:
      return "?";
  }
}

bool Interpreter::Impl::skipped_over_budget(Expect e) {
  if (e != Expect::kSkip) return false;
  ++ctr.skipped;
  outcome("skipped (size neither sane nor impossible, over the attempt budget)");
  return true;
}

void Interpreter::Impl::op_malloc(const Op& op) {
  const uint64_t n = resolve(op.size, op.slot);
  release(op.slot, "before its slot was reused");
  alloc_into(op.slot, n);
}

void Interpreter::Impl::alloc_into(unsigned s, uint64_t n, int pool) {
  char what[96];
  if (pool >= 0) {
    snprintf(what, sizeof what, "heap_malloc(pool %d, %s)", pool, num(n).c_str());
  } else {
    snprintf(what, sizeof what, "malloc(%s)", num(n).c_str());
  }
  Expect e = expect_size(n, 0);
  if (skipped_over_budget(e)) return;
  errno = 0;
  void* p = pool >= 0 ? be.heap_malloc(pools[pool].h, n) : be.malloc(n);
  const int err = errno;
  if (p == nullptr) {
    if (n == 0 && e == Expect::kSucceed) {
      deviate(Clause::kMallocZero, "%s returned NULL; a zero-byte request must return a unique block", what);
      outcome("NULL (malloc(0), allowed by the contract)");
      return;
    }
    null_result(e, err, what, n, kENOMEM);
    return;
  }
  if (e == Expect::kMustFail) {
    impossible_block(p, what);
    return;
  }
  adopt(s, p, n, 0, pool >= 0 ? OpKind::kHeapMalloc : OpKind::kMalloc, false, what, pool);
  outcome("ok", nullptr, p);
}

void Interpreter::Impl::op_calloc(const Op& op) {
  const uint64_t size = resolve(op.size, op.slot);
  release(op.slot, "before its slot was reused");
  calloc_into(op, size, -1);
}

void Interpreter::Impl::calloc_into(const Op& op, uint64_t size, int pool) {
  const uint64_t count = count_value(op.count);
  char what[128];
  if (pool >= 0) {
    snprintf(what, sizeof what, "heap_calloc(pool %d, %s, %s)", pool, num(count).c_str(), num(size).c_str());
  } else {
    snprintf(what, sizeof what, "calloc(%s, %s)", num(count).c_str(), num(size).c_str());
  }
  uint64_t total;
  const bool overflow = __builtin_mul_overflow(count, size, &total);
  resolved += (resolved.empty() ? "" : "; ") + std::string(overflow ? "count*size overflows" : "total " + num(total));
  const Expect e = overflow ? Expect::kMustFail : expect_size(total, 0);
  if (skipped_over_budget(e)) return;
  errno = 0;
  void* p = pool >= 0 ? be.heap_calloc(pools[pool].h, count, size) : be.calloc(count, size);
  const int err = errno;
  if (p == nullptr) {
    if (total == 0 && e == Expect::kSucceed) {
      deviate(Clause::kMallocZero, "%s returned NULL; a zero-byte request must return a unique block", what);
      outcome("NULL (zero-size calloc, allowed by the contract)");
      return;
    }
    null_result(e, err, what, overflow ? UINT64_MAX : total, kENOMEM);
    return;
  }
  if (e == Expect::kMustFail) {
    if (overflow) {
      deviate(Clause::kCallocOverflow, "%s returned %s; an overflowing count*size must fail with ENOMEM", what,
              ptr(p).c_str());
      outcome("ok (overflowing calloc succeeded: deviation recorded, block freed)", nullptr, p);
      be.free(p);
    } else {
      impossible_block(p, what);
    }
    return;
  }
  adopt(op.slot, p, total, 0, pool >= 0 ? OpKind::kHeapCalloc : OpKind::kCalloc, true, what, pool);
  outcome("ok", nullptr, p);
}

void Interpreter::Impl::op_realloc(const Op& op) {
  const uint64_t n = resolve(op.size, op.slot);
  realloc_slot(op.slot, n, -1);
}

void Interpreter::Impl::realloc_slot(unsigned slot, uint64_t n, int pool) {
  Block& b = slots[slot];
  void* const heap = pool >= 0 ? pools[pool].h : nullptr;
  auto call = [&](void* old, size_t size) {
    return pool >= 0 ? be.heap_realloc(heap, old, size) : be.realloc(old, size);
  };
  const char* fn = pool >= 0 ? "heap_realloc" : "realloc";
  char pool_arg[24] = "";
  if (pool >= 0) snprintf(pool_arg, sizeof pool_arg, "pool %d, ", pool);
  char what[160];
  if (!b.live) {
    snprintf(what, sizeof what, "%s(%sNULL, %s)", fn, pool_arg, num(n).c_str());
    const Expect e = expect_size(n, 0);
    if (skipped_over_budget(e)) return;
    errno = 0;
    void* p = call(nullptr, n);
    const int err = errno;
    if (p == nullptr) {
      if (n == 0 && e == Expect::kSucceed) {
        deviate(Clause::kMallocZero, "%s returned NULL; a zero-byte request must return a unique block", what);
        outcome("NULL (realloc(NULL, 0), allowed by the contract)");
        return;
      }
      null_result(e, err, what, n, kENOMEM);
      return;
    }
    if (e == Expect::kMustFail) {
      impossible_block(p, what);
      return;
    }
    adopt(slot, p, n, 0, pool >= 0 ? OpKind::kHeapRealloc : OpKind::kRealloc, false, what, pool);
    outcome("ok (as malloc)", nullptr, p);
    return;
  }

  snprintf(what, sizeof what, "%s(%s%s, %s)", fn, pool_arg, ptr(b.p).c_str(), num(n).c_str());
  verify_block(slot, "before realloc", 0, UINT64_MAX, routine());
  ++ctr.reallocs;
  uint8_t* const old = b.p;
  const int old_pool = b.pool;  // == pool for heap_realloc
  if (n == 0) {
    unlink(slot);
    touched.push_back(old);
    void* p = call(old, 0);
    b.live = false;
    b.p = nullptr;
    if (p == nullptr) {
      ++ctr.frees;
      outcome("freed (NULL)", old, nullptr);
      if (old_pool >= 0) check_pool_stats(static_cast<unsigned>(old_pool), "after a realloc to 0 freed a pool block");
      return;
    }
    deviate(pool >= 0 ? Clause::kPools : Clause::kReallocZero,
            "%s returned %s; realloc(p, 0) must free p and return NULL", what, ptr(p).c_str());
    adopt(slot, p, 0, 0, OpKind::kRealloc, false, what);
    outcome("ok (new zero-size block)", old, p);
    return;
  }

  const uint64_t others = live_virtual - b.virt();
  Expect e;
  if (n >= kImpossibleMin)
    e = Expect::kMustFail;
  else if (mt_over_budget(n, 0, others) || over_fill_budget(n, 0, others))
    e = Expect::kSkip;
  else if (n <= kSaneMax)
    e = oom_active ? Expect::kMayFail : Expect::kSucceed;
  else if (n > be.max_attempt_size() || others + n > live_budget())
    e = Expect::kSkip;
  else
    e = Expect::kMayFail;
  if (skipped_over_budget(e)) return;

  // A plain realloc of a pool block: the pool's count before the call.
  PoolStats pool_before;
  if (pool < 0 && old_pool >= 0) be.heap_stats(pools[old_pool].h, &pool_before);

  // Strict-overlap mode: the old block leaves the shared registry before the call (once
  // realloc has freed it, another thread may be handed its memory).
  if (registry != nullptr) registry->unclaim(old);
  errno = 0;
  void* vp = call(old, n);
  const int err = errno;
  if (vp == nullptr) {
    if (registry != nullptr) {
      std::string other;
      bool shared = true;
      if (!registry->claim(old, b.extent(), b.requested, engine_id, &other, &shared)) {
        deviate(shared ? Clause::kNoOverlap : Clause::kUsableSize,
                "after the failed %s, the old block overlaps a block another thread got meanwhile: %s", what,
                other.c_str());
        b.tainted = true;
      }
    }
    null_result(e, err, what, n, kENOMEM);
    // The old block must be untouched and still live.
    verify_block(slot, "after a failed realloc, which must leave the block untouched", 0, UINT64_MAX, routine(),
                 Clause::kReallocFailKeeps);
    const uint64_t u = be.usable_size(old);
    if (u != b.usable) {
      deviate(Clause::kReallocFailKeeps, "after the failed %s, usable_size(old block) is %s, was %s", what,
              num(u).c_str(), num(b.usable).c_str());
      if (u >= b.requested) set_usable(slot, u);  // waived: the model follows the allocator
    }
    return;
  }
  if (e == Expect::kMustFail) {
    // The old block went with the call (moved into a block that is not there): out of the
    // model, and the result freed.
    unlink(slot, /*global=*/false);
    b.live = false;
    b.p = nullptr;
    impossible_block(vp, what);
    return;
  }

  uint8_t* p = static_cast<uint8_t*>(vp);
  const uint64_t keep = b.requested < n ? b.requested : n;
  const Pattern pat(b.zeroed, b.seed);
  // The first min(old, new) bytes must have moved with the block: the sample, and (in a
  // block patterned entirely) the last kEdge of them, where a copy that stopped short shows.
  // (A tainted block's bytes may have been changed by its overlapping partner: not checked.)
  bool lost = false;
  auto kept = [&](uint64_t a, uint64_t z) {
    const uint64_t bad = lost || b.tainted ? kNotFound : pat.check(p, a, z);
    if (bad != kNotFound) {
      deviate(Clause::kReallocPreserves, "%s -> %s did not keep the first %s bytes of %s: %s", what, ptr(p).c_str(),
              num(keep).c_str(), describe_block(slot).c_str(), mismatch_detail(b, p, bad, pat, keep).c_str());
      lost = true;
    }
  };
  for_windows(b.fill_len, 0, keep, kept, routine());
  if (b.fill_len <= kFullPatternMax) {
    const uint64_t end = keep < b.fill_len ? keep : b.fill_len;
    kept(end > kEdge ? end - kEdge : 0, end);
  }
  const Block prev = b;
  touched.push_back(old);
  touched.push_back(p);
  unlink(slot, /*global=*/false);  // the registry dropped it before the call
  b.live = false;
  const bool in_place = p == old;
  if (in_place) ++ctr.realloc_in_place;

  // Register the block again (alignment, usable, overlap, owns).
  bool tainted = false;
  const uint64_t usable = check_returned(p, n, min_align(n), what, &tainted);
  b.tainted = tainted;
  b.p = p;
  b.live = true;
  b.requested = n;
  b.usable = usable;
  b.align = 0;
  b.last_size = n;
  b.last_usable = usable;
  b.fill_len = prog->fill_usable() ? tail_limit(n, usable) : n;
  if (pool < 0 && old_pool >= 0) {
    // Which pool owns the block now: the pool's count says.
    PoolStats after;
    be.heap_stats(pools[old_pool].h, &after);
    if (after.live_blocks == pool_before.live_blocks) {
      resolved += std::string(resolved.empty() ? "" : "; ") + "still in pool " + std::to_string(old_pool);
    } else if (after.live_blocks + 1 == pool_before.live_blocks) {
      b.pool = -1;
      resolved += std::string(resolved.empty() ? "" : "; ") + "moved out of pool " + std::to_string(old_pool);
    } else {
      deviate(Clause::kPools,
              "%s -> %s: heap_stats live_blocks of pool %d went from %zu to %zu across a realloc of one of its blocks",
              what, ptr(p).c_str(), old_pool, pool_before.live_blocks, after.live_blocks);
    }
  }
  if (lost || prev.tainted) {
    // Waived realloc-preserves, or a block whose overlapping partner wrote into it: the
    // prefix is not what the model says; a fresh pattern.
    b.zeroed = false;
    b.seed = next_seed++;
    fill_block(b, 0);
  } else if (prev.zeroed) {
    // Zero-filled block: the copied prefix was zero; continue with a fresh pattern.
    b.zeroed = false;
    b.seed = next_seed++;
    fill_block(b, 0);
  } else if (b.fill_len <= kFullPatternMax && prev.fill_len <= kFullPatternMax) {
    fill_block(b, keep);
  } else {
    fill_block(b, 0);
  }
  link(slot);
  verify_neighbours(reinterpret_cast<uintptr_t>(p), b.extent(), "after a neighbouring realloc");
  outcome(in_place ? "ok (in place)" : "ok (moved)", old, p);
  // A large block resized to a large size: mremap grows it in place only when the kernel left
  // the addresses after it free (not the allocator's decision). A block is large when its
  // size or its alignment does not fit the medium tier (medium_fits in src/medium.cc).
  const bool old_large =
      prev.requested > tmalloc::kMediumMax ||
      (prev.align > 16 && (prev.align > tmalloc::kRunSize || prev.requested + prev.align > tmalloc::kMediumMax));
  rec->placed_by_kernel = old_large && n > tmalloc::kMediumMax;
  if (old_pool >= 0) check_pool_stats(static_cast<unsigned>(old_pool), "after a realloc of one of its blocks");
}

void Interpreter::Impl::op_free(const Op& op) {
  if (!slots[op.slot].live) {
    be.free(nullptr);
    outcome("free(NULL)");
    return;
  }
  const void* p = slots[op.slot].p;
  release(op.slot, "before free");
  outcome("freed", p);
}

void Interpreter::Impl::op_aligned(const Op& op, bool posix) {
  const uint64_t al = align_value(op.align);
  const uint64_t n = resolve(op.size, op.slot);
  release(op.slot, "before its slot was reused");
  char what[128];
  snprintf(what, sizeof what, "%s(%s, %s)", posix ? "posix_memalign" : "aligned_alloc", num(al).c_str(),
           num(n).c_str());
  const bool pow2 = is_pow2(al);
  const bool too_big = pow2 && al > (uint64_t{1} << 30);
  if (pow2 && al > be.max_attempt_alignment() && !(be.strict() && too_big)) {
    ++ctr.skipped;
    outcome("skipped (alignment over the attempt limit of this backend)");
    return;
  }
  const bool bad_posix = posix && (!pow2 || al % sizeof(void*) != 0);
  // Validity per the contract: invalid alignments fail with EINVAL (posix_memalign:
  // always, it is POSIX; aligned_alloc: strict backends only).
  Expect e;
  Allowed allowed = kENOMEM;
  bool lenient_any = false;  // system backend: success or failure both fine
  if (bad_posix || (!posix && !pow2)) {
    e = Expect::kMustFail;
    allowed = kEINVAL;
    if (!posix && !contract.applies(Clause::kAlignedAllocEinval)) lenient_any = true;
  } else if (too_big) {
    e = Expect::kMustFail;
    allowed = kEither;
    if (!be.strict()) {
      if (al > be.max_attempt_size()) {
        ++ctr.skipped;
        outcome("skipped (alignment over the attempt budget for this backend)");
        return;
      }
      lenient_any = true;
    }
  } else {
    e = expect_size(n, al);
    if (!be.strict() && !posix) {
      // Lenient aligned_alloc: C11 lets an implementation reject sizes that are not a
      // multiple of the alignment (sanitizer allocators do, with EINVAL).
      allowed = kEither;
      if (n % al != 0 && e != Expect::kMustFail) lenient_any = true;
    } else if (e == Expect::kMustFail && !be.strict()) {
      allowed = kEither;
    }
  }
  if (skipped_over_budget(e)) return;
  const bool zero_ok = n == 0 && e == Expect::kSucceed;  // size 0: NULL or a unique block

  void* p = nullptr;
  int err;
  if (posix) {
    void* const sentinel = reinterpret_cast<void*>(uintptr_t{0x5e471ae1});
    void* out = sentinel;
    const int rc = be.posix_memalign(&out, al, n);
    err = rc;
    if (rc != 0) {
      if (out != sentinel) {
        deviate(out == nullptr ? Clause::kMemptrUntouched : Clause::kPosixMemalign,
                "%s returned %d but wrote %s to *memptr; it must be left untouched on failure", what, rc,
                ptr(out).c_str());
      }
      if (lenient_any) {
        outcome("failed (allowed for the system backend)", nullptr, nullptr, rc);
        return;
      }
      null_result(e, rc, what, n, allowed);
      return;
    }
    if (out == sentinel) {
      deviate(Clause::kPosixMemalign, "%s returned 0 but did not write *memptr", what);
      outcome("failed (returned 0 without a block: deviation recorded)");
      return;
    }
    p = out;
    if (p == nullptr) {
      if (zero_ok) {
        outcome("ok (NULL for size 0)");
        return;
      }
      deviate(Clause::kPosixMemalign, "%s returned 0 with *memptr = NULL", what);
      outcome("failed (returned 0 with NULL: deviation recorded)");
      return;
    }
  } else {
    errno = 0;
    p = be.aligned_alloc(al, n);
    err = errno;
    if (p == nullptr) {
      if (zero_ok || lenient_any) {
        outcome("NULL (allowed)", nullptr, nullptr, err);
        return;
      }
      null_result(e, err, what, n, allowed);
      return;
    }
  }
  if (n >= kImpossibleMin) {
    // Whatever the alignment, no block of this size exists (a lenient backend may accept an
    // invalid alignment, not an impossible size).
    impossible_block(p, what);
    return;
  }
  if (e == Expect::kMustFail && !lenient_any) {
    const bool invalid = allowed.n == 1 && allowed.e[0] == EINVAL;
    deviate(invalid ? (posix ? Clause::kEinval : Clause::kAlignedAllocEinval) : Clause::kImpossibleFails,
            "%s succeeded with %s; it must fail with %s", what, ptr(p).c_str(), invalid ? "EINVAL" : "ENOMEM/EINVAL");
    if (n > kSaneMax || !pow2 || too_big) {
      // Waived: a block the model cannot hold (or check the alignment of); freed at once.
      outcome("ok (must have failed: deviation recorded, block freed)", nullptr, p);
      be.free(p);
      return;
    }
  }
  adopt(op.slot, p, n, pow2 ? al : 0, posix ? OpKind::kPosixMemalign : OpKind::kAlignedAlloc, false, what);
  outcome("ok", nullptr, p);
}

void Interpreter::Impl::op_usable(const Op& op) {
  const Block& b = slots[op.slot];
  if (!b.live) {
    const size_t u = be.usable_size(nullptr);
    if (u != 0) deviate(Clause::kUsableNull, "usable_size(NULL) returned %zu, expected 0", u);
    outcome("usable_size(NULL) = 0");
    return;
  }
  const uint64_t u = be.usable_size(b.p);
  if (u != b.usable) {
    deviate(Clause::kUsableSize, "usable_size(%s) is now %s but was %s when %s was allocated", ptr(b.p).c_str(),
            num(u).c_str(), num(b.usable).c_str(), describe_block(op.slot).c_str());
    if (u >= b.requested) set_usable(op.slot, u);  // waived: the model follows the allocator
  }
  outcome("ok");
}

}  // namespace tmh
