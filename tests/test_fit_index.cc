// Best-fit index (fit_index.h) against a naive model of filed blocks.
#include <gtest/gtest.h>

#include "internal_headers.h"

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <map>
#include <memory>
#include <new>
#include <set>
#include <vector>

#include "test_util.h"

namespace {

using tmi::FitIndex;
using tmi::FreeBlock;

constexpr unsigned kF = FitIndex::kFirstLevelCount;
constexpr unsigned kS = FitIndex::kSecondLevelCount;

bool slot_less(FitIndex::Slot a, FitIndex::Slot b) {
  return a.first != b.first ? a.first < b.first : a.second < b.second;
}

// Smallest size filed in list (first, second), from the documented geometry.
uint64_t slot_min_size(unsigned first, unsigned second) {
  if (first == 0) return uint64_t{second} * 16;
  return uint64_t{16 + second} << (first - 1 + FitIndex::kMinSizeLog2 - FitIndex::kSecondLevelBits);
}

// Fake free blocks: 64-byte, 16-aligned cells; only the header and links are ever touched.
class Arena {
 public:
  explicit Arena(size_t n) : n_(n), mem_(static_cast<unsigned char*>(std::aligned_alloc(64, n * 64))) {
    std::memset(mem_, 0xEE, n * 64);
  }
  ~Arena() { std::free(mem_); }
  Arena(const Arena&) = delete;
  Arena& operator=(const Arena&) = delete;
  FreeBlock* make(size_t i, size_t size) {
    auto* b = new (mem_ + i * 64) FreeBlock;
    b->prev_size = 0;
    b->set(size, true);
    b->next_free = reinterpret_cast<FreeBlock*>(uintptr_t{0xBAD0});  // insert() must overwrite
    b->prev_free = reinterpret_cast<FreeBlock*>(uintptr_t{0xBAD0});
    return b;
  }
  FreeBlock* at(size_t i) { return reinterpret_cast<FreeBlock*>(mem_ + i * 64); }
  size_t size() const { return n_; }

