// Run-time options: the TINYMALLOC_OPTIONS parser (tmalloc::options_parse), the option
// table, tm_option_get / tm_option_set / tm_option_name, the one-time read of the
// environment (in a freshly exec'd child, see OptionsEnvironment) and README's table.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "config.h"
#include "options.h"
#include "tinymalloc.h"

namespace {

namespace tmi = ::tmalloc;
using tmi::kOptionCount;
using tmi::OptionId;

using Values = std::array<long, kOptionCount>;

constexpr size_t idx(OptionId id) { return static_cast<size_t>(id); }

// The documented table (README "Options"), written out independently of options.cc.
struct Expected {
  const char* name;
  long default_value;
  long min_value;
  long max_value;
};
constexpr Expected kExpected[] = {
    {"arenas", 0, 0, 64},
    {"arena_select", 0, 0, 1},
    {"thread_cache", 1, 0, 1},
    {"purge_delay_ms", 1000, 0, 3600000},
    {"pool_segments", 64, 0, 4096},
    {"arena_retain", 1, 0, 64},
    {"debug", 0, 0, 2},
    {"leaks", 0, 0, 1},
    {"leak_exitcode", 0, 0, 255},
    {"stats", 0, 0, 2},
    {"verbose", 0, 0, 1},
    {"track_requested", 0, 0, 1},
    {"medium_cache", 1, 0, 1},
    {"sample_rate", 0, 0, 1000000000},
    {"report", 0, 0, 1},
    {"trace_max_mb", 256, 1, 1048576},
};
static_assert(std::size(kExpected) == kOptionCount);
static_assert(kOptionCount == 16);

Values defaults() {
  Values v{};
  for (size_t i = 0; i < kOptionCount; ++i) v[i] = kExpected[i].default_value;
  return v;
}

struct Parsed {
  Values values{};
  size_t warnings = 0;
  std::string output;  // what went to warning_fd
};

// Reads everything from fd until EOF.
std::string drain(int fd) {
  std::string out;
  char buf[4096];
  for (;;) {
    const ssize_t n = read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  return out;
}

// Parses `text` from an exactly-sized heap copy (ASan: any read past the end is a report),
// starting from `start` (the defaults unless given), capturing the warnings through a pipe.
Parsed parse(std::string_view text, const Values& start = defaults()) {
  Parsed p;
  p.values = start;
  std::unique_ptr<char[]> copy(new char[text.size()]);
  std::memcpy(copy.get(), text.data(), text.size());
  int fds[2];
  EXPECT_EQ(pipe(fds), 0);
  p.warnings = tmi::options_parse(copy.get(), text.size(), p.values.data(), fds[1]);
  close(fds[1]);
  p.output = drain(fds[0]);
  close(fds[0]);
  return p;
}

size_t count_lines(const std::string& s) {
  size_t n = 0;
  for (char c : s) n += c == '\n';
  return n;
}

// Defaults with one option changed.
Values with(OptionId id, long value) {
  Values v = defaults();
  v[idx(id)] = value;
  return v;
}

// ---- Table ----

TEST(OptionsTable, NamesDefaultsAndRangesAreTheDocumentedOnes) {
  for (size_t i = 0; i < kOptionCount; ++i) {
    const tmi::OptionInfo* o = tmi::option_info(i);
    ASSERT_NE(o, nullptr) << i;
    EXPECT_STREQ(o->name, kExpected[i].name) << i;
    EXPECT_EQ(o->default_value, kExpected[i].default_value) << o->name;
    EXPECT_EQ(o->min_value, kExpected[i].min_value) << o->name;
    EXPECT_EQ(o->max_value, kExpected[i].max_value) << o->name;
    ASSERT_NE(o->description, nullptr);
    EXPECT_GT(std::strlen(o->description), 10u) << o->name;
    EXPECT_EQ(std::strchr(o->description, '\n'), nullptr) << o->name;
  }
  EXPECT_EQ(tmi::option_info(kOptionCount), nullptr);
  EXPECT_EQ(tmi::option_info(SIZE_MAX), nullptr);
  EXPECT_EQ(tmi::option_info(idx(OptionId::kArenas))->max_value, static_cast<long>(tmi::kMaxArenas));
  EXPECT_EQ(tmi::kArenaSelectCpu, 0);
  EXPECT_EQ(tmi::kArenaSelectThread, 1);
}

TEST(OptionsTable, DefaultsFillEveryValue) {
  Values v;
  v.fill(-7);
  tmi::options_defaults(v.data());
  EXPECT_EQ(v, defaults());
}

TEST(OptionsTable, OptionIndexIgnoresCaseAndRejectsUnknownNames) {
  for (size_t i = 0; i < kOptionCount; ++i) {
    const std::string name = kExpected[i].name;
    EXPECT_EQ(tmi::option_index(name.data(), name.size()), i) << name;
    std::string upper = name;
    for (char& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    EXPECT_EQ(tmi::option_index(upper.data(), upper.size()), i) << upper;
    // Prefixes and extensions are other names.
    EXPECT_EQ(tmi::option_index(name.data(), name.size() - 1), kOptionCount) << name;
    const std::string longer = name + "x";
    EXPECT_EQ(tmi::option_index(longer.data(), longer.size()), kOptionCount) << longer;
  }
  EXPECT_EQ(tmi::option_index("", 0), kOptionCount);
  EXPECT_EQ(tmi::option_index(nullptr, 5), kOptionCount);
}

TEST(OptionsTable, SymbolicValueNames) {
  EXPECT_STREQ(tmi::option_value_name(idx(OptionId::kArenaSelect), 0), "cpu");
  EXPECT_STREQ(tmi::option_value_name(idx(OptionId::kArenaSelect), 1), "thread");
  EXPECT_STREQ(tmi::option_value_name(idx(OptionId::kStats), 0), "off");
  EXPECT_STREQ(tmi::option_value_name(idx(OptionId::kStats), 1), "text");
  EXPECT_STREQ(tmi::option_value_name(idx(OptionId::kStats), 2), "json");
  EXPECT_EQ(tmi::option_value_name(idx(OptionId::kStats), 3), nullptr);
  EXPECT_EQ(tmi::option_value_name(idx(OptionId::kArenas), 0), nullptr);
  EXPECT_EQ(tmi::option_value_name(idx(OptionId::kVerbose), 1), nullptr);
  EXPECT_EQ(tmi::option_value_name(kOptionCount, 0), nullptr);
}

// ---- Parser: accepted input ----

TEST(OptionsParse, EmptyInputKeepsTheDefaults) {
  for (const char* text : {"", " ", ",", ",,,", " , ,\t,", "\n"}) {
    const Parsed p = parse(text);
    EXPECT_EQ(p.warnings, 0u) << '"' << text << '"';
    EXPECT_EQ(p.values, defaults()) << '"' << text << '"';
    EXPECT_EQ(p.output, "") << '"' << text << '"';
  }
  // A null text is no items.
  Values v = defaults();
  EXPECT_EQ(tmi::options_parse(nullptr, 10, v.data(), -1), 0u);
  EXPECT_EQ(v, defaults());
}

// trace=PATH is the one option with a text value (read by the runtime's first read of the
// environment, tests/trace): the parser accepts it, any text, and changes no number.
TEST(OptionsParse, TheTracePathIsAcceptedAndChangesNoValue) {
  for (const char* text : {"trace=/tmp/t.%p", " TRACE = out/trace.bin ", "trace=", "trace=a=b,arenas=3"}) {
    const Parsed p = parse(text);
    EXPECT_EQ(p.warnings, 0u) << text;
    EXPECT_EQ(p.output, "") << text;
    Values want = defaults();
    if (std::string_view(text).find("arenas") != std::string_view::npos) want[idx(OptionId::kArenas)] = 3;
    EXPECT_EQ(p.values, want) << text;
  }
  // A misspelt name is still an unknown option.
  EXPECT_EQ(parse("traces=/tmp/t").warnings, 1u);
}

TEST(OptionsParse, EveryOptionIsParsed) {
  const Parsed p = parse(
      "arenas=8,arena_select=thread,thread_cache=0,purge_delay_ms=250,pool_segments=0,arena_retain=7,"
      "debug=1,leaks=yes,leak_exitcode=42,stats=json,verbose=on,track_requested=1,medium_cache=no,sample_rate=5000,"
      "report=json,trace_max_mb=64");
  EXPECT_EQ(p.warnings, 0u);
  EXPECT_EQ(p.output, "");
  const Values want = {8, 1, 0, 250, 0, 7, 1, 1, 42, 2, 1, 1, 0, 5000, 1, 64};
  EXPECT_EQ(p.values, want);
}

TEST(OptionsParse, EachOptionAloneChangesOnlyItself) {
  const long values[kOptionCount] = {3, 1, 0, 5, 100, 9, 1, 1, 7, 1, 1, 1, 0, 1000, 1, 8};
  for (size_t i = 0; i < kOptionCount; ++i) {
    ASSERT_NE(values[i], kExpected[i].default_value);
    const std::string text = std::string(kExpected[i].name) + "=" + std::to_string(values[i]);
    const Parsed p = parse(text);
    EXPECT_EQ(p.warnings, 0u) << text;
    EXPECT_EQ(p.values, with(static_cast<OptionId>(i), values[i])) << text;
  }
}

TEST(OptionsParse, EveryBooleanSpelling) {
  const std::pair<const char*, long> spellings[] = {
      {"0", 0},  {"1", 1},   {"true", 1}, {"false", 0}, {"yes", 1}, {"no", 0},
      {"on", 1}, {"off", 0}, {"TRUE", 1}, {"Off", 0},   {"YeS", 1}, {"nO", 0},
  };
  for (OptionId id : {OptionId::kThreadCache, OptionId::kDebug, OptionId::kLeaks, OptionId::kVerbose}) {
    const bool is_debug = id == OptionId::kDebug;  // a boolean that also takes guard (2)
    for (const auto& [word, value] : spellings) {
      const std::string text = std::string(kExpected[idx(id)].name) + "=" + word;
      // Start from the opposite value so that every spelling must change something.
      const Parsed p = parse(text, with(id, 1 - value));
      EXPECT_EQ(p.warnings, 0u) << text;
      EXPECT_EQ(p.values, with(id, value)) << text;
    }
    for (const char* bad : {"2", "-1", "y", "n", "truee", "of", "enable", "01x", ""}) {
      if (is_debug && std::string(bad) == "2") continue;  // debug=2 is guard
      const std::string text = std::string(kExpected[idx(id)].name) + "=" + bad;
      const Parsed p = parse(text);
      EXPECT_EQ(p.warnings, 1u) << text;
      EXPECT_EQ(p.values, defaults()) << text;
    }
  }
}

TEST(OptionsParse, SymbolicNamesAndTheirNumbers) {
  const struct {
    const char* text;
    OptionId id;
    long value;
  } cases[] = {
      {"arena_select=cpu", OptionId::kArenaSelect, 0},
      {"arena_select=thread", OptionId::kArenaSelect, 1},
      {"arena_select=THREAD", OptionId::kArenaSelect, 1},
      {"arena_select=0", OptionId::kArenaSelect, 0},
      {"arena_select=1", OptionId::kArenaSelect, 1},
      {"stats=off", OptionId::kStats, 0},
      {"stats=text", OptionId::kStats, 1},
      {"stats=json", OptionId::kStats, 2},
      {"stats=JSON", OptionId::kStats, 2},
      {"stats=0", OptionId::kStats, 0},
      {"stats=1", OptionId::kStats, 1},
      {"stats=2", OptionId::kStats, 2},
      {"debug=guard", OptionId::kDebug, 2},
      {"debug=GUARD", OptionId::kDebug, 2},
      {"debug=2", OptionId::kDebug, 2},
  };
  for (const auto& c : cases) {
    // Start from another valid value, so that every case changes something.
    const Parsed p = parse(c.text, with(c.id, c.value == 0 ? 1 : 0));
    EXPECT_EQ(p.warnings, 0u) << c.text;
    EXPECT_EQ(p.values, with(c.id, c.value)) << c.text;
  }
  for (const char* bad : {"stats=3", "stats=xml", "stats=on", "stats=true", "arena_select=2", "arena_select=core",
                          "arena_select=yes", "stats=js"}) {
    const Parsed p = parse(bad);
    EXPECT_EQ(p.warnings, 1u) << bad;
    EXPECT_EQ(p.values, defaults()) << bad;
  }
}

TEST(OptionsParse, BlanksAroundNamesAndValuesAreIgnored) {
  const Parsed p = parse("  arenas = 5 ,\tstats= text  ,\n verbose =on\r\n, leak_exitcode\t=\t3");
  EXPECT_EQ(p.warnings, 0u) << p.output;
  Values want = defaults();
  want[idx(OptionId::kArenas)] = 5;
  want[idx(OptionId::kStats)] = 1;
  want[idx(OptionId::kVerbose)] = 1;
  want[idx(OptionId::kLeakExitCode)] = 3;
  EXPECT_EQ(p.values, want);
  // Blanks inside a name or a number are not ignored.
  EXPECT_EQ(parse("are nas=5").warnings, 1u);
  EXPECT_EQ(parse("arenas=1 0").warnings, 1u);
  EXPECT_EQ(parse("arenas=1 0").values, defaults());
}

TEST(OptionsParse, EmptyItemsAreIgnored) {
  const Parsed p = parse(",,arenas=2,,, ,verbose=1,");
  EXPECT_EQ(p.warnings, 0u);
  EXPECT_EQ(p.output, "");
  Values want = defaults();
  want[idx(OptionId::kArenas)] = 2;
  want[idx(OptionId::kVerbose)] = 1;
  EXPECT_EQ(p.values, want);
}

TEST(OptionsParse, LaterItemsWin) {
  const Parsed p = parse("arenas=3,stats=json,arenas=4,stats=off");
  EXPECT_EQ(p.warnings, 0u);
  EXPECT_EQ(p.values, with(OptionId::kArenas, 4));
  // A later bad value keeps the earlier good one, and says so.
  const Parsed q = parse("arenas=3,arenas=x");
  EXPECT_EQ(q.warnings, 1u);
  EXPECT_EQ(q.values, with(OptionId::kArenas, 3));
  EXPECT_EQ(q.output, "tinymalloc: warning: bad value 'x' for option 'arenas' (expected 0..64; keeping 3)\n");
}

TEST(OptionsParse, RangeBoundsOfEveryNumericOption) {
  for (size_t i = 0; i < kOptionCount; ++i) {
    const auto id = static_cast<OptionId>(i);
    const std::string name = kExpected[i].name;
    for (long ok : {kExpected[i].min_value, kExpected[i].max_value}) {
      const std::string text = name + "=" + std::to_string(ok);
      const Parsed p = parse(text);
      EXPECT_EQ(p.warnings, 0u) << text;
      EXPECT_EQ(p.values, with(id, ok)) << text;
    }
    const std::string over = name + "=" + std::to_string(kExpected[i].max_value + 1);
    const Parsed p = parse(over);
    EXPECT_EQ(p.warnings, 1u) << over;
    EXPECT_EQ(p.values, defaults()) << over;
    EXPECT_NE(p.output.find("bad value '" + std::to_string(kExpected[i].max_value + 1) + "' for option '" + name),
              std::string::npos)
        << p.output;
  }
}

// ---- Parser: rejected input, one warning per item, exact texts ----

TEST(OptionsParse, UnknownNameWarnsOnceAndTheRestApplies) {
  const Parsed p = parse("arenas=3,foo=1,stats=json");
  EXPECT_EQ(p.warnings, 1u);
  EXPECT_EQ(p.output, "tinymalloc: warning: unknown option 'foo' in TINYMALLOC_OPTIONS (ignored)\n");
  Values want = defaults();
  want[idx(OptionId::kArenas)] = 3;
  want[idx(OptionId::kStats)] = 2;
  EXPECT_EQ(p.values, want);
  // An empty name is unknown too.
  const Parsed q = parse("=5");
  EXPECT_EQ(q.warnings, 1u);
  EXPECT_EQ(q.output, "tinymalloc: warning: unknown option '' in TINYMALLOC_OPTIONS (ignored)\n");
}

TEST(OptionsParse, MissingEqualsSignWarns) {
  const Parsed p = parse("verbose, arenas=2");
  EXPECT_EQ(p.warnings, 1u);
  EXPECT_EQ(p.output,
            "tinymalloc: warning: missing '=' in 'verbose' in TINYMALLOC_OPTIONS (expected name=value; ignored)\n");
  EXPECT_EQ(p.values, with(OptionId::kArenas, 2));
}

TEST(OptionsParse, BadValueWarningTexts) {
  const std::pair<const char*, const char*> cases[] = {
      {"arenas=65", "tinymalloc: warning: bad value '65' for option 'arenas' (expected 0..64; keeping 0)\n"},
      {"arenas=abc", "tinymalloc: warning: bad value 'abc' for option 'arenas' (expected 0..64; keeping 0)\n"},
      {"arenas=", "tinymalloc: warning: bad value '' for option 'arenas' (expected 0..64; keeping 0)\n"},
      {"purge_delay_ms = -1 ",
       "tinymalloc: warning: bad value '-1' for option 'purge_delay_ms' (expected 0..3600000; keeping 1000)\n"},
      {"thread_cache=2",
       "tinymalloc: warning: bad value '2' for option 'thread_cache' "
       "(expected 0/1/true/false/yes/no/on/off; keeping 1)\n"},
      {"arena_select=core",
       "tinymalloc: warning: bad value 'core' for option 'arena_select' (expected cpu, thread or 0..1; keeping cpu)\n"},
      {"stats=xml",
       "tinymalloc: warning: bad value 'xml' for option 'stats' (expected off, text, json or 0..2; keeping off)\n"},
  };
  for (const auto& [text, want] : cases) {
    const Parsed p = parse(text);
    EXPECT_EQ(p.warnings, 1u) << text;
    EXPECT_EQ(p.values, defaults()) << text;
    EXPECT_EQ(p.output, want) << text;
  }
}

TEST(OptionsParse, NonNumericValuesAreRejected) {
  for (const char* value : {"-1", "+1", "1.5", "0x10", "1e3", "10k", "1 2", "\xd9\xa3", "\x80", "1\t0", "--", "1="}) {
    for (size_t i = 0; i < kOptionCount; ++i) {
      const std::string text = std::string(kExpected[i].name) + "=" + value;
      const Parsed p = parse(text);
      EXPECT_GE(p.warnings, 1u) << text;
      EXPECT_EQ(p.values, defaults()) << text;
      EXPECT_EQ(count_lines(p.output), p.warnings) << text;
    }
  }
}

TEST(OptionsParse, OverflowingValuesAreRejected) {
  for (const char* value : {"99999999999999999999999", "9223372036854775807", "9223372036854775808",
                            "18446744073709551616", "00000000000000000000000000000000004294967296"}) {
    for (size_t i = 0; i < kOptionCount; ++i) {
      const std::string text = std::string(kExpected[i].name) + "=" + value;
      const Parsed p = parse(text);
      EXPECT_EQ(p.warnings, 1u) << text;
      EXPECT_EQ(p.values, defaults()) << text;
      EXPECT_EQ(count_lines(p.output), 1u) << text;
    }
  }
  // Leading zeros are fine when the value is in range.
  EXPECT_EQ(parse("arenas=0000000000000000000000000000000000000000000007").values, with(OptionId::kArenas, 7));
}

TEST(OptionsParse, OneWarningPerBadItemAndEveryGoodItemApplies) {
  const Parsed p = parse("a=1,arenas=2,b,stats=9,leaks=on,=,arenas=x");
  EXPECT_EQ(p.warnings, 5u);
  EXPECT_EQ(count_lines(p.output), 5u);
  Values want = defaults();
  want[idx(OptionId::kArenas)] = 2;
  want[idx(OptionId::kLeaks)] = 1;
  EXPECT_EQ(p.values, want);
  EXPECT_EQ(p.output,
            "tinymalloc: warning: unknown option 'a' in TINYMALLOC_OPTIONS (ignored)\n"
            "tinymalloc: warning: missing '=' in 'b' in TINYMALLOC_OPTIONS (expected name=value; ignored)\n"
            "tinymalloc: warning: bad value '9' for option 'stats' (expected off, text, json or 0..2; keeping off)\n"
            "tinymalloc: warning: unknown option '' in TINYMALLOC_OPTIONS (ignored)\n"
            "tinymalloc: warning: bad value 'x' for option 'arenas' (expected 0..64; keeping 2)\n");
}

TEST(OptionsParse, NegativeFdCountsWarningsWithoutWriting) {
  Values v = defaults();
  const std::string text = "foo=1,arenas=99,stats=text";
  EXPECT_EQ(tmi::options_parse(text.data(), text.size(), v.data(), -1), 2u);
  EXPECT_EQ(v, with(OptionId::kStats, 1));
  // A null values array: warnings are still counted.
  EXPECT_EQ(tmi::options_parse(text.data(), text.size(), nullptr, -1), 2u);
}

TEST(OptionsParse, QuotedTextIsEscapedAndLengthLimited) {
  // Non-printable bytes, a NUL, the quote and the backslash are written as \xNN.
  const std::string name("fo\x01o\xff'\\\0z", 9);
  const Parsed p = parse(name + "=1");
  EXPECT_EQ(p.warnings, 1u);
  EXPECT_EQ(p.output,
            "tinymalloc: warning: unknown option 'fo\\x01o\\xff\\x27\\x5c\\x00z' in TINYMALLOC_OPTIONS (ignored)\n");
  // At most 64 characters of the item, then "...".
  const std::string long_name(300, 'n');
  const Parsed q = parse(long_name + "=1");
  EXPECT_EQ(q.warnings, 1u);
  EXPECT_EQ(q.output,
            "tinymalloc: warning: unknown option '" + std::string(64, 'n') + "...' in TINYMALLOC_OPTIONS (ignored)\n");
  // Escapes are never cut in the middle: 21 escapes (84 characters) keep 16 of them.
  const Parsed r = parse("arenas=" + std::string(21, '\x7f'));
  std::string sixteen;
  for (int i = 0; i < 16; ++i) sixteen += "\\x7f";
  EXPECT_EQ(r.output,
            "tinymalloc: warning: bad value '" + sixteen + "...' for option 'arenas' (expected 0..64; keeping 0)\n");
  // Every warning line of hostile input is printable ASCII and short.
  std::string hostile;
  for (int c = 0; c < 256; ++c) hostile += static_cast<char>(c);
  const Parsed h = parse(hostile + "," + std::string(5000, '\xff') + "=1,arenas=" + std::string(5000, '\n') + "x");
  EXPECT_EQ(h.warnings, count_lines(h.output));
  EXPECT_GE(h.warnings, 2u);
  std::istringstream lines(h.output);
  for (std::string line; std::getline(lines, line);) {
    EXPECT_LE(line.size(), 200u) << line;
    EXPECT_EQ(line.rfind("tinymalloc: warning: ", 0), 0u) << line;
    for (char c : line) EXPECT_TRUE(c >= 0x20 && c < 0x7f) << static_cast<int>(c) << " in " << line;
  }
}

TEST(OptionsParse, ReadsOnlyTheGivenLength) {
  const std::string full = "arenas=12,stats=json";
  // Cut inside the first value: arenas=1.
  const Parsed a = parse(std::string_view(full).substr(0, 8));
  EXPECT_EQ(a.warnings, 0u);
  EXPECT_EQ(a.values, with(OptionId::kArenas, 1));
  // Cut inside the second name: "sta" is an item without '='.
  const Parsed b = parse(std::string_view(full).substr(0, 13));
  EXPECT_EQ(b.warnings, 1u);
  EXPECT_EQ(b.output,
            "tinymalloc: warning: missing '=' in 'sta' in TINYMALLOC_OPTIONS (expected name=value; ignored)\n");
  EXPECT_EQ(b.values, with(OptionId::kArenas, 12));
  // Cut right after '=': an empty value.
  const Parsed c = parse(std::string_view(full).substr(0, 17));
  EXPECT_EQ(c.warnings, 1u);
  EXPECT_EQ(c.values, with(OptionId::kArenas, 12));
  // Bytes after the length in the same buffer are not read (a '5' there would make 15),
  // and a zero length is no items even when the text goes on.
  Values v = defaults();
  EXPECT_EQ(tmi::options_parse("arenas=15", 8, v.data(), -1), 0u);
  EXPECT_EQ(v, with(OptionId::kArenas, 1));
  v = defaults();
  EXPECT_EQ(tmi::options_parse("foo=1", 0, v.data(), -1), 0u);
  EXPECT_EQ(v, defaults());
  // A NUL byte inside the length is part of the text, not its end.
  const Parsed d = parse(std::string_view("arenas=2\0,stats=2", 17));
  EXPECT_EQ(d.warnings, 1u);
  EXPECT_EQ(d.values, with(OptionId::kStats, 2));
  EXPECT_EQ(d.output, "tinymalloc: warning: bad value '2\\x00' for option 'arenas' (expected 0..64; keeping 0)\n");
}

TEST(OptionsParse, SerialisedValuesParseBack) {
  const Values start = {33, 1, 0, 3600000, 4096, 0, 1, 1, 255, 2, 1, 0, 0, 0, 0, 1048576};
  std::string text;
  for (size_t i = 0; i < kOptionCount; ++i) {
    if (!text.empty()) text += ",";
    const char* sym = tmi::option_value_name(i, start[i]);
    text += std::string(kExpected[i].name) + "=" + (sym != nullptr ? sym : std::to_string(start[i]));
  }
  const Parsed p = parse(text);
  EXPECT_EQ(p.warnings, 0u) << text;
  EXPECT_EQ(p.values, start) << text;
}

// ---- Public API ----

// Restores every option's value at the end of a test that sets some.
class OptionsApi : public ::testing::Test {
 protected:
  void SetUp() override {
    for (size_t i = 0; i < kOptionCount; ++i) ASSERT_EQ(tm_option_get(kExpected[i].name, &saved_[i]), 0);
  }
  void TearDown() override {
    for (size_t i = 0; i < kOptionCount; ++i) EXPECT_EQ(tm_option_set(kExpected[i].name, saved_[i]), 0);
  }
  Values saved_{};
};

TEST_F(OptionsApi, NameEnumeratesAllSixteenOptions) {
  std::vector<std::string> names;
  for (unsigned i = 0; tm_option_name(i) != nullptr; ++i) {
    ASSERT_LT(i, 100u);
    names.emplace_back(tm_option_name(i));
  }
  ASSERT_EQ(names.size(), 16u);
  for (size_t i = 0; i < names.size(); ++i) EXPECT_EQ(names[i], kExpected[i].name);
  EXPECT_EQ(tm_option_name(16), nullptr);
  EXPECT_EQ(tm_option_name(UINT_MAX), nullptr);
  // Every enumerated name can be read.
  for (const std::string& n : names) {
    long v = -1;
    EXPECT_EQ(tm_option_get(n.c_str(), &v), 0) << n;
    EXPECT_GE(v, 0) << n;
  }
}

TEST_F(OptionsApi, SetGetRoundTripForEveryOption) {
  for (size_t i = 0; i < kOptionCount; ++i) {
    const char* name = kExpected[i].name;
    for (long value : {kExpected[i].max_value, kExpected[i].min_value, kExpected[i].default_value}) {
      ASSERT_EQ(tm_option_set(name, value), 0) << name << "=" << value;
      long got = -1;
      ASSERT_EQ(tm_option_get(name, &got), 0) << name;
      EXPECT_EQ(got, value) << name;
      EXPECT_EQ(tmi::option(static_cast<OptionId>(i)), value) << name;
    }
  }
  // Names are case-insensitive, as in TINYMALLOC_OPTIONS.
  ASSERT_EQ(tm_option_set("ARENAS", 5), 0);
  long got = -1;
  EXPECT_EQ(tm_option_get("Arenas", &got), 0);
  EXPECT_EQ(got, 5);
}

TEST_F(OptionsApi, OutOfRangeSetIsEinvalAndKeepsTheValue) {
  for (size_t i = 0; i < kOptionCount; ++i) {
    const char* name = kExpected[i].name;
    ASSERT_EQ(tm_option_set(name, kExpected[i].max_value), 0);
    for (long bad : {kExpected[i].max_value + 1, kExpected[i].min_value - 1, LONG_MAX, LONG_MIN}) {
      errno = 0;
      EXPECT_EQ(tm_option_set(name, bad), -1) << name << "=" << bad;
      EXPECT_EQ(errno, EINVAL) << name << "=" << bad;
      long got = -1;
      ASSERT_EQ(tm_option_get(name, &got), 0);
      EXPECT_EQ(got, kExpected[i].max_value) << name << " changed by " << bad;
    }
  }
}

TEST_F(OptionsApi, UnknownNamesAndNullArgumentsAreEinval) {
  long value = 1234;
  for (const char* name : {"foo", "", "arena", "arenas ", "arenas=1", "verbose\n"}) {
    errno = 0;
    EXPECT_EQ(tm_option_get(name, &value), -1) << name;
    EXPECT_EQ(errno, EINVAL) << name;
    errno = 0;
    EXPECT_EQ(tm_option_set(name, 0), -1) << name;
    EXPECT_EQ(errno, EINVAL) << name;
  }
  EXPECT_EQ(value, 1234);
  errno = 0;
  EXPECT_EQ(tm_option_get(nullptr, &value), -1);
  EXPECT_EQ(errno, EINVAL);
  errno = 0;
  EXPECT_EQ(tm_option_get("arenas", nullptr), -1);
  EXPECT_EQ(errno, EINVAL);
  errno = 0;
  EXPECT_EQ(tm_option_set(nullptr, 0), -1);
  EXPECT_EQ(errno, EINVAL);
  EXPECT_EQ(value, 1234);
}

TEST_F(OptionsApi, SuccessLeavesErrnoAlone) {
  errno = 4242;
  long v = 0;
  EXPECT_EQ(tm_option_get("stats", &v), 0);
  EXPECT_EQ(tm_option_set("stats", 1), 0);
  EXPECT_EQ(errno, 4242);
  EXPECT_EQ(tmi::option(OptionId::kStats), 1);
}

// ---- TINYMALLOC_OPTIONS: read once, at the first call, in a fresh process ----
//
// Each test runs its checks in a death-test child started with the "threadsafe" style:
// the child is a fresh exec of this binary (filtered to the test), so its first options
// call is the first of the process, whatever this process did before. The child sets
// TINYMALLOC_OPTIONS, points stderr at a pipe, makes the first call, restores stderr and
// compares what was written; it exits 0 when every check held and prints the differences
// otherwise (the parent shows them).

// Runs in the child: the first options call, then the checks. Returns the exit code.
// threads > 1: stderr is a full pipe, so the first caller blocks in write(2) in the middle
// of reading the environment; threads - 1 more callers come 30 ms later and must wait for it
// (they would see the defaults otherwise); the pipe is drained 100 ms after the start.
int child_first_call(const char* env, const std::string& want_output, const Values& want, int threads) {
  if (env != nullptr) {
    setenv("TINYMALLOC_OPTIONS", env, 1);
  } else {
    unsetenv("TINYMALLOC_OPTIONS");
  }
  int fds[2];
  if (pipe(fds) != 0) return 10;
  size_t filler = 0;
  if (threads > 1) {
    if (fcntl(fds[1], F_SETFL, O_NONBLOCK) != 0) return 11;
    const char junk[4096] = {};
    for (size_t chunk = sizeof junk; chunk > 0; chunk /= 2) {
      for (ssize_t n; (n = write(fds[1], junk, chunk)) > 0;) filler += static_cast<size_t>(n);
    }
    if (fcntl(fds[1], F_SETFL, 0) != 0) return 12;
  }
  const int saved = dup(STDERR_FILENO);
  dup2(fds[1], STDERR_FILENO);
  close(fds[1]);
  std::string drained;
  std::thread drainer([&] {
    if (threads > 1) std::this_thread::sleep_for(std::chrono::milliseconds(100));
    drained = drain(fds[0]);
  });
  std::vector<long> seen(static_cast<size_t>(threads), -1);
  std::vector<int> errno_kept(static_cast<size_t>(threads), 0);
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) {
    if (t == 1) std::this_thread::sleep_for(std::chrono::milliseconds(30));
    pool.emplace_back([&, t] {
      errno = 4321;
      seen[static_cast<size_t>(t)] = tmi::option(OptionId::kArenas);
      errno_kept[static_cast<size_t>(t)] = errno == 4321;
    });
  }
  for (auto& th : pool) th.join();
  // Read once: a changed environment and further calls change nothing and print nothing.
  setenv("TINYMALLOC_OPTIONS", "arenas=9,verbose=1,bogus", 1);
  tmi::options_init();
  tmi::options_init();
  dup2(saved, STDERR_FILENO);
  close(saved);
  drainer.join();
  close(fds[0]);
  const bool filler_ok = drained.size() >= filler && drained.find_first_not_of('\0') >= filler;
  const std::string output = filler_ok ? drained.substr(filler) : drained;

  int failures = 0;
  auto check = [&](bool ok, const std::string& what) {
    if (!ok) {
      ++failures;
      fprintf(stderr, "options child: FAILED: %s\n", what.c_str());
    }
  };
  check(filler_ok, "the pipe filler is not intact");
  check(output == want_output, "stderr was [" + output + "], expected [" + want_output + "]");
  for (int t = 0; t < threads; ++t) {
    check(seen[static_cast<size_t>(t)] == want[idx(OptionId::kArenas)],
          "thread " + std::to_string(t) + " saw arenas=" + std::to_string(seen[static_cast<size_t>(t)]));
  }
  for (size_t i = 0; i < kOptionCount; ++i) {
    long got = -1;
    check(tm_option_get(kExpected[i].name, &got) == 0 && got == want[i],
          std::string(kExpected[i].name) + " is " + std::to_string(got) + ", expected " + std::to_string(want[i]));
    check(tmi::option(static_cast<OptionId>(i)) == want[i], std::string("option() of ") + kExpected[i].name);
  }
  for (int t = 0; t < threads; ++t) check(errno_kept[static_cast<size_t>(t)] != 0, "the first call changed errno");
  if (failures == 0) fprintf(stderr, "options child: all checks passed\n");
  return failures == 0 ? 0 : 1;
}

class OptionsEnvironment : public ::testing::Test {
 protected:
  void SetUp() override { GTEST_FLAG_SET(death_test_style, "threadsafe"); }
};

TEST_F(OptionsEnvironment, VerboseLineAndWarningAtTheFirstCall) {
  Values want = defaults();
  want[idx(OptionId::kArenas)] = 3;
  want[idx(OptionId::kArenaSelect)] = 1;
  want[idx(OptionId::kStats)] = 2;
  want[idx(OptionId::kVerbose)] = 1;
  const std::string out =
      "tinymalloc: warning: unknown option 'bogus' in TINYMALLOC_OPTIONS (ignored)\n"
      "tinymalloc: options: arenas=3 arena_select=thread thread_cache=1 purge_delay_ms=1000 pool_segments=64 "
      "arena_retain=1 debug=off leaks=0 leak_exitcode=0 stats=json verbose=1 track_requested=0 medium_cache=1 "
      "sample_rate=0 report=text trace_max_mb=256\n";
  EXPECT_EXIT(_exit(child_first_call(" arenas=3,bogus=1,arena_select=thread,stats=json,verbose=yes", out, want, 1)),
              ::testing::ExitedWithCode(0), "options child: all checks passed");
}

TEST_F(OptionsEnvironment, ConcurrentFirstCallsReadOnce) {
  Values want = defaults();
  want[idx(OptionId::kArenas)] = 7;
  want[idx(OptionId::kVerbose)] = 1;
  want[idx(OptionId::kPurgeDelayMs)] = 0;
  const std::string out =
      "tinymalloc: warning: bad value '70' for option 'arenas' (expected 0..64; keeping 0)\n"
      "tinymalloc: options: arenas=7 arena_select=cpu thread_cache=1 purge_delay_ms=0 pool_segments=64 "
      "arena_retain=1 debug=off leaks=0 leak_exitcode=0 stats=off verbose=1 track_requested=0 medium_cache=1 "
      "sample_rate=0 report=text trace_max_mb=256\n";
  EXPECT_EXIT(_exit(child_first_call("arenas=70,arenas=7,verbose=1,purge_delay_ms=0", out, want, 8)),
              ::testing::ExitedWithCode(0), "options child: all checks passed");
}

TEST_F(OptionsEnvironment, UnsetMeansDefaultsAndSilence) {
  EXPECT_EXIT(_exit(child_first_call(nullptr, "", defaults(), 2)), ::testing::ExitedWithCode(0),
              "options child: all checks passed");
}

TEST_F(OptionsEnvironment, WithoutVerboseOnlyWarningsArePrinted) {
  Values want = defaults();
  want[idx(OptionId::kLeaks)] = 1;
  want[idx(OptionId::kLeakExitCode)] = 23;
  EXPECT_EXIT(_exit(child_first_call("leaks=on,leak_exitcode=23,verbose",
                                     "tinymalloc: warning: missing '=' in 'verbose' in TINYMALLOC_OPTIONS "
                                     "(expected name=value; ignored)\n",
                                     want, 1)),
              ::testing::ExitedWithCode(0), "options child: all checks passed");
}

// The first call keeps errno even when its warnings cannot be written (stderr closed).
int child_closed_stderr() {
  setenv("TINYMALLOC_OPTIONS", "bogus,verbose=1,arenas=5", 1);
  close(STDERR_FILENO);
  errno = 4321;
  const long arenas = tmi::option(OptionId::kArenas);
  const int e = errno;
  printf("options child: arenas=%ld errno=%d\n", arenas, e);
  fflush(stdout);
  return arenas == 5 && e == 4321 ? 0 : 1;
}

TEST_F(OptionsEnvironment, FirstCallKeepsErrnoWhenStderrIsClosed) {
  EXPECT_EXIT(_exit(child_closed_stderr()), ::testing::ExitedWithCode(0), "");
}

// Child of a death test: a thread starts the runtime's first-call initialisation and is
// held inside it (its verbose line blocks on a full stderr pipe); this thread forks then.
// The fork child has no such thread, so waiting for it would hang the child's first
// allocation forever: it must take the initialisation over. Returns 0 when the fork child
// allocated and exited within 10 s.
int child_fork_during_initialisation() {
  setenv("TINYMALLOC_OPTIONS", "verbose=1", 1);
  int pipe_fds[2];
  if (pipe(pipe_fds) != 0) return 10;
  // Fill the pipe so the next write to it blocks.
  if (fcntl(pipe_fds[1], F_SETFL, O_NONBLOCK) != 0) return 11;
  char chunk[4096];
  std::memset(chunk, 'x', sizeof chunk);
  while (write(pipe_fds[1], chunk, sizeof chunk) > 0) {
  }
  if (fcntl(pipe_fds[1], F_SETFL, 0) != 0) return 12;
  if (dup2(pipe_fds[1], STDERR_FILENO) < 0) return 13;
  std::thread initialiser([] { tm_free(tm_malloc(16)); });  // blocks in the verbose write
  initialiser.detach();
  std::this_thread::sleep_for(std::chrono::milliseconds(200));  // it is blocked in write(2) by now
  const pid_t pid = fork();
  if (pid < 0) return 14;
  if (pid == 0) {
    const int null_fd = open("/dev/null", O_WRONLY);
    if (null_fd < 0 || dup2(null_fd, STDERR_FILENO) < 0) _exit(15);
    void* p = tm_malloc(64);
    if (p == nullptr) _exit(16);
    tm_free(p);
    _exit(0);
  }
  int status = 0;
  pid_t done = 0;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while ((done = waitpid(pid, &status, WNOHANG)) == 0 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  if (done == 0) {
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
    return 20;  // the child hung in its first allocation
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : 21;
}

TEST_F(OptionsEnvironment, AForkDuringAnotherThreadsInitialisationDoesNotHangTheChild) {
  EXPECT_EXIT(_exit(child_fork_during_initialisation()), ::testing::ExitedWithCode(0), "");
}

// ---- README ----

TEST(OptionsReadme, TableListsEveryOptionWithItsDefault) {
  std::ifstream in(TM_README_PATH);
  ASSERT_TRUE(in.good()) << TM_README_PATH;
  std::stringstream ss;
  ss << in.rdbuf();
  const std::string readme = ss.str();
  const size_t section = readme.find("\n## Options\n");
  ASSERT_NE(section, std::string::npos) << "README.md has no '## Options' section";
  const size_t end = readme.find("\n## ", section + 1);
  const std::string body = readme.substr(section, end == std::string::npos ? std::string::npos : end - section);
  for (unsigned i = 0; tm_option_name(i) != nullptr; ++i) {
    const tmi::OptionInfo* o = tmi::option_info(i);
    const char* sym = tmi::option_value_name(i, o->default_value);
    const std::string def = sym != nullptr ? sym : std::to_string(o->default_value);
    const std::string row = std::string("| `") + o->name + "` | `" + def + "` |";
    EXPECT_NE(body.find(row), std::string::npos) << "README Options table has no row starting " << row;
  }
}

}  // namespace
