// tm_heap_map: the text form's rows and figures agree with tm_stats and with the blocks the
// test holds; the SVG form is one well-formed image with a row per segment; bad arguments
// fail with errno. (tests/heapmap/check-heapmap parses real SVG output with an XML parser.)
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "test_util.h"
#include "tinymalloc.h"
#include "tinymalloc_test.h"

namespace {

using namespace tmtest;

// The map written by tm_heap_map in `format`, read back from a memory file (a pipe could fill
// up: tm_heap_map writes everything before the test reads).
std::string heap_map(int format) {
  const int fd = memfd_create("heapmap", MFD_CLOEXEC);
  EXPECT_GE(fd, 0);
  EXPECT_EQ(tm_heap_map(fd, format), 0);
  std::string out;
  char buffer[65536];
  ssize_t got;
  lseek(fd, 0, SEEK_SET);
  while ((got = read(fd, buffer, sizeof buffer)) > 0) out.append(buffer, static_cast<size_t>(got));
  close(fd);
  return out;
}

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> lines;
  size_t start = 0;
  for (size_t nl; (nl = text.find('\n', start)) != std::string::npos; start = nl + 1) {
    lines.push_back(text.substr(start, nl - start));
  }
  return lines;
}

bool starts_with(const std::string& s, const char* prefix) { return s.rfind(prefix, 0) == 0; }

// The rows of one kind ("small", "medium", "large", "pooled", "sampled").
std::vector<std::string> rows(const std::string& map, const char* kind) {
  std::vector<std::string> out;
  for (const std::string& line : lines_of(map)) {
    if (starts_with(line, kind) && line.size() > std::strlen(kind) && line[std::strlen(kind)] == ' ') {
      out.push_back(line);
    }
    if (starts_with(line, kind) && line.size() > std::strlen(kind) && line[std::strlen(kind)] == '\t') {
      out.push_back(line);
    }
  }
  return out;
}

// The 64-character strip between the row's two '|'.
std::string strip_of(const std::string& row) {
  const size_t open = row.find('|');
  const size_t close = row.find('|', open + 1);
  if (open == std::string::npos || close == std::string::npos) return "";
  return row.substr(open + 1, close - open - 1);
}

// The number right after the strip: "| <N> blocks in use ...".
uint64_t first_figure(const std::string& row) {
  const size_t close = row.find('|', row.find('|') + 1);
  return std::strtoull(row.c_str() + close + 1, nullptr, 10);
}

// The address printed after the row's label.
uintptr_t address_of(const std::string& row) {
  const size_t at = row.find("0x");
  return at == std::string::npos ? 0 : std::strtoull(row.c_str() + at, nullptr, 16);
}

class HeapMap : public HeapTest {};