 private:
  size_t n_;
  unsigned char* mem_;
};

// The model: the set of filed blocks and their sizes.
struct Model {
  std::map<FreeBlock*, size_t> blocks;
  size_t bytes = 0;
  void add(FreeBlock* b) {
    blocks[b] = b->size();
    bytes += b->size();
  }
  void del(FreeBlock* b) {
    bytes -= blocks.at(b);
    blocks.erase(b);
  }
  size_t largest() const {
    size_t m = 0;
    for (auto& [b, s] : blocks) m = std::max(m, s);
    return m;
  }
};

// An index, its model and 16 fake blocks: add() files block i with `size` in both.
struct Filed {
  Arena arena{16};
  FitIndex idx;
  Model m;
  FreeBlock* add(size_t i, size_t size) {
    FreeBlock* b = arena.make(i, size);
    idx.insert(b);
    m.add(b);
    return b;
  }
};

// Checks every observable of the index against the model.
void check_against_model(const FitIndex& idx, const Model& m) {
  ASSERT_EQ(idx.validate(), nullptr) << "validate() reports an inconsistency";
  ASSERT_EQ(idx.count(), m.blocks.size());
  ASSERT_EQ(idx.bytes(), m.bytes);
  ASSERT_EQ(idx.largest(), m.largest());
  // Every list holds exactly the model's blocks of that slot.
  size_t walked = 0;
  for (unsigned f = 0; f < kF; ++f) {
    for (unsigned s = 0; s < kS; ++s) {
      for (FreeBlock* b = idx.head(f, s); b != nullptr; b = b->next_free) {
        ASSERT_TRUE(m.blocks.count(b)) << "index holds a block that is not filed";
        const auto slot = FitIndex::slot_for_size(b->size());
        ASSERT_TRUE(slot.first == f && slot.second == s);
        ++walked;
        ASSERT_LE(walked, m.blocks.size()) << "list cycle";
      }
    }
  }
  ASSERT_EQ(walked, m.blocks.size());
}

// Checks find_fit(req) against its documented contract and algorithm.
void check_find_fit(const FitIndex& idx, const Model& m, size_t req) {
  FreeBlock* got = idx.find_fit(req);
  SCOPED_TRACE(::testing::Message() << "find_fit(" << req << ")");
  if (got != nullptr) {
    ASSERT_TRUE(m.blocks.count(got)) << "find_fit returned a block that is not filed";
    ASSERT_GE(got->size(), req) << "find_fit returned a block that is too small";
    ASSERT_TRUE(got->is_free());
  }
  // Good-fit guarantee: a block >= req + req/16 is always found.
  bool roomy = false;
  bool any = false;
  for (auto& [b, s] : m.blocks) {
    if (s >= req + req / 16) roomy = true;
    if (s >= req) any = true;
  }
  if (roomy) {
    ASSERT_NE(got, nullptr) << "a block >= req + req/16 exists but find_fit returned null";
  }
  if (!any) {
    ASSERT_EQ(got, nullptr);
  }

  // Own-list best fit among the first kBestFitScan blocks (exact fit preferred).
  const auto own = FitIndex::slot_for_size(req);
  if (own.first < kF) {
    FreeBlock* best = nullptr;
    unsigned scanned = 0;
    for (FreeBlock* b = idx.head(own.first, own.second); b != nullptr && scanned < FitIndex::kBestFitScan;
         b = b->next_free, ++scanned) {
      if (b->size() >= req && (best == nullptr || b->size() < best->size())) best = b;
    }
    if (best != nullptr) {
      ASSERT_NE(got, nullptr);
      ASSERT_EQ(got->size(), best->size()) << "not the best fit of the request's own list";
      return;
    }
  }
  // Otherwise: the head of the smallest non-empty list whose blocks are all >= req.
  const auto at_least = FitIndex::slot_at_least(req);
  FitIndex::Slot want{kF, 0};
  for (auto& [b, s] : m.blocks) {
    const auto slot = FitIndex::slot_for_size(s);
    if (!slot_less(slot, at_least) && slot_less(slot, want)) want = slot;
  }
  // The best fit in the rest of the own list (the window found none): searched when no larger
  // list holds a block, or when the larger list's head is more than req/16 above req.
  FreeBlock* own_rest = nullptr;
  if (own.first < kF) {
    for (FreeBlock* b = idx.head(own.first, own.second); b != nullptr; b = b->next_free) {
      if (b->size() >= req && (own_rest == nullptr || b->size() < own_rest->size())) own_rest = b;
    }
  }
  if (want.first == kF) {
    if (own_rest == nullptr) {
      ASSERT_EQ(got, nullptr) << "no list >= slot_at_least(req) is non-empty and nothing in the own list fits";
    } else {
      ASSERT_NE(got, nullptr) << "a block of the own list past the scan window fits";
      ASSERT_EQ(got->size(), own_rest->size()) << "not the best fit of the rest of the own list";
    }
  } else {
    FreeBlock* larger = idx.head(want.first, want.second);
    ASSERT_NE(got, nullptr);
    if (own_rest != nullptr && (larger->size() - req) * 16 > req) {
      ASSERT_EQ(got->size(), own_rest->size()) << "the larger list is far above a fit of the own list";
    } else {
      ASSERT_EQ(got, larger) << "not the head of the smallest fitting list";
    }
  }
  // The documented bound: within 1/16 of the best fit of the whole index.
  if (got != nullptr) {
    size_t best_any = SIZE_MAX;
    for (auto& [b, size] : m.blocks) {
      if (size >= req && size < best_any) best_any = size;
    }
    ASSERT_LE((got->size() - best_any) * 16, best_any) << "more than 1/16 above the best fit";
  }
}

TEST(FitIndexSlots, SlotForSizeGeometry) {
  FitIndex::Slot prev{0, 0};
  for (uint64_t size = 16; size <= (uint64_t{64} << 20); size += 16) {
    const auto slot = FitIndex::slot_for_size(size);
    ASSERT_LT(slot.first, kF);
    ASSERT_LT(slot.second, kS);
    ASSERT_FALSE(slot_less(slot, prev)) << "slot_for_size not monotonic at " << size;
    ASSERT_GE(size, slot_min_size(slot.first, slot.second)) << size;
    // The next list starts above this size.
    const unsigned nf = slot.second + 1 == kS ? slot.first + 1 : slot.first;
    const unsigned ns = slot.second + 1 == kS ? 0 : slot.second + 1;
    ASSERT_LT(size, slot_min_size(nf, ns)) << size;
    // Blocks in one list are within 1/16 of each other (16 B granules below 256 B).
    const uint64_t width = slot_min_size(nf, ns) - slot_min_size(slot.first, slot.second);
    if (size >= 256) {
      ASSERT_LE(width * 16, slot_min_size(slot.first, slot.second)) << size;
    }
    prev = slot;
  }
  // The largest sizes still fit in the table.
  EXPECT_LT(FitIndex::slot_for_size((uint64_t{1} << 62) + 12345 * 16).first, kF);
  EXPECT_LT(FitIndex::slot_for_size((uint64_t{1} << 63) - 16).first, kF);
}

TEST(FitIndexSlots, SlotAtLeastIsSmallestAllFittingList) {
  auto check = [](uint64_t n) {
    const auto s = FitIndex::slot_at_least(n);
    if (s.first >= kF) return;  // none exists
    ASSERT_GE(slot_min_size(s.first, s.second), n) << "list of slot_at_least(" << n << ") can hold smaller blocks";
    // The list just before it can hold a block < n.
    if (s.first != 0 || s.second != 0) {
      const unsigned pf = s.second == 0 ? s.first - 1 : s.first;
      const unsigned ps = s.second == 0 ? kS - 1 : s.second - 1;
      ASSERT_LT(slot_min_size(pf, ps), n) << "slot_at_least(" << n << ") skips a fitting list";
    }
    if (n >= 256) {
      ASSERT_LE(slot_min_size(s.first, s.second), n + n / 16) << n;
    }
  };
  for (uint64_t n = 0; n <= (uint64_t{1} << 20); ++n) check(n);
  tmtest::Rng rng(4242);
  for (int i = 0; i < 200000; ++i) check(rng.log_uniform(1, uint64_t{1} << 61));
  EXPECT_EQ(FitIndex::slot_at_least(SIZE_MAX).first, kF);
}

TEST(FitIndex, EmptyIndex) {
  FitIndex idx;
  EXPECT_EQ(idx.count(), 0u);
  EXPECT_EQ(idx.bytes(), 0u);
  EXPECT_EQ(idx.largest(), 0u);
  EXPECT_EQ(idx.validate(), nullptr);
  for (size_t req : {size_t{0}, size_t{1}, size_t{16}, size_t{256}, size_t{8193}, size_t{1} << 20}) {
    EXPECT_EQ(idx.find_fit(req), nullptr) << req;
  }
}

TEST(FitIndex, InsertRemoveSingle) {
  Arena arena(4);
  FitIndex idx;
  FreeBlock* b = arena.make(0, 4096);
  idx.insert(b);
  EXPECT_EQ(idx.count(), 1u);
  EXPECT_EQ(idx.bytes(), 4096u);
  EXPECT_EQ(idx.largest(), 4096u);
  EXPECT_EQ(idx.validate(), nullptr);
  EXPECT_EQ(b->prev_free, nullptr);
  EXPECT_EQ(b->next_free, nullptr);
  EXPECT_EQ(idx.find_fit(4096), b);
  EXPECT_EQ(idx.find_fit(1), b);
  EXPECT_EQ(idx.find_fit(4097), nullptr);
  const auto slot = FitIndex::slot_for_size(4096);
  EXPECT_EQ(idx.head(slot.first, slot.second), b);
  idx.remove(b);
  EXPECT_EQ(idx.count(), 0u);
  EXPECT_EQ(idx.bytes(), 0u);
  EXPECT_EQ(idx.largest(), 0u);
  EXPECT_EQ(idx.validate(), nullptr);
  EXPECT_EQ(idx.head(slot.first, slot.second), nullptr);
  EXPECT_EQ(idx.find_fit(16), nullptr);
}

TEST(FitIndex, RemoveHeadMiddleTail) {
  Arena arena(8);
  FitIndex idx;
  Model m;
  // Five blocks in one list: [4096, 4352).
  FreeBlock* b[5];
  for (int i = 0; i < 5; ++i) {
    b[i] = arena.make(i, 4096 + 16 * i);
    idx.insert(b[i]);
    m.add(b[i]);
  }
  check_against_model(idx, m);
  for (int victim : {2, 4, 0, 1, 3}) {  // middle, head (last inserted), tail, ...
    idx.remove(b[victim]);
    m.del(b[victim]);
    check_against_model(idx, m);
    for (size_t req = 4000; req < 4400; req += 8) check_find_fit(idx, m, req);
  }
}

TEST(FitIndex, ExactAndBestFitInOwnList) {
  Filed f;
  FitIndex& idx = f.idx;
  Model& m = f.m;
  auto add = [&](size_t i, size_t size) { return f.add(i, size); };
  // Own list of 4096 is [4096, 4352); the next lists start at 4352.
  FreeBlock* b4336 = add(0, 4336);
  FreeBlock* b4112 = add(1, 4112);
  FreeBlock* b4096 = add(2, 4096);
  FreeBlock* b4160 = add(3, 4160);
  FreeBlock* big = add(4, 4608);
  FreeBlock* huge = add(5, 65536);
  check_against_model(idx, m);
  EXPECT_EQ(idx.find_fit(4096), b4096) << "exact fit in own list not preferred";
  EXPECT_EQ(idx.find_fit(4112), b4112);
  EXPECT_EQ(idx.find_fit(4100), b4112) << "not the best fit of the own list";
  EXPECT_EQ(idx.find_fit(4113), b4160);
  EXPECT_EQ(idx.find_fit(4336), b4336);
  EXPECT_EQ(idx.find_fit(4337), big) << "must go to the next non-empty list";
  EXPECT_EQ(idx.find_fit(4609), huge);
  EXPECT_EQ(idx.find_fit(65536), huge);
  EXPECT_EQ(idx.find_fit(65537), nullptr);
  EXPECT_EQ(idx.largest(), 65536u);
  // Blocks below 256 B (first level 0) work the same way.
  FreeBlock* b32 = add(6, 32);
  FreeBlock* b48 = add(7, 48);
  check_against_model(idx, m);
  EXPECT_EQ(idx.find_fit(32), b32);
  EXPECT_EQ(idx.find_fit(17), b32);
  EXPECT_EQ(idx.find_fit(33), b48);
  // Nothing fits in level 0: the head of the next non-empty list, [4096, 4352), whose head is
  // the block filed last (4160).
  EXPECT_EQ(idx.find_fit(49), b4160);
  for (size_t req = 1; req < 70000; req += 7) check_find_fit(idx, m, req);
}

// A fitting block past the own list's scan window, with the next non-empty list far above:
// the rest of the own list is searched (found by fuzz_fit_index in a 30-minute campaign:
// corpus/regressions/fit_index/find-fit-far-larger-list-past-scan-window). A larger list
// within 1/16 of the request is taken without that search.
TEST(FitIndex, AFitPastTheScanWindowBeatsAFarLargerList) {
  Filed f;
  FitIndex& idx = f.idx;
  Model& m = f.m;
  auto add = [&](size_t i, size_t size) { return f.add(i, size); };
  // Own list of 4300 is [4096, 4352); blocks are filed at the head, so 4336 ends up last,
  // behind kBestFitScan blocks that are too small.
  FreeBlock* fit = add(0, 4336);
  for (size_t i = 1; i <= FitIndex::kBestFitScan; ++i) add(i, 4096 + 16 * i);
  FreeBlock* far = add(10, 65536);
  check_against_model(idx, m);
  EXPECT_EQ(idx.find_fit(4300), fit) << "a block 15x the request was handed out while one 36 bytes above sat in the "
                                        "request's own list";
  EXPECT_EQ(idx.find_fit(4337), far);
  // A larger list's block within 1/16 of the request is within 1/16 of any fit: taken at once.
  FreeBlock* near = add(11, 4352);
  EXPECT_EQ(idx.find_fit(4300), near);
  for (size_t req = 4000; req < 4400; req += 4) check_find_fit(idx, m, req);
}

TEST(FitIndex, LargestScansWholeTopList) {
  Arena arena(8);
  FitIndex idx;
  // Same top list [1 MiB, 1 MiB + 64 KiB): inserted so the largest is neither head nor tail.
  const size_t sizes[] = {(1u << 20) + 4096, (1u << 20) + 60000 / 16 * 16, (1u << 20), (1u << 20) + 16};
  for (size_t i = 0; i < 4; ++i) idx.insert(arena.make(i, sizes[i]));
  EXPECT_EQ(idx.largest(), (1u << 20) + 60000 / 16 * 16);
  EXPECT_EQ(idx.validate(), nullptr);
}

TEST(FitIndex, RandomOpsAgainstModel) {
  constexpr size_t kCells = 2500;
  Arena arena(kCells);
  FitIndex idx;
  Model m;
  std::vector<size_t> free_cells;
  for (size_t i = 0; i < kCells; ++i) free_cells.push_back(kCells - 1 - i);
  std::vector<FreeBlock*> filed;
  tmtest::Rng rng(2024);
  const size_t palette[] = {256, 272, 512, 4096, 4112, 8208, 65536, 65552, 131072, 524288, 4128768};
  for (int op = 0; op < 30000; ++op) {
    const unsigned what = static_cast<unsigned>(rng.below(100));
    if (what < 45 && !free_cells.empty()) {
      const size_t cell = free_cells.back();
      free_cells.pop_back();
      size_t size;
      if (rng.chance(30)) {
        size = palette[rng.below(sizeof palette / sizeof palette[0])];
      } else {
        size = rng.log_uniform(256, 4u << 20) & ~size_t{15};
      }
      FreeBlock* b = arena.make(cell, size);
      idx.insert(b);
      m.add(b);
      filed.push_back(b);
    } else if (what < 80 && !filed.empty()) {
      const size_t k = rng.below(filed.size());
      FreeBlock* b = filed[k];
      filed[k] = filed.back();
      filed.pop_back();
      idx.remove(b);
      m.del(b);
      EXPECT_EQ(b->next_free, nullptr);
      EXPECT_EQ(b->prev_free, nullptr);
      free_cells.push_back(static_cast<size_t>(
          (reinterpret_cast<unsigned char*>(b) - reinterpret_cast<unsigned char*>(arena.at(0))) / 64));
    } else {
      size_t req;
      if (!filed.empty() && rng.chance(40)) {
        const size_t s = filed[rng.below(filed.size())]->size();
        req = s + static_cast<size_t>(rng.range(0, 2)) - 1;  // s-1, s, s+1
      } else {
        req = rng.log_uniform(1, 8u << 20);
      }
      check_find_fit(idx, m, req);
      if (::testing::Test::HasFatalFailure()) return;
    }
    if (op % 25 == 0 || filed.size() < 4) {
      check_against_model(idx, m);
      if (::testing::Test::HasFatalFailure()) return;
    } else {
      ASSERT_EQ(idx.count(), m.blocks.size());
      ASSERT_EQ(idx.bytes(), m.bytes);
    }
  }
  // Drain.
  while (!filed.empty()) {
    idx.remove(filed.back());
    m.del(filed.back());
    filed.pop_back();
  }
  check_against_model(idx, m);
  EXPECT_EQ(idx.count(), 0u);
  EXPECT_EQ(idx.largest(), 0u);
}

TEST(FitIndex, ValidateDetectsCorruption) {
  Arena arena(8);
  {
    // A block whose size changed to another list after it was filed.
    FitIndex idx;
    FreeBlock* a = arena.make(0, 4096);
    FreeBlock* b = arena.make(1, 4112);
    idx.insert(a);
    idx.insert(b);
    ASSERT_EQ(idx.validate(), nullptr);
    b->set(65536, true);
    EXPECT_EQ(idx.validate(), b);
    b->set(4112, true);
    EXPECT_EQ(idx.validate(), nullptr);
    // Lost free flag.
    a->set(4096, false);
    EXPECT_EQ(idx.validate(), a);
    a->set(4096, true);
    // Broken back link.
    FreeBlock* saved = a->prev_free;
    a->prev_free = a;
    EXPECT_NE(idx.validate(), nullptr);
    a->prev_free = saved;
    EXPECT_EQ(idx.validate(), nullptr);
    // A cycle must be reported, not loop forever.
    FreeBlock* tail = b->next_free == nullptr ? b : a;
    FreeBlock* head = tail == b ? a : b;
    tail->next_free = head;
    EXPECT_NE(idx.validate(), nullptr);
    tail->next_free = nullptr;
    EXPECT_EQ(idx.validate(), nullptr);
  }
  {
    // Same-size block grown within its own list: still consistent by list, but bytes() differs.
    FitIndex idx;
    FreeBlock* a = arena.make(2, 4096);
    idx.insert(a);
    a->set(4112, true);
    EXPECT_NE(idx.validate(), nullptr) << "bytes() no longer matches the filed blocks";
  }
}

TEST(FitIndexDeathTest, FindFitOfHugeRequestIsNull) {
  // find_fit must answer nullptr (not read outside its tables) for any request no block can
  // satisfy, including requests above 2^63. Run in a child so a wild read cannot take the
  // whole test binary down.
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(
      {
        Arena arena(4);
        FitIndex idx;
        idx.insert(arena.make(0, 4096));
        idx.insert(arena.make(1, 1 << 20));
        const bool ok = idx.find_fit(SIZE_MAX) == nullptr && idx.find_fit(SIZE_MAX / 2 + 1) == nullptr &&
                        idx.find_fit(SIZE_MAX / 2) == nullptr && idx.find_fit((size_t{1} << 62) + 1) == nullptr &&
                        idx.find_fit(SIZE_MAX - 15) == nullptr;
        std::_Exit(ok ? 0 : 1);
      },
      ::testing::ExitedWithCode(0), "");
}

}  // namespace
