// Small segments filled and emptied (src/small.cc: a full segment goes to the back of its
// arena's list, one that gets a free run again to the front, an empty one beyond
// arena_retain to the global pool).
//
//   Blocks of one small class, enough for one to four 4 MiB segments, are allocated, then
//   freed in a generated order (whole segments' worth in allocation order, every other one,
//   at random) while new ones are allocated between the frees. After every phase the heap
//   check is clean and the counters match the blocks held: live blocks, small segments at
//   least the blocks' runs need, at most the segments ever needed; once everything is freed
//   and the caches are released, the arena keeps at most arena_retain empty segments and the
//   one of the run the class keeps. The
//   harness's fuzzers cannot get here: 64 slots of at most 8 KiB fill eight runs, not a
//   segment's sixty.
//
// Reproduce a failure:
//   RC_PARAMS="reproduce=<base64 printed by RapidCheck>" ./tm_prop_small_segments
#include <gtest/gtest.h>
#include <rapidcheck/gtest.h>

#include <algorithm>
#include <cstring>
#include <ostream>
#include <vector>

#include "prop_common.h"
#include "tinymalloc.h"

namespace {

enum class FreeOrder { kInOrder, kReverse, kEveryOther, kShuffled };

struct Plan {
  size_t size = 4096;         // request size (one small class)
  size_t segments_worth = 2;  // blocks for this many segments' runs, plus a part of one more
  size_t extra_percent = 30;  // ... that part
  FreeOrder order = FreeOrder::kInOrder;
  size_t refill_every = 0;  // 0: no allocations between frees; k: one after every k frees
  bool thread_cache = false;
  long arena_retain = 1;
  std::vector<size_t> shuffle;  // kShuffled: the permutation's source
};

void showValue(const Plan& p, std::ostream& os) {
  static const char* const kOrders[] = {"in order", "reverse", "every other first", "shuffled"};
  os << p.size << "-byte blocks for " << p.segments_worth << " segments + " << p.extra_percent << "%, freed "
     << kOrders[static_cast<int>(p.order)] << ", refill every " << p.refill_every << ", thread_cache=" << p.thread_cache
     << ", arena_retain=" << p.arena_retain;
}

rc::Gen<Plan> gen_plan() {
  return rc::gen::build<Plan>(
      rc::gen::set(&Plan::size, rc::gen::inRange<size_t>(1024, tmalloc::kSmallMax + 1)),
      rc::gen::set(&Plan::segments_worth, rc::gen::inRange<size_t>(1, 4)),
      rc::gen::set(&Plan::extra_percent, rc::gen::inRange<size_t>(0, 100)),
      rc::gen::set(&Plan::order, rc::gen::element(FreeOrder::kInOrder, FreeOrder::kReverse, FreeOrder::kEveryOther,
                                                  FreeOrder::kShuffled)),
      rc::gen::set(&Plan::refill_every, rc::gen::element<size_t>(0, 0, 3, 50)),
      rc::gen::set(&Plan::thread_cache, rc::gen::arbitrary<bool>()),
      rc::gen::set(&Plan::arena_retain, rc::gen::inRange<long>(0, 3)),
      rc::gen::set(&Plan::shuffle, rc::gen::container<std::vector<size_t>>(64, rc::gen::arbitrary<size_t>())));
}

tm_stats_t stats() {
  tm_stats_t s;
  tm_stats(&s);
  return s;
}

// Sets an option for the scope of one case.
class CaseOption {
 public:
  CaseOption(const char* name, long value) : name_(name) {
    tm_option_get(name, &old_);
    tm_option_set(name, value);
  }
  ~CaseOption() { tm_option_set(name_, old_); }
  CaseOption(const CaseOption&) = delete;
  CaseOption& operator=(const CaseOption&) = delete;

