// Misuse is reported, never silent, in any heap state (the brief's error contract).
//
//   A random history (blocks of every tier from malloc, calloc, aligned_alloc, realloc and a
//   memory pool, some of them freed, with or without the thread and medium caches) ends in one
//   misuse of one of its blocks: a second free, a free / realloc / usable_size of a pointer
//   inside a block, a realloc of a freed block, a free of a pointer tinymalloc never handed
//   out, a pool block freed through another pool; in debug mode (on at random for the others
//   too) a byte written past the requested size or before the block, then its free, and a
//   sized free of another size; a write over a cached block's free-list link and key before
//   the next malloc of its size; with sampling on (not under a sanitizer) a write past a
//   guarded block's end or before its start, and a write into it after its free (those end
//   by SIGSEGV, after the fault handler's report); a medium block's boundary tag overwritten
//   (an overrun of the block before it) or a large block header's list link, then the block's
//   free; in debug mode a write into a quarantined block, found when the block leaves the
//   quarantine or at exit. With report=json (half the cases) a JSON
//   line naming the same misuse and address must come first. In a forked child the process must stop
//   with SIGABRT after one line "tinymalloc: <what> at 0x<the misused pointer> (<detail>)" on
//   stderr, <what> naming the misuse (tests/misuse has one hand-written program per case;
//   this model mixes them with heap states nobody wrote down).
//
// Reproduce a failure:
//   RC_PARAMS="reproduce=<base64 printed by RapidCheck>" ./tm_prop_misuse
//   TM_PROP_NO_FORK=1 is no use here: the misuse ends the process.
#include <gtest/gtest.h>
#include <rapidcheck/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iterator>
#include <ostream>
#include <regex>
#include <string>
#include <vector>

#include "config.h"
#include "large.h"
#include "medium_block.h"
#include "prop_common.h"
#include "prop_history.h"
#include "prop_isolate.h"
#include "small.h"
#include "tinymalloc.h"
#include "tinymalloc_test.h"

