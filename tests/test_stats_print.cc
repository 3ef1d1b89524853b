// tm_stats_print: the text table and the JSON object carry the same figures as tm_stats;
// tm_class_stats (per-class peaks) and tm_arena_stats (per-arena rows) agree with them.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "test_util.h"
#include "tinymalloc.h"

namespace {

using tmtest::ScopedOption;
using tmtest::stats;

// Output of tm_stats_print(fd, json) through a pipe.
std::string printed(int json) {
  int fds[2];
  EXPECT_EQ(pipe(fds), 0);
  tm_stats_print(fds[1], json);
  close(fds[1]);
  std::string out;
  char buffer[4096];
  ssize_t n;
  while ((n = read(fds[0], buffer, sizeof buffer)) > 0) out.append(buffer, static_cast<size_t>(n));
  close(fds[0]);
  return out;
}

// The number after `key` in `text` (the first occurrence at or after `from`), or -1.
long long number_after(const std::string& text, const std::string& key, size_t from = 0) {
  const size_t at = text.find(key, from);
  if (at == std::string::npos) return -1;
  return std::stoll(text.substr(at + key.size()));
}

// `"key": ` as it appears in the JSON form (appended piecewise: g++ 12 warns falsely about
// operator+ chains of std::string, -Wrestrict).
std::string json_key(const char* key) {
  std::string out = "\"";
  out += key;
  out += "\": ";
  return out;
}

// Sum of the numbers after every occurrence of `key` in `text`.
long long sum_after(const std::string& text, const std::string& key) {
  long long sum = 0;
  for (size_t at = text.find(key); at != std::string::npos; at = text.find(key, at + 1)) {
    sum += std::stoll(text.substr(at + key.size()));
  }
  return sum;
}

// The lines of `text` between the line starting with `title` and the next line that does
// not start with a space (a section of the text form: its header line, then its rows).
std::vector<std::string> section(const std::string& text, const std::string& title) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  std::string line;
  bool inside = false;
  while (std::getline(in, line)) {
    if (inside && (line.empty() || line[0] != ' ')) break;
    if (inside) lines.push_back(line);
    if (line.rfind(title, 0) == 0) inside = true;
  }
  return lines;
}

// The whitespace-separated numbers of a table row ("-" reads as -1).
std::vector<double> fields(const std::string& row) {
  std::vector<double> out;
  std::istringstream in(row);
  std::string word;
  while (in >> word) out.push_back(word == "-" ? -1 : std::stod(word));
  return out;
}

// The row of a table section whose first number is `key`, or an empty vector.
std::vector<double> row_for(const std::vector<std::string>& table, size_t key) {
  for (size_t i = 1; i < table.size(); ++i) {
    const std::vector<double> f = fields(table[i]);
    if (!f.empty() && f[0] == static_cast<double>(key)) return f;
  }
  return {};
}

// Every bracket and brace of a JSON text closes in order (no strings here contain any).
bool balanced(const std::string& json) {
  std::string open;
  for (char ch : json) {
    if (ch == '{' || ch == '[') open.push_back(ch);
    if (ch == '}' || ch == ']') {
      if (open.empty() || open.back() != (ch == '}' ? '{' : '[')) return false;
      open.pop_back();
    }
  }
  return open.empty();
}

// Heap consistent and no leak relative to the start of each test.
class StatsPrint : public ::testing::Test {
 protected:
  void SetUp() override {
    tm_free(tm_malloc(1));  // the runtime is initialised: options set later stay set
    tm_release_cached();
    base_ = stats();
  }
  void TearDown() override {
    TM_EXPECT_HEAP_OK();
    EXPECT_EQ(stats().live_blocks, base_.live_blocks) << "blocks leaked by the test";
  }
  tm_stats_t base_{};
};

// The class statistics of one class.
tm_class_stats_t class_stats(size_t c) {
  tm_class_stats_t all[TM_SMALL_CLASS_COUNT];
  EXPECT_EQ(tm_class_stats(all, TM_SMALL_CLASS_COUNT), static_cast<size_t>(TM_SMALL_CLASS_COUNT));
  return all[c];
}

