// Concurrency stress tests (ctest label `stress`): cross-thread frees through a queue, churn
// of thousands of short-lived threads, fork() while other threads allocate, a storm of frees
// into foreign arenas (remote-free lists), and blocks realloc'ed alternately by two threads
// across every tier. Each checks contents, the heap
// (tm_check_heap), that the live counters return to the baseline (HeapTest), and that the
// committed memory stays bounded over the run (no unbounded growth from blocks stranded in
// thread caches or remote-free lists).
//
// Bounded time: a few seconds each in release on a small machine; the work is divided by 2
// under ASan and by 4 under TSan (TM_STRESS_DIVISOR below), and TM_STRESS_SCALE=<x> in the
// environment multiplies it (e.g. 10 for a long soak, 0.1 for a smoke run).
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "test_util.h"
#include "tinymalloc.h"

#ifndef TM_TEST_TSAN
#if defined(__SANITIZE_THREAD__)
#define TM_TEST_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define TM_TEST_TSAN 1
#endif
#endif
#endif
#ifndef TM_TEST_TSAN
#define TM_TEST_TSAN 0
#endif

// Work divisor of the sanitizer builds (their per-op cost is several times higher).
#define TM_STRESS_DIVISOR (TM_TEST_TSAN ? 4 : TM_TEST_ASAN ? 2 : 1)

namespace {

using namespace tmtest;

// TM_STRESS_SCALE from the environment (default 1).
double env_scale() {
  if (const char* e = std::getenv("TM_STRESS_SCALE")) {
    const double s = std::strtod(e, nullptr);
    if (s > 0) return s;
  }
  return 1.0;
}

// Iteration count n scaled for the build and by TM_STRESS_SCALE (at least `floor`).
size_t scaled(size_t n, size_t floor = 1) {
  const size_t v = static_cast<size_t>(static_cast<double>(n) * env_scale() / TM_STRESS_DIVISOR);
  return v < floor ? floor : v;
}

// A block carries its size and seed in a 16-byte header so whoever frees it can verify it.
struct Tag {
  uint64_t size;
  uint64_t seed;
};

// Mixed sizes: mostly small, some medium, a few large.
size_t mixed_size(Rng& rng) {
  const uint64_t r = rng.below(1000);
  if (r < 700) return rng.range(sizeof(Tag), 1024);
  if (r < 900) return rng.range(1025, 8192);
  if (r < 985) return rng.range(8193, 256 * KiB);
  return rng.range(512 * KiB + 1, 1 * MiB);
}

// Allocates a tagged, patterned block of n bytes (calloc now and then); nullptr on failure.
void* make_tagged(Rng& rng, size_t n, uint64_t seed) {
  void* p = rng.chance(10) ? tm_calloc(1, n) : tm_malloc(n);
  if (p == nullptr) return nullptr;
  auto* t = static_cast<Tag*>(p);
  t->size = n;
  t->seed = seed;
  fill_sparse(static_cast<char*>(p) + sizeof(Tag), n - sizeof(Tag), seed);
  return p;
}

// True when the block's header and pattern are intact.
bool tagged_ok(const void* p) {
  const auto* t = static_cast<const Tag*>(p);
  if (t->size < sizeof(Tag) || t->size > 4 * MiB) return false;
  if (tm_usable_size(p) < t->size) return false;
  return check_sparse(static_cast<const char*>(p) + sizeof(Tag), t->size - sizeof(Tag), t->seed);
}

// Committed-memory samples tagged with the fraction of the work done.
class MemorySampler {
 public:
  // Records tm_stats' committed bytes at progress point `done` (of `total`).
  void sample(size_t done, size_t total) {
    const size_t c = stats().committed_bytes;
    std::lock_guard<std::mutex> g(mu_);
    (done * 2 < total ? first_ : second_) = std::max(done * 2 < total ? first_ : second_, c);
    ++samples_;
  }
  size_t samples() const { return samples_; }  // samples taken
  // The committed bytes of the second half may exceed the first half's maximum by a slack
  // factor (fragmentation drift, caches) but must not keep growing.
  bool bounded(double factor, size_t extra) const {
    return static_cast<double>(second_) <= static_cast<double>(first_) * factor + static_cast<double>(extra);
  }
  // The two maxima, for messages.
  std::string describe() const {
    return "committed bytes: max " + std::to_string(first_) + " in the first half, " + std::to_string(second_) +
           " in the second (" + std::to_string(samples_) + " samples)";
  }

