// tm_stats_print: the statistics as a readable table or as JSON, written line by line to a
// file descriptor with no allocation (usable from malloc_stats and at exit).
#include <unistd.h>

#include "options.h"
#include "platform.h"
#include "size_class.h"
#include "text_buffer.h"
#include "tinymalloc.h"

namespace tmalloc {

namespace {

// Writes a whole buffer to fd, retrying short writes.
void write_all(int fd, const TextBuffer& line) {
  const char* text = line.c_str();
  size_t length = line.size();
  while (length > 0) {
    const ssize_t written = ::write(fd, text, length);
    if (written <= 0) return;
    text += written;
    length -= static_cast<size_t>(written);
  }
}

// Ratio a / b with two decimals, as text.
TextBuffer& ratio(TextBuffer& out, size_t a, size_t b) {
  if (b == 0) return out.str("-");
  const uint64_t hundredths = static_cast<uint64_t>(a) * 100u / b;
  out.dec(hundredths / 100).str(".");
  if (hundredths % 100 < 10) out.str("0");
  return out.dec(hundredths % 100);
}

// One "name value" row of the text table.
void text_row(int fd, const char* name, size_t value) {
  TextBuffer line;
  line.str("  ").str(name).str(": ").dec(value).str("\n");
  write_all(fd, line);
}

// One `"name": value` member of the JSON object (`last` ends the object's member list).
void json_member(int fd, const char* name, size_t value, bool last = false) {
  TextBuffer line;
  line.str("  \"").str(name).str("\": ").dec(value).str(last ? "\n" : ",\n");
  write_all(fd, line);
}

// The scalar fields of tm_stats_t, in print order.
struct Field {
  const char* name;
  size_t tm_stats_t::*member;
};
constexpr Field kFields[] = {
    {"live_blocks", &tm_stats_t::live_blocks},
    {"requested_bytes", &tm_stats_t::requested_bytes},
    {"usable_bytes", &tm_stats_t::usable_bytes},
    {"mapped_bytes", &tm_stats_t::mapped_bytes},
    {"committed_bytes", &tm_stats_t::committed_bytes},
    {"peak_mapped_bytes", &tm_stats_t::peak_mapped_bytes},
    {"peak_requested_bytes", &tm_stats_t::peak_requested_bytes},
    {"small_live_blocks", &tm_stats_t::small_live_blocks},
    {"medium_live_blocks", &tm_stats_t::medium_live_blocks},
    {"large_live_blocks", &tm_stats_t::large_live_blocks},
    {"medium_free_blocks", &tm_stats_t::medium_free_blocks},
    {"medium_free_bytes", &tm_stats_t::medium_free_bytes},
    {"medium_largest_free", &tm_stats_t::medium_largest_free},
    {"small_segments", &tm_stats_t::small_segments},
    {"medium_segments", &tm_stats_t::medium_segments},
    {"large_mappings", &tm_stats_t::large_mappings},
    {"os_map_calls", &tm_stats_t::os_map_calls},
    {"os_unmap_calls", &tm_stats_t::os_unmap_calls},
    {"os_purge_calls", &tm_stats_t::os_purge_calls},
    {"arenas_used", &tm_stats_t::arenas_used},
    {"thread_caches", &tm_stats_t::thread_caches},
    {"cached_blocks", &tm_stats_t::cached_blocks},
    {"remote_blocks", &tm_stats_t::remote_blocks},
    {"pool_segments", &tm_stats_t::pool_segments},
    {"pool_purged_segments", &tm_stats_t::pool_purged_segments},
};

// The text table: totals, then one row per small class with live blocks.
void print_text(int fd, const tm_stats_t& s) {
  write_all(fd, TextBuffer().str("tinymalloc statistics\n"));
  for (const Field& field : kFields) text_row(fd, field.name, s.*field.member);
  TextBuffer summary;
  summary.str("  fragmentation (mapped / usable): ");
  ratio(summary, s.mapped_bytes, s.usable_bytes).str("; usable / requested: ");
  ratio(summary, s.usable_bytes, s.requested_bytes).str("\n");
  write_all(fd, summary);
  write_all(fd, TextBuffer().str("  class    size      live   usable bytes\n"));
  for (size_t c = 0; c < TM_SMALL_CLASS_COUNT; ++c) {
    if (s.class_live_blocks[c] == 0) continue;
    TextBuffer row;
    row.str("  ").dec(c).str("\t").dec(class_size(c)).str("\t").dec(s.class_live_blocks[c]);
    row.str("\t").dec(s.class_live_blocks[c] * class_size(c)).str("\n");
    write_all(fd, row);
  }
}

// The JSON object: every field, and the live blocks per class as an array.
void print_json(int fd, const tm_stats_t& s) {
  write_all(fd, TextBuffer().str("{\n"));
  for (const Field& field : kFields) json_member(fd, field.name, s.*field.member);
  write_all(fd, TextBuffer().str("  \"class_live_blocks\": ["));
  for (size_t c = 0; c < TM_SMALL_CLASS_COUNT; ++c) {
    TextBuffer item;
    item.dec(s.class_live_blocks[c]).str(c + 1 < TM_SMALL_CLASS_COUNT ? "," : "");
    write_all(fd, item);
  }
  write_all(fd, TextBuffer().str("]\n}\n"));
}

// At exit (or when the library is unloaded): the `stats` option's report on stderr. A
// destructor function, so nothing is registered (atexit may allocate) and nothing runs at
// start-up.
__attribute__((destructor)) void print_stats_at_exit() {
  const long mode = option(OptionId::kStats);
  if (mode != 0) tm_stats_print(STDERR_FILENO, mode == 2 ? 1 : 0);
}

}  // namespace

}  // namespace tmalloc

extern "C" TM_EXPORT void tm_stats_print(int fd, int json) {
  tm_stats_t s;
  tm_stats(&s);
  if (json != 0) {
    tmalloc::print_json(fd, s);
  } else {
    tmalloc::print_text(fd, s);
  }
}
