// Properties of the medium tier's best-fit index (src/fit_index.h, tmalloc::FitIndex).
//
//   Slot mapping: slot_for_size is monotonic and each list covers a contiguous size range;
//   slot_at_least(n) is the smallest list whose every block is >= n (every block filed in
//   it or in any list above is >= n).
//   Operations: insert / remove / find_fit / largest on a real FitIndex, compared after every
//   step with a std::multiset of the filed sizes (count, bytes, largest, validate(), and
//   what find_fit may return).
//
// Reproduce a failure:
//   RC_PARAMS="reproduce=<base64 printed by RapidCheck>" ./tm_prop_fit_index --gtest_filter=FitIndex.<Name>
//   RC_PARAMS="seed=<seed>" ./tm_prop_fit_index   (seed from "Using configuration: seed=...")
//   Longer op sequences: RC_PARAMS="max_size=400".
#include <gtest/gtest.h>
#include <rapidcheck/gtest.h>

#include <algorithm>
#include <memory>
#include <ostream>
#include <set>
#include <vector>

#include "fit_index.h"
#include "medium_block.h"
#include "prop_common.h"

namespace {

using tmalloc::FitIndex;
using tmalloc::FreeBlock;
using Slot = FitIndex::Slot;

constexpr unsigned kLists = FitIndex::kFirstLevelCount * FitIndex::kSecondLevelCount;

// Lists in increasing size order.
unsigned key(Slot s) { return s.first * FitIndex::kSecondLevelCount + s.second; }
Slot slot_of_key(unsigned k) { return Slot{k / FitIndex::kSecondLevelCount, k % FitIndex::kSecondLevelCount}; }

// Smallest size filed in list s (derived from the documented two-level layout, and itself
// checked against slot_for_size below).
uint64_t lower_bound_of(Slot s) {
  if (s.first == 0) return uint64_t{s.second} * 16;
  const unsigned log2 = s.first - 1 + FitIndex::kMinSizeLog2;
  return (uint64_t{1} << log2) + (uint64_t{s.second} << (log2 - FitIndex::kSecondLevelBits));
}

std::string show_slot(Slot s) { return "(" + std::to_string(s.first) + "," + std::to_string(s.second) + ")"; }

// Sizes over the whole indexable range, biased to small and medium block sizes.
rc::Gen<uint64_t> any_size() {
  return rc::gen::weightedOneOf<uint64_t>({
      {2, rc::gen::inRange<uint64_t>(0, 600)},
      {3, rc::gen::inRange<uint64_t>(256, uint64_t{4} << 20)},
      {2, rc::gen::map(tmprop::log_uniform(1, SIZE_MAX / 2), [](size_t v) { return uint64_t{v}; })},
      {1, rc::gen::map(rc::gen::inRange<unsigned>(4, 63), [](unsigned b) { return uint64_t{1} << b; })},
      {1, rc::gen::map(rc::gen::inRange<unsigned>(4, 63), [](unsigned b) { return (uint64_t{1} << b) - 1; })},
  });
}

RC_GTEST_PROP(FitIndex, ListLowerBoundsMatchSlotForSize, ()) {
  const unsigned k = *rc::gen::inRange<unsigned>(1, kLists);
  const Slot s = slot_of_key(k);
  const uint64_t lb = lower_bound_of(s);
  RC_ASSERT(key(FitIndex::slot_for_size(lb)) == k);
  RC_ASSERT(key(FitIndex::slot_for_size(lb - 1)) == k - 1);
}

RC_GTEST_PROP(FitIndex, SlotForSizeIsMonotonic, ()) {
  uint64_t a = *any_size();
  uint64_t b = *any_size();
  if (a > b) std::swap(a, b);
  RC_PRE(b < (uint64_t{1} << 63));  // the index covers sizes below 2^63
  const Slot sa = FitIndex::slot_for_size(a), sb = FitIndex::slot_for_size(b);
  RC_ASSERT(key(sa) <= key(sb));
  // Each list holds a contiguous range: lower_bound(s) <= a < lower_bound(next list).
  RC_ASSERT(lower_bound_of(sa) <= a);
  if (key(sa) + 1 < kLists) RC_ASSERT(a < lower_bound_of(slot_of_key(key(sa) + 1)));
  RC_ASSERT(sb.first < FitIndex::kFirstLevelCount);
  RC_ASSERT(sb.second < FitIndex::kSecondLevelCount);
}

RC_GTEST_PROP(FitIndex, SlotAtLeastIsSmallestListWhoseBlocksAllFit, ()) {
  const uint64_t n = *any_size();
  const Slot s = FitIndex::slot_at_least(n);
  RC_LOG() << "n=" << n << " slot_at_least=" << show_slot(s);
  if (s.first >= FitIndex::kFirstLevelCount) {
    // "none exists": even the top list holds sizes below n.
    RC_ASSERT(lower_bound_of(slot_of_key(kLists - 1)) < n);
    return;
  }
  RC_ASSERT(s.second < FitIndex::kSecondLevelCount);
  // Every block in this list and above is >= n ...
  RC_ASSERT(lower_bound_of(s) >= n);
  // ... and the list below holds some size < n (it is the smallest such list).
  if (key(s) > 0) RC_ASSERT(lower_bound_of(slot_of_key(key(s) - 1)) < n);
  // Directly: a few sizes filed at or above the list are >= n, and the request's own list is
  // never above slot_at_least.
  const uint64_t m = lower_bound_of(s) + *rc::gen::inRange<uint64_t>(0, 1u << 20);
  RC_ASSERT(key(FitIndex::slot_for_size(m)) >= key(s));
  RC_ASSERT(m >= n);
  RC_ASSERT(key(FitIndex::slot_for_size(n)) <= key(s));
  RC_CLASSIFY(key(FitIndex::slot_for_size(n)) == key(s), "n is a list lower bound");
}

// ---- FitIndex operations vs a multiset model ---------------------------------------------

enum class FitOpKind { kInsert, kRemove, kFindFit };

struct FitOp {
  FitOpKind kind = FitOpKind::kInsert;
  unsigned node = 0;  // insert: an unfiled node, remove: a filed node (reduced to an eligible one)
  uint64_t size = 0;  // insert: block size (multiple of 16); find_fit: request
};

void showValue(const FitOp& op, std::ostream& os) {
  switch (op.kind) {
    case FitOpKind::kInsert:
      os << "insert(node " << op.node << ", " << op.size << ")";
      break;
    case FitOpKind::kRemove:
      os << "remove(node " << op.node << ")";
      break;
    case FitOpKind::kFindFit:
      os << "find_fit(" << op.size << ")";
      break;
  }
}

constexpr unsigned kNodes = 48;
constexpr uint64_t kMaxBlock = uint64_t{0xFFFFFFF0};  // the size field holds < 4 GiB

// Block sizes as the medium tier produces them (multiples of 16, mostly >= 256), with
// clusters in a few lists so lists grow past the best-fit scan length.
rc::Gen<uint64_t> block_size() {
  auto round16 = [](uint64_t v) { return std::max<uint64_t>(16, v & ~uint64_t{15}); };
  return rc::gen::map(rc::gen::weightedOneOf<uint64_t>({
                          {4, rc::gen::inRange<uint64_t>(8192, 8192 + 512)},  // one list (8 KiB, granule 512)
                          {2, rc::gen::inRange<uint64_t>(256, 1024)},
                          {3, rc::gen::inRange<uint64_t>(256, uint64_t{4} << 20)},
                          {1, rc::gen::inRange<uint64_t>(16, 256)},
                          {1, rc::gen::inRange<uint64_t>(uint64_t{4} << 20, kMaxBlock)},
                      }),
                      round16);
}

rc::Gen<FitOp> gen_fit_op() {
  return rc::gen::build<FitOp>(
      rc::gen::set(&FitOp::kind, rc::gen::weightedElement<FitOpKind>(
                                     {{5, FitOpKind::kInsert}, {3, FitOpKind::kRemove}, {4, FitOpKind::kFindFit}})),
      rc::gen::set(&FitOp::node, rc::gen::inRange<unsigned>(0, kNodes)),
      rc::gen::set(&FitOp::size, rc::gen::weightedOneOf<uint64_t>({
                                     {4, block_size()},
                                     {2, rc::gen::inRange<uint64_t>(0, 9000)},
                                     {1, rc::gen::inRange<uint64_t>(0, uint64_t{1} << 33)},
                                 })));
}

RC_GTEST_PROP(FitIndex, OperationsMatchMultisetModel, ()) {
  const auto ops = *rc::gen::container<std::vector<FitOp>>(gen_fit_op());
  auto index = std::make_unique<FitIndex>();
  std::vector<FreeBlock> nodes(kNodes);
  std::vector<bool> filed(kNodes, false);
  std::multiset<uint64_t> model;
  uint64_t model_bytes = 0;
  bool saw_none = false, saw_own = false, saw_above = false;

  auto node_index = [&](const FreeBlock* b) -> long {
    if (b < nodes.data() || b >= nodes.data() + kNodes) return -1;
    return static_cast<long>(b - nodes.data());
  };
  // First node at or after `from` (cyclically) whose filed state is `want`, or -1.
  auto pick = [&](unsigned from, bool want) -> long {
    for (unsigned i = 0; i < kNodes; ++i) {
      const unsigned j = (from + i) % kNodes;
      if (filed[j] == want) return j;
    }
    return -1;
  };

  for (size_t step = 0; step < ops.size(); ++step) {
    const FitOp& op = ops[step];
    switch (op.kind) {
      case FitOpKind::kInsert: {
        const long j = pick(op.node, false);
        if (j < 0) break;
        const uint64_t size = std::min<uint64_t>(std::max<uint64_t>(16, op.size & ~uint64_t{15}), kMaxBlock);
        nodes[j].set(size, true);
        index->insert(&nodes[j]);
        filed[j] = true;
        model.insert(size);
        model_bytes += size;
        break;
      }
      case FitOpKind::kRemove: {
        const long j = pick(op.node, true);
        if (j < 0) break;
        const uint64_t size = nodes[j].size();
        index->remove(&nodes[j]);
        filed[j] = false;
        model.erase(model.find(size));
        model_bytes -= size;
        break;
      }
      case FitOpKind::kFindFit: {
        const uint64_t n = op.size;
        const FreeBlock* got = index->find_fit(n);
        const Slot own = FitIndex::slot_for_size(n);
        const Slot al = FitIndex::slot_at_least(n);
        // What the model says: blocks in the request's own list, and the smallest non-empty
        // list at or above slot_at_least(n).
        size_t own_count = 0;
        uint64_t own_best = UINT64_MAX;
        unsigned upper_key = kLists;  // none
        for (uint64_t s : model) {
          const unsigned k = key(FitIndex::slot_for_size(s));
          if (k == key(own)) {
            ++own_count;
            if (s >= n) own_best = std::min(own_best, s);
          }
          if (al.first < FitIndex::kFirstLevelCount && k >= key(al)) upper_key = std::min(upper_key, k);
        }
        if (got == nullptr) {
          saw_none = true;
          // Nothing in any list whose blocks all fit ...
          RC_ASSERT(upper_key == kLists);
          // ... and a fitting block of the own list can be missed only beyond the scan.
          if (own_best != UINT64_MAX) RC_ASSERT(own_count > FitIndex::kBestFitScan);
          break;
        }
        const long j = node_index(got);
        RC_ASSERT(j >= 0);
        RC_ASSERT(filed[j]);  // a filed block, not unfiled by the search
        const uint64_t size = got->size();
        RC_ASSERT(size >= n);
        const unsigned got_key = key(FitIndex::slot_for_size(size));
        if (got_key == key(own) && key(own) != key(al)) {
          saw_own = true;
          // The bounded scan sees the whole list when it is short: exact best fit.
          if (own_count <= FitIndex::kBestFitScan) RC_ASSERT(size == own_best);
        } else {
          saw_above = true;
          // First block of the smallest non-empty list whose blocks all fit.
          RC_ASSERT(got_key == upper_key);
          // And no short own list held a fitting block.
          if (own_count <= FitIndex::kBestFitScan && key(own) != key(al)) RC_ASSERT(own_best == UINT64_MAX);
        }
        break;
      }
    }
    RC_ASSERT(tmprop::is_null(index->validate()));
    RC_ASSERT(index->count() == model.size());
    RC_ASSERT(index->bytes() == model_bytes);
    RC_ASSERT(index->largest() == (model.empty() ? 0 : *model.rbegin()));
  }
  RC_CLASSIFY(saw_own, "find_fit: own list");
  RC_CLASSIFY(saw_above, "find_fit: list above");
  RC_CLASSIFY(saw_none, "find_fit: none");
  RC_CLASSIFY(model.size() > FitIndex::kBestFitScan, "ends with > 8 filed blocks");
}

}  // namespace