TEST_F(HeapMap, TextRowsAndFiguresMatchTheHeap) {
  std::vector<void*> small;
  std::vector<void*> medium;
  for (int i = 0; i < 3000; ++i) small.push_back(tm_malloc(48));
  for (int i = 0; i < 500; ++i) small.push_back(tm_malloc(400));
  for (int i = 0; i < 40; ++i) medium.push_back(tm_malloc(100000));
  void* large = tm_malloc(size_t{9} << 20);
  ASSERT_NE(large, nullptr);
  for (size_t i = 0; i < medium.size(); i += 2) tm_free(medium[i]);  // free holes between live blocks
  tm_release_cached();  // every handed-out small block is then live, every medium one in use
  tm_stats_t s;
  tm_stats(&s);

  const std::string map = heap_map(TM_HEAP_MAP_TEXT);
  ASSERT_TRUE(starts_with(map, "tinymalloc heap map: mapped ")) << map.substr(0, 200);
  EXPECT_NE(map.find("legend:"), std::string::npos);

  const auto small_rows = rows(map, "small");
  const auto medium_rows = rows(map, "medium");
  const auto large_rows = rows(map, "large");
  const auto pooled_rows = rows(map, "pooled");
  EXPECT_EQ(small_rows.size(), s.small_segments);
  EXPECT_EQ(medium_rows.size(), s.medium_segments);
  EXPECT_EQ(large_rows.size(), s.large_mappings);
  EXPECT_EQ(pooled_rows.size(), s.pool_segments);

  uint64_t small_in_use = 0;
  for (const std::string& row : small_rows) {
    const std::string strip = strip_of(row);
    ASSERT_EQ(strip.size(), 64u) << row;
    EXPECT_EQ(strip[0], '#') << "a segment starts with its header: " << row;
    small_in_use += first_figure(row);
  }
  EXPECT_EQ(small_in_use, s.small_live_blocks + s.remote_blocks);
  EXPECT_NE(map.find('@'), std::string::npos) << "3000 48-byte blocks fill whole runs";
  // No sweep ran: the free runs of the fresh segments are drawn free, not purged.
  bool free_run_seen = false;
  for (const std::string& row : small_rows) free_run_seen |= strip_of(row).find(' ') != std::string::npos;
  EXPECT_TRUE(free_run_seen) << "no small run drawn free (' ')";

  uint64_t medium_in_use = 0;
  for (const std::string& row : medium_rows) {
    ASSERT_EQ(strip_of(row).size(), 64u) << row;
    medium_in_use += first_figure(row);
  }
  EXPECT_EQ(medium_in_use, s.medium_live_blocks + s.medium_cached_blocks);

  bool large_found = false;
  for (const std::string& row : large_rows) {
    const uintptr_t mapping = address_of(row);
    const auto user = reinterpret_cast<uintptr_t>(large);
    if (user >= mapping && user < mapping + (size_t{10} << 20)) large_found = true;
    EXPECT_NE(row.find("9.0 MiB requested"), std::string::npos) << row;
  }
  EXPECT_TRUE(large_found) << "no large row holds the 9 MiB block";

  // The rows name the segments the blocks live in.
  bool segment_named = false;
  const uintptr_t first_small_segment = reinterpret_cast<uintptr_t>(small[0]) & ~((uintptr_t{4} << 20) - 1);
  for (const std::string& row : small_rows) segment_named |= address_of(row) == first_small_segment;
  EXPECT_TRUE(segment_named);

  for (void* p : small) tm_free(p);
  for (size_t i = 1; i < medium.size(); i += 2) tm_free(medium[i]);
  tm_free(large);
  tm_release_cached();
  // Freed: the figures go down with the blocks.
  const std::string after = heap_map(TM_HEAP_MAP_TEXT);
  uint64_t left = 0;
  for (const std::string& row : rows(after, "small")) left += first_figure(row);
  tm_stats(&s);
  EXPECT_EQ(left, s.small_live_blocks + s.remote_blocks);
  EXPECT_TRUE(rows(after, "large").size() == s.large_mappings);
}

TEST_F(HeapMap, SvgHasOneGroupPerRowAndItsHeightFits) {
  std::vector<void*> blocks;
  for (int i = 0; i < 2000; ++i) blocks.push_back(tm_malloc(static_cast<size_t>(16 + (i * 37) % 30000)));
  const std::string text = heap_map(TM_HEAP_MAP_TEXT);
  const std::string svg = heap_map(TM_HEAP_MAP_SVG);
  for (void* p : blocks) tm_free(p);

  ASSERT_TRUE(starts_with(svg, "<svg xmlns=\"http://www.w3.org/2000/svg\"")) << svg.substr(0, 100);
  ASSERT_GE(svg.size(), 7u);
  EXPECT_EQ(svg.substr(svg.size() - 7), "</svg>\n");
  size_t groups = 0;
  for (size_t at = 0; (at = svg.find("<g transform=", at)) != std::string::npos; ++at) ++groups;
  size_t closed = 0;
  for (size_t at = 0; (at = svg.find("</g>", at)) != std::string::npos; ++at) ++closed;
  const size_t text_rows = rows(text, "small").size() + rows(text, "medium").size() + rows(text, "large").size() +
                           rows(text, "pooled").size() + rows(text, "sampled").size();
  EXPECT_EQ(groups, text_rows);
  EXPECT_EQ(closed, groups);
  // The declared height covers every row (128 header + 22 per row + 10).
  const size_t h = svg.find("height=\"");
  ASSERT_NE(h, std::string::npos);
  EXPECT_EQ(std::strtoul(svg.c_str() + h + 8, nullptr, 10), 128 + 22 * groups + 10);
  EXPECT_NE(svg.find("<title>run "), std::string::npos);
  EXPECT_NE(svg.find("<title>block in use at +"), std::string::npos);
}