// The per-arena rows (all slots in use).
std::vector<tm_arena_stats_t> arena_stats() {
  std::vector<tm_arena_stats_t> rows(TM_ARENA_SLOTS);
  const size_t used = tm_arena_stats(rows.data(), rows.size());
  EXPECT_GE(used, 1u);
  EXPECT_LE(used, static_cast<size_t>(TM_ARENA_SLOTS));
  rows.resize(std::min<size_t>(used, TM_ARENA_SLOTS));
  return rows;
}

TEST_F(StatsPrint, TextTableMatchesTmStats) {
  std::vector<void*> blocks;
  for (int i = 0; i < 37; ++i) blocks.push_back(tm_malloc(100));
  const tm_stats_t s = stats();
  const std::string text = printed(0);
  EXPECT_EQ(text.rfind("tinymalloc statistics\n", 0), 0u) << text;
  EXPECT_EQ(number_after(text, "  live_blocks: "), static_cast<long long>(s.live_blocks));
  EXPECT_EQ(number_after(text, "  requested_bytes: "), static_cast<long long>(s.requested_bytes));
  EXPECT_NE(text.find("fragmentation (mapped / usable): "), std::string::npos);
  // The class of 112-byte blocks has a row with at least our 37 live blocks.
  const std::vector<std::string> classes = section(text, "size classes");
  ASSERT_GE(classes.size(), 2u) << text;
  const std::vector<double> row = row_for(classes, tm_size_to_class(100));
  ASSERT_EQ(row.size(), 10u) << text;
  EXPECT_EQ(row[1], 112);                                               // size
  EXPECT_EQ(row[2], s.class_live_blocks[static_cast<size_t>(row[0])]);  // live
  EXPECT_GE(row[2], 37);                                                // live
  EXPECT_GE(row[3], row[2]);                                            // peak
  EXPECT_EQ(row[6], row[2] * 112);                                      // usable bytes
  EXPECT_GE(row[7], 1);                                                 // runs
  EXPECT_EQ(row[8], row[7] * 65536);                                    // run bytes
  EXPECT_NEAR(row[9], row[8] / row[6], 0.011);                          // frag
  for (void* p : blocks) tm_free(p);
}

TEST_F(StatsPrint, TextColumnsAreAlignedUnderTheirHeaders) {
  std::vector<void*> blocks;
  for (size_t size : {16, 100, 1000, 8000, 20000, 300000}) blocks.push_back(tm_malloc(size));
  const std::string text = printed(0);
  for (const char* title : {"size classes", "arenas"}) {
    const std::vector<std::string> table = section(text, title);
    ASSERT_GE(table.size(), 2u) << title << "\n" << text;
    EXPECT_NE(table[0].find("frag"), std::string::npos) << "header line first";
    for (size_t i = 1; i < table.size(); ++i) {
      EXPECT_EQ(table[i].size(), table[0].size()) << "row " << i << " of " << title << ":\n" << text;
    }
  }
  for (void* p : blocks) tm_free(p);
}

TEST_F(StatsPrint, JsonHasEveryFieldAndTheClassArray) {
  void* p = tm_malloc(5000);
  const tm_stats_t s = stats();
  const std::string json = printed(1);
  EXPECT_EQ(json.front(), '{');
  EXPECT_EQ(json.substr(json.size() - 2), "}\n");
  for (const char* key : {"live_blocks", "requested_bytes", "usable_bytes", "mapped_bytes", "committed_bytes",
                          "peak_mapped_bytes", "peak_requested_bytes", "small_live_blocks", "medium_live_blocks",
                          "large_live_blocks", "medium_free_blocks", "small_segments", "os_map_calls", "arenas_used",
                          "thread_caches", "cached_blocks", "remote_blocks", "pool_segments"}) {
    EXPECT_NE(json.find(json_key(key)), std::string::npos) << key;
  }
  EXPECT_EQ(number_after(json, "\"small_segments\": "), static_cast<long long>(s.small_segments));
  const size_t array = json.find("\"class_live_blocks\": [");
  ASSERT_NE(array, std::string::npos);
  const std::string items = json.substr(array, json.find(']', array) - array);
  EXPECT_EQ(static_cast<size_t>(std::count(items.begin(), items.end(), ',')), TM_SMALL_CLASS_COUNT - 1u);
  tm_free(p);
}

