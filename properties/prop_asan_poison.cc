// ASan poisoning invariants of tinymalloc (only meaningful in an ASan build: the binary is
// built only when TM_SANITIZER is asan or fuzz, and the tests skip themselves otherwise).
//
// After every operation of a random sequence:
//   the block the op (re)allocated, p with n requested bytes, before anything else asks
//   about it:
//     __asan_region_is_poisoned(p, n) == nullptr       (the requested bytes are usable)
//     __asan_address_is_poisoned(p + n)                (when n < tm_usable_size(p): slack)
//   then tm_usable_size(p) >= n, after which the whole usable range is addressable
//   (tm_usable_size unpoisons [p, p + usable): the caller may use every usable byte);
//   every other live block: [p, p + usable) stays addressable;
//   medium blocks (plain malloc of 8193 B..512 KiB): the header byte p - 1 is poisoned;
//   after free(p) / a moving realloc: __asan_address_is_poisoned(p) while tm_owns(p).
// Contents (a per-block pattern) are verified before every free and realloc.
//
// Reproduce a failure:
//   RC_PARAMS="reproduce=<base64 printed by RapidCheck>" ./tm_prop_asan_poison --gtest_filter=AsanPoison.<Name>
//   RC_PARAMS="seed=<seed>" ./tm_prop_asan_poison   (seed from "Using configuration: seed=...")
//   ASAN_OPTIONS=allow_user_poisoning=0 switches the allocator's poisoning off at run time
//   (an A/B check that these properties really observe it: they must then fail).
#include <gtest/gtest.h>
#include <rapidcheck/gtest.h>

#include <cstring>
#include <ostream>
#include <vector>

#include "prop_common.h"
#include "tinymalloc.h"

#if defined(__SANITIZE_ADDRESS__)
#define TM_PROP_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define TM_PROP_ASAN 1
#endif
#endif

#if defined(TM_PROP_ASAN)
#include <sanitizer/asan_interface.h>
#endif

