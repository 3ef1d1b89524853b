// A picture of the heap (tm_heap_map, heap_map.cc): every small and medium segment, large
// block, pooled mapping and the sampled-block region, written to a file descriptor as text or
// as SVG. The tiers describe what they hold through a HeapMap (small_map, medium_map, ...,
// called with every heap lock held); HeapMap renders it. Each walk runs twice under the same
// locks: the first pass only counts rows and totals (an SVG's height and the summary come
// before its rows), the second writes.
#pragma once

#include <cstddef>
#include <cstdint>

namespace tmalloc {

// How a small segment's run is used.
enum class MapRun : uint8_t {
  kMetadata,  // the segment header's runs
  kFree,      // assigned to no class, memory resident (or never touched)
  kPurged,    // free, its pages returned to the OS
  kInUse,     // assigned to a class
};

// What a row of the map shows.
enum class MapRow : uint8_t { kSmall, kMedium, kLarge, kPooled, kGuarded };

class HeapMap {
 public:
  // A writer to fd in `format` (TM_HEAP_MAP_TEXT or TM_HEAP_MAP_SVG).
  HeapMap(int fd, int format) : fd_(fd), format_(format) {}

  // Pass control (tm_heap_map): counting, then writing.
  void begin_pass(bool writing);
  // The header (after the counting pass) and the closing lines.
  void write_header(size_t mapped_bytes, size_t committed_bytes, size_t requested_bytes);
  void write_footer();
  // False once a write failed (the caller returns -1, errno set by write).
  bool ok() const { return ok_; }

  // A small segment of arena (or pool slot) `arena`: then one run() per run in order, then
  // end_row(). A purged segment's runs come as MapRun::kPurged.
  void small_segment(unsigned arena, uintptr_t address);
  void run(MapRun state, size_t class_index, size_t block_size, size_t used, size_t capacity);
  // A medium segment; then one medium_block() per block in address order (with its purged
  // bytes), then end_row().
  void medium_segment(unsigned arena, uintptr_t address);
  void medium_block(size_t offset, size_t size, bool used, size_t purged_bytes);
  // One large block's mapping (its own row).
  void large_block(uintptr_t mapping, size_t mapping_size, size_t usable, size_t requested, unsigned pool);
  // One mapping of the shared segment pool (its own row).
  void pooled(uintptr_t address, size_t size, bool purged);
  // The sampled-block region: then one guarded_slot() per slot, then end_row().
  void guarded_region(uintptr_t address);
  void guarded_slot(bool live, bool freed, size_t usable);
  void end_row();

 private:
  // Buffered output.
  void put(const char* s);
  void put_dec(uint64_t v);
  void put_hex(uint64_t v);
  void put_size(uint64_t bytes);  // "512 KiB", "3.2 MiB"
  void put_char(char c);
  void put_fixed(double v);  // two decimals
  void flush();
  // SVG pieces.
  // An SVG rect of the current row, left open for a <title> or "/>"; x and width in pixels.
  void rect(double x, double width, const char* fill, const char* stroke, const char* stroke_width = "0.5");
  void row_label(const char* kind, unsigned arena, bool has_arena);
  void begin_row(MapRow row);

  int fd_;
  int format_;
  bool writing_ = false;
  bool ok_ = true;
  // Counted by the first pass, for the header.
  size_t rows_ = 0;
  size_t small_segments_ = 0, medium_segments_ = 0, large_blocks_ = 0, pooled_ = 0;
  size_t small_live_ = 0, small_capacity_bytes_ = 0, small_live_bytes_ = 0;
  size_t medium_used_bytes_ = 0, medium_free_bytes_ = 0, medium_free_blocks_ = 0, medium_largest_free_ = 0;
  size_t large_bytes_ = 0, pooled_bytes_ = 0, pooled_purged_bytes_ = 0;
  // The current row.
  size_t row_index_ = 0;
  MapRow row_ = MapRow::kSmall;
  size_t run_index_ = 0;
  size_t row_used_ = 0, row_capacity_ = 0;  // text: totals printed at the row's end
  size_t slot_index_ = 0;
  uintptr_t row_address_ = 0;
  // Text strip of the current row (one character per 64 KiB, or per slot).
  char strip_[65] = {};
  size_t strip_length_ = 0;
  // Medium text strip: used bytes per 64 KiB cell.
  size_t cell_used_[64] = {};
  char buffer_[8192];
  size_t length_ = 0;
};

// The tiers' walks (every heap lock held; `arenas` from heap_lock_all).
void small_map(HeapMap& map, unsigned arenas);
void medium_map(HeapMap& map, unsigned arenas);
void large_map(HeapMap& map);
void pool_map(HeapMap& map);
void guarded_map(HeapMap& map);

}  // namespace tmalloc