TEST_F(StatsPrint, JsonClassesAndArenasAreConsistentWithTheTotals) {
  std::vector<void*> blocks;
  for (int i = 0; i < 50; ++i) blocks.push_back(tm_malloc(48));
  for (int i = 0; i < 5; ++i) blocks.push_back(tm_malloc(100000));
  const tm_stats_t s = stats();
  const std::string json = printed(1);
  EXPECT_TRUE(balanced(json)) << json;
  const size_t classes = json.find("\"classes\": [");
  const size_t arenas = json.find("\"arenas\": [");
  ASSERT_NE(classes, std::string::npos) << json;
  ASSERT_NE(arenas, std::string::npos) << json;
  EXPECT_LT(classes, arenas);
  const std::string class_part = json.substr(classes, arenas - classes);
  const std::string arena_part = json.substr(arenas);
  // One object per class, in class order, with every key.
  EXPECT_EQ(static_cast<size_t>(std::count(class_part.begin(), class_part.end(), '{')),
            static_cast<size_t>(TM_SMALL_CLASS_COUNT));
  for (const char* key :
       {"class", "size", "live", "peak", "cached", "remote", "usable", "runs", "run_bytes", "fragmentation"}) {
    EXPECT_NE(class_part.find(json_key(key)), std::string::npos) << key;
  }
  for (size_t c = 0; c < TM_SMALL_CLASS_COUNT; ++c) {
    const size_t at = class_part.find("{\"class\": " + std::to_string(c) + ",");
    ASSERT_NE(at, std::string::npos) << c;
    EXPECT_EQ(number_after(class_part, "\"size\": ", at), static_cast<long long>(tm_size_class_size(c)));
    EXPECT_EQ(number_after(class_part, "\"live\": ", at), static_cast<long long>(s.class_live_blocks[c]));
    EXPECT_GE(number_after(class_part, "\"peak\": ", at), number_after(class_part, "\"live\": ", at));
  }
  EXPECT_EQ(sum_after(class_part, "\"live\": "), static_cast<long long>(s.small_live_blocks));
  EXPECT_EQ(sum_after(class_part, "\"cached\": "), static_cast<long long>(s.cached_blocks));
  // Arenas: every key; sums match the totals (this thread is the only one with a cache).
  for (const char* key :
       {"arena", "pool", "small_segments", "medium_segments", "mapped", "committed", "small_live", "small_usable",
        "small_remote", "medium_live", "medium_usable", "medium_free_blocks", "medium_free_bytes", "fragmentation"}) {
    EXPECT_NE(arena_part.find(json_key(key)), std::string::npos) << key;
  }
  EXPECT_EQ(sum_after(arena_part, "\"small_live\": "), static_cast<long long>(s.small_live_blocks));
  EXPECT_EQ(sum_after(arena_part, "\"medium_live\": "), static_cast<long long>(s.medium_live_blocks));
  EXPECT_EQ(sum_after(arena_part, "\"small_segments\": "), static_cast<long long>(s.small_segments));
  EXPECT_EQ(sum_after(arena_part, "\"medium_segments\": "), static_cast<long long>(s.medium_segments));
  EXPECT_EQ(sum_after(arena_part, "\"medium_free_bytes\": "), static_cast<long long>(s.medium_free_bytes));
  EXPECT_LE(sum_after(arena_part, "\"mapped\": "), static_cast<long long>(s.mapped_bytes));
  EXPECT_LE(sum_after(arena_part, "\"committed\": "), sum_after(arena_part, "\"mapped\": "));
  for (void* p : blocks) tm_free(p);
}