namespace {

#if defined(TM_PROP_ASAN)

enum class PKind { kMalloc, kCalloc, kRealloc, kFree, kAligned, kPosix };

struct POp {
  PKind kind = PKind::kMalloc;
  unsigned slot = 0;
  size_t size = 0;
  unsigned log2_align = 4;
};

const char* pkind_name(PKind k) {
  switch (k) {
    case PKind::kMalloc:
      return "malloc";
    case PKind::kCalloc:
      return "calloc";
    case PKind::kRealloc:
      return "realloc";
    case PKind::kFree:
      return "free";
    case PKind::kAligned:
      return "aligned_alloc";
    case PKind::kPosix:
      return "posix_memalign";
  }
  return "?";
}

void showValue(const POp& op, std::ostream& os) {
  os << "slot " << op.slot << " " << pkind_name(op.kind);
  if (op.kind == PKind::kAligned || op.kind == PKind::kPosix) os << " align " << (size_t{1} << op.log2_align);
  if (op.kind != PKind::kFree) os << " size " << op.size;
}

constexpr unsigned kPSlots = 12;

struct Live {
  char* p = nullptr;
  size_t n = 0;
  uint8_t seed = 0;
  bool medium_header = false;  // plain medium allocation: p - 16 .. p - 1 is a block header
  size_t usable = 0;           // known once tm_usable_size was asked (see check_fresh)
};

uint8_t pat(uint8_t seed, size_t i) { return static_cast<uint8_t>(seed * 31u + i * 7u + 1u); }

rc::Gen<POp> gen_pop(size_t max_size) {
  return rc::gen::build<POp>(rc::gen::set(&POp::kind, rc::gen::weightedElement<PKind>({{5, PKind::kMalloc},
                                                                                       {1, PKind::kCalloc},
                                                                                       {4, PKind::kRealloc},
                                                                                       {5, PKind::kFree},
                                                                                       {1, PKind::kAligned},
                                                                                       {1, PKind::kPosix}})),
                             rc::gen::set(&POp::slot, rc::gen::inRange<unsigned>(0, kPSlots)),
                             rc::gen::set(&POp::size, tmprop::request_size(max_size)),
                             rc::gen::set(&POp::log2_align, rc::gen::inRange<unsigned>(3, 17)));
}

// First poisoned byte of [p, p + n), or nullptr.
const char* first_poisoned(const char* p, size_t n) {
  return n == 0 ? nullptr : static_cast<const char*>(__asan_region_is_poisoned(const_cast<char*>(p), n));
}

// Checks a block just (re)allocated with n requested bytes, before anything asked for its
// usable size; records that size. Returns a description of the first violation.
std::string check_fresh(Live& b) {
  if (const char* bad = first_poisoned(b.p, b.n)) {
    return "requested bytes poisoned at offset " + std::to_string(bad - b.p) + " of " + std::to_string(b.n);
  }
  const bool tail_poisoned = __asan_address_is_poisoned(b.p + b.n) != 0;
  const size_t usable = tm_usable_size(b.p);
  if (usable < b.n) return "usable size " + std::to_string(usable) + " < requested " + std::to_string(b.n);
  if (b.n < usable && !tail_poisoned) {
    return "slack byte p+" + std::to_string(b.n) + " not poisoned (usable " + std::to_string(usable) + ")";
  }
  b.usable = usable;
  if (const char* bad = first_poisoned(b.p, usable)) {
    return "after tm_usable_size() = " + std::to_string(usable) + ", byte " + std::to_string(bad - b.p) +
           " is still poisoned";
  }
  if (b.medium_header && !__asan_address_is_poisoned(b.p - 1)) return "medium block header (p-1) not poisoned";
  return "";
}

// Checks a live block the op did not touch: its usable range stays addressable (first and
// last 4 KiB of big blocks, which keeps multi-MiB blocks cheap) and its header poisoned.
std::string check_other(const Live& b) {
  const char* bad = nullptr;
  if (b.usable <= 8192) {
    bad = first_poisoned(b.p, b.usable);
  } else {
    bad = first_poisoned(b.p, 4096);
    if (bad == nullptr) bad = first_poisoned(b.p + b.usable - 4096, 4096);
  }
  if (bad != nullptr) {
    return "usable bytes of a block the op did not touch became poisoned at offset " + std::to_string(bad - b.p) +
           " of " + std::to_string(b.usable);
  }
  if (b.medium_header && !__asan_address_is_poisoned(b.p - 1)) return "medium block header (p-1) not poisoned";
  return "";
}

// Runs a sequence, checking every live block after every op.
void run_sequence(const std::vector<POp>& ops) {
  Live live[kPSlots];
  uint8_t next_seed = 1;
  bool saw_in_place = false, saw_moved = false;
  // Big blocks: only the first and last 4 KiB carry the pattern (keeps ASan runs fast).
  auto patterned = [](size_t i, size_t n) { return n <= 65536 || i < 4096 || i >= n - 4096; };
  auto fill = [&](Live& b) {
    for (size_t i = 0; i < b.n; ++i) {
      if (!patterned(i, b.n)) i = b.n - 4096;
      b.p[i] = static_cast<char>(pat(b.seed, i));
    }
  };
  // Pattern intact over [0, upto) (the block was filled when it held n bytes).
  auto verify = [&](const Live& b, size_t upto) {
    for (size_t i = 0; i < upto; ++i) {
      if (!patterned(i, b.n)) {
        i = b.n - 4096;
        if (i >= upto) break;
      }
      if (static_cast<uint8_t>(b.p[i]) != pat(b.seed, i)) return false;
    }
    return true;
  };
  auto release_all = [&]() {
    for (Live& b : live) {
      tm_free(b.p);
      b = Live{};
    }
  };
  struct Cleanup {
    decltype(release_all)& f;
    ~Cleanup() { f(); }
  } cleanup{release_all};

  for (size_t step = 0; step < ops.size(); ++step) {
    const POp& op = ops[step];
    Live& b = live[op.slot];
    char* freed = nullptr;  // address that must now be poisoned
    switch (op.kind) {
      case PKind::kMalloc:
      case PKind::kCalloc:
      case PKind::kAligned:
      case PKind::kPosix: {
        if (b.p != nullptr) {
          RC_ASSERT(verify(b, b.n));
          tm_free(b.p);
          freed = b.p;
          b = Live{};
        }
        void* p = nullptr;
        const size_t align = size_t{1} << op.log2_align;
        if (op.kind == PKind::kMalloc) p = tm_malloc(op.size);
        if (op.kind == PKind::kCalloc) p = tm_calloc(1, op.size);
        if (op.kind == PKind::kAligned) p = tm_aligned_alloc(align, op.size);
        if (op.kind == PKind::kPosix) RC_ASSERT(tm_posix_memalign(&p, align, op.size) == 0);
        RC_ASSERT(!tmprop::is_null(p));
        if (op.kind == PKind::kCalloc) {
          size_t nonzero = op.size;
          for (size_t i = 0; i < op.size && nonzero == op.size; ++i) {
            if (static_cast<char*>(p)[i] != 0) nonzero = i;
          }
          RC_ASSERT(nonzero == op.size);  // calloc memory is zero
        }
        if (p == freed) freed = nullptr;  // reused at once
        b = Live{static_cast<char*>(p), op.size, next_seed++,
                 op.kind == PKind::kMalloc && op.size > tmalloc::kSmallMax && op.size <= tmalloc::kMediumMax};
        fill(b);
        break;
      }
      case PKind::kRealloc: {
        if (b.p == nullptr) break;
        RC_ASSERT(verify(b, b.n));
        if (op.size == 0) {
          RC_ASSERT(tmprop::is_null(tm_realloc(b.p, 0)));
          freed = b.p;
          b = Live{};
          break;
        }
        char* q = static_cast<char*>(tm_realloc(b.p, op.size));
        RC_ASSERT(!tmprop::is_null(q));
        const size_t keep = b.n < op.size ? b.n : op.size;
        (q == b.p ? saw_in_place : saw_moved) = true;
        if (q != b.p) freed = b.p;
        b.p = q;
        RC_ASSERT(verify(b, keep));
        b.n = op.size;
        // Only a plain medium block keeps a header in front after a realloc within the tier.
        b.medium_header = b.medium_header && op.size > tmalloc::kSmallMax && op.size <= tmalloc::kMediumMax;
        fill(b);
        break;
      }
      case PKind::kFree:
        if (b.p == nullptr) break;
        RC_ASSERT(verify(b, b.n));
        tm_free(b.p);
        freed = b.p;
        b = Live{};
        break;
    }
    for (unsigned s = 0; s < kPSlots; ++s) {
      if (live[s].p == nullptr) continue;
      const bool fresh = s == op.slot && op.kind != PKind::kFree;
      const std::string err = fresh ? check_fresh(live[s]) : check_other(live[s]);
      if (!err.empty()) {
        RC_LOG() << "after op #" << step << ": slot " << s << " (" << live[s].n << " bytes at "
                 << tmprop::hex(reinterpret_cast<uintptr_t>(live[s].p)) << "): " << err;
      }
      RC_ASSERT(err.empty());
    }
    if (freed != nullptr && tm_owns(freed)) {
      bool now_live = false;  // a block allocated by the same op may cover the address
      for (const Live& l : live) {
        now_live = now_live || (l.p != nullptr && freed >= l.p && freed < l.p + (l.usable > 0 ? l.usable : 1));
      }
      if (!now_live) {
        RC_LOG() << "after op #" << step << ": freed block " << tmprop::hex(reinterpret_cast<uintptr_t>(freed))
                 << " must be poisoned";
        RC_ASSERT(__asan_address_is_poisoned(freed) != 0);
      }
    }
  }
  RC_CLASSIFY(saw_in_place, "realloc in place");
  RC_CLASSIFY(saw_moved, "realloc moved");
  RC_ASSERT(tmprop::heap_problem() == "");
}

// Every tier (requests up to 576 KiB, mostly small and medium).
RC_GTEST_PROP(AsanPoison, InvariantsHoldAfterEveryOp, ()) {
  const auto ops = *rc::gen::container<std::vector<POp>>(gen_pop(tmalloc::kMediumMax + 64 * 1024));
  run_sequence(ops);
}

// Large blocks only (> 512 KiB, own mapping, mremap on realloc): the slack after the requested
// bytes is poisoned too, and survives in-place / moving reallocs.
RC_GTEST_PROP(AsanPoison, LargeBlockInvariants, ()) {
  const auto ops = *rc::gen::container<std::vector<POp>>(rc::gen::map(gen_pop(size_t{2} << 20), [](POp op) {
    if (op.size <= tmalloc::kMediumMax) op.size += tmalloc::kMediumMax + 1;
    return op;
  }));
  run_sequence(ops);
}

#else  // !TM_PROP_ASAN

TEST(AsanPoison, InvariantsHoldAfterEveryOp) { GTEST_SKIP() << "not an ASan build"; }

#endif

}  // namespace
