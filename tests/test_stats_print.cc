// tm_stats_print: the text table and the JSON object carry the same figures as tm_stats.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <string>
#include <vector>

#include "test_util.h"
#include "tinymalloc.h"

namespace {

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

// The number after `key` in `text` (the first occurrence), or -1.
long long number_after(const std::string& text, const std::string& key) {
  const size_t at = text.find(key);
  if (at == std::string::npos) return -1;
  return std::stoll(text.substr(at + key.size()));
}

TEST(StatsPrint, TextTableMatchesTmStats) {
  std::vector<void*> blocks;
  for (int i = 0; i < 37; ++i) blocks.push_back(tm_malloc(100));
  const tm_stats_t s = tmtest::stats();
  const std::string text = printed(0);
  EXPECT_EQ(text.rfind("tinymalloc statistics\n", 0), 0u) << text;
  EXPECT_EQ(number_after(text, "  live_blocks: "), static_cast<long long>(s.live_blocks));
  EXPECT_EQ(number_after(text, "  requested_bytes: "), static_cast<long long>(s.requested_bytes));
  EXPECT_NE(text.find("fragmentation (mapped / usable): "), std::string::npos);
  // The class of 112-byte blocks has a row with at least our 37 live blocks.
  const std::string row = "  " + std::to_string(tm_size_to_class(100)) + "\t112\t";
  ASSERT_NE(text.find(row), std::string::npos) << text;
  EXPECT_GE(number_after(text, row), 37);
  for (void* p : blocks) tm_free(p);
}

TEST(StatsPrint, JsonHasEveryFieldAndTheClassArray) {
  void* p = tm_malloc(5000);
  const tm_stats_t s = tmtest::stats();
  const std::string json = printed(1);
  EXPECT_EQ(json.front(), '{');
  EXPECT_EQ(json.substr(json.size() - 2), "}\n");
  for (const char* key : {"live_blocks", "requested_bytes", "usable_bytes", "mapped_bytes", "committed_bytes",
                          "peak_mapped_bytes", "peak_requested_bytes", "small_live_blocks", "medium_live_blocks",
                          "large_live_blocks", "medium_free_blocks", "small_segments", "os_map_calls", "arenas_used",
                          "thread_caches", "cached_blocks", "remote_blocks", "pool_segments"}) {
    EXPECT_NE(json.find("\"" + std::string(key) + "\": "), std::string::npos) << key;
  }
  EXPECT_EQ(number_after(json, "\"small_segments\": "), static_cast<long long>(s.small_segments));
  const size_t array = json.find("\"class_live_blocks\": [");
  ASSERT_NE(array, std::string::npos);
  const std::string items = json.substr(array, json.find(']', array) - array);
  EXPECT_EQ(static_cast<size_t>(std::count(items.begin(), items.end(), ',')), TM_SMALL_CLASS_COUNT - 1u);
  tm_free(p);
}

}  // namespace