TEST_F(StatsPrint, ClassPeakRisesStaysAfterFreesAndResets) {
  const size_t c = tm_size_to_class(3000);
  const size_t size = tm_size_class_size(c);
  tm_stats_reset_peaks();
  const tm_class_stats_t before = class_stats(c);
  EXPECT_GE(before.peak_blocks, before.live_blocks);
  std::vector<void*> blocks;
  for (int i = 0; i < 300; ++i) blocks.push_back(tm_malloc(size));
  const tm_class_stats_t during = class_stats(c);
  EXPECT_EQ(during.live_blocks, before.live_blocks + 300);
  EXPECT_GE(during.peak_blocks, before.live_blocks + 300) << "the peak rises with the live blocks";
  EXPECT_GE(during.peak_blocks, during.live_blocks + during.cached_blocks + during.remote_blocks);
  EXPECT_EQ(during.usable_bytes, during.live_blocks * size);
  EXPECT_GE(during.runs, 1u);
  EXPECT_EQ(during.run_bytes, during.runs * 65536);
  for (void* p : blocks) tm_free(p);
  tm_release_cached();  // the thread cache goes back to the runs
  const tm_class_stats_t after = class_stats(c);
  EXPECT_EQ(after.live_blocks, before.live_blocks);
  EXPECT_EQ(after.cached_blocks, 0u);
  EXPECT_EQ(after.peak_blocks, during.peak_blocks) << "frees do not lower the peak";
  // The text table keeps the row of a class that had blocks, with its peak.
  const std::vector<double> row = row_for(section(printed(0), "size classes"), c);
  ASSERT_EQ(row.size(), 10u);
  EXPECT_EQ(row[2], static_cast<double>(after.live_blocks));
  EXPECT_EQ(row[3], static_cast<double>(after.peak_blocks));
  tm_stats_reset_peaks();
  const tm_class_stats_t reset = class_stats(c);
  EXPECT_LT(reset.peak_blocks, during.peak_blocks) << "tm_stats_reset_peaks lowers the peak";
  EXPECT_EQ(reset.peak_blocks, reset.live_blocks) << "to the blocks out of runs: live only, nothing cached";
}

TEST_F(StatsPrint, ClassStatsAcceptsShortAndNullOutputs) {
  EXPECT_EQ(tm_class_stats(nullptr, 0), static_cast<size_t>(TM_SMALL_CLASS_COUNT));
  tm_class_stats_t two[3] = {};
  two[2].size = 12345;
  EXPECT_EQ(tm_class_stats(two, 2), static_cast<size_t>(TM_SMALL_CLASS_COUNT));
  EXPECT_EQ(two[0].size, tm_size_class_size(0));
  EXPECT_EQ(two[1].size, tm_size_class_size(1));
  EXPECT_EQ(two[2].size, 12345u) << "nothing written past max";
  EXPECT_EQ(tm_arena_stats(nullptr, 0), stats().arenas_used);
  tm_arena_stats_t one[2] = {};
  one[1].index = 999;
  EXPECT_EQ(tm_arena_stats(one, 1), stats().arenas_used);
  EXPECT_EQ(one[0].index, 0u);
  EXPECT_EQ(one[1].index, 999u) << "nothing written past max";
}

TEST_F(StatsPrint, ArenasUsedByThreadsHaveRows) {
  ScopedOption arenas("arenas", 4);
  ScopedOption select("arena_select", 1);  // thread: round-robin
  constexpr int kThreads = 4;
  std::vector<std::vector<void*>> kept(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&kept, t] {
      for (int i = 0; i < 20; ++i) kept[t].push_back(tm_malloc(20000));  // medium: the thread's arena
      for (int i = 0; i < 100; ++i) kept[t].push_back(tm_malloc(200));   // small: from its cache refills
    });
  }
  for (std::thread& t : threads) t.join();  // exited: their caches went back to the runs
  const tm_stats_t s = stats();
  const std::vector<tm_arena_stats_t> rows = arena_stats();
  EXPECT_EQ(rows.size(), std::min<size_t>(s.arenas_used, TM_ARENA_SLOTS));
  size_t busy = 0;
  size_t small_live = 0;
  size_t medium_live = 0;
  size_t small_segments = 0;
  size_t medium_segments = 0;
  size_t usable = 0;
  for (size_t i = 0; i < rows.size(); ++i) {
    const tm_arena_stats_t& a = rows[i];
    EXPECT_EQ(a.index, i);
    EXPECT_EQ(a.mapped_bytes, (a.small_segments + a.medium_segments) * 4 * tmtest::MiB);
    EXPECT_LE(a.committed_bytes, a.mapped_bytes);
    if (a.medium_live_blocks >= 20) ++busy;
    small_live += a.small_live_blocks;
    medium_live += a.medium_live_blocks;
    small_segments += a.small_segments;
    medium_segments += a.medium_segments;
    usable += a.small_usable_bytes + a.medium_usable_bytes;
  }
  EXPECT_GE(busy, 2u) << "threads assigned round-robin use several arenas";
  EXPECT_EQ(small_live, s.small_live_blocks) << "quiescent: the arenas' live small blocks add up";
  EXPECT_EQ(medium_live, s.medium_live_blocks);
  EXPECT_EQ(small_segments, s.small_segments);
  EXPECT_EQ(medium_segments, s.medium_segments);
  if (s.large_live_blocks == 0) {
    EXPECT_EQ(usable, s.usable_bytes);
  }
  // Each busy arena has a text row: 11 columns, its medium live blocks in column 7.
  const std::vector<std::string> table = section(printed(0), "arenas");
  for (const tm_arena_stats_t& a : rows) {
    if (a.medium_live_blocks < 20) continue;
    const std::vector<double> row = row_for(table, a.index);
    ASSERT_EQ(row.size(), 11u) << "arena " << a.index;
    EXPECT_EQ(row[1], static_cast<double>(a.small_segments));
    EXPECT_EQ(row[2], static_cast<double>(a.medium_segments));
    EXPECT_EQ(row[5], static_cast<double>(a.small_live_blocks));
    EXPECT_EQ(row[7], static_cast<double>(a.medium_live_blocks));
  }
  for (std::vector<void*>& blocks : kept) {
    for (void* p : blocks) tm_free(p);
  }
}

