// tm_heap_map: renders what the tiers' walks describe (heap_map.h) as text or SVG, written
// with write(2) from a fixed buffer: it runs with every heap lock held and never allocates.
#include "heap_map.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>

#include "config.h"
#include "fork.h"
#include "guarded.h"
#include "os.h"
#include "platform.h"
#include "segment_pool.h"
#include "size_class.h"
#include "text_buffer.h"
#include "tinymalloc.h"

namespace tmalloc {

namespace {

// SVG layout: one row per segment or mapping, 1 px per 4 KiB (a 4 MiB segment is 1024 px).
constexpr uint64_t kLabelWidth = 170;
constexpr uint64_t kBarWidth = 1024;
constexpr uint64_t kNotesWidth = 330;
constexpr uint64_t kRowHeight = 18;
constexpr uint64_t kRowPitch = 22;
constexpr uint64_t kHeaderHeight = 128;
constexpr uint64_t kNotesX = kLabelWidth + kBarWidth + 8;  // the row's figures
constexpr double kBytesPerPixel = 4096.0;
constexpr size_t kCellBytes = kSegmentSize / 64;  // text strips: 64 cells of 64 KiB

// Character for a cell or run `used` of `capacity` full: ' ' empty, '1'..'9' tenths, '@' full.
char fill_char(size_t used, size_t capacity) {
  if (used == 0 || capacity == 0) return ' ';
  if (used >= capacity) return '@';
  size_t tenths = (used * 10 + capacity - 1) / capacity;  // rounded up: a used cell never shows empty
  if (tenths > 9) tenths = 9;
  return static_cast<char>('0' + tenths);
}

}  // namespace

void HeapMap::put(const char* s) {
  while (*s != '\0') put_char(*s++);
}

void HeapMap::put_char(char c) {
  if (!writing_) return;
  if (length_ == sizeof buffer_) flush();
  buffer_[length_++] = c;
}

// Numbers are formatted by TextBuffer, like every other report of the allocator.
void HeapMap::put_dec(uint64_t v) { put(TextBuffer().dec(v).c_str()); }

void HeapMap::put_hex(uint64_t v) { put(TextBuffer().hex(v).c_str()); }

void HeapMap::put_size(uint64_t bytes) {
  static constexpr const char* kUnits[] = {"KiB", "MiB", "GiB", "TiB"};
  if (bytes < 1024) {
    put_dec(bytes);
    put(" B");
    return;
  }
  size_t unit = 0;
  uint64_t scale = 1024;
  while (unit + 1 < 4 && bytes >= scale * 1024) {
    scale *= 1024;
    ++unit;
  }
  const uint64_t tenths = (bytes * 10 + scale / 2) / scale;
  put_dec(tenths / 10);
  put_char('.');
  put_dec(tenths % 10);
  put_char(' ');
  put(kUnits[unit]);
}

// Writes a pixel position or width (>= 0) with two decimals.
void HeapMap::put_fixed(double v) {
  const uint64_t h = v <= 0 ? 0 : static_cast<uint64_t>(std::llround(v * 100.0));
  put_dec(h / 100);
  put_char('.');
  put_char(static_cast<char>('0' + h / 10 % 10));
  put_char(static_cast<char>('0' + h % 10));
}

namespace {

// "hsl(<hue>,<saturation>%,<lightness>%)" into out, for a fill attribute.
void hsl(char (&out)[32], unsigned hue, unsigned saturation, unsigned lightness) {
  char* f = out;
  auto append = [&f](const char* text) {
    while (*text != '\0') *f++ = *text++;
  };
  auto append_dec = [&f](unsigned v) {
    char digits[12];
    int n = 0;
    do {
      digits[n++] = static_cast<char>('0' + v % 10);
      v /= 10;
    } while (v != 0);
    while (n > 0) *f++ = digits[--n];
  };
  append("hsl(");
  append_dec(hue);
  append(",");
  append_dec(saturation);
  append("%,");
  append_dec(lightness);
  append("%)");
  *f = '\0';
}

}  // namespace

void HeapMap::flush() {
  if (ok_ && length_ > 0) ok_ = write_fully(fd_, buffer_, length_);
  length_ = 0;
}

void HeapMap::begin_pass(bool writing) {
  writing_ = writing;
  row_index_ = 0;
  if (writing) return;
  rows_ = 0;
  small_segments_ = medium_segments_ = large_blocks_ = pooled_ = 0;
  small_live_ = small_capacity_bytes_ = small_live_bytes_ = 0;
  medium_used_bytes_ = medium_free_bytes_ = medium_free_blocks_ = medium_largest_free_ = 0;
  large_bytes_ = pooled_bytes_ = pooled_purged_bytes_ = 0;
}

void HeapMap::write_header(size_t mapped_bytes, size_t committed_bytes, size_t requested_bytes) {
  const bool svg = format_ == TM_HEAP_MAP_SVG;
  const uint64_t ratio_hundredths = requested_bytes == 0 ? 0 : committed_bytes * 100 / requested_bytes;
  const uint64_t small_fill = small_capacity_bytes_ == 0 ? 0 : small_live_bytes_ * 100 / small_capacity_bytes_;
  // External fragmentation of the medium tier: the share of free bytes outside the largest
  // free block (0: one free block; near 1: free space in crumbs).
  const uint64_t frag_hundredths =
      medium_free_bytes_ == 0 ? 0 : (medium_free_bytes_ - medium_largest_free_) * 100 / medium_free_bytes_;
  auto two_decimals = [this](uint64_t h) {
    put_dec(h / 100);
    put_char('.');
    put_char(static_cast<char>('0' + h / 10 % 10));
    put_char(static_cast<char>('0' + h % 10));
  };
  auto summary = [&](int line) {
    if (line == 0) {
      put("tinymalloc heap map: mapped ");
      put_size(mapped_bytes);
      put(", committed ");
      put_size(committed_bytes);
      put(", requested ");
      put_size(requested_bytes);
      put(" (committed / requested ");
      two_decimals(ratio_hundredths);
      put(")");
    } else if (line == 1) {
      put("small: ");
      put_dec(small_segments_);
      put(" segments, ");
      put_dec(small_live_);
      put(" blocks in use, runs ");
      put_dec(small_fill);
      put("% full; medium: ");
      put_dec(medium_segments_);
      put(" segments, ");
      put_size(medium_used_bytes_);
      put(" in blocks in use, ");
      put_size(medium_free_bytes_);
      put(" free in ");
      put_dec(medium_free_blocks_);
      put(" blocks (largest ");
      put_size(medium_largest_free_);
      put(", fragmentation ");
      two_decimals(frag_hundredths);
      put(")");
    } else {
      put("large: ");
      put_dec(large_blocks_);
      put(" blocks, ");
      put_size(large_bytes_);
      put(" mapped; pooled: ");
      put_dec(pooled_);
      put(" mappings, ");
      put_size(pooled_bytes_);
      put(" (");
      put_size(pooled_purged_bytes_);
      put(" purged)");
    }
  };
  if (!svg) {
    for (int line = 0; line < 3; ++line) {
      summary(line);
      put_char('\n');
    }
    put("legend: one character per small run or per 64 KiB of a medium segment: '#' header, ' ' free, '_' purged,\n");
    put("        '1'..'9' tenths in use, '@' full; sampled slots: 'L' live, 'f' freed, '.' unused\n");
    return;
  }
  const uint64_t width = kLabelWidth + kBarWidth + kNotesWidth;
  const uint64_t height = kHeaderHeight + rows_ * kRowPitch + 10;
  put("<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"");
  put_dec(width);
  put("\" height=\"");
  put_dec(height);
  put("\" font-family=\"monospace\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"#fafafa\"/>\n");
  for (uint64_t line = 0; line < 3; ++line) {
    put("<text x=\"8\" y=\"");
    put_dec(18 + line * 17);
    put("\"");
    if (line == 0) put(" font-weight=\"bold\"");
    put(">");
    summary(static_cast<int>(line));
    put("</text>\n");
  }
  // Legend.
  struct Swatch {
    const char* fill;
    const char* text;
  };
  static constexpr Swatch kLegend[] = {
      {"#555555", "header"},
      {"hsl(200,70%,45%)", "small run (hue: size class; darker: fuller)"},
      {"hsl(240,65%,55%)", "medium block in use (blue 4 KiB .. red 4 MiB)"},
      {"#ffffff", "free"},
      {"#dddddd", "purged"},
      {"#8e44ad", "large block"},
      {"#b0b0b0", "pooled"},
      {"#e74c3c", "sampled live"},
  };
  uint64_t x = 8;
  uint64_t y = 72;
  for (const Swatch& s : kLegend) {
    if (x > kLabelWidth + kBarWidth - 120) {
      x = 8;
      y += 20;
    }
    put("<rect x=\"");
    put_dec(x);
    put("\" y=\"");
    put_dec(y);
    put("\" width=\"14\" height=\"12\" stroke=\"#999\" fill=\"");
    put(s.fill);
    put("\"/><text x=\"");
    put_dec(x + 18);
    put("\" y=\"");
    put_dec(y + 11);
    put("\">");
    put(s.text);
    put("</text>\n");
    x += 30 + std::strlen(s.text) * 7;
  }
}

void HeapMap::write_footer() {
  if (format_ == TM_HEAP_MAP_SVG) put("</svg>\n");
  flush();
}

void HeapMap::begin_row(MapRow row) {
  row_ = row;
  run_index_ = 0;
  slot_index_ = 0;
  row_used_ = 0;
  row_capacity_ = 0;
  strip_length_ = 0;
  std::memset(cell_used_, 0, sizeof cell_used_);
  if (!writing_) {
    ++rows_;
    return;
  }
  if (format_ == TM_HEAP_MAP_SVG) {
    put("<g transform=\"translate(0,");
    put_dec(kHeaderHeight + row_index_ * kRowPitch);
    put(")\">");
  }
  ++row_index_;
}

void HeapMap::row_label(const char* kind, unsigned arena, bool has_arena) {
  const bool svg = format_ == TM_HEAP_MAP_SVG;
  if (svg) put("<text x=\"4\" y=\"13\">");
  put(kind);
  if (has_arena) {
    if (arena >= kMaxArenas) {
      put(" pool ");
      put_dec(arena - kMaxArenas);
    } else {
      put(" a");
      put_dec(arena);
    }
  }
  put(svg ? " " : "\t");
  put_hex(row_address_);
  if (svg) put("</text>");
  if (!svg) put(" |");
}

void HeapMap::rect(double x, double width, const char* fill, const char* stroke, const char* stroke_width) {
  put("<rect x=\"");
  put_fixed(static_cast<double>(kLabelWidth) + x);
  put("\" y=\"0\" width=\"");
  put_fixed(width < 0.25 ? 0.25 : width);
  put("\" height=\"");
  put_dec(kRowHeight);
  put("\" fill=\"");
  put(fill);
  put("\"");
  if (stroke != nullptr) {
    put(" stroke=\"");
    put(stroke);
    put("\" stroke-width=\"");
    put(stroke_width);
    put("\"");
  }
}

void HeapMap::small_segment(unsigned arena, uintptr_t address) {
  ++small_segments_;
  row_address_ = address;
  begin_row(MapRow::kSmall);
  if (writing_) row_label("small", arena, true);
}

void HeapMap::run(MapRun state, size_t class_index, size_t block_size, size_t used, size_t capacity) {
  const size_t index = run_index_++;
  if (!writing_) {
    if (state == MapRun::kInUse) {
      small_live_ += used;
      small_live_bytes_ += used * block_size;
      small_capacity_bytes_ += capacity * block_size;
    }
    return;
  }
  if (state == MapRun::kInUse) {
    row_used_ += used;
    row_capacity_ += capacity;
  }
  if (format_ != TM_HEAP_MAP_SVG) {
    char c = '#';
    if (state == MapRun::kFree) c = ' ';
    if (state == MapRun::kPurged) c = '_';
    if (state == MapRun::kInUse) c = used == 0 ? '0' : fill_char(used, capacity);
    put_char(c);
    return;
  }
  const double x = static_cast<double>(index * kRunSize) / kBytesPerPixel;
  const double w = static_cast<double>(kRunSize) / kBytesPerPixel;
  char fill[32];
  const char* stroke = "#bbbbbb";
  if (state == MapRun::kMetadata) {
    rect(x, w, "#555555", stroke);
    put("><title>segment header</title></rect>");
    return;
  }
  if (state == MapRun::kFree || state == MapRun::kPurged) {
    rect(x, w, state == MapRun::kFree ? "#ffffff" : "#dddddd", stroke);
    put(state == MapRun::kFree ? "><title>free run</title></rect>" : "><title>free run, purged</title></rect>");
    return;
  }
  // Hue by class (spread so neighbouring classes differ), lightness by fill: 92% empty .. 35% full.
  const auto hue = static_cast<unsigned>((class_index * 47) % 360);
  const auto lightness = static_cast<unsigned>(92 - (capacity == 0 ? 0 : used * 57 / capacity));
  hsl(fill, hue, 70, lightness);
  rect(x, w, fill, stroke);
  put("><title>run ");
  put_dec(index);
  put(": class ");
  put_dec(class_index);
  put(", ");
  put_dec(block_size);
  put("-byte blocks, ");
  put_dec(used);
  put(" of ");
  put_dec(capacity);
  put(" in use</title></rect>");
}

void HeapMap::medium_segment(unsigned arena, uintptr_t address) {
  ++medium_segments_;
  row_address_ = address;
  begin_row(MapRow::kMedium);
  if (!writing_) return;
  row_label("medium", arena, true);
  if (format_ == TM_HEAP_MAP_SVG) {
    rect(0, static_cast<double>(kMediumHeaderSize) / kBytesPerPixel, "#555555", "#bbbbbb");
    put("><title>segment header</title></rect>");
  }
}

void HeapMap::medium_block(size_t offset, size_t size, bool used, size_t purged_bytes) {
  if (!writing_) {
    if (used) {
      medium_used_bytes_ += size;
    } else {
      medium_free_bytes_ += size;
      ++medium_free_blocks_;
      if (size > medium_largest_free_) medium_largest_free_ = size;
    }
    return;
  }
  if (used) {
    ++row_used_;
  } else {
    ++row_capacity_;  // text: free blocks of the row
  }
  if (format_ != TM_HEAP_MAP_SVG) {
    // Spread the block over the 64 KiB cells it covers; purged bytes count as purged space.
    for (size_t at = offset; at < offset + size;) {
      const size_t cell = at / kCellBytes;
      const size_t cell_end = (cell + 1) * kCellBytes;
      const size_t end = offset + size < cell_end ? offset + size : cell_end;
      if (cell < 64) {
        if (used) {
          cell_used_[cell] += end - at;
        } else if (purged_bytes * 2 >= size) {
          strip_[cell] = '_';  // a free block mostly purged
        }
      }
      at = end;
    }
    return;
  }
  const double x = static_cast<double>(offset) / kBytesPerPixel;
  const double w = static_cast<double>(size) / kBytesPerPixel;
  if (used) {
    // Hue by order of magnitude: 240 (blue) for 4 KiB and less .. 0 (red) for 4 MiB.
    unsigned log2 = 0;
    while (log2 < 63 && (size_t{2} << log2) <= size) ++log2;
    const int hue = 240 - (static_cast<int>(log2) - 12) * 24;
    char fill[32];
    hsl(fill, static_cast<unsigned>(hue < 0 ? 0 : (hue > 240 ? 240 : hue)), 65, 55);
    rect(x, w, fill, "#ffffff", "0.3");
    put("><title>block in use at +");
  } else {
    rect(x, w, "#ffffff", "#999999");
    put("><title>free block at +");
  }
  put_hex(offset);
  put(", ");
  put_size(size);
  if (!used && purged_bytes > 0) {
    put(", ");
    put_size(purged_bytes);
    put(" purged");
  }
  put("</title></rect>");
  if (!used && purged_bytes > 0) {
    const double pw = static_cast<double>(purged_bytes) / kBytesPerPixel;
    rect(x + (w - pw) / 2, pw, "#dddddd", nullptr);
    put("/>");
  }
}

void HeapMap::large_block(uintptr_t mapping, size_t mapping_size, size_t usable, size_t requested, unsigned pool) {
  ++large_blocks_;
  large_bytes_ += mapping_size;
  row_address_ = mapping;
  begin_row(MapRow::kLarge);
  if (!writing_) return;
  row_label("large", pool == 0 ? 0 : kMaxArenas + pool - 1, pool != 0);
  const bool svg = format_ == TM_HEAP_MAP_SVG;
  if (svg) {
    const double w = static_cast<double>(mapping_size) / kBytesPerPixel;
    const double used_w = static_cast<double>(requested) / kBytesPerPixel;
    rect(0, w > kBarWidth ? kBarWidth : w, "#d7bde2", "#8e44ad");
    put("/>");
    rect(0, used_w > kBarWidth ? kBarWidth : used_w, "#8e44ad", nullptr);
    put("/>");
    put("<text x=\"");
    put_dec(kNotesX);
    put("\" y=\"13\">");
  } else {
    put("| ");
  }
  put_size(mapping_size);
  put(" mapped, ");
  put_size(usable);
  put(" usable, ");
  put_size(requested);
  put(" requested");
  if (svg && mapping_size > kSegmentSize) put(" (bar cut at 4 MiB)");
  put(svg ? "</text></g>\n" : "\n");
}

void HeapMap::pooled(uintptr_t address, size_t size, bool purged) {
  ++pooled_;
  pooled_bytes_ += size;
  if (purged) pooled_purged_bytes_ += size;
  row_address_ = address;
  begin_row(MapRow::kPooled);
  if (!writing_) return;
  row_label("pooled", 0, false);
  const bool svg = format_ == TM_HEAP_MAP_SVG;
  if (svg) {
    const double w = static_cast<double>(size) / kBytesPerPixel;
    rect(0, w > kBarWidth ? kBarWidth : w, purged ? "#dddddd" : "#b0b0b0", "#999999");
    put("/><text x=\"");
    put_dec(kNotesX);
    put("\" y=\"13\">");
  } else {
    put("| ");
  }
  put_size(size);
  put(purged ? " free mapping, purged" : " free mapping, resident");
  put(svg ? "</text></g>\n" : "\n");
}

void HeapMap::guarded_region(uintptr_t address) {
  row_address_ = address;
  begin_row(MapRow::kGuarded);
  if (writing_) row_label("sampled", 0, false);
}

void HeapMap::guarded_slot(bool live, bool freed, size_t usable) {
  const size_t index = slot_index_++;
  if (!writing_) return;
  if (live) ++row_used_;
  if (freed) ++row_capacity_;
  if (format_ != TM_HEAP_MAP_SVG) {
    put_char(live ? 'L' : (freed ? 'f' : '.'));
    return;
  }
  const double w = static_cast<double>(kGuardedSlotSize) / kBytesPerPixel;
  rect(static_cast<double>(index) * w, w, live ? "#e74c3c" : (freed ? "#f5b7b1" : "#ffffff"), "#bbbbbb");
  put("><title>slot ");
  put_dec(index);
  put(live ? ": live block, " : (freed ? ": freed block, " : ": unused"));
  if (live || freed) {
    put_size(usable);
    put(" usable");
  }
  put("</title></rect>");
}

void HeapMap::end_row() {
  if (!writing_) return;
  const bool svg = format_ == TM_HEAP_MAP_SVG;
  if (!svg && row_ == MapRow::kMedium) {
    // The strip: header cell, then each 64 KiB cell's share in use (or '_' where mostly purged).
    for (size_t cell = 0; cell < 64; ++cell) {
      char c = fill_char(cell_used_[cell], kCellBytes);
      if (cell * kCellBytes < kMediumHeaderSize) c = '#';
      if (c == ' ' && strip_[cell] == '_') c = '_';
      put_char(c);
    }
    std::memset(strip_, 0, sizeof strip_);
  }
  if (svg) {
    put("<text x=\"");
    put_dec(kNotesX);
    put("\" y=\"13\">");
  } else {
    put("| ");
  }
  if (row_ == MapRow::kSmall) {
    put_dec(row_used_);
    put(" blocks in use of ");
    put_dec(row_capacity_);
  } else if (row_ == MapRow::kMedium) {
    put_dec(row_used_);
    put(" blocks in use, ");
    put_dec(row_capacity_);
    put(" free");
  } else if (row_ == MapRow::kGuarded) {
    put_dec(row_used_);
    put(" live, ");
    put_dec(row_capacity_);
    put(" freed");
  }
  put(svg ? "</text></g>\n" : "\n");
}

}  // namespace tmalloc

using namespace tmalloc;

extern "C" TM_EXPORT int tm_heap_map(int fd, int format) {
  if (fd < 0 || (format != TM_HEAP_MAP_TEXT && format != TM_HEAP_MAP_SVG)) {
    errno = EINVAL;
    return -1;
  }
  HeapMap map(fd, format);
  tm_stats_t stats;
  tm_stats(&stats);  // before the locks: it takes them itself
  // The global lock order (fork.cc): the sampled-block lock, the heap locks, the pool lock.
  guarded_lock();
  const unsigned arenas = heap_lock_all();
  pool_lock();
  for (int pass = 0; pass < 2; ++pass) {
    map.begin_pass(pass == 1);
    if (pass == 1) map.write_header(stats.mapped_bytes, stats.committed_bytes, stats.requested_bytes);
    small_map(map, arenas);
    medium_map(map, arenas);
    large_map(map);
    pool_map(map);
    guarded_map(map);
  }
  map.write_footer();
  pool_unlock();
  heap_unlock_all(arenas);
  guarded_unlock();
  return map.ok() ? 0 : -1;
}

namespace {

// TINYMALLOC_HEAPMAP=path: the heap map at exit (or when the library is unloaded), SVG when
// the path ends in ".svg", text otherwise; tools/tm-heapmap sets it for a program it runs.
// A destructor function like the statistics report: nothing runs at start-up.
__attribute__((destructor)) void heap_map_at_exit() {
  const char* path = getenv("TINYMALLOC_HEAPMAP");  // getenv does not allocate
  if (path == nullptr || *path == '\0') return;
  const int fd = ::open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return;
  const size_t length = std::strlen(path);
  const bool svg = length >= 4 && std::strcmp(path + length - 4, ".svg") == 0;
  (void)tm_heap_map(fd, svg ? TM_HEAP_MAP_SVG : TM_HEAP_MAP_TEXT);
  ::close(fd);
}

}  // namespace
