// Alignment arithmetic of tm_aligned_alloc / tm_posix_memalign.
//
//   For random powers of two up to 64 MiB and random sizes: the block is aligned, its usable
//   size covers the request, it is owned, writable at both ends, and blocks held at the same
//   time never overlap; the heap checks clean afterwards.
//   EINVAL rules: aligned_alloc rejects non-powers of two (NULL + EINVAL); posix_memalign
//   rejects non-powers of two and powers of two below sizeof(void*) (returns EINVAL and leaves
//   *out untouched); errno is preserved by a successful posix_memalign.
//
// Reproduce a failure:
//   RC_PARAMS="reproduce=<base64 printed by RapidCheck>" ./tm_prop_alignment --gtest_filter=Alignment.<Name>
//   RC_PARAMS="seed=<seed>" ./tm_prop_alignment   (seed from "Using configuration: seed=...")
#include <errno.h>
#include <gtest/gtest.h>
#include <rapidcheck/gtest.h>

#include <algorithm>
#include <ostream>
#include <vector>

#include "prop_common.h"
#include "tinymalloc.h"

namespace {

struct AlignedReq {
  unsigned log2_align = 4;
  size_t size = 0;
  bool posix = false;
};

void showValue(const AlignedReq& r, std::ostream& os) {
  os << (r.posix ? "posix_memalign(" : "aligned_alloc(") << (size_t{1} << r.log2_align) << ", " << r.size << ")";
}

rc::Gen<AlignedReq> gen_req() {
  return rc::gen::build<AlignedReq>(
      rc::gen::set(&AlignedReq::log2_align,
                   rc::gen::weightedOneOf<unsigned>({{3, rc::gen::inRange<unsigned>(0, 13)},      // <= 4 KiB
                                                     {2, rc::gen::inRange<unsigned>(13, 17)},     // <= 64 KiB (medium)
                                                     {1, rc::gen::inRange<unsigned>(17, 27)}})),  // <= 64 MiB
      rc::gen::set(&AlignedReq::size, tmprop::request_size(size_t{1} << 20)),
      rc::gen::set(&AlignedReq::posix, rc::gen::arbitrary<bool>()));
}

struct Held {
  char* p;
  size_t usable;
  AlignedReq req;
};

RC_GTEST_PROP(Alignment, AlignedBlocksAreAlignedUsableAndDisjoint, ()) {
  const auto reqs = *tmprop::list_of(24, gen_req(), /*non_empty=*/true);
  // The heap must be consistent before the case for the global heap check to judge it.
  const bool clean_start = tmprop::heap_problem().empty();
  RC_CLASSIFY(!clean_start, "heap inconsistent before the case (an earlier case broke it)");
  tm_stats_t before;
  tm_stats(&before);
  std::vector<Held> held;
  // On a failed RC_ASSERT free what was handed out, so later cases (and shrinking) start
  // from the same heap; a block tinymalloc does not recognise is leaked, not freed (freeing
  // it would abort the whole run).
  struct Guard {
    std::vector<Held>& h;
    ~Guard() {
      for (const Held& b : h) {
        if (tm_owns(b.p)) tm_free(b.p);
      }
    }
  } guard{held};
  bool saw_small = false, saw_medium = false, saw_large = false, saw_big_align = false;
  for (const AlignedReq& r : reqs) {
    size_t align = size_t{1} << r.log2_align;
    void* p = nullptr;
    if (r.posix) {
      if (align < sizeof(void*)) align = sizeof(void*);  // smaller is EINVAL (checked below)
      errno = 12345;
      const int rc_ = tm_posix_memalign(&p, align, r.size);
      RC_ASSERT(rc_ == 0);
      RC_ASSERT(errno == 12345);
    } else {
      p = tm_aligned_alloc(align, r.size);
    }
    RC_ASSERT(!tmprop::is_null(p));
    const uintptr_t a = reinterpret_cast<uintptr_t>(p);
    RC_LOG() << "block " << held.size() << ": " << tmprop::hex(a);
    RC_ASSERT(a % align == 0u);
    RC_ASSERT(a % 16 == 0u);  // every block is at least 16-aligned
    const bool owned = tm_owns(p) != 0;
    if (owned) held.push_back({static_cast<char*>(p), 0, r});
    RC_ASSERT(owned);
    const size_t usable = tm_usable_size(p);
    held.back().usable = usable;
    RC_ASSERT(usable >= r.size);
    char* c = static_cast<char*>(p);
    if (r.size > 0) {
      c[0] = 1;
      c[r.size - 1] = 2;
    }
    (r.size <= tmalloc::kSmallMax ? saw_small : r.size <= tmalloc::kMediumMax ? saw_medium : saw_large) = true;
    saw_big_align = saw_big_align || align > tmalloc::kPageSize;
  }
  // Disjoint [p, p + usable) ranges.
  std::vector<Held> sorted = held;
  std::sort(sorted.begin(), sorted.end(), [](const Held& x, const Held& y) { return x.p < y.p; });
  for (size_t i = 1; i < sorted.size(); ++i) {
    RC_ASSERT(sorted[i - 1].p + sorted[i - 1].usable <= sorted[i].p);
  }
  // Contents survived the other allocations.
  for (const Held& h : held) {
    if (h.req.size > 0) {
      RC_ASSERT(h.p[0] == 1 || h.req.size == 1);
      RC_ASSERT(h.p[h.req.size - 1] == 2);
    }
  }
  RC_CLASSIFY(saw_small, "small");
  RC_CLASSIFY(saw_medium, "medium");
  RC_CLASSIFY(saw_large, "large");
  RC_CLASSIFY(saw_big_align, "align > page");
  const std::string mid = tmprop::heap_problem();
  // Free in a generated order.
  const auto order = *rc::gen::arbitrary<std::vector<unsigned>>();
  for (size_t i = 0; i < order.size() && !held.empty(); ++i) {
    const size_t k = order[i] % held.size();
    tm_free(held[k].p);
    held.erase(held.begin() + static_cast<long>(k));
  }
  for (const Held& h : held) tm_free(h.p);
  held.clear();
  tm_stats_t after;
  tm_stats(&after);
  // Stats return to the values before the case (a local check: it holds even when an
  // earlier case left the heap inconsistent).
  RC_ASSERT(after.live_blocks == before.live_blocks);
  RC_ASSERT(after.requested_bytes == before.requested_bytes);
  RC_ASSERT(after.usable_bytes == before.usable_bytes);
  if (clean_start) {
    RC_ASSERT(mid == "");
    RC_ASSERT(tmprop::heap_problem() == "");
  }
}

// Size 0 at any alignment: a unique, owned, aligned block that tinymalloc itself recognises
// (regression: aligned_alloc(4 MiB, 0) once returned the end of its mapping, which tm_owns,
// tm_usable_size and tm_free then rejected as a foreign pointer).
RC_GTEST_PROP(Alignment, ZeroSizeBlocksAreUniqueOwnedAndFreeable, ()) {
  // Every alignment exponent is equally likely from the first case on (no size scaling).
  const auto logs = *rc::gen::nonEmpty(
      rc::gen::container<std::vector<unsigned>>(rc::gen::resize(rc::kNominalSize, rc::gen::inRange<unsigned>(0, 27))));
  tm_stats_t before;
  tm_stats(&before);
  std::vector<char*> held;
  struct Guard {
    std::vector<char*>& h;
    ~Guard() {
      for (char* p : h) {
        if (tm_owns(p)) tm_free(p);
      }
    }
  } guard{held};
  for (unsigned k : logs) {
    const size_t align = size_t{1} << k;
    void* p = nullptr;
    if (align >= sizeof(void*) && *rc::gen::arbitrary<bool>()) {
      RC_ASSERT(tm_posix_memalign(&p, align, 0) == 0);
    } else {
      p = tm_aligned_alloc(align, 0);
    }
    RC_ASSERT(!tmprop::is_null(p));
    RC_ASSERT(reinterpret_cast<uintptr_t>(p) % align == 0u);
    for (char* q : held) RC_ASSERT(!tmprop::same_ptr(q, p));  // unique
    const bool owned = tm_owns(p) != 0;
    if (owned) held.push_back(static_cast<char*>(p));
    RC_LOG() << "align " << align << ": " << tmprop::hex(reinterpret_cast<uintptr_t>(p));
    RC_ASSERT(owned);
    (void)tm_usable_size(p);  // must not report misuse
  }
  for (char* p : held) tm_free(p);
  held.clear();
  tm_stats_t after;
  tm_stats(&after);
  RC_ASSERT(after.live_blocks == before.live_blocks);
  RC_ASSERT(after.requested_bytes == before.requested_bytes);
}

// Alignment values that are not powers of two: 0, odd values, sums of two powers.
rc::Gen<size_t> not_power_of_two() {
  return rc::gen::suchThat(
      rc::gen::weightedOneOf<size_t>({
          {1, rc::gen::just<size_t>(0)},
          {2, rc::gen::inRange<size_t>(3, 5000)},
          {2, rc::gen::map(
                  rc::gen::pair(rc::gen::inRange<unsigned>(0, 63), rc::gen::inRange<unsigned>(0, 63)),
                  [](std::pair<unsigned, unsigned> b) { return (size_t{1} << b.first) | (size_t{1} << b.second); })},
          {1, rc::gen::just<size_t>(SIZE_MAX)},
      }),
      [](size_t a) { return a == 0 || (a & (a - 1)) != 0; });
}

RC_GTEST_PROP(Alignment, NonPowerOfTwoIsEinval, ()) {
  const size_t align = *not_power_of_two();
  const size_t size = *tmprop::request_size(size_t{1} << 20);
  errno = 0;
  void* p = tm_aligned_alloc(align, size);
  const int e = errno;
  if (p != nullptr) tm_free(p);
  RC_ASSERT(tmprop::is_null(p));
  RC_ASSERT(e == EINVAL);

  void* sentinel = reinterpret_cast<void*>(uintptr_t{0xdead0});
  void* out = sentinel;
  RC_ASSERT(tm_posix_memalign(&out, align, size) == EINVAL);
  RC_ASSERT(tmprop::same_ptr(out, sentinel));  // *out written only on success
}

RC_GTEST_PROP(Alignment, PosixMemalignBelowPointerSizeIsEinval, ()) {
  const size_t align = *rc::gen::element<size_t>(1, 2, 4);
  const size_t size = *tmprop::request_size(size_t{1} << 16);
  void* sentinel = reinterpret_cast<void*>(uintptr_t{0xdead0});
  void* out = sentinel;
  RC_ASSERT(tm_posix_memalign(&out, align, size) == EINVAL);
  RC_ASSERT(tmprop::same_ptr(out, sentinel));
  // aligned_alloc accepts those powers of two.
  void* p = tm_aligned_alloc(align, size);
  RC_ASSERT(!tmprop::is_null(p));
  const bool ok = tm_usable_size(p) >= size;
  tm_free(p);
  RC_ASSERT(ok);
}

// Powers of two above TM_MAX_ALIGNMENT, and impossible sizes, fail without touching *out.
RC_GTEST_PROP(Alignment, OutOfRangeFailsCleanly, ()) {
  const bool huge_align = *rc::gen::arbitrary<bool>();
  const size_t align = huge_align ? TM_MAX_ALIGNMENT << *rc::gen::inRange<unsigned>(1, 33)
                                  : size_t{1} << *rc::gen::inRange<unsigned>(4, 20);
  const size_t size = huge_align ? *tmprop::request_size(size_t{1} << 16)
                                 : *rc::gen::element<size_t>(SIZE_MAX, SIZE_MAX - 4096, SIZE_MAX / 2, size_t{1} << 60);
  errno = 0;
  void* p = tm_aligned_alloc(align, size);
  const int e = errno;
  if (p != nullptr) tm_free(p);
  RC_ASSERT(tmprop::is_null(p));
  RC_ASSERT(e == ENOMEM || e == EINVAL);
  void* sentinel = reinterpret_cast<void*>(uintptr_t{0xdead0});
  void* out = sentinel;
  const int r = tm_posix_memalign(&out, align, size);
  RC_ASSERT(r == ENOMEM || r == EINVAL);
  RC_ASSERT(tmprop::same_ptr(out, sentinel));
}

}  // namespace
