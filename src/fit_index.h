// Best-fit index of free medium blocks: a TLSF-style two-level segregated index.
//
// First level: floor(log2(size)); second level: the next kSecondLevelBits bits of the size,
// so each list holds blocks within 1/16 of each other. Two levels of non-empty bitmaps make
// every operation O(1): no scan over all free blocks ever happens.
//
// find_fit(n) first looks for the best block in n's own list (bounded scan of its first
// kBestFitScan blocks for the smallest one >= n), then takes the first block of the
// smallest non-empty list whose every block is >= n. The rest of n's own list is scanned
// only when the window did not reach its end and either no larger list holds a block (so a
// fitting block is never missed) or the larger list's block is more than n/16 above n (a
// block of the own list is then the better fit). The result is within 1/16 of the best
// possible fit.
#pragma once

#include <cstddef>
#include <cstdint>

#include "medium_block.h"

namespace tmalloc {

class FitIndex {
 public:
  static constexpr unsigned kSecondLevelBits = 4;
  static constexpr unsigned kSecondLevelCount = 1u << kSecondLevelBits;
  static constexpr unsigned kMinSizeLog2 = 8;       // smallest indexed size: 256 B
  static constexpr unsigned kFirstLevelCount = 57;  // floor(log2) up to 63
  static constexpr unsigned kBestFitScan = 8;

  // Where a block of `size` bytes is filed.
  struct Slot {
    unsigned first;
    unsigned second;
  };

  // List that a block of exactly `size` bytes (>= 16) is filed in.
  static Slot slot_for_size(size_t size);
  // Smallest list whose blocks are all >= size, or first == kFirstLevelCount if none exists.
  static Slot slot_at_least(size_t size);

  // Files a free block (its header size must be set).
  void insert(FreeBlock* block);
  // Unfiles a block that insert() filed.
  void remove(FreeBlock* block);
  // A filed block of total size >= size (not unfiled), or nullptr.
  FreeBlock* find_fit(size_t size) const;

  // Number of filed blocks and their total bytes.
  size_t count() const { return count_; }
  size_t bytes() const { return bytes_; }
  // Size of the largest filed block (O(list length) of the top list).
  size_t largest() const;
  // Head of list (first, second), for the heap walk.
  FreeBlock* head(unsigned first, unsigned second) const { return heads_[first][second]; }
  // Heap checks: whether a link read from a block may be followed (it names a block start in
  // the allocator's memory). Without one, every link is trusted (the index's own tests).
  using PlausibleLink = bool (*)(const FreeBlock* link);
  // Whether `block` is linked into the list its size maps to, judged from its neighbourhood
  // in O(1): it heads that list, or its predecessor (which must be filed in the same list)
  // links to it; its successor, if any, links back and is filed in the same list too. A
  // link `plausible` rejects is not followed: the block is not held.
  bool holds(const FreeBlock* block, PlausibleLink plausible = nullptr) const;
  // Checks that every bitmap bit matches list emptiness and that each block is in the
  // list its size maps to, with consistent links. Returns the first bad block (or the
  // list head address for a bitmap mismatch), nullptr when consistent. A link `plausible`
  // rejects is reported at the block holding it, not followed.
  const void* validate(PlausibleLink plausible = nullptr) const;

 private:
  // Best block >= size in list `own`, scanning all of it; nullptr when none fits.
  FreeBlock* scan_own_list(Slot own, size_t size) const;

  uint64_t first_bitmap_ = 0;
  uint32_t second_bitmaps_[kFirstLevelCount] = {};
  FreeBlock* heads_[kFirstLevelCount][kSecondLevelCount] = {};
  size_t count_ = 0;
  size_t bytes_ = 0;
};

}  // namespace tmalloc
