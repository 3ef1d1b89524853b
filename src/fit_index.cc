// Two-level segregated best-fit index (see fit_index.h).
#include "fit_index.h"

#include "linked_list.h"
#include "sanitizer.h"

namespace tmalloc {

namespace {

// floor(log2(x)) for x > 0.
unsigned floor_log2(size_t x) { return 63u - static_cast<unsigned>(__builtin_clzll(x)); }

}  // namespace

FitIndex::Slot FitIndex::slot_for_size(size_t size) {
  if (size < (size_t{1} << kMinSizeLog2)) {
    // Sizes below 256 B share first level 0, 16 B per second-level list.
    return Slot{0, static_cast<unsigned>(size / 16) & (kSecondLevelCount - 1)};
  }
  const unsigned log2 = floor_log2(size);
  const unsigned second = static_cast<unsigned>(size >> (log2 - kSecondLevelBits)) & (kSecondLevelCount - 1);
  return Slot{log2 - kMinSizeLog2 + 1, second};
}

FitIndex::Slot FitIndex::slot_at_least(size_t size) {
  if (size < (size_t{1} << kMinSizeLog2)) {
    // Round up to the next 16 B list boundary.
    const size_t rounded = (size + 15) & ~size_t{15};
    if (rounded < (size_t{1} << kMinSizeLog2)) return slot_for_size(rounded);
    return slot_for_size(rounded);
  }
  const unsigned log2 = floor_log2(size);
  const size_t granule = size_t{1} << (log2 - kSecondLevelBits);
  // Every block filed in the list of `size + granule - 1` is at least `size`.
  if (size > SIZE_MAX - granule) return Slot{kFirstLevelCount, 0};
  const size_t rounded = (size + granule - 1) & ~(granule - 1);
  Slot slot = slot_for_size(rounded);
  if (slot.first >= kFirstLevelCount) slot.first = kFirstLevelCount;
  return slot;
}

TM_NO_ASAN void FitIndex::insert(FreeBlock* block) {
  const Slot slot = slot_for_size(block->size());
  FreeBlock* head = heads_[slot.first][slot.second];
  block->prev_free = nullptr;
  block->next_free = head;
  if (head != nullptr) head->prev_free = block;
  heads_[slot.first][slot.second] = block;
  first_bitmap_ |= uint64_t{1} << slot.first;
  second_bitmaps_[slot.first] |= 1u << slot.second;
  ++count_;
  bytes_ += block->size();
}

TM_NO_ASAN void FitIndex::remove(FreeBlock* block) {
  const Slot slot = slot_for_size(block->size());
  // A block whose size or links were overwritten does not link back from where they say.
  list_unlink<&FreeBlock::prev_free, &FreeBlock::next_free>(heads_[slot.first][slot.second], block,
                                                            "best-fit free list");
  if (heads_[slot.first][slot.second] == nullptr) {
    second_bitmaps_[slot.first] &= ~(1u << slot.second);
    if (second_bitmaps_[slot.first] == 0) first_bitmap_ &= ~(uint64_t{1} << slot.first);
  }
  block->next_free = nullptr;
  block->prev_free = nullptr;
  --count_;
  bytes_ -= block->size();
}

TM_NO_ASAN FreeBlock* FitIndex::scan_own_list(Slot own, size_t size) const {
  // Only reached when no larger list has a block: the rest of the request's own list is the
  // last place a fit can be, so a fitting free block is never missed.
  if (own.first >= kFirstLevelCount) return nullptr;
  FreeBlock* best = nullptr;
  for (FreeBlock* b = heads_[own.first][own.second]; b != nullptr; b = b->next_free) {
    if (b->size() >= size && (best == nullptr || b->size() < best->size())) best = b;
  }
  return best;
}

TM_NO_ASAN FreeBlock* FitIndex::find_fit(size_t size) const {
  // Best fit among the first few blocks of the request's own list.
  const Slot own = slot_for_size(size);
  FreeBlock* best = nullptr;
  unsigned scanned = 0;
  FreeBlock* b = heads_[own.first][own.second];
  for (; b != nullptr && scanned < kBestFitScan; b = b->next_free, ++scanned) {
    if (b->size() >= size && (best == nullptr || b->size() < best->size())) {
      best = b;
      if (b->size() == size) break;
    }
  }
  if (best != nullptr) return best;
  // The window ended before the list did: blocks past it may still fit.
  const bool own_list_left = b != nullptr;

  // Otherwise the first block of the smallest list whose blocks all fit.
  Slot slot = slot_at_least(size);
  if (slot.first >= kFirstLevelCount) return scan_own_list(own, size);
  uint32_t second_map = second_bitmaps_[slot.first] & (~0u << slot.second);
  if (second_map == 0) {
    const uint64_t first_map = slot.first + 1 >= 64 ? 0 : first_bitmap_ & (~uint64_t{0} << (slot.first + 1));
    if (first_map == 0) return scan_own_list(own, size);
    slot.first = static_cast<unsigned>(__builtin_ctzll(first_map));
    second_map = second_bitmaps_[slot.first];
  }
  slot.second = static_cast<unsigned>(__builtin_ctz(second_map));
  FreeBlock* larger = heads_[slot.first][slot.second];
  // Within 1/16 of the request, it is within 1/16 of any fit. A larger list further away
  // (the lists between are empty) may be far above a block of the own list that the window
  // did not reach: the rest of the own list decides then (a fuzzer found a 47% larger block
  // handed out while a block 16 bytes above the request sat ninth in its list).
  if (!own_list_left || (larger->size() - size) * 16 <= size) return larger;
  FreeBlock* own_fit = scan_own_list(own, size);
  return own_fit != nullptr ? own_fit : larger;
}

TM_NO_ASAN size_t FitIndex::largest() const {
  if (first_bitmap_ == 0) return 0;
  const unsigned first = 63u - static_cast<unsigned>(__builtin_clzll(first_bitmap_));
  const unsigned second = 31u - static_cast<unsigned>(__builtin_clz(second_bitmaps_[first]));
  size_t best = 0;
  for (FreeBlock* b = heads_[first][second]; b != nullptr; b = b->next_free) {
    if (b->size() > best) best = b->size();
  }
  return best;
}

// `plausible` is called through its pointer in the function's own body (TM_NO_FUNCTION_CHECK does
// not cover a lambda's), here and in validate.
TM_NO_ASAN TM_NO_COVERAGE TM_NO_FUNCTION_CHECK bool FitIndex::holds(const FreeBlock* block,
                                                                    PlausibleLink plausible) const {
  const Slot slot = slot_for_size(block->size());
  if (slot.first >= kFirstLevelCount) return false;
  // A block's links lie in its payload: a live block taken for a free one holds user data there.
  const FreeBlock* const prev = block->prev_free;
  const FreeBlock* const next = block->next_free;
  const bool prev_followable = prev == nullptr || plausible == nullptr || plausible(prev);
  const bool next_followable = next == nullptr || plausible == nullptr || plausible(next);
  auto same_list = [&](const FreeBlock* other) {
    const Slot s = slot_for_size(other->size());
    return s.first == slot.first && s.second == slot.second && other->is_free();
  };
  if (!prev_followable || !next_followable) return false;
  if (prev == nullptr) {
    if (heads_[slot.first][slot.second] != block) return false;
  } else if (prev->next_free != block || !same_list(prev)) {
    return false;
  }
  return next == nullptr || (next->prev_free == block && same_list(next));
}

TM_NO_ASAN TM_NO_COVERAGE TM_NO_FUNCTION_CHECK const void* FitIndex::validate(PlausibleLink plausible) const {
  size_t seen = 0;
  size_t seen_bytes = 0;
  for (unsigned f = 0; f < kFirstLevelCount; ++f) {
    const bool first_bit = (first_bitmap_ >> f) & 1u;
    if (first_bit != (second_bitmaps_[f] != 0)) return &second_bitmaps_[f];
    for (unsigned s = 0; s < kSecondLevelCount; ++s) {
      FreeBlock* head = heads_[f][s];
      const bool bit = (second_bitmaps_[f] >> s) & 1u;
      if (bit != (head != nullptr)) return &heads_[f][s];
      const FreeBlock* prev = nullptr;
      for (FreeBlock* b = head; b != nullptr; b = b->next_free) {
        // The head is the index's own; a next link was read from the block before (`prev`).
        if (plausible != nullptr && !plausible(b))
          return prev != nullptr ? static_cast<const void*>(prev) : &heads_[f][s];
        const Slot slot = slot_for_size(b->size());
        if (slot.first != f || slot.second != s || b->prev_free != prev || !b->is_free()) return b;
        ++seen;
        seen_bytes += b->size();
        if (seen > count_) return b;  // also stops a cycle
        prev = b;
      }
    }
  }
  if (seen != count_ || seen_bytes != bytes_) return this;
  return nullptr;
}

}  // namespace tmalloc