 private:
  std::mutex mu_;
  size_t first_ = 0, second_ = 0, samples_ = 0;
};

class Stress : public HeapTest {};

// ---- (a) producer / consumer -------------------------------------------------------------------

// Producers allocate mixed small / medium / large blocks, pattern them and pass them through a
// bounded queue; consumers verify and free them (every free is a cross-thread free).
TEST_F(Stress, ProducerConsumerCrossThreadFrees) {
  constexpr int kProducers = 2, kConsumers = 2;
  constexpr size_t kQueueMax = 128;
  const size_t total = scaled(1500000, 2000);
  std::mutex mu;
  std::condition_variable not_empty, not_full;
  std::deque<void*> queue;
  size_t produced = 0;  // under mu
  bool producers_done = false;
  std::atomic<size_t> consumed{0}, bad{0}, failed_allocs{0};
  MemorySampler mem;

  auto producer = [&](int id) {
    Rng rng(0xabc0 + static_cast<uint64_t>(id));
    for (;;) {
      size_t my;
      {
        std::lock_guard<std::mutex> g(mu);
        if (produced >= total) return;
        my = produced++;
      }
      void* p = make_tagged(rng, mixed_size(rng), my + 1);
      if (p == nullptr) {
        failed_allocs.fetch_add(1);
        continue;
      }
      std::unique_lock<std::mutex> l(mu);
      not_full.wait(l, [&] { return queue.size() < kQueueMax; });
      queue.push_back(p);
      not_empty.notify_one();
      if (my % 512 == 0) {
        l.unlock();
        mem.sample(my, total);
      }
    }
  };
  auto consumer = [&] {
    for (;;) {
      void* p;
      {
        std::unique_lock<std::mutex> l(mu);
        not_empty.wait(l, [&] { return !queue.empty() || producers_done; });
        if (queue.empty()) return;
        p = queue.front();
        queue.pop_front();
        not_full.notify_one();
      }
      if (!tagged_ok(p)) bad.fetch_add(1);
      tm_free(p);
      consumed.fetch_add(1);
    }
  };
  std::vector<std::thread> prod, cons;
  for (int i = 0; i < kConsumers; ++i) cons.emplace_back(consumer);
  for (int i = 0; i < kProducers; ++i) prod.emplace_back(producer, i);
  for (auto& t : prod) t.join();
  {
    std::lock_guard<std::mutex> g(mu);
    producers_done = true;
  }
  not_empty.notify_all();
  for (auto& t : cons) t.join();

  std::printf("blocks=%zu consumed=%zu %s\n", total, consumed.load(), mem.describe().c_str());
  EXPECT_EQ(bad.load(), 0u) << "blocks changed between producer and consumer";
  EXPECT_EQ(failed_allocs.load(), 0u);
  EXPECT_EQ(consumed.load() + failed_allocs.load(), total);
  EXPECT_GT(mem.samples(), 2u);
  EXPECT_TRUE(mem.bounded(1.5, 32 * MiB)) << mem.describe();
  TM_EXPECT_HEAP_OK();
}

// ---- (b) thread churn ----------------------------------------------------------------------------

// Thousands of short-lived threads, in waves: each allocates blocks, frees some itself and
// leaves the rest to the main thread, which verifies and frees them after the owner exited.
TEST_F(Stress, ThousandsOfShortLivedThreads) {
  const size_t threads_total = scaled(3000, 100);
  constexpr size_t kWave = 16;
  constexpr size_t kPerThread = 24;
  const size_t waves = (threads_total + kWave - 1) / kWave;
  std::atomic<size_t> bad{0}, failed_allocs{0};
  size_t first_third_max = 0, last_max = 0, freed_by_main = 0;
  for (size_t w = 0; w < waves; ++w) {
    std::vector<std::vector<void*>> left(kWave);
    std::vector<std::thread> pool;
    for (size_t i = 0; i < kWave; ++i) {
      pool.emplace_back([&, i, w] {
        Rng rng(w * 1000 + i);
        std::vector<void*> mine;
        for (size_t k = 0; k < kPerThread; ++k) {
          void* p = make_tagged(rng, mixed_size(rng), (w << 20) + (i << 8) + k + 1);
          if (p == nullptr) {
            failed_allocs.fetch_add(1);
            continue;
          }
          mine.push_back(p);
        }
        for (size_t k = 0; k < mine.size(); ++k) {
          if (k % 3 == 0) {
            if (!tagged_ok(mine[k])) bad.fetch_add(1);
            tm_free(mine[k]);
          } else {
            left[i].push_back(mine[k]);
          }
        }
      });
    }
    for (auto& t : pool) t.join();  // the owners have exited
    for (auto& v : left) {
      for (void* p : v) {
        if (!tagged_ok(p)) bad.fetch_add(1);
        tm_free(p);
        ++freed_by_main;
      }
    }
    const size_t c = stats().committed_bytes;
    if (w < waves / 3) first_third_max = std::max(first_third_max, c);
    if (w >= waves - waves / 3) last_max = std::max(last_max, c);
  }
  std::printf("threads=%zu blocks freed by the main thread=%zu committed: first third max %zu, last third max %zu\n",
              waves * kWave, freed_by_main, first_third_max, last_max);
  EXPECT_EQ(bad.load(), 0u);
  EXPECT_EQ(failed_allocs.load(), 0u);
  EXPECT_GT(freed_by_main, 0u);
  // Exited threads' caches must not pile up: the last waves need no more memory than the first.
  EXPECT_LE(static_cast<double>(last_max), static_cast<double>(first_third_max) * 1.5 + 32.0 * MiB)
      << "committed memory grows with the number of exited threads";
  TM_EXPECT_HEAP_OK();
}

// ---- (c) fork while other threads allocate -----------------------------------------------------

// In a forked child: allocate, check and free a few hundred blocks, check the heap; the exit
// status says whether everything held (0) or not (1). Only tm_* and _exit: no stdio or gtest
// (their locks may have been held by a thread that does not exist in the child).
[[noreturn]] void child_work(uint64_t seed) {
  constexpr int kMax = 300;
  void* blocks[kMax];  // no std::vector: the system malloc is not ours to trust in the child
  int count = 0;
  Rng rng(seed);
  bool ok = true;
  for (int i = 0; i < kMax && ok; ++i) {
    const size_t n = rng.range(sizeof(Tag), rng.chance(10) ? 200000 : 4000);
    void* p = i % 3 == 0 ? tm_calloc(1, n) : tm_malloc(n);
    if (p == nullptr) {
      ok = false;
      break;
    }
    if (i % 3 == 0) {
      const auto* b = static_cast<const uint8_t*>(p);
      for (size_t k = 0; k < n; k += 61) ok = ok && b[k] == 0;
    }
    auto* t = static_cast<Tag*>(p);
    t->size = n;
    t->seed = seed + static_cast<uint64_t>(i);
    fill_sparse(static_cast<char*>(p) + sizeof(Tag), n - sizeof(Tag), t->seed);
    blocks[count++] = p;
    if (i % 4 == 3) {  // grow one block, free another
      const int j = static_cast<int>(rng.below(static_cast<uint64_t>(count)));
      ok = ok && tagged_ok(blocks[j]);
      auto* old = static_cast<Tag*>(blocks[j]);
      const size_t keep = old->size;
      const uint64_t s = old->seed;
      auto* q = static_cast<Tag*>(tm_realloc(old, rng.range(keep, keep * 3)));
      if (q == nullptr) {
        ok = false;
        break;
      }
      ok = ok && check_sparse(reinterpret_cast<char*>(q) + sizeof(Tag), keep - sizeof(Tag), s);
      blocks[j] = q;  // its tag still says `keep` bytes, which the old pattern covers
      const int k = static_cast<int>(rng.below(static_cast<uint64_t>(count)));
      ok = ok && tagged_ok(blocks[k]);
      tm_free(blocks[k]);
      blocks[k] = blocks[--count];
    }
  }
  for (int i = 0; i < count; ++i) {
    ok = ok && tagged_ok(blocks[i]);
    tm_free(blocks[i]);
  }
  ok = ok && tm_check_heap() == 0;
  _exit(ok ? 0 : 1);
}

// fork() repeatedly while 4 threads hammer malloc/free/realloc: every child must be able to
// allocate (no allocator lock held by a thread that does not exist in the child: the
// allocator needs pthread_atfork handlers) and exit within 10 s; a child that does not is
// killed and reported as deadlocked.
TEST_F(Stress, ForkWhileThreadsAllocate) {
  // Under ThreadSanitizer a fork costs ~150 ms (its runtime stops the world): fewer forks.
  // TM_STRESS_NO_TSAN_FORK=1 skips the test there (should TSan's own fork support misbehave).
  if (TM_TEST_TSAN && std::getenv("TM_STRESS_NO_TSAN_FORK") != nullptr) GTEST_SKIP() << "TM_STRESS_NO_TSAN_FORK is set";
  const int forks = std::clamp(static_cast<int>((TM_TEST_TSAN ? 20 : 50) * env_scale()), 5, 1000);
  std::atomic<bool> stop{false};
  std::atomic<size_t> bad{0}, ops{0};
  std::vector<std::thread> pool;
  for (int id = 0; id < 4; ++id) {
    pool.emplace_back([&, id] {
      Rng rng(0xf0f0 + static_cast<uint64_t>(id));
      std::vector<void*> local(32, nullptr);
      uint64_t seed = static_cast<uint64_t>(id) << 40;
      while (!stop.load(std::memory_order_relaxed)) {
        void*& p = local[rng.below(local.size())];
        if (p == nullptr) {
          p = make_tagged(rng, mixed_size(rng), ++seed);
        } else if (rng.chance(50)) {
          if (!tagged_ok(p)) bad.fetch_add(1);
          tm_free(p);
          p = nullptr;
        } else {
          if (!tagged_ok(p)) bad.fetch_add(1);
          auto* t = static_cast<Tag*>(p);
          const size_t old = t->size;
          const uint64_t s = t->seed;
          const size_t n = std::max(old, mixed_size(rng));
          auto* q = static_cast<Tag*>(tm_realloc(p, n));
          if (q == nullptr) {
            bad.fetch_add(1);
            continue;
          }
          if (!check_sparse(reinterpret_cast<char*>(q) + sizeof(Tag), old - sizeof(Tag), s)) bad.fetch_add(1);
          q->size = old;
          p = q;
        }
        ops.fetch_add(1, std::memory_order_relaxed);
      }
      for (void* p : local) {
        if (p != nullptr) {
          if (!tagged_ok(p)) bad.fetch_add(1);
          tm_free(p);
        }
      }
    });
  }
  int deadlocked = 0, failed = 0, crashed = 0;
  for (int i = 0; i < forks; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
    const pid_t pid = fork();
    ASSERT_GE(pid, 0) << "fork failed";
    if (pid == 0) child_work(0x1000 + static_cast<uint64_t>(i) * 7919);
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    int status = 0;
    pid_t r = 0;
    while ((r = waitpid(pid, &status, WNOHANG)) == 0 && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    if (r == 0) {
      kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
      ++deadlocked;
    } else if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
      continue;
    } else if (WIFEXITED(status)) {
      ++failed;
    } else {
      ++crashed;
    }
  }
  stop.store(true);
  for (auto& t : pool) t.join();
  std::printf("forks=%d deadlocked=%d failed=%d crashed=%d parent ops=%zu\n", forks, deadlocked, failed, crashed,
              ops.load());
  EXPECT_EQ(deadlocked, 0) << "children that did not exit within 10 s (allocator lock held across fork?)";
  EXPECT_EQ(failed, 0) << "children whose allocations, contents or heap check failed";
  EXPECT_EQ(crashed, 0) << "children killed by a signal (allocator abort?)";
  EXPECT_EQ(bad.load(), 0u);
  EXPECT_GT(ops.load(), 0u);
  TM_EXPECT_HEAP_OK();
}

// ---- (e) remote-free storm ------------------------------------------------------------------------

// Puts every new thread into its own arena (arena_select=thread, arenas=n) for the lifetime of
// the object; the previous options come back afterwards.
class ThreadArenas {
 public:
  // Sets arena_select=thread and arenas=n; ok() tells whether both took effect.
  explicit ThreadArenas(long n) {
    ok_ = tm_option_get("arenas", &arenas_) == 0 && tm_option_get("arena_select", &select_) == 0 &&
          tm_option_set("arena_select", 1) == 0 && tm_option_set("arenas", n) == 0;
  }
  // Restores the previous options.
  ~ThreadArenas() {
    tm_option_set("arenas", arenas_);
    tm_option_set("arena_select", select_);
  }
  bool ok() const { return ok_; }  // the options were set