 private:
  const char* name_;
  long old_ = 0;
};

RC_GTEST_PROP(SmallSegments, FillingAndEmptyingSegmentsKeepsTheListAndCounters, ()) {
  const Plan plan = *gen_plan();
  RC_PRE(tmprop::heap_problem().empty());
  tm_release_cached();
  const CaseOption cache("thread_cache", plan.thread_cache ? 1 : 0);
  const CaseOption retain("arena_retain", plan.arena_retain);
  const tm_stats_t base = stats();
  const size_t usable = tm_size_class_size(tm_size_to_class(plan.size));
  const size_t per_run = tmalloc::kRunSize / usable;
  const size_t runs_per_segment = tmalloc::kSegmentSize / tmalloc::kRunSize - 1;  // less the header run
  const size_t count = per_run * runs_per_segment * plan.segments_worth * (100 + plan.extra_percent) / 100;

  // Frees what a failed assertion left (shrinking runs more cases in this process).
  struct Held : std::vector<char*> {
    ~Held() {
      for (char* p : *this) tm_free(p);
    }
  } held;
  held.reserve(count + count / 2);
  const auto allocate = [&] {
    char* p = static_cast<char*>(tm_malloc(plan.size));
    RC_ASSERT(p != nullptr);
    p[0] = 1;
    p[plan.size - 1] = 2;
    held.push_back(p);
  };
  for (size_t i = 0; i < count; ++i) allocate();
  const size_t peak_segments = stats().small_segments;
  RC_LOG() << count << " blocks; small segments before " << base.small_segments << ", with them " << peak_segments
           << "\n";
  // The blocks need count / per_run runs; a segment holds runs_per_segment of them (empty
  // segments an earlier case left in the arena are used first).
  RC_ASSERT(peak_segments >= (count / per_run + runs_per_segment - 1) / runs_per_segment);
  RC_ASSERT(tm_check_heap() == TM_CHECK_OK);

  // The order in which the blocks allocated so far are freed.
  std::vector<size_t> order(held.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  switch (plan.order) {
    case FreeOrder::kInOrder:
      break;
    case FreeOrder::kReverse:
      std::reverse(order.begin(), order.end());
      break;
    case FreeOrder::kEveryOther:
      std::stable_partition(order.begin(), order.end(), [](size_t i) { return i % 2 == 0; });
      break;
    case FreeOrder::kShuffled:
      for (size_t i = order.size(); i > 1; --i) std::swap(order[i - 1], order[plan.shuffle[i % 64] % i]);
      break;
  }
  size_t frees = 0;
  const size_t first_batch = held.size();
  for (size_t i : order) {
    char* p = held[i];
    RC_ASSERT(p[0] == 1);
    RC_ASSERT(p[plan.size - 1] == 2);
    tm_free(p);
    held[i] = nullptr;
    ++frees;
    if (plan.refill_every != 0 && frees % plan.refill_every == 0) allocate();
    if (frees == first_batch / 2) {
      // Half-way: live blocks as held, the heap consistent.
      RC_ASSERT(tm_check_heap() == TM_CHECK_OK);
      const size_t live =
          static_cast<size_t>(std::count_if(held.begin(), held.end(), [](char* q) { return q != nullptr; }));
      RC_ASSERT(stats().small_live_blocks - base.small_live_blocks == live);
    }
  }
  // What the refills allocated is still live.
  for (char*& p : held) {
    if (p == nullptr) continue;
    RC_ASSERT(p[0] == 1);
    RC_ASSERT(p[plan.size - 1] == 2);
    tm_free(p);
    p = nullptr;
  }
  tm_release_cached();
  const tm_stats_t after = stats();
  RC_LOG() << "small segments at the end " << after.small_segments << ", live small blocks " << after.small_live_blocks
           << " (before " << base.small_live_blocks << ")\n";
  RC_ASSERT(tm_check_heap() == TM_CHECK_OK);
  RC_ASSERT(after.small_live_blocks == base.small_live_blocks);
  RC_ASSERT(after.small_segments <= peak_segments + (count / 2) / (per_run * runs_per_segment) + 1);
  // Every segment this case emptied went to the pool, but for arena_retain kept and the one
  // holding the run the class keeps for its next block (its only partial run, empty: see
  // free_to_run). Segments of earlier cases' classes are in base.
  RC_ASSERT(after.small_segments <= base.small_segments + static_cast<size_t>(plan.arena_retain) + 1);
}

}  // namespace
