// Run-time options (see options.h and README "Options"): the option table, the
// TINYMALLOC_OPTIONS parser, the one-time read of the environment and tm_option_*.
//
// This runs inside the allocator, possibly from the first malloc of the process: no heap,
// no global constructors (constinit tables and atomics), messages built in a TextBuffer and
// written with write(2).
#include "options.h"

#include <pthread.h>
#include <sched.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <iterator>
#include <utility>

#include "config.h"
#include "debug.h"
#include "guarded.h"
#include "init_once.h"
#include "platform.h"
#include "text_buffer.h"
#include "thread_cache.h"
#include "tinymalloc.h"

namespace tmalloc {

namespace {

constexpr OptionValueName kArenaSelectNames[] = {{"cpu", kArenaSelectCpu}, {"thread", kArenaSelectThread}};
constexpr OptionValueName kStatsNames[] = {{"off", 0}, {"text", 1}, {"json", 2}};
constexpr OptionValueName kReportNames[] = {{"text", 0}, {"json", 1}};
// debug: a boolean (its first names are the ones printed) or guard.
constexpr OptionValueName kDebugNames[] = {{"off", 0}, {"on", 1}, {"guard", kDebugGuard}, {"false", 0}, {"true", 1},
                                           {"no", 0},  {"yes", 1}};

constexpr OptionInfo kOptions[kOptionCount] = {
    {"arenas", 0, 0, kMaxArenas, OptionKind::kInteger, nullptr, 0, "number of arenas; 0 = one per CPU (at most 64)"},
    {"arena_select", kArenaSelectCpu, 0, 1, OptionKind::kNamed, kArenaSelectNames, std::size(kArenaSelectNames),
     "how a thread picks its arena: cpu (the CPU it runs on) or thread (fixed per thread)"},
    {"thread_cache", 1, 0, 1, OptionKind::kBool, nullptr, 0,
     "per-thread caches of small blocks; 0 = every operation takes the arena lock"},
    {"purge_delay_ms", 1000, 0, 3600000, OptionKind::kInteger, nullptr, 0,
     "milliseconds before free segment memory is returned to the OS"},
    {"pool_segments", 64, 0, 4096, OptionKind::kInteger, nullptr, 0,
     "free mappings (empty segments, large blocks' mappings) the global pool keeps before unmapping"},
    {"arena_retain", 1, 0, 64, OptionKind::kInteger, nullptr, 0,
     "empty segments an arena keeps before moving them to the global pool"},
    {"debug", 0, 0, kDebugGuard, OptionKind::kNamed, kDebugNames, std::size(kDebugNames),
     "debug mode: canaries, fill patterns, allocation sites; guard: every block up to 56 KiB on guard pages"},
    {"leaks", 0, 0, 1, OptionKind::kBool, nullptr, 0, "report the blocks still allocated at exit"},
    {"leak_exitcode", 0, 0, 255, OptionKind::kInteger, nullptr, 0,
     "exit status forced when leaks are found; 0 = leave the status alone"},
    {"stats", 0, 0, 2, OptionKind::kNamed, kStatsNames, std::size(kStatsNames),
     "statistics at exit: off, text (a table) or json"},
    {"verbose", 0, 0, 1, OptionKind::kBool, nullptr, 0, "print the effective options at start-up"},
    {"track_requested", 0, 0, 1, OptionKind::kBool, nullptr, 0,
     "exact requested bytes of small blocks in the statistics (slower: no inline fast path); "
     "read when the allocator starts"},
    {"medium_cache", 1, 0, 1, OptionKind::kBool, nullptr, 0,
     "per-thread caches of medium blocks up to 64 KiB (with thread_cache); 0 = medium frees coalesce at once"},
    {"sample_rate", 0, 0, 1000000000, OptionKind::kInteger, nullptr, 0,
     "about one allocation in N (up to 56 KiB) placed on guard pages: overflows, underflows and uses after "
     "free fault and are reported; 0 = off"},
    {"report", 0, 0, 1, OptionKind::kNamed, kReportNames, std::size(kReportNames),
     "misuse and leak reports: text lines on stderr, or json: each also as one JSON line"},
    {"trace_max_mb", 256, 1, 1048576, OptionKind::kInteger, nullptr, 0,
     "bound of the trace=PATH file in MiB: a longer run keeps its start and thinned windows of the rest"},
};

constexpr size_t index_of(OptionId id) { return static_cast<size_t>(id); }

constexpr bool same_text(const char* a, const char* b) {
  while (*a != '\0' && *a == *b) {
    ++a;
    ++b;
  }
  return *a == *b;
}

// The table is in OptionId order and self-consistent.
static_assert(same_text(kOptions[index_of(OptionId::kArenas)].name, "arenas"));
static_assert(same_text(kOptions[index_of(OptionId::kArenaSelect)].name, "arena_select"));
static_assert(same_text(kOptions[index_of(OptionId::kThreadCache)].name, "thread_cache"));
static_assert(same_text(kOptions[index_of(OptionId::kPurgeDelayMs)].name, "purge_delay_ms"));
static_assert(same_text(kOptions[index_of(OptionId::kPoolSegments)].name, "pool_segments"));
static_assert(same_text(kOptions[index_of(OptionId::kArenaRetain)].name, "arena_retain"));
static_assert(same_text(kOptions[index_of(OptionId::kDebug)].name, "debug"));
static_assert(same_text(kOptions[index_of(OptionId::kLeaks)].name, "leaks"));
static_assert(same_text(kOptions[index_of(OptionId::kLeakExitCode)].name, "leak_exitcode"));
static_assert(same_text(kOptions[index_of(OptionId::kStats)].name, "stats"));
static_assert(same_text(kOptions[index_of(OptionId::kVerbose)].name, "verbose"));
static_assert(same_text(kOptions[index_of(OptionId::kTrackRequested)].name, "track_requested"));
static_assert(same_text(kOptions[index_of(OptionId::kMediumCache)].name, "medium_cache"));
static_assert(same_text(kOptions[index_of(OptionId::kSampleRate)].name, "sample_rate"));
static_assert(same_text(kOptions[index_of(OptionId::kReport)].name, "report"));
static_assert(same_text(kOptions[index_of(OptionId::kTraceMaxMb)].name, "trace_max_mb"));

constexpr bool table_is_consistent() {
  for (const OptionInfo& o : kOptions) {
    if (o.min_value < 0 || o.min_value > o.max_value) return false;
    if (o.default_value < o.min_value || o.default_value > o.max_value) return false;
    if (o.kind == OptionKind::kBool && (o.min_value != 0 || o.max_value != 1)) return false;
    const bool has_names = o.value_names != nullptr && o.value_name_count > 0;
    if ((o.kind == OptionKind::kNamed) != has_names) return false;
    for (size_t i = 0; has_names && i < o.value_name_count; ++i) {
      if (o.value_names[i].value < o.min_value || o.value_names[i].value > o.max_value) return false;
    }
  }
  return true;
}
static_assert(table_is_consistent(), "option table: bad range, default or symbolic value");

// ---- Current values and the one-time read of TINYMALLOC_OPTIONS ----

template <size_t... I>
struct AtomicValues {
  std::atomic<long> v[sizeof...(I)] = {kOptions[I].default_value...};
};
template <size_t... I>
AtomicValues<I...> make_atomic_values(std::index_sequence<I...>);
using OptionValues = decltype(make_atomic_values(std::make_index_sequence<kOptionCount>{}));

constinit OptionValues g_values;
// The values in force when the runtime initialised (options_snapshot_initial), which
// tm_test_reset restores.
constinit OptionValues g_initial_values;

// The environment is read once (init_once.h: a fork child takes over a read that a thread
// of its parent had begun).
constexpr int kDone = kInitDone;
constinit std::atomic<int> g_state{kInitNotStarted};
// The thread that reads the environment: a call from it while it reads (reentrancy) returns
// at once instead of waiting for itself.
constinit std::atomic<pthread_t> g_reader{pthread_t{}};

// The one option whose value is text: trace=PATH (trace.h), written once by read_environment.
constexpr const char* kTraceName = "trace";
constinit char g_trace_path[4096] = {};

// ---- Text helpers (never read outside [p, p + n)) ----

struct Span {
  const char* p;
  size_t n;
};

bool is_blank(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'; }

char lower(char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; }

Span trim(Span s) {
  while (s.n > 0 && is_blank(s.p[0])) {
    ++s.p;
    --s.n;
  }
  while (s.n > 0 && is_blank(s.p[s.n - 1])) --s.n;
  return s;
}

// s equals the NUL-terminated word, ignoring ASCII case.
bool equals_word(Span s, const char* word) {
  size_t i = 0;
  for (; i < s.n; ++i) {
    if (word[i] == '\0' || lower(s.p[i]) != word[i]) return false;
  }
  return word[i] == '\0';
}

// A decimal number without sign; false when empty, not all digits or above LONG_MAX.
bool parse_decimal(Span s, long* out) {
  if (s.n == 0) return false;
  long value = 0;
  for (size_t i = 0; i < s.n; ++i) {
    const char c = s.p[i];
    if (c < '0' || c > '9') return false;
    const long digit = c - '0';
    if (value > (LONG_MAX - digit) / 10) return false;
    value = value * 10 + digit;
  }
  *out = value;
  return true;
}

bool parse_value(const OptionInfo& o, Span s, long* out) {
  long value = 0;
  bool ok = false;
  if (o.kind == OptionKind::kBool) {
    if (equals_word(s, "true") || equals_word(s, "yes") || equals_word(s, "on")) {
      value = 1;
      ok = true;
    } else if (equals_word(s, "false") || equals_word(s, "no") || equals_word(s, "off")) {
      value = 0;
      ok = true;
    }
  } else if (o.kind == OptionKind::kNamed) {
    for (size_t i = 0; i < o.value_name_count && !ok; ++i) {
      if (equals_word(s, o.value_names[i].name)) {
        value = o.value_names[i].value;
        ok = true;
      }
    }
  }
  if (!ok) ok = parse_decimal(s, &value);
  if (!ok || value < o.min_value || value > o.max_value) return false;
  *out = value;
  return true;
}

// Quoted item text in warnings: at most this many output characters, then "...".
constexpr size_t kQuoteMax = 64;

// Writes s into out (NUL-terminated, at most kQuoteMax + 4 bytes used) with every byte that
// is not printable ASCII, and the quote and backslash, escaped as \xNN.
void escape_into(Span s, char (&out)[kQuoteMax + 8]) {
  size_t o = 0;
  size_t i = 0;
  for (; i < s.n; ++i) {
    const auto c = static_cast<unsigned char>(s.p[i]);
    const bool plain = c >= 0x20 && c < 0x7f && c != '\'' && c != '\\';
    const size_t need = plain ? 1 : 4;
    if (o + need > kQuoteMax) break;
    if (plain) {
      out[o++] = static_cast<char>(c);
    } else {
      out[o++] = '\\';
      out[o++] = 'x';
      out[o++] = "0123456789abcdef"[c >> 4];
      out[o++] = "0123456789abcdef"[c & 15];
    }
  }
  if (i < s.n) {
    out[o++] = '.';
    out[o++] = '.';
    out[o++] = '.';
  }
  out[o] = '\0';
}

void append_quoted(TextBuffer& b, Span s) {
  char text[kQuoteMax + 8];
  escape_into(s, text);
  b.str("'").str(text).str("'");
}

void append_value(TextBuffer& b, size_t index, long value) {
  const char* name = option_value_name(index, value);
  if (name != nullptr) {
    b.str(name);
  } else {
    b.dec(static_cast<uint64_t>(value));
  }
}

// What a value of option o may be, for warnings: "0..64", "0/1/true/false/yes/no/on/off",
// "cpu, thread or 0..1".
void append_expected(TextBuffer& b, const OptionInfo& o) {
  if (o.kind == OptionKind::kBool) {
    b.str("0/1/true/false/yes/no/on/off");
    return;
  }
  for (size_t i = 0; i < o.value_name_count; ++i)
    b.str(o.value_names[i].name).str(i + 1 < o.value_name_count ? ", " : " or ");
  b.dec(static_cast<uint64_t>(o.min_value)).str("..").dec(static_cast<uint64_t>(o.max_value));
}

void emit(int fd, const TextBuffer& b) {
  if (fd >= 0) write_fully(fd, b.c_str(), b.size());
}

// Calls f(item) for each comma-separated item of text[0 .. length) (untrimmed).
template <typename F>
void for_each_item(const char* text, size_t length, F&& f) {
  size_t start = 0;
  for (;;) {
    size_t end = start;
    while (end < length && text[end] != ',') ++end;
    f(Span{text + start, end - start});
    if (end == length) return;
    start = end + 1;
  }
}

// Splits a trimmed item at its first '=' into trimmed name and value; false when it has none.
bool split_item(Span item, Span* name, Span* value) {
  size_t eq = 0;
  while (eq < item.n && item.p[eq] != '=') ++eq;
  if (eq == item.n) return false;
  *name = trim(Span{item.p, eq});
  *value = trim(Span{item.p + eq + 1, item.n - eq - 1});
  return true;
}

// Applies one item (between commas); false when it was rejected with a warning.
bool apply_item(Span item, long* values, int fd) {
  item = trim(item);
  if (item.n == 0) return true;
  Span name{};
  Span text{};
  if (!split_item(item, &name, &text)) {
    TextBuffer b;
    b.str("tinymalloc: warning: missing '=' in ");
    append_quoted(b, item);
    emit(fd, b.str(" in TINYMALLOC_OPTIONS (expected name=value; ignored)\n"));
    return false;
  }
  if (equals_word(name, kTraceName)) return true;  // a path: read by read_environment
  const size_t index = option_index(name.p, name.n);
  if (index >= kOptionCount) {
    TextBuffer b;
    b.str("tinymalloc: warning: unknown option ");
    append_quoted(b, name);
    emit(fd, b.str(" in TINYMALLOC_OPTIONS (ignored)\n"));
    return false;
  }
  const OptionInfo& o = kOptions[index];
  long value = 0;
  if (!parse_value(o, text, &value)) {
    TextBuffer b;
    b.str("tinymalloc: warning: bad value ");
    append_quoted(b, text);
    b.str(" for option '").str(o.name).str("' (expected ");
    append_expected(b, o);
    b.str("; keeping ");
    append_value(b, index, values[index]);
    emit(fd, b.str(")\n"));
    return false;
  }
  values[index] = value;
  return true;
}

// "tinymalloc: options: arenas=0 arena_select=cpu ... verbose=1" (about 150 characters).
void print_options(const long* values, int fd) {
  TextBuffer b;
  b.str("tinymalloc: options:");
  for (size_t i = 0; i < kOptionCount; ++i) {
    b.str(" ").str(kOptions[i].name).str("=");
    append_value(b, i, values[i]);
  }
  if (g_trace_path[0] != '\0') b.str(" trace=").str(g_trace_path);
  emit(fd, b.str("\n"));
}

// Copies the value of the last non-empty `trace=` item of text[0 .. length) into g_trace_path
// (left empty when there is none or it does not fit).
void read_trace_path(const char* text, size_t length) {
  for_each_item(text, length, [](Span item) {
    Span name{};
    Span value{};
    if (!split_item(trim(item), &name, &value) || !equals_word(name, kTraceName) || value.n == 0) return;
    const bool fits = value.n < sizeof g_trace_path;
    for (size_t i = 0; fits && i < value.n; ++i) g_trace_path[i] = value.p[i];
    g_trace_path[fits ? value.n : 0] = '\0';
  });
}

void read_environment() {
  long values[kOptionCount];
  options_defaults(values);
  const char* text = std::getenv("TINYMALLOC_OPTIONS");
  if (text != nullptr) {
    options_parse(text, std::strlen(text), values, STDERR_FILENO);
    read_trace_path(text, std::strlen(text));
  }
  for (size_t i = 0; i < kOptionCount; ++i) g_values.v[i].store(values[i], std::memory_order_relaxed);
  if (values[index_of(OptionId::kVerbose)] != 0) print_options(values, STDERR_FILENO);
}

}  // namespace

const OptionInfo* option_info(size_t index) { return index < kOptionCount ? &kOptions[index] : nullptr; }

size_t option_index(const char* name, size_t length) {
  if (name == nullptr) return kOptionCount;
  for (size_t i = 0; i < kOptionCount; ++i) {
    if (equals_word(Span{name, length}, kOptions[i].name)) return i;
  }
  return kOptionCount;
}

const char* option_value_name(size_t index, long value) {
  if (index >= kOptionCount) return nullptr;
  const OptionInfo& o = kOptions[index];
  for (size_t i = 0; i < o.value_name_count; ++i) {
    if (o.value_names[i].value == value) return o.value_names[i].name;
  }
  return nullptr;
}

void options_defaults(long* values) {
  for (size_t i = 0; i < kOptionCount; ++i) values[i] = kOptions[i].default_value;
}

size_t options_parse(const char* text, size_t length, long* values, int warning_fd) {
  long scratch[kOptionCount];
  if (values == nullptr) {
    options_defaults(scratch);
    values = scratch;
  }
  if (text == nullptr) return 0;
  size_t warnings = 0;
  for_each_item(text, length, [&](Span item) {
    if (!apply_item(item, values, warning_fd)) ++warnings;
  });
  return warnings;
}

void options_init() {
  if (TM_LIKELY(g_state.load(std::memory_order_acquire) == kDone)) return;
  InitClaim claim = init_try_claim(g_state);
  if (claim == InitClaim::kHeldHere) {
    // Called again from the thread that is reading (e.g. from a hook of write(2)): the
    // defaults stay in force until the read finishes.
    if (pthread_equal(g_reader.load(std::memory_order_relaxed), pthread_self()) != 0) return;
    claim = init_claim_or_wait(g_state) ? InitClaim::kRun : InitClaim::kDone;
  }
  if (claim == InitClaim::kDone) return;
  g_reader.store(pthread_self(), std::memory_order_relaxed);
  const int saved_errno = errno;
  read_environment();
  errno = saved_errno;
  g_state.store(kDone, std::memory_order_release);
}

void options_snapshot_initial() {
  for (size_t i = 0; i < kOptionCount; ++i) {
    g_initial_values.v[i].store(g_values.v[i].load(std::memory_order_relaxed), std::memory_order_relaxed);
  }
}

void options_restore_initial() {
  for (size_t i = 0; i < kOptionCount; ++i) {
    g_values.v[i].store(g_initial_values.v[i].load(std::memory_order_relaxed), std::memory_order_relaxed);
  }
}

const char* options_trace_path() { return g_trace_path[0] != '\0' ? g_trace_path : nullptr; }

long option(OptionId id) {
  if (TM_UNLIKELY(g_state.load(std::memory_order_acquire) != kDone)) options_init();
  const size_t index = index_of(id);
  return index < kOptionCount ? g_values.v[index].load(std::memory_order_relaxed) : 0;
}

}  // namespace tmalloc

using tmalloc::kOptionCount;

extern "C" {

TM_EXPORT int tm_option_get(const char* name, long* value) {
  const size_t index = name != nullptr ? tmalloc::option_index(name, std::strlen(name)) : kOptionCount;
  if (index >= kOptionCount || value == nullptr) {
    errno = EINVAL;
    return -1;
  }
  *value = tmalloc::option(static_cast<tmalloc::OptionId>(index));
  return 0;
}

TM_EXPORT int tm_option_set(const char* name, long value) {
  const size_t index = name != nullptr ? tmalloc::option_index(name, std::strlen(name)) : kOptionCount;
  const tmalloc::OptionInfo* o = tmalloc::option_info(index);
  if (o == nullptr || value < o->min_value || value > o->max_value) {
    errno = EINVAL;
    return -1;
  }
  // After the environment, or a later first read would overwrite the value set here.
  tmalloc::options_init();
  tmalloc::g_values.v[index].store(value, std::memory_order_relaxed);
  // Debug mode is a run-time switch (leaks=1 implies it: the leak report needs its records).
  if (index == static_cast<size_t>(tmalloc::OptionId::kDebug) ||
      index == static_cast<size_t>(tmalloc::OptionId::kLeaks)) {
    tmalloc::debug_update_mode();
  }
  // So is sampling (each thread's countdown picks the new rate up at its next sample).
  if (index == static_cast<size_t>(tmalloc::OptionId::kSampleRate)) {
    tmalloc::guarded_init();
    tmalloc::sample_rate_changed();
  }
  return 0;
}

TM_EXPORT const char* tm_option_name(unsigned index) {
  const tmalloc::OptionInfo* o = tmalloc::option_info(index);
  return o != nullptr ? o->name : nullptr;
}

}  // extern "C"