 private:
  bool ok_ = false;
  long arenas_ = 0, select_ = 0;
};

// Threads in separate arenas pass batches of same-class blocks around a ring; each frees what
// it receives. Every free is into a foreign arena (through its remote-free list when the owner
// holds the class lock, which it does while refilling its cache from that list), so pushes and
// drains race all the time. A lost or unordered push shows up as changed contents, a heap
// check failure, or live counters that do not return to the baseline.
TEST_F(Stress, RemoteFreeStormIntoForeignArenas) {
  constexpr unsigned kThreads = 4;
  constexpr size_t kBatch = 256;
  const ThreadArenas arenas(kThreads);
  ASSERT_TRUE(arenas.ok()) << "tm_option_set(arena_select / arenas) failed";
  const size_t rounds = scaled(6000, 50);
  struct Box {
    std::mutex mu;
    std::vector<std::vector<std::pair<void*, uint64_t>>> batches;
  };
  std::vector<Box> boxes(kThreads);
  std::atomic<size_t> bad{0}, failed_allocs{0}, freed{0};
  std::atomic<unsigned> ready{0};
  static const size_t kSizes[] = {64, 48, 64, 128, 64, 1000};
  auto worker = [&](unsigned me) {
    ready.fetch_add(1);
    while (ready.load() < kThreads) std::this_thread::yield();
    for (size_t r = 0; r < rounds; ++r) {
      const size_t n = kSizes[(r + me) % (sizeof kSizes / sizeof kSizes[0])];
      std::vector<std::pair<void*, uint64_t>> batch;
      batch.reserve(kBatch);
      for (size_t i = 0; i < kBatch; ++i) {
        void* p = tm_malloc(n);
        if (p == nullptr) {
          failed_allocs.fetch_add(1);
          continue;
        }
        const uint64_t seed = (uint64_t{me} << 48) ^ (r << 16) ^ i;
        fill_pattern(p, n, seed);
        batch.emplace_back(p, seed | uint64_t{n} << 32);
      }
      {
        std::lock_guard<std::mutex> g(boxes[(me + 1) % kThreads].mu);
        boxes[(me + 1) % kThreads].batches.push_back(std::move(batch));
      }
      std::vector<std::vector<std::pair<void*, uint64_t>>> mine;
      {
        std::lock_guard<std::mutex> g(boxes[me].mu);
        mine.swap(boxes[me].batches);
      }
      for (auto& b : mine) {
        for (auto [p, tag] : b) {
          const size_t size = (tag >> 32) & 0xffff;
          if (check_pattern(p, size, tag & ~(uint64_t{0xffff} << 32)) != size) bad.fetch_add(1);
          tm_free(p);
          freed.fetch_add(1, std::memory_order_relaxed);
        }
      }
    }
  };
  std::vector<std::thread> pool;
  for (unsigned t = 0; t < kThreads; ++t) pool.emplace_back(worker, t);
  for (auto& t : pool) t.join();
  for (Box& box : boxes) {
    for (auto& b : box.batches) {
      for (auto [p, tag] : b) {
        const size_t size = (tag >> 32) & 0xffff;
        if (check_pattern(p, size, tag & ~(uint64_t{0xffff} << 32)) != size) bad.fetch_add(1);
        tm_free(p);
        freed.fetch_add(1, std::memory_order_relaxed);
      }
    }
  }
  std::printf("threads=%u rounds=%zu blocks freed into foreign arenas=%zu\n", kThreads, rounds, freed.load());
  EXPECT_EQ(bad.load(), 0u) << "contents changed between the allocating and the freeing thread";
  EXPECT_EQ(failed_allocs.load(), 0u);
  EXPECT_EQ(freed.load(), rounds * kThreads * kBatch - failed_allocs.load());
  TM_EXPECT_HEAP_OK();
}

// ---- (d) realloc ping-pong across threads --------------------------------------------------------

// Blocks realloc'ed alternately by two threads (a turn flag per block), growing through the
// small, medium and large tiers and back; each realloc keeps the prefix, checked by the other
// thread before its own realloc.
TEST_F(Stress, ReallocPingPongAcrossThreads) {
  static const size_t kPath[] = {16,    100,  1000, 8192, 8193, 20000, 100000, 524288, 524289, 1 << 20, 3 << 20, 600000,
                                 50000, 9000, 8000, 500,  40,   24,    4096,   65536,  700000, 12000,   64,      16};
  constexpr size_t kPathLen = sizeof kPath / sizeof kPath[0];
  constexpr size_t kBlocks = 4;
  const size_t rounds = scaled(4000, 40);
  struct Slot {
    std::atomic<int> turn{0};  // the thread allowed to touch the block next
    uint8_t* p = nullptr;
    size_t n = 0;
    uint64_t seed = 0;
  };
  // Blocks up to 64 KiB are patterned entirely, larger ones sparsely (test_util.h).
  auto fill = [](uint8_t* p, size_t n, uint64_t seed) {
    if (n <= 64 * KiB) {
      fill_pattern(p, n, seed);
    } else {
      fill_sparse(p, n, seed);
    }
  };
  // The first `keep` bytes still hold the pattern of a block of `filled` bytes.
  auto intact = [](const uint8_t* p, size_t keep, uint64_t seed, size_t filled) {
    return filled <= 64 * KiB ? check_pattern(p, keep, seed) == keep : check_sparse(p, keep, seed, filled);
  };
  std::vector<Slot> slots(kBlocks);
  for (size_t b = 0; b < kBlocks; ++b) {
    slots[b].n = kPath[b * 5];
    slots[b].seed = b + 1;
    slots[b].p = static_cast<uint8_t*>(tm_malloc(slots[b].n));
    ASSERT_NE(slots[b].p, nullptr);
    fill(slots[b].p, slots[b].n, slots[b].seed);
  }
  std::atomic<size_t> bad{0}, moved{0};
  auto player = [&](int me) {
    for (size_t r = 0; r < rounds; ++r) {
      for (size_t b = 0; b < kBlocks; ++b) {
        Slot& s = slots[b];
        while (s.turn.load(std::memory_order_acquire) != me) std::this_thread::yield();
        if (!intact(s.p, s.n, s.seed, s.n)) bad.fetch_add(1);  // the other thread's realloc
        const size_t n = kPath[(r * 2 + static_cast<size_t>(me) + b * 5) % kPathLen];
        auto* q = static_cast<uint8_t*>(tm_realloc(s.p, n));
        if (q == nullptr) {
          bad.fetch_add(1);
        } else {
          if (!intact(q, std::min(s.n, n), s.seed, s.n)) bad.fetch_add(1);
          if (q != s.p) moved.fetch_add(1);
          s.p = q;
          s.n = n;
          s.seed += 2;
          fill(q, n, s.seed);
        }
        s.turn.store(1 - me, std::memory_order_release);
      }
    }
  };
  std::thread a(player, 0), b(player, 1);
  a.join();
  b.join();
  for (Slot& s : slots) {
    EXPECT_TRUE(intact(s.p, s.n, s.seed, s.n));
    tm_free(s.p);
  }
  std::printf("reallocs=%zu moved=%zu\n", rounds * 2 * kBlocks, moved.load());
  EXPECT_EQ(bad.load(), 0u) << "a realloc by one thread lost the contents the other thread wrote";
  EXPECT_GT(moved.load(), 0u);
  TM_EXPECT_HEAP_OK();
}

}  // namespace