TEST_F(StatsPrint, SnapshotsAndPeakResetsWhileThreadsAllocate) {
  ScopedOption arenas("arenas", 2);
  ScopedOption select("arena_select", 1);  // thread: the workers share two arenas
  const int devnull = open("/dev/null", O_WRONLY);
  ASSERT_GE(devnull, 0);
  std::atomic<bool> stop{false};
  std::vector<std::thread> threads;
  for (int t = 0; t < 3; ++t) {
    threads.emplace_back([&stop, t] {
      tmtest::Rng rng(static_cast<uint64_t>(t) + 1);
      std::vector<void*> blocks(512, nullptr);
      while (!stop.load(std::memory_order_relaxed)) {
        for (int i = 0; i < 256; ++i) {
          void*& slot = blocks[rng.below(blocks.size())];
          tm_free(slot);
          slot = tm_malloc(rng.chance(5) ? 20000 : rng.log_uniform(8, 4096));
        }
      }
      for (void* p : blocks) tm_free(p);
    });
  }
  for (int round = 0; round < 40; ++round) {
    tm_stats_print(devnull, round % 2);
    tm_class_stats_t classes[TM_SMALL_CLASS_COUNT];
    tm_class_stats(classes, TM_SMALL_CLASS_COUNT);
    for (const tm_class_stats_t& k : classes) EXPECT_GE(k.peak_blocks, k.live_blocks);
    tm_arena_stats_t rows[TM_ARENA_SLOTS];
    const size_t used = tm_arena_stats(rows, TM_ARENA_SLOTS);
    for (size_t i = 0; i < used && i < TM_ARENA_SLOTS; ++i) EXPECT_LE(rows[i].committed_bytes, rows[i].mapped_bytes);
    if (round % 4 == 0) tm_stats_reset_peaks();
  }
  stop.store(true);
  for (std::thread& t : threads) t.join();
  close(devnull);
}

TEST_F(StatsPrint, MemoryPoolHasAnArenaRow) {
  tm_heap_t* heap = tm_heap_create();
  ASSERT_NE(heap, nullptr);
  for (int i = 0; i < 10; ++i) ASSERT_NE(tm_heap_malloc(heap, 64), nullptr);
  const std::vector<tm_arena_stats_t> rows = arena_stats();
  ASSERT_GT(rows.size(), 64u) << "a pool's slot is counted";
  size_t pool_rows = 0;
  for (size_t i = 64; i < rows.size(); ++i) {
    if (rows[i].small_live_blocks == 0) continue;
    ++pool_rows;
    EXPECT_EQ(rows[i].small_live_blocks, 10u);
    EXPECT_EQ(rows[i].small_usable_bytes, 10 * tm_size_class_size(tm_size_to_class(64)));
    EXPECT_GE(rows[i].small_segments, 1u);
  }
  EXPECT_EQ(pool_rows, 1u);
  const std::string json = printed(1);
  EXPECT_TRUE(balanced(json));
  EXPECT_NE(json.find("\"pool\": true"), std::string::npos) << json;
  tm_heap_destroy(heap);
}

}  // namespace