namespace {

using tmprop::HistoryBlock;
using tmprop::Source;

enum class Misuse {
  kDoubleFree,           // free(p) twice
  kInteriorFree,         // free(p + k), 0 < k < usable
  kInteriorRealloc,      // realloc(p + k, n)
  kInteriorUsable,       // tm_usable_size(p + k)
  kReallocFreed,         // free(p); realloc(p, n)
  kForeignFree,          // free of a stack or global address
  kOtherPoolFree,        // tm_heap_free(other pool, pool block)
  kDebugOverflow,        // debug mode: a byte past the requested size written, then free
  kDebugUnderflow,       // debug mode: the byte before the block written, then free
  kDebugSizedMismatch,   // debug mode: tm_free_sized with another size
  kWriteAfterFree,       // a cached block's link and key overwritten after its free, then malloc
  kSampledOverrun,       // sample_rate=1: the byte past a guarded block's end (or before its start)
  kSampledUseAfterFree,  // sample_rate=1: a write into a freed guarded block
  kTagOverrun,           // a medium block's boundary tag overwritten (an overrun of the block before), then free
  kLargeListLink,        // a large block header's list link overwritten, then free
  kQuarantineWrite,      // debug mode: a write into a quarantined block, found when it leaves the quarantine
  kRunBitmap,            // a partial run's bitmap written over (no free bit below its count), then malloc
};

struct Case {
  std::vector<HistoryBlock> blocks;
  std::vector<bool> freed_first;  // blocks other than the victim freed before the misuse
  size_t victim = 0;
  Misuse misuse = Misuse::kDoubleFree;
  uint32_t interior = 1;  // scaled into (0, usable) for the interior misuses
  bool thread_cache = true;
  bool medium_cache = true;
  bool debug = false;  // debug mode (canaries, quarantine): always for the kDebug* misuses
  bool json = false;   // report=json: a JSON line precedes the text line
  bool foreign_on_stack = true;
};

// Each misuse, in the enum's order: its name in a case's description, and the report's <what>
// (an extended regular expression) as tests/misuse says it: a freed medium block may have
// merged into a neighbour and a large one may be unmapped, which the allocator may name an
// invalid free; a pool's block freed through another pool is named by whichever check sees it
// first.
struct MisuseInfo {
  Misuse misuse;
  const char* name;
  const char* what;
};
constexpr MisuseInfo kMisuses[] = {
    {Misuse::kDoubleFree, "double free", "double free|invalid free"},
    {Misuse::kInteriorFree, "interior free", "invalid free"},
    {Misuse::kInteriorRealloc, "interior realloc", "invalid realloc"},
    {Misuse::kInteriorUsable, "interior usable_size", "invalid usable_size"},
    {Misuse::kReallocFreed, "realloc of a freed block", "invalid realloc|double free"},
    {Misuse::kForeignFree, "free of a foreign pointer", "invalid free"},
    {Misuse::kOtherPoolFree, "pool block freed through another pool", "invalid free|invalid heap free"},
    {Misuse::kDebugOverflow, "overflow (debug)", "heap overflow"},
    {Misuse::kDebugUnderflow, "underflow (debug)", "heap underflow"},
    {Misuse::kDebugSizedMismatch, "sized free of another size (debug)", "mismatched sized delete"},
    {Misuse::kWriteAfterFree, "write after free of a cached block", "corrupted free list"},
    {Misuse::kSampledOverrun, "overrun of a sampled block", "buffer overflow|buffer underflow"},
    {Misuse::kSampledUseAfterFree, "write after free of a sampled block", "use after free"},
    {Misuse::kTagOverrun, "overrun into a medium block's boundary tag", "heap corruption"},
    {Misuse::kLargeListLink, "large-block list link overwritten", "corrupted large-block list"},
    {Misuse::kQuarantineWrite, "write after free into a quarantined block (debug)", "write after free"},
    {Misuse::kRunBitmap, "small run's bitmap written over", "corrupted run bitmap"},
};
constexpr bool table_in_enum_order() {
  for (size_t i = 0; i < std::size(kMisuses); ++i) {
    if (static_cast<size_t>(kMisuses[i].misuse) != i) return false;
  }
  return std::size(kMisuses) == static_cast<size_t>(Misuse::kRunBitmap) + 1;
}
static_assert(table_in_enum_order(), "kMisuses lists every Misuse in the enum's order");

const MisuseInfo& info(Misuse m) { return kMisuses[static_cast<size_t>(m)]; }

std::vector<Misuse> all_misuses() {
  std::vector<Misuse> out;
  for (const MisuseInfo& m : kMisuses) out.push_back(m.misuse);
  return out;
}

void showValue(const Case& c, std::ostream& os) {
  os << info(c.misuse).name << " of block " << c.victim << " (thread_cache=" << c.thread_cache
     << " medium_cache=" << c.medium_cache << " debug=" << c.debug << " report=" << (c.json ? "json" : "text")
     << ", interior " << c.interior << ")\n";
  tmprop::show_history(c.blocks, c.freed_first, c.victim, os);
}

bool sampled(Misuse m) { return m == Misuse::kSampledOverrun || m == Misuse::kSampledUseAfterFree; }

rc::Gen<Case> gen_case_any_victim() {
  return rc::gen::mapcat(tmprop::gen_history(), [](std::vector<HistoryBlock> blocks) {
    const size_t n = blocks.size();
    return rc::gen::build<Case>(
        rc::gen::set(&Case::blocks, rc::gen::just(blocks)),
        rc::gen::set(&Case::freed_first, rc::gen::container<std::vector<bool>>(n, rc::gen::arbitrary<bool>())),
        rc::gen::set(&Case::victim, rc::gen::inRange<size_t>(0, n)),
        rc::gen::set(&Case::misuse, rc::gen::elementOf(all_misuses())),
        rc::gen::set(&Case::interior, rc::gen::arbitrary<uint32_t>()),
        rc::gen::set(&Case::thread_cache, rc::gen::arbitrary<bool>()),
        rc::gen::set(&Case::medium_cache, rc::gen::arbitrary<bool>()),
        rc::gen::set(&Case::debug, rc::gen::weightedElement<bool>({{3, false}, {1, true}})),
        rc::gen::set(&Case::json, rc::gen::arbitrary<bool>()),
        rc::gen::set(&Case::foreign_on_stack, rc::gen::arbitrary<bool>()));
  });
}

// A misuse through another pool needs a pool block as its victim.
rc::Gen<Case> gen_case() {
  return rc::gen::map(gen_case_any_victim(), [](Case c) {
    if (c.misuse == Misuse::kOtherPoolFree) c.blocks[c.victim].source = Source::kPool;
    const bool debug_misuse = c.misuse == Misuse::kDebugOverflow || c.misuse == Misuse::kDebugUnderflow ||
                              c.misuse == Misuse::kDebugSizedMismatch || c.misuse == Misuse::kQuarantineWrite;
    if (c.misuse == Misuse::kTagOverrun || c.misuse == Misuse::kLargeListLink) {
      // A block of malloc in the medium tier (its boundary tag), or the large one (its header).
      HistoryBlock& b = c.blocks[c.victim];
      b.source = Source::kMalloc;
      const size_t lo = c.misuse == Misuse::kTagOverrun ? tmalloc::kSmallMax + 1 : tmalloc::kMediumMax + 1;
      const size_t hi = c.misuse == Misuse::kTagOverrun ? tmalloc::kMediumMax : 4 << 20;
      b.size = lo + b.size % (hi - lo + 1);
      c.debug = false;
    }
    if (c.misuse == Misuse::kRunBitmap) {
      // A small block of malloc that goes back to its run when freed (no thread cache).
      HistoryBlock& b = c.blocks[c.victim];
      b.source = Source::kMalloc;
      b.size = 1 + b.size % tmalloc::kSmallMax;
      c.thread_cache = false;
      c.debug = false;
    }
    if (c.misuse == Misuse::kWriteAfterFree) {
      // A thread cache's block: a small one, or a medium one the medium cache takes (up to
      // 64 KiB), from malloc (an aligned block's cache link is not at its payload).
      HistoryBlock& b = c.blocks[c.victim];
      b.source = Source::kMalloc;
      if (b.size > (64 << 10)) b.size = 1 + b.size % (64 << 10);
      c.thread_cache = true;
      c.medium_cache = true;
      c.debug = false;
    }
    if (sampled(c.misuse)) {
      // Sampling guards the malloc family's blocks up to the medium sizes, not a pool's.
      HistoryBlock& b = c.blocks[c.victim];
      if (b.source == Source::kPool) b.source = Source::kMalloc;
      if (b.size > 8192) b.size = 1 + b.size % 8192;
      c.debug = false;
    }
    if (debug_misuse) {
      c.debug = true;
      // Debug mode checks the blocks of the malloc family; a pool's blocks are the pool's.
      if (c.blocks[c.victim].source == Source::kPool) c.blocks[c.victim].source = Source::kMalloc;
    }
    return c;
  });
}

char g_global_block[256];

// Writes 0x42 over n bytes at p the way uninstrumented code would (under ASan the freed block is
// poisoned, and the point is what tinymalloc itself notices).
__attribute__((no_sanitize("address"))) void scribble(char* p, size_t n) {
  for (size_t i = 0; i < n; ++i) static_cast<volatile char*>(p)[i] = 0x42;
}

// Flips every bit of the byte at p, uninstrumented (p may be poisoned under ASan).
__attribute__((no_sanitize("address"))) void flip_byte(char* p) {
  volatile char* byte = p;
  *byte = static_cast<char>(*byte ^ 0xFF);
}

// Stores a word at p the way uninstrumented code would (allocator metadata is poisoned under ASan).
__attribute__((no_sanitize("address"))) void store_word(void* p, uint64_t value) {
  *static_cast<volatile uint64_t*>(p) = value;
}

// The word at p, read the same way.
__attribute__((no_sanitize("address"))) uint64_t load_word(const void* p) {
  return *static_cast<const volatile uint64_t*>(p);
}

// Loads of a run descriptor's 32-bit and 8-bit fields, uninstrumented like the above.
__attribute__((no_sanitize("address"))) uint32_t load_u32(const uint32_t* p) {
  return *static_cast<const volatile uint32_t*>(p);
}
__attribute__((no_sanitize("address"))) uint8_t load_u8(const uint8_t* p) {
  return *static_cast<const volatile uint8_t*>(p);
}

// Writes "misused 0x<p>" to stderr (the parent reads the address the report must name).
void announce(const void* p) {
  char line[64];
  const int n = std::snprintf(line, sizeof line, "misused 0x%" PRIxPTR "\n", reinterpret_cast<uintptr_t>(p));
  if (n > 0) (void)!::write(2, line, static_cast<size_t>(n));
}

// The child: builds the history, then misuses. Returns only when tinymalloc let the misuse
// pass (the parent reports that).
std::string run_case(const Case& c) {
  tm_option_set("thread_cache", c.thread_cache ? 1 : 0);
  tm_option_set("medium_cache", c.medium_cache ? 1 : 0);
  if (c.debug) tm_option_set("debug", 1);
  if (c.json) tm_option_set("report", 1);
  if (sampled(c.misuse)) tm_option_set("sample_rate", 1);  // no effect under a sanitizer
  tmprop::History h;
  if (!h.allocate(c.blocks)) return "allocation failed";
  const std::vector<char*>& p = h.p;
  const std::vector<size_t>& requested = h.requested;
  const auto release = [&](size_t i) { h.release(i); };
  const size_t v = c.victim;
  const bool needs_freed_victim = c.misuse == Misuse::kDoubleFree || c.misuse == Misuse::kReallocFreed;
  // The victim's first free falls among the others' (its neighbours may merge with it).
  for (size_t i = 0; i < c.blocks.size(); ++i) {
    if (i == v && needs_freed_victim) release(i);
    if (i != v && c.freed_first[i]) release(i);
  }
  char* victim = p[v];
  const size_t usable = needs_freed_victim ? 0 : tm_usable_size(victim);
  char* const inside = usable > 1 ? victim + 1 + c.interior % (usable - 1) : victim;
  char on_stack[64];
  switch (c.misuse) {
    case Misuse::kDoubleFree:
      announce(victim);
      release(v);
      break;
    case Misuse::kInteriorFree:
      if (inside == victim) return "skipped";
      announce(inside);
      tm_free(inside);
      break;
    case Misuse::kInteriorRealloc:
      if (inside == victim) return "skipped";
      announce(inside);
      (void)tm_realloc(inside, usable * 2);
      break;
    case Misuse::kInteriorUsable:
      if (inside == victim) return "skipped";
      announce(inside);
      (void)tm_usable_size(inside);
      break;
    case Misuse::kReallocFreed:
      announce(victim);
      (void)tm_realloc(victim, c.blocks[v].size + 1);
      break;
    case Misuse::kForeignFree: {
      char* foreign = c.foreign_on_stack ? on_stack + 16 : g_global_block + 16;
      announce(foreign);
      tm_free(foreign);
      break;
    }
    case Misuse::kOtherPoolFree:
      if (c.blocks[v].source != Source::kPool) return "skipped";
      announce(victim);
      tm_heap_free(h.other_pool, victim);
      break;
    case Misuse::kDebugOverflow:
      victim[requested[v]] = 'x';
      announce(victim);
      tm_free(victim);
      break;
    case Misuse::kDebugUnderflow:
      victim[-1] = 'x';
      announce(victim);
      tm_free(victim);
      break;
    case Misuse::kDebugSizedMismatch:
      announce(victim);
      tm_free_sized(victim, requested[v] + 1);
      break;
    case Misuse::kWriteAfterFree:
      // Freed last, the victim is the first block its cache bin hands out: the next malloc of
      // its size reads the link and key written over.
      tm_free(victim);
      scribble(victim, 16);
      announce(victim);
      for (int i = 0; i < 8; ++i) (void)tm_malloc(requested[v]);
      break;
    case Misuse::kSampledOverrun: {
      if (tm_test_is_sampled(victim) != 1) return "skipped";
      const size_t usable_end = tm_usable_size(victim);
      // Right-placed blocks end on a page end (the guard page follows), left-placed ones
      // start on a page start (the guard page precedes).
      const bool right = (reinterpret_cast<uintptr_t>(victim) + usable_end) % 4096 == 0;
      volatile char* touched = right ? victim + usable_end : victim - 1;
      announce(const_cast<char*>(touched));
      *touched = 'x';
      break;
    }
    case Misuse::kSampledUseAfterFree: {
      if (tm_test_is_sampled(victim) != 1) return "skipped";
      const size_t offset = c.interior % tm_usable_size(victim);
      tm_free(victim);
      volatile char* touched = victim + offset;
      announce(const_cast<char*>(touched));
      *touched = 'x';
      break;
    }
    case Misuse::kTagOverrun: {
      // 16 bytes more in the size of the victim's tag, flags and slack kept: what an overrun of
      // the block before writes when it runs over the tag with a plausible size.
      auto* header = tmalloc::BlockHeader::from_payload(victim);
      store_word(&header->size_flags, load_word(&header->size_flags) + 16);
      announce(victim);
      tm_free(victim);
      break;
    }
    case Misuse::kLargeListLink: {
      auto* header = reinterpret_cast<tmalloc::LargeHeader*>(victim - tmalloc::kLargeHeaderSize);
      // A link to the header itself, or a value that is no node address at all.
      if (c.interior % 2 == 0) {
        store_word(&header->next, reinterpret_cast<uint64_t>(header));
      } else {
        store_word(&header->prev, 0x4242);
      }
      announce(header);
      tm_free(victim);
      break;
    }
    case Misuse::kQuarantineWrite: {
      tm_free(victim);
      flip_byte(victim + c.interior / 2 % requested[v]);
      announce(victim);
      if (c.interior % 2 == 0) std::exit(0);  // found at exit (the quarantine's last check)
      // Otherwise when the victim leaves the quarantine: after at most its capacity of frees.
      for (int i = 0; i < 4200; ++i) tm_free(tm_malloc(16));
      break;
    }
    case Misuse::kRunBitmap: {
      // Freed into its run, the victim puts the run on its class's partial list; then its
      // bitmap is written over so that no free bit lies below the run's count: all zero, or
      // (where the count leaves spare bits in the last word) one bit set past the count.
      // The mallocs of its class reach the run once the partial runs before it are full.
      const tmalloc::BlockRef ref = tmalloc::block_ref(victim);
      tmalloc::RunDesc* run = ref.run;
      tm_free(victim);
      if (load_u8(&run->in_use) == 0 || load_u8(&run->on_partial) == 0) return "skipped";  // released when empty
      const uint32_t count = load_u32(&run->block_count);
      const size_t words = (count + 63) / 64;
      for (size_t w = 0; w < words; ++w) store_word(&run->bitmap[w], 0);
      if (c.interior % 2 == 1 && count % 64 != 0) store_word(&run->bitmap[count / 64], uint64_t{1} << (count % 64));
      announce(run);
      for (int i = 0; i < 100000; ++i) (void)tm_malloc(requested[v]);
      break;
    }
  }
  return "not reported";
}

RC_GTEST_PROP(Misuse, EveryMisuseInAnyHeapStateIsReportedThenAborts, ()) {
  const Case c = *gen_case();
  const tmprop::ChildOutcome o = tmprop::run_in_child([&] { return run_case(c); });
  if (o.returned) {
    RC_PRE(o.result != "skipped");  // a block too small for an interior pointer, or not a pool's
    RC_FAIL("the child went on: " + o.result);
  }
  RC_TAG(info(c.misuse).name);
  const std::string& err = o.stderr_tail;
  RC_LOG() << "child: " << o.status << "\n" << err;
  std::smatch announced;
  RC_ASSERT(std::regex_search(err, announced, std::regex("misused (0x[0-9a-f]+)\n")));
  const std::string address = announced[1].str();
  const std::regex report(std::string("tinymalloc: (") + info(c.misuse).what + ") at " + address + " \\(.+\\)");
  RC_ASSERT(std::regex_search(err, report));
  if (c.json) {
    // The JSON form (schema: README "Error reports"; tests/misuse/check-json-reports parses it)
    // comes first and names the same misuse and address; one line, closed.
    std::smatch json;
    RC_ASSERT(
        std::regex_search(err, json,
                          std::regex("\\{\"tinymalloc\":\"report\",\"kind\":\"([^\"]+)\",\"address\":\"(0x[0-9a-f]+)\""
                                     ",\"tier\":\"[a-z]+\",[^\n]*,\"message\":\"tinymalloc: [^\n]*\"\\}\n")));
    RC_ASSERT(std::regex_match(json[1].str(), std::regex(info(c.misuse).what)));
    RC_ASSERT(json[2].str() == address);
    RC_ASSERT(static_cast<size_t>(json.position(0)) < err.find("tinymalloc: "));
  }
  // A guard page's fault is reported by the fault handler, which then lets the fault end the
  // process; every other report ends in abort.
  const int expected_signal = sampled(c.misuse) ? SIGSEGV : SIGABRT;
  RC_ASSERT(o.status.rfind("signal " + std::to_string(expected_signal) + " ", 0) == 0);
}

}  // namespace