TEST_F(HeapMap, MemoryPoolSegmentsAreLabelled) {
  tm_heap_t* pool = tm_heap_create();
  ASSERT_NE(pool, nullptr);
  for (int i = 0; i < 100; ++i) ASSERT_NE(tm_heap_malloc(pool, 64), nullptr);
  for (int i = 0; i < 10; ++i) ASSERT_NE(tm_heap_malloc(pool, 50000), nullptr);
  const std::string map = heap_map(TM_HEAP_MAP_TEXT);
  tm_heap_destroy(pool);
  size_t pool_small = 0;
  size_t pool_medium = 0;
  for (const std::string& row : rows(map, "small")) pool_small += row.find(" pool ") != std::string::npos ? 1 : 0;
  for (const std::string& row : rows(map, "medium")) pool_medium += row.find(" pool ") != std::string::npos ? 1 : 0;
  EXPECT_EQ(pool_small, 1u) << map;
  EXPECT_EQ(pool_medium, 1u) << map;
}

#if !TM_TEST_ASAN && !TM_TEST_TSAN
TEST_F(HeapMap, SampledSlotsShowLiveAndFreedBlocks) {
  ScopedOption rate("sample_rate", 1);
  std::vector<void*> blocks;
  for (int i = 0; i < 10; ++i) blocks.push_back(tm_malloc(100));
  size_t sampled = 0;
  size_t first = blocks.size();
  for (size_t i = 0; i < blocks.size(); ++i) {
    if (tm_test_is_sampled(blocks[i]) == 0) continue;
    ++sampled;
    if (first == blocks.size()) first = i;
  }
  ASSERT_GT(sampled, 0u);
  tm_free(blocks[first]);
  const std::string map = heap_map(TM_HEAP_MAP_TEXT);
  const auto region = rows(map, "sampled");
  ASSERT_EQ(region.size(), 1u) << map;
  const std::string strip = strip_of(region[0]);
  ASSERT_EQ(strip.size(), 64u);
  size_t live = 0;
  size_t freed = 0;
  for (char c : strip) {
    live += c == 'L' ? 1 : 0;
    freed += c == 'f' ? 1 : 0;
  }
  EXPECT_EQ(live + 1, sampled);
  EXPECT_EQ(freed, 1u);
  for (size_t i = 0; i < blocks.size(); ++i) {
    if (i != first) tm_free(blocks[i]);
  }
}
#endif

TEST(HeapMapArguments, BadDescriptorOrFormatFailsWithErrno) {
  errno = 0;
  EXPECT_EQ(tm_heap_map(-1, TM_HEAP_MAP_TEXT), -1);
  EXPECT_EQ(errno, EINVAL);
  errno = 0;
  EXPECT_EQ(tm_heap_map(STDERR_FILENO, 7), -1);
  EXPECT_EQ(errno, EINVAL);
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  close(fds[0]);
  close(fds[1]);
  errno = 0;
  EXPECT_EQ(tm_heap_map(fds[1], TM_HEAP_MAP_TEXT), -1);  // closed: the write fails
  EXPECT_EQ(errno, EBADF);
  // The heap is unharmed and the locks were released.
  void* p = tm_malloc(10);
  EXPECT_NE(p, nullptr);
  tm_free(p);
  EXPECT_EQ(tm_check_heap(), TM_CHECK_OK);
}

}  // namespace
