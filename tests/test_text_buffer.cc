// TextBuffer (the allocator's formatting for reports) and FdWriter (its buffered output):
// formatting, truncation, one write per 4 KiB block, errors; and tm_stats_print writes a
// block at a time, not a line at a time.
#include <errno.h>
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "internal_headers.h"
#include "tinymalloc.h"

namespace {

TEST(TextBuffer, FormatsDecimalHexAndStrings) {
  tmi::TextBuffer b;
  EXPECT_STREQ(b.c_str(), "");
  EXPECT_EQ(b.size(), 0u);
  b.str("n=").dec(0).str(" ").dec(18446744073709551615ull).str(" ").hex(0).str(" ").hex(0xdeadbeef);
  EXPECT_STREQ(b.c_str(), "n=0 18446744073709551615 0x0 0xdeadbeef");
  EXPECT_EQ(b.size(), std::string(b.c_str()).size());
}

TEST(TextBuffer, TruncatesAtCapacityAndStaysTerminated) {
  tmi::TextBuffer b;
  const std::string chunk(100, 'x');
  for (int i = 0; i < 20; ++i) b.str(chunk.c_str());
  b.dec(123456789).hex(0xabc);
  EXPECT_EQ(b.size(), 1023u);  // capacity 1024, one byte for the terminator
  EXPECT_EQ(std::string(b.c_str()), std::string(1023, 'x'));
}

// Packets received on a SOCK_SEQPACKET socket: one per write() on the other end.
std::vector<std::string> packets(int fd) {
  std::vector<std::string> out;
  char buffer[1 << 16];
  ssize_t n;
  while ((n = recv(fd, buffer, sizeof buffer, 0)) > 0) out.emplace_back(buffer, static_cast<size_t>(n));
  return out;
}

TEST(FdWriter, WritesWholeBlocksAndTheRestWhenDestroyed) {
  int fds[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_SEQPACKET, 0, fds), 0);
  std::string expected;
  {
    tmi::FdWriter out(fds[1]);
    for (int i = 0; expected.size() < 10007; ++i) {
      tmi::TextBuffer piece;
      piece.dec(static_cast<uint64_t>(i % 10)).str("abcdef");  // 7 bytes
      out.put(piece);
      expected += piece.c_str();
    }
  }
  close(fds[1]);
  const std::vector<std::string> got = packets(fds[0]);
  close(fds[0]);
  ASSERT_EQ(got.size(), 3u);  // 4096 + 4096 + the rest at destruction
  EXPECT_EQ(got[0].size(), 4096u);
  EXPECT_EQ(got[1].size(), 4096u);
  EXPECT_EQ(got[0] + got[1] + got[2], expected);
}

TEST(FdWriter, AFailedWriteIsReportedAndTheRestDropped) {
  int fds[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_SEQPACKET, 0, fds), 0);
  close(fds[0]);
  close(fds[1]);  // fds[1] is now a closed descriptor
  tmi::FdWriter out(fds[1]);
  out.put("lost", 4);
  errno = 0;
  EXPECT_FALSE(out.flush());
  EXPECT_EQ(errno, EBADF);
  out.put(std::string(10000, 'y').c_str(), 10000);  // fills and flushes again: no write, no crash
  EXPECT_FALSE(out.flush());
  EXPECT_TRUE(tmi::write_fully(STDOUT_FILENO, "", 0));  // nothing to write is success
}

// tm_stats_print goes through an FdWriter: a few writes of 4 KiB, not one per line.
TEST(FdWriter, StatsPrintWritesABlockAtATime) {
  void* keep = tm_malloc(100);
  for (int json = 0; json <= 1; ++json) {
    int fds[2];
    ASSERT_EQ(socketpair(AF_UNIX, SOCK_SEQPACKET, 0, fds), 0);
    tm_stats_print(fds[1], json);
    close(fds[1]);
    const std::vector<std::string> got = packets(fds[0]);
    close(fds[0]);
    size_t bytes = 0, lines = 0;
    for (const std::string& p : got) {
      bytes += p.size();
      for (char c : p) lines += c == '\n';
    }
    SCOPED_TRACE(json ? "json" : "text");
    EXPECT_GT(lines, 10u);
    EXPECT_EQ(got.size(), (bytes + 4095) / 4096);  // one write per 4 KiB, the rest in one more
    for (size_t i = 0; i + 1 < got.size(); ++i) EXPECT_EQ(got[i].size(), 4096u);
  }
  tm_free(keep);
}

}  // namespace
