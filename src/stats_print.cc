// tm_stats_print: the statistics as a readable table or as JSON, written a block at a time to
// a file descriptor with no allocation (usable from malloc_stats and at exit).
#include <unistd.h>

#include "config.h"
#include "introspection.h"
#include "options.h"
#include "platform.h"
#include "size_class.h"
#include "text_buffer.h"
#include "tinymalloc.h"

namespace tmalloc {

namespace {

// Ratio a / b with two decimals, as text.
TextBuffer& ratio(TextBuffer& out, size_t a, size_t b) {
  if (b == 0) return out.str("-");
  const uint64_t hundredths = static_cast<uint64_t>(a) * 100u / b;
  out.dec(hundredths / 100).str(".");
  if (hundredths % 100 < 10) out.str("0");
  return out.dec(hundredths % 100);
}

// One "name value" row of the text table.
void text_row(FdWriter& out, const char* name, size_t value) {
  TextBuffer line;
  line.str("  ").str(name).str(": ").dec(value).str("\n");
  out.put(line);
}

// One `"name": value` member of the JSON object (`last` ends the object's member list).
void json_member(FdWriter& out, const char* name, size_t value, bool last = false) {
  TextBuffer line;
  line.str("  \"").str(name).str("\": ").dec(value).str(last ? "\n" : ",\n");
  out.put(line);
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
    {"medium_cached_blocks", &tm_stats_t::medium_cached_blocks},
    {"medium_cached_bytes", &tm_stats_t::medium_cached_bytes},
};

// Appends `text` right-aligned in a field of `width` characters (preceded by a space).
TextBuffer& column(TextBuffer& out, const TextBuffer& text, size_t width) {
  out.str(" ");
  for (size_t i = text.size(); i < width; ++i) out.str(" ");
  return out.str(text.c_str());
}

// Appends a number right-aligned in a field of `width` characters.
TextBuffer& column(TextBuffer& out, uint64_t value, size_t width) {
  TextBuffer text;
  text.dec(value);
  return column(out, text, width);
}

// Appends the ratio a / b right-aligned in a field of `width` characters ("-" when b = 0).
TextBuffer& ratio_column(TextBuffer& out, size_t a, size_t b, size_t width) {
  TextBuffer text;
  ratio(text, a, b);
  return column(out, text, width);
}

// Appends `"name": value` for a JSON ratio: a number, or null when b = 0.
TextBuffer& json_ratio(TextBuffer& out, const char* name, size_t a, size_t b) {
  out.str(", \"").str(name).str("\": ");
  return b == 0 ? out.str("null") : ratio(out, a, b);
}

// Whether a class row is worth printing: it has, or once had, blocks.
bool class_in_use(const tm_class_stats_t& c) { return c.live_blocks != 0 || c.peak_blocks != 0; }

// Whether an arena slot holds anything (slots below a used one may never have been touched).
bool arena_in_use(const tm_arena_stats_t& a) {
  return a.small_segments != 0 || a.medium_segments != 0 || a.small_live_blocks != 0 || a.medium_live_blocks != 0 ||
         a.small_remote_blocks != 0;
}

// Usable bytes of an arena's live blocks.
size_t arena_usable(const tm_arena_stats_t& a) { return a.small_usable_bytes + a.medium_usable_bytes; }

// Column widths of the class table (header names must fit).
constexpr size_t kClassWidths[] = {5, 6, 10, 10, 8, 8, 13, 6, 11, 7};
constexpr const char* kClassHeads[] = {"class",  "size",         "live", "peak",      "cached",
                                       "remote", "usable bytes", "runs", "run bytes", "frag"};
// Column widths of the arena table.
constexpr size_t kArenaWidths[] = {5, 10, 11, 12, 12, 11, 13, 12, 14, 12, 7};
constexpr const char* kArenaHeads[] = {"arena",         "small seg",   "medium seg",   "mapped",
                                       "committed",     "small live",  "small usable", "medium live",
                                       "medium usable", "medium free", "frag"};

// A header line of right-aligned column names.
template <size_t N>
void header_line(FdWriter& out, const char* const (&heads)[N], const size_t (&widths)[N]) {
  TextBuffer line;
  line.str(" ");
  for (size_t i = 0; i < N; ++i) column(line, TextBuffer().str(heads[i]), widths[i]);
  out.put(line.str("\n"));
}

// The text form: totals, then one row per small class that ever had blocks, then one row
// per arena slot in use.
void print_text(FdWriter& out, const tm_stats_t& s, const tm_class_stats_t* classes, const tm_arena_stats_t* arenas,
                size_t arena_rows) {
  out.put(TextBuffer().str("tinymalloc statistics\n"));
  for (const Field& field : kFields) text_row(out, field.name, s.*field.member);
  TextBuffer summary;
  summary.str("  fragmentation (mapped / usable): ");
  ratio(summary, s.mapped_bytes, s.usable_bytes).str("; usable / requested: ");
  ratio(summary, s.usable_bytes, s.requested_bytes).str("\n");
  out.put(summary);

  out.put(
      TextBuffer().str("size classes (peak: high-water mark of blocks out of runs, cached ones included; "
                       "frag: run bytes / usable bytes)\n"));
  header_line(out, kClassHeads, kClassWidths);
  for (size_t c = 0; c < TM_SMALL_CLASS_COUNT; ++c) {
    const tm_class_stats_t& k = classes[c];
    if (!class_in_use(k)) continue;
    const size_t* w = kClassWidths;
    TextBuffer row;
    row.str(" ");
    column(row, c, w[0]);
    column(row, k.size, w[1]);
    column(row, k.live_blocks, w[2]);
    column(row, k.peak_blocks, w[3]);
    column(row, k.cached_blocks, w[4]);
    column(row, k.remote_blocks, w[5]);
    column(row, k.usable_bytes, w[6]);
    column(row, k.runs, w[7]);
    column(row, k.run_bytes, w[8]);
    ratio_column(row, k.run_bytes, k.usable_bytes, w[9]);
    out.put(row.str("\n"));
  }

  out.put(
      TextBuffer().str("arenas (segments, bytes, live blocks; slots from 64 are memory pools; "
                       "frag: committed / usable bytes)\n"));
  header_line(out, kArenaHeads, kArenaWidths);
  for (size_t i = 0; i < arena_rows; ++i) {
    const tm_arena_stats_t& a = arenas[i];
    if (!arena_in_use(a)) continue;
    const size_t* w = kArenaWidths;
    TextBuffer row;
    row.str(" ");
    column(row, a.index, w[0]);
    column(row, a.small_segments, w[1]);
    column(row, a.medium_segments, w[2]);
    column(row, a.mapped_bytes, w[3]);
    column(row, a.committed_bytes, w[4]);
    column(row, a.small_live_blocks, w[5]);
    column(row, a.small_usable_bytes, w[6]);
    column(row, a.medium_live_blocks, w[7]);
    column(row, a.medium_usable_bytes, w[8]);
    column(row, a.medium_free_bytes, w[9]);
    ratio_column(row, a.committed_bytes, arena_usable(a), w[10]);
    out.put(row.str("\n"));
  }
}

// The JSON object: every field, the live blocks per class as an array, then "classes" (one
// object per small class) and "arenas" (one object per arena slot in use).
void print_json(FdWriter& out, const tm_stats_t& s, const tm_class_stats_t* classes, const tm_arena_stats_t* arenas,
                size_t arena_rows) {
  out.put(TextBuffer().str("{\n"));
  for (const Field& field : kFields) json_member(out, field.name, s.*field.member);
  out.put(TextBuffer().str("  \"class_live_blocks\": ["));
  for (size_t c = 0; c < TM_SMALL_CLASS_COUNT; ++c) {
    TextBuffer item;
    item.dec(s.class_live_blocks[c]).str(c + 1 < TM_SMALL_CLASS_COUNT ? "," : "");
    out.put(item);
  }
  out.put(TextBuffer().str("],\n  \"classes\": [\n"));
  for (size_t c = 0; c < TM_SMALL_CLASS_COUNT; ++c) {
    const tm_class_stats_t& k = classes[c];
    TextBuffer item;
    item.str("    {\"class\": ").dec(c).str(", \"size\": ").dec(k.size);
    item.str(", \"live\": ").dec(k.live_blocks).str(", \"peak\": ").dec(k.peak_blocks);
    item.str(", \"cached\": ").dec(k.cached_blocks).str(", \"remote\": ").dec(k.remote_blocks);
    item.str(", \"usable\": ").dec(k.usable_bytes).str(", \"runs\": ").dec(k.runs);
    item.str(", \"run_bytes\": ").dec(k.run_bytes);
    json_ratio(item, "fragmentation", k.run_bytes, k.usable_bytes);
    out.put(item.str(c + 1 < TM_SMALL_CLASS_COUNT ? "},\n" : "}\n"));
  }
  out.put(TextBuffer().str("  ],\n  \"arenas\": ["));
  bool first = true;
  for (size_t i = 0; i < arena_rows; ++i) {
    const tm_arena_stats_t& a = arenas[i];
    if (!arena_in_use(a)) continue;
    TextBuffer item;
    item.str(first ? "\n    {\"arena\": " : ",\n    {\"arena\": ").dec(a.index);
    item.str(", \"pool\": ").str(a.index >= kMaxArenas ? "true" : "false");
    item.str(", \"small_segments\": ").dec(a.small_segments).str(", \"medium_segments\": ").dec(a.medium_segments);
    item.str(", \"mapped\": ").dec(a.mapped_bytes).str(", \"committed\": ").dec(a.committed_bytes);
    item.str(", \"small_live\": ").dec(a.small_live_blocks).str(", \"small_usable\": ").dec(a.small_usable_bytes);
    item.str(", \"small_remote\": ").dec(a.small_remote_blocks);
    item.str(", \"medium_live\": ").dec(a.medium_live_blocks);
    item.str(", \"medium_usable\": ").dec(a.medium_usable_bytes);
    item.str(", \"medium_free_blocks\": ").dec(a.medium_free_blocks);
    item.str(", \"medium_free_bytes\": ").dec(a.medium_free_bytes);
    json_ratio(item, "fragmentation", a.committed_bytes, arena_usable(a)).str("}");
    out.put(item);
    first = false;
  }
  out.put(TextBuffer().str(first ? "]\n}\n" : "\n  ]\n}\n"));
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

// One snapshot, printed as text or JSON (see tinymalloc.h). The tables live on the stack
// (about 16 KiB): nothing is allocated.
extern "C" TM_EXPORT void tm_stats_print(int fd, int json) {
  tm_stats_t s;
  tm_class_stats_t classes[TM_SMALL_CLASS_COUNT];
  tm_arena_stats_t arenas[TM_ARENA_SLOTS];
  const size_t used = tmalloc::stats_snapshot(&s, classes, arenas, TM_ARENA_SLOTS);
  const size_t rows = used < TM_ARENA_SLOTS ? used : TM_ARENA_SLOTS;
  tmalloc::FdWriter out(fd);  // written a block at a time, the rest when it goes out of scope
  if (json != 0) {
    tmalloc::print_json(out, s, classes, arenas, rows);
  } else {
    tmalloc::print_text(out, s, classes, arenas, rows);
  }
}
