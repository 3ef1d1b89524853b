// Run-time options: TINYMALLOC_OPTIONS="name=value,..." read once at start-up without
// allocating, and tm_option_get / tm_option_set for programs (see README "Options").
#pragma once

#include <cstddef>

namespace tmalloc {

// Every option; the table in options.cc gives each one's name, default and range.
enum class OptionId : unsigned {
  kArenas,          // number of arenas; 0 = one per CPU (capped at kMaxArenas)
  kArenaSelect,     // kArenaSelectCpu (sched_getcpu) or kArenaSelectThread
  kThreadCache,     // 1 = per-thread caches of small blocks, 0 = every operation locks
  kPurgeDelayMs,    // delay before free segment memory is returned to the OS
  kPoolSegments,    // free mappings the global pool keeps mapped (purged) before unmapping
  kArenaRetain,     // empty segments an arena keeps before moving them to the global pool
  kDebug,           // debug mode: canaries, fill, allocation sites
  kLeaks,           // leak report at exit
  kLeakExitCode,    // exit status forced when leaks are found (0 = leave it)
  kStats,           // 0 = off, 1 = text table at exit, 2 = JSON at exit
  kVerbose,         // 1 = print the effective options at start-up
  kTrackRequested,  // 1 = exact requested bytes for small blocks (every op out of line)
  kMediumCache,     // 1 = per-thread caches of medium blocks up to 64 KiB (medium_cache.h)
  kSampleRate,      // about one allocation in N on guard pages (guarded.h); 0 = off
  kReport,          // 0 = reports as text lines, 1 = each also as one JSON line (error.h)
  kTraceMaxMb,      // bound of the trace file (trace=PATH, trace.h), MiB
  kCount
};

inline constexpr long kArenaSelectCpu = 0;
inline constexpr long kArenaSelectThread = 1;

// Reads TINYMALLOC_OPTIONS on the first call (later calls return at once). Thread-safe and
// reentrancy-safe; never allocates; warnings go to stderr with write(2).
void options_init();

// The path of the trace option (TINYMALLOC_OPTIONS "trace=PATH", the one option whose value
// is text), or nullptr when it was not given (options_init has run).
const char* options_trace_path();
// Current value of an option (options_init has run).
long option(OptionId id);

// Remembers the current values as the ones the runtime started with (runtime init, after the
// environment and any tm_option_set made before the first allocation) and puts them back
// (tm_test_reset; the caller updates debug mode's routing).
void options_snapshot_initial();
void options_restore_initial();

// ---- Table and parser (options.cc; also used by tests/test_options.cc, fuzz/options.cc) ----

inline constexpr size_t kOptionCount = static_cast<size_t>(OptionId::kCount);

// How an option's value is written: a decimal integer, a boolean (0/1/true/false/yes/no/
// on/off), or one of a few symbolic names (decimal values in range are accepted too).
enum class OptionKind : unsigned { kInteger, kBool, kNamed };

// A symbolic value of a kNamed option (e.g. stats=json is 2).
struct OptionValueName {
  const char* name;
  long value;
};

// One row of the option table. Every range is non-negative: min_value >= 0.
struct OptionInfo {
  const char* name;  // lower-case name in TINYMALLOC_OPTIONS and tm_option_get/set
  long default_value;
  long min_value;
  long max_value;
  OptionKind kind;
  const OptionValueName* value_names;  // kNamed: value_name_count entries; else nullptr
  size_t value_name_count;
  const char* description;  // one line, for tools and --help texts
};

// Row `index` (0 .. kOptionCount-1) of the table in OptionId order; nullptr past the end.
const OptionInfo* option_info(size_t index);

// Index of the option called name[0..length) (ASCII case-insensitive), or kOptionCount.
size_t option_index(const char* name, size_t length);

// Symbolic name of `value` for option `index` (stats 2 -> "json"), or nullptr when it has none.
const char* option_value_name(size_t index, long value);

// Writes every option's default into values[0 .. kOptionCount-1].
void options_defaults(long* values);

// Applies the items of a TINYMALLOC_OPTIONS string to values[0 .. kOptionCount-1] (which
// must hold valid values, e.g. from options_defaults); later items win. Reads exactly
// text[0 .. length): the text need not be NUL-terminated and may contain any bytes. Items
// are comma-separated `name=value`, blanks around names and values are ignored, so are
// empty items. An item with no '=', an unknown name, or a bad or out-of-range value
// changes nothing and writes one warning line to warning_fd (none when warning_fd < 0),
// e.g. "tinymalloc: warning: unknown option 'foo' in TINYMALLOC_OPTIONS (ignored)".
// `trace=PATH` is accepted and left to options_trace_path. Returns the number of such items.
// Never allocates.
size_t options_parse(const char* text, size_t length, long* values, int warning_fd);

}  // namespace tmalloc
