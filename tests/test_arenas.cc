// Concurrency design units: the thread-cache fast path, double-free detection of cached
// blocks, cross-thread frees, thread-exit flushing, arena selection and contention,
// migration of empty segments through the global pool, the purge delay, fork and the
// thread_cache option.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <pthread.h>
#include <sched.h>
#include <sys/mman.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <deque>
#include <mutex>
#include <thread>
#include <vector>

#include "arena.h"
#include "internal_headers.h"
#include "small.h"
#include "thread_cache.h"

#include "test_util.h"
#include "tinymalloc.h"

namespace {

using namespace tmtest;

// Runs fn on a new thread and joins it.
template <typename Fn>
void on_thread(Fn fn) {
  std::thread t(fn);
  t.join();
}

// The lowest-indexed arena of [0, count) with the fewest threads counted in it.
unsigned least_occupied(unsigned count) {
  unsigned best = 0;
  for (unsigned i = 1; i < count; ++i) {
    if (tmi::arena_occupants(i) < tmi::arena_occupants(best)) best = i;
  }
  return best;
}

// Threads counted over arenas [0, count).
int occupants_total(unsigned count) {
  int total = 0;
  for (unsigned i = 0; i < count; ++i) total += tmi::arena_occupants(i);
  return total;
}

class Arenas : public ::testing::Test {
 protected:
  void SetUp() override {
    tm_release_cached();
    base_ = stats();
  }
  void TearDown() override {
    TM_EXPECT_HEAP_OK();
    const tm_stats_t now = stats();
    EXPECT_EQ(now.live_blocks, base_.live_blocks) << "blocks leaked by the test";
    EXPECT_EQ(now.requested_bytes, base_.requested_bytes);
  }
  tm_stats_t base_{};
};

TEST_F(Arenas, FreedSmallBlockIsReusedFromTheThreadCache) {
  void* keep = tm_malloc(48);  // the run stays non-empty
  void* p = tm_malloc(48);
  tm_free(p);
  const tm_stats_t s = stats();
  EXPECT_GE(s.cached_blocks, 1u) << "a freed small block stays in the thread's cache";
  EXPECT_GE(s.thread_caches, 1u);
  void* q = tm_malloc(48);
  EXPECT_EQ(q, p) << "the cache hands back the most recently freed block first";
  EXPECT_EQ(stats().requested_bytes, base_.requested_bytes + 96);
  tm_free(q);
  tm_free(keep);
}

TEST_F(Arenas, CachedBlocksAreNotCountedLive) {
  std::vector<void*> blocks;
  for (int i = 0; i < 100; ++i) blocks.push_back(tm_malloc(100));
  EXPECT_EQ(stats().live_blocks, base_.live_blocks + 100);
  for (void* p : blocks) tm_free(p);
  const tm_stats_t s = stats();
  EXPECT_EQ(s.live_blocks, base_.live_blocks);
  EXPECT_EQ(s.class_live_blocks[tm_size_to_class(100)], base_.class_live_blocks[tm_size_to_class(100)]);
  EXPECT_EQ(s.requested_bytes, base_.requested_bytes);
}

TEST_F(Arenas, CallocFromTheCacheIsZeroed) {
  std::vector<unsigned char*> dirty;
  for (int i = 0; i < 64; ++i) {
    auto* p = static_cast<unsigned char*>(tm_malloc(200));
    std::memset(p, 0xA5, 200);
    dirty.push_back(p);
  }
  for (unsigned char* p : dirty) tm_free(p);
  for (int i = 0; i < 64; ++i) {
    auto* p = static_cast<unsigned char*>(tm_calloc(1, 200));
    for (size_t b = 0; b < 200; ++b) ASSERT_EQ(p[b], 0) << "byte " << b << " of a reused calloc block";
    dirty[static_cast<size_t>(i)] = p;
  }
  for (unsigned char* p : dirty) tm_free(p);
}

class ArenasDeathTest : public ::testing::Test {
 protected:
  void SetUp() override { GTEST_FLAG_SET(death_test_style, "threadsafe"); }
};

TEST_F(ArenasDeathTest, DoubleFreeOfACachedBlockIsNamed) {
  EXPECT_EXIT(
      {
        void* keep = tm_malloc(32);
        void* p = tm_malloc(32);
        tm_free(p);
        tm_free(p);
        (void)keep;
      },
      ::testing::KilledBySignal(SIGABRT),
      "tinymalloc: double free at 0x[0-9a-f]+ \\(small block of 32 bytes, class 1, in a free list\\)");
}

TEST_F(ArenasDeathTest, DoubleFreeAfterTheCacheWasFlushedIsNamed) {
  EXPECT_EXIT(
      {
        void* keep = tm_malloc(32);
        void* p = tm_malloc(32);
        tm_free(p);
        tm_release_cached();  // p goes back to its run
        tm_free(p);
        (void)keep;
      },
      ::testing::KilledBySignal(SIGABRT),
      "tinymalloc: double free at 0x[0-9a-f]+ \\(small block of 32 bytes, class 1, free in its run\\)");
}

TEST_F(ArenasDeathTest, DoubleFreeAcrossThreadsIsNamed) {
  EXPECT_EXIT(
      {
        void* p = tm_malloc(64);
        std::thread t([p] { tm_free(p); });  // into the other thread's cache
        t.join();                            // (flushed at its exit)
        tm_free(p);
      },
      ::testing::KilledBySignal(SIGABRT), "tinymalloc: double free at 0x[0-9a-f]+ \\(small block of 64 bytes");
}

TEST_F(Arenas, BlocksFreedByAnotherThreadReturnToTheHeap) {
  std::vector<void*> blocks;
  for (int i = 0; i < 20000; ++i) {
    const size_t n = 16 + static_cast<size_t>(i % 40) * 16;
    auto* p = static_cast<unsigned char*>(tm_malloc(n));
    std::memset(p, i & 0xff, n);
    blocks.push_back(p);
  }
  on_thread([&] {
    for (size_t i = 0; i < blocks.size(); ++i) {
      const auto* p = static_cast<unsigned char*>(blocks[i]);
      ASSERT_EQ(p[0], static_cast<unsigned char>(i & 0xff));
      tm_free(blocks[i]);
    }
  });
  // The freeing thread exited: its cache was flushed, nothing is stranded in it.
  const tm_stats_t s = stats();
  EXPECT_EQ(s.live_blocks, base_.live_blocks);
  EXPECT_EQ(s.requested_bytes, base_.requested_bytes);
}

TEST_F(Arenas, AThreadThatStartsByFreeingDoesNotAllocateThatBlockFirst) {
  // Passive false sharing (Hoard's cache-scratch): a block handed to a new thread and freed
  // there must not become that thread's next block, next to the blocks its maker still uses.
  void* handed = tm_malloc(64);
  void* neighbour = tm_malloc(64);
  void* first = nullptr;
  on_thread([&] {
    tm_free(handed);  // the thread's first call
    first = tm_malloc(64);
    std::memset(first, 1, 64);
    tm_free(first);
  });
  EXPECT_NE(first, handed) << "the handed-over block was reused first";
  EXPECT_NE(first, neighbour);
  tm_free(neighbour);
}

// A block a new thread frees first waits in its arena's remote-free list; tm_release_cached
// drains every arena's lists (kills mutant 13c2ffec71: small_drain_remote skipping the arenas
// in use, so nothing was drained).
TEST_F(Arenas, ReleaseCachedDrainsTheRemoteFreeLists) {
  void* handed = tm_malloc(64);
  ASSERT_NE(handed, nullptr);
  // This thread's cache empty: flushing a bin of the block's class would drain the list too.
  tm_release_cached();
  on_thread([&] { tm_free(handed); });  // the thread's first call: through the remote-free list
  ASSERT_EQ(stats().remote_blocks, base_.remote_blocks + 1) << "the freed block waits in the remote-free list";
  tm_release_cached();
  EXPECT_EQ(stats().remote_blocks, 0u) << "tm_release_cached drained the remote-free lists";
  EXPECT_EQ(stats().live_blocks, base_.live_blocks);
}

TEST_F(Arenas, AConsumerReturningBlocksDoesNotDriveTheProducerToAnotherArena) {
  ScopedOption arenas("arenas", 4);
  // Producer/consumer: every free is by the consumer, whose cache keeps overflowing into the
  // producer's arena. Its returns hold the class locks the producer's refills need; that is
  // not contention between allocating threads, so the producer stays in its arena.
  constexpr int kBatches = 60000;
  constexpr int kBatch = 64;
  std::mutex mutex;
  std::condition_variable ready;
  std::deque<std::vector<void*>> queue;
  bool done = false;
  std::thread consumer([&] {
    for (;;) {
      std::unique_lock<std::mutex> lock(mutex);
      ready.wait(lock, [&] { return done || !queue.empty(); });
      if (queue.empty()) return;
      std::vector<void*> batch = std::move(queue.front());
      queue.pop_front();
      lock.unlock();
      for (void* p : batch) tm_free(p);
    }
  });
  std::vector<uint32_t> arenas_seen;
  on_thread([&] {
    for (int b = 0; b < kBatches; ++b) {
      std::vector<void*> batch;
      for (int i = 0; i < kBatch; ++i) {
        void* p = tm_malloc(16 + static_cast<size_t>((b * kBatch + i) % 32) * 16);
        const auto* segment =
            reinterpret_cast<const tmi::SmallSegment*>(reinterpret_cast<uintptr_t>(p) & ~(tmi::kSegmentSize - 1));
        arenas_seen.push_back(segment->arena);
        batch.push_back(p);
      }
      {
        std::lock_guard<std::mutex> lock(mutex);
        queue.push_back(std::move(batch));
      }
      ready.notify_one();
    }
  });
  {
    std::lock_guard<std::mutex> lock(mutex);
    done = true;
  }
  ready.notify_one();
  consumer.join();
  ASSERT_EQ(arenas_seen.size(), static_cast<size_t>(kBatches * kBatch));
  // The first refills may find the lock of the main thread's earlier work; from then on the
  // producer's blocks all come from one arena.
  const uint32_t settled = arenas_seen[arenas_seen.size() / 10];
  size_t elsewhere = 0;
  for (size_t i = arenas_seen.size() / 10; i < arenas_seen.size(); ++i) elsewhere += arenas_seen[i] != settled;
  EXPECT_EQ(elsewhere, 0u) << "the producer changed arenas while only the consumer returned blocks";
}

TEST_F(Arenas, RunDescriptorsOfAFreshSegmentStayUntouchedUntilTheirRunIsUsed) {
  tm_release_cached();  // the global pool is empty: the memory pool's segment is a fresh mapping
  tm_heap_t* heap = tm_heap_create();
  ASSERT_NE(heap, nullptr);
  void* p = tm_heap_malloc(heap, 64);
  ASSERT_NE(p, nullptr);
  const uintptr_t address = reinterpret_cast<uintptr_t>(p);
  const auto* segment = reinterpret_cast<const tmi::SmallSegment*>(address & ~(tmi::kSegmentSize - 1));
  const size_t used_run = (address - reinterpret_cast<uintptr_t>(segment)) >> tmi::kRunShift;
  ASSERT_LT(used_run + 2, tmi::kRunsPerSegment);
  // The whole pages holding the descriptors of runs after the used one (and its neighbour).
  const uintptr_t page = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));
  const uintptr_t start = (reinterpret_cast<uintptr_t>(&segment->runs[used_run + 2]) + page - 1) & ~(page - 1);
  const uintptr_t end = reinterpret_cast<uintptr_t>(&segment->runs[tmi::kRunsPerSegment]) & ~(page - 1);
  ASSERT_GT(end, start + 16 * page);
  std::vector<unsigned char> resident((end - start) / page);
  ASSERT_EQ(mincore(reinterpret_cast<void*>(start), end - start, resident.data()), 0);
  size_t touched = 0;
  for (unsigned char r : resident) touched += r & 1;
  EXPECT_EQ(touched, 0u) << "of " << resident.size() << " descriptor pages of unused runs";
  tm_heap_destroy(heap);
}

TEST_F(Arenas, ThreadExitFlushesItsCache) {
  const tm_stats_t before = stats();
  on_thread([] {
    std::vector<void*> blocks;
    for (int i = 0; i < 500; ++i) blocks.push_back(tm_malloc(24 + static_cast<size_t>(i % 8) * 100));
    for (void* p : blocks) tm_free(p);
    EXPECT_GT(stats().cached_blocks, 0u);
  });
  const tm_stats_t after = stats();
  EXPECT_EQ(after.thread_caches, before.thread_caches) << "the exited thread's cache is unregistered";
  EXPECT_EQ(after.cached_blocks, before.cached_blocks) << "the exited thread's blocks went back to their runs";
}

TEST_F(Arenas, ThreadsPickedByThreadSpreadOverArenas) {
  ScopedOption arenas("arenas", 4);
  ScopedOption select("arena_select", 1);  // thread
  std::vector<std::thread> threads;
  std::atomic<int> ready{0};
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      std::vector<void*> blocks;
      for (int i = 0; i < 200; ++i) blocks.push_back(tm_malloc(20000));  // medium: arena chosen now
      ready.fetch_add(1);
      while (ready.load() < 4) std::this_thread::yield();
      for (void* p : blocks) tm_free(p);
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_GE(stats().arenas_used, 4u) << "four threads assigned round-robin use four arenas";
}

TEST_F(Arenas, ContentionMovesAThreadToItsCpusArenaWhereItThenStays) {
  ScopedOption arenas("arenas", 4);
  cpu_set_t allowed;
  ASSERT_EQ(sched_getaffinity(0, sizeof allowed, &allowed), 0);
  int cpu = 0;
  while (cpu < CPU_SETSIZE && !CPU_ISSET(cpu, &allowed)) ++cpu;
  ASSERT_LT(cpu, CPU_SETSIZE);
  on_thread([cpu] {
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(cpu, &one);
    ASSERT_EQ(pthread_setaffinity_np(pthread_self(), sizeof one, &one), 0);
    ASSERT_EQ(sched_getcpu(), cpu);
    const unsigned own = static_cast<unsigned>(cpu) % 4;
    EXPECT_EQ(tmi::arena_select(0, false), least_occupied(4)) << "a new thread starts in the least occupied arena";
    EXPECT_EQ(tmi::arena_select(1, true), own) << "contended in arena 0: to its CPU's arena";
    for (unsigned other = 0; other < 4; ++other) {
      EXPECT_EQ(tmi::arena_select(other + 1, true), own) << "contended in arena " << other;
    }
  });
}

// Two threads whose caches rarely meet a busy lock never contend, so before this rule they
// shared arena 0 and its runs, and their blocks shared cache lines (larson, 2 threads:
// 0.38 s, against 0.30-0.34 s in two arenas).
TEST_F(Arenas, ThreadsRunningSideBySideStartInArenasOfTheirOwn) {
  ScopedOption arenas("arenas", 4);
  tm_free(tm_malloc(32));  // this thread's cache is active: it is counted in its arena
  const unsigned main_arena = tmi::current_arena();
  ASSERT_EQ(tmi::arena_occupants(main_arena), 1) << "no other thread of the test process is counted here";
  std::atomic<int> started{0};
  std::atomic<bool> done{false};
  unsigned arena_of[2] = {0, 0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 2; ++t) {
    while (started.load() < t) std::this_thread::yield();  // one after the other
    threads.emplace_back([&, t] {
      void* p = tm_malloc(64);
      arena_of[t] = tmi::current_arena();
      started.fetch_add(1);
      while (!done.load()) std::this_thread::yield();
      tm_free(p);
    });
  }
  while (started.load() < 2) std::this_thread::yield();
  EXPECT_EQ(occupants_total(4), 3) << "the main thread and the two workers";
  EXPECT_NE(arena_of[0], main_arena);
  EXPECT_NE(arena_of[1], main_arena);
  EXPECT_NE(arena_of[0], arena_of[1]) << "live threads spread over the empty arenas";
  done = true;
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(occupants_total(4), 1) << "exited threads leave their arenas";
}

// A program that runs one worker at a time keeps one worker arena (no memory spread over
// arenas as threads come and go).
TEST_F(Arenas, AThreadStartedAfterAnotherExitedTakesItsArena) {
  ScopedOption arenas("arenas", 4);
  tm_free(tm_malloc(32));
  unsigned first = 0;
  unsigned second = 0;
  on_thread([&first] {
    tm_free(tm_malloc(64));
    first = tmi::current_arena();
  });
  on_thread([&second] {
    tm_free(tm_malloc(64));
    second = tmi::current_arena();
  });
  EXPECT_EQ(second, first);
  EXPECT_NE(first, tmi::current_arena()) << "the main thread, still alive, keeps its arena to itself";
}

// A fork child has one thread: the threads that did not survive the fork leave their arenas.
TEST_F(Arenas, AForkChildCountsOnlyItsOwnThreadInTheArenas) {
  ScopedOption arenas("arenas", 4);
  tm_free(tm_malloc(32));
  std::atomic<int> started{0};
  std::atomic<bool> done{false};
  std::vector<std::thread> threads;
  for (int t = 0; t < 2; ++t) {
    threads.emplace_back([&] {
      void* p = tm_malloc(64);
      started.fetch_add(1);
      while (!done.load()) std::this_thread::yield();
      tm_free(p);
    });
  }
  while (started.load() < 2) std::this_thread::yield();
  ASSERT_EQ(occupants_total(4), 3);
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) _exit(occupants_total(4) == 1 && tmi::arena_occupants(tmi::current_arena()) == 1 ? 0 : 1);
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "the child still counts the parent's other threads";
  done = true;
  for (std::thread& t : threads) t.join();
}

TEST_F(Arenas, EmptySegmentsMigrateThroughThePool) {
  ScopedOption arenas("arenas", 4);
  ScopedOption select("arena_select", 1);
  ScopedOption retain("arena_retain", 0);
  ScopedOption pool("pool_segments", 64);
  ScopedOption delay("purge_delay_ms", 60000);
  // Thread A fills about 40 MiB of medium blocks in its arena, frees them and exits.
  on_thread([] {
    std::vector<void*> blocks;
    for (int i = 0; i < 160; ++i) blocks.push_back(tm_malloc(256 * KiB));
    for (void* p : blocks) tm_free(p);
  });
  const tm_stats_t pooled = stats();
  ASSERT_GE(pooled.pool_segments, 8u) << "the empty segments went to the global pool";
  // Thread B, in another arena, takes them instead of mapping new memory.
  on_thread([] {
    std::vector<void*> blocks;
    for (int i = 0; i < 48; ++i) blocks.push_back(tm_malloc(256 * KiB));
    const tm_stats_t during = stats();
    EXPECT_LT(during.pool_segments, stats().pool_segments + 1);
    for (void* p : blocks) tm_free(p);
  });
  const tm_stats_t after = stats();
  EXPECT_EQ(after.os_map_calls, pooled.os_map_calls) << "no new mapping: segments came from the pool";
  tm_release_cached();
  EXPECT_EQ(stats().pool_segments, 0u) << "tm_release_cached empties the pool";
}

TEST_F(Arenas, PooledSegmentsArePurgedAfterTheDelay) {
  ScopedOption retain("arena_retain", 0);
  ScopedOption pool("pool_segments", 64);
  ScopedOption delay("purge_delay_ms", 200);
  std::vector<void*> blocks;
  for (int i = 0; i < 64; ++i) blocks.push_back(tm_malloc(256 * KiB));
  for (void* p : blocks) std::memset(p, 1, 256 * KiB);
  for (void* p : blocks) tm_free(p);
  const tm_stats_t fresh = stats();
  ASSERT_GE(fresh.pool_segments, 2u);
  EXPECT_LT(fresh.pool_purged_segments, fresh.pool_segments) << "not purged before the delay";
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  // Any slow path runs the purge. This large block takes one pooled mapping and gives it
  // back on free (young again), so all but that one are purged.
  tm_free(tm_malloc(2 * MiB));
  const tm_stats_t later = stats();
  EXPECT_GE(later.pool_purged_segments + 1, later.pool_segments) << "pooled segments purged after the delay";
  EXPECT_LT(later.committed_bytes, fresh.committed_bytes);
}

// Regression (found by the ASan corpus replay in CI): a retained segment purged by the idle
// sweep and then released had its committed bytes subtracted twice (committed wrapped).
TEST_F(Arenas, SweptSegmentsKeepTheCommittedCountRight) {
  ScopedOption retain("arena_retain", 1);
  ScopedOption delay("purge_delay_ms", 30);
  for (int round = 0; round < 2; ++round) {
    std::vector<void*> blocks;
    for (int i = 0; i < 30; ++i) blocks.push_back(tm_malloc(200 * KiB));  // two medium segments
    for (void* p : blocks) tm_free(p);                                    // one stays retained in the arena, empty
    const size_t purges_before = stats().os_purge_calls;
    for (int sweep = 0; sweep < 3; ++sweep) {
      std::this_thread::sleep_for(std::chrono::milliseconds(40));
      tm_free(tm_malloc(2 * MiB));  // a slow path: the sweep marks, then purges
    }
    const tm_stats_t swept = stats();
    EXPECT_GT(swept.os_purge_calls, purges_before) << "the sweep purged the retained segment";
    EXPECT_LE(swept.committed_bytes, swept.mapped_bytes);
    tm_release_cached();  // releases the purged retained segments
    const tm_stats_t released = stats();
    EXPECT_LE(released.committed_bytes, released.mapped_bytes) << "committed bytes wrapped below zero";
  }
}

// Lets two idle sweeps run: sleeps past half the purge delay, then takes a slow path that
// runs the upkeep, three times. The slow path is the first block of a small class the
// thread has not used (a cache refill): it maps nothing, so the committed bytes move only
// by what the sweeps purge (and by at most one run each, should it reuse a purged run).
void let_two_sweeps_run(int delay_ms) {
  const size_t unused_classes[] = {5000, 6000, 7000};
  for (size_t size : unused_classes) {
    std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms / 2 + 10));
    tm_free(tm_malloc(size));
  }
}

TEST_F(Arenas, LargeFreeMediumBlocksInAUsedSegmentArePurgedWhenIdle) {
  ScopedOption delay("purge_delay_ms", 60);
  // A 1.5 MiB hole between two live blocks of one medium segment, every page written.
  auto* before = static_cast<char*>(tm_malloc(100 * KiB));
  auto* hole = static_cast<char*>(tm_malloc(1536 * KiB));
  auto* after = static_cast<char*>(tm_malloc(100 * KiB));
  ASSERT_TRUE(before && hole && after);
  std::memset(hole, 0x5a, 1536 * KiB);
  fill_sparse(before, 100 * KiB, 1);
  fill_sparse(after, 100 * KiB, 2);
  tm_free(hole);
  tm_free(tm_malloc(64));  // a small segment exists before the count: the sweeps' slow paths need one
  const tm_stats_t freed = stats();
  let_two_sweeps_run(60);
  const tm_stats_t swept = stats();
  EXPECT_GT(swept.os_purge_calls, freed.os_purge_calls);
  EXPECT_LE(swept.committed_bytes + 1400 * KiB, freed.committed_bytes) << "the hole's pages went back to the OS";
  // The neighbours are intact; the hole serves allocations again, zeroed where asked.
  EXPECT_TRUE(check_sparse(before, 100 * KiB, 1));
  EXPECT_TRUE(check_sparse(after, 100 * KiB, 2));
  TM_EXPECT_HEAP_OK();
  auto* again = static_cast<unsigned char*>(tm_calloc(1, 1536 * KiB));
  ASSERT_NE(again, nullptr);
  size_t nonzero = 0;
  for (size_t i = 0; i < 1536 * KiB; ++i) nonzero += again[i] != 0;
  EXPECT_EQ(nonzero, 0u);
  EXPECT_GE(stats().committed_bytes, swept.committed_bytes + 1400 * KiB) << "counted as committed again when reused";
  tm_free(again);
  tm_free(before);
  tm_free(after);
  TM_EXPECT_HEAP_OK();
}

TEST_F(Arenas, FreeRunsOfAUsedSmallSegmentArePurgedWhenIdle) {
  ScopedOption delay("purge_delay_ms", 60);
  // About 40 runs of 256-byte blocks; one block stays live, so the segment is in use.
  std::vector<void*> blocks;
  for (int i = 0; i < 10000; ++i) {
    void* p = tm_malloc(256);
    ASSERT_NE(p, nullptr);
    std::memset(p, 0x33, 256);
    blocks.push_back(p);
  }
  void* keep = blocks.front();
  fill_sparse(keep, 256, 3);
  for (size_t i = 1; i < blocks.size(); ++i) tm_free(blocks[i]);
  tm_release_cached();  // the cached ones go back to their runs, which empty
  const tm_stats_t freed = stats();
  let_two_sweeps_run(60);
  const tm_stats_t swept = stats();
  EXPECT_GT(swept.os_purge_calls, freed.os_purge_calls);
  EXPECT_LE(swept.committed_bytes + 27 * 64 * KiB, freed.committed_bytes) << "the free runs' pages went back";
  EXPECT_TRUE(check_sparse(keep, 256, 3));
  TM_EXPECT_HEAP_OK();
  // The purged runs serve new blocks; calloc'ed ones read zero.
  std::vector<void*> again;
  for (int i = 0; i < 10000; ++i) {
    auto* p = static_cast<unsigned char*>(tm_calloc(1, 256));
    ASSERT_NE(p, nullptr);
    ASSERT_EQ(p[0] | p[128] | p[255], 0) << "block " << i;
    again.push_back(p);
  }
  EXPECT_GE(stats().committed_bytes, swept.committed_bytes + 27 * 64 * KiB) << "counted as committed again when reused";
  TM_EXPECT_HEAP_OK();
  for (void* p : again) tm_free(p);
  tm_free(keep);
}

TEST_F(Arenas, ZeroPurgeDelayPurgesAtOnce) {
  ScopedOption retain("arena_retain", 0);
  ScopedOption delay("purge_delay_ms", 0);
  std::vector<void*> blocks;
  for (int i = 0; i < 40; ++i) blocks.push_back(tm_malloc(200 * KiB));
  for (void* p : blocks) tm_free(p);
  const tm_stats_t s = stats();
  EXPECT_EQ(s.pool_purged_segments, s.pool_segments);
}

TEST_F(Arenas, ThreadCacheOptionOffTakesTheLockedPath) {
  ScopedOption off("thread_cache", 0);
  on_thread([] {
    void* keep = tm_malloc(64);
    void* p = tm_malloc(64);
    tm_free(p);
    const tm_stats_t s = stats();
    EXPECT_EQ(tm_check_heap(), 0);
    void* q = tm_malloc(64);
    EXPECT_EQ(q, p) << "without a cache the run hands out its lowest free block again";
    tm_free(q);
    tm_free(keep);
    EXPECT_EQ(stats().live_blocks + 0, s.live_blocks - 1 + 0);
  });
}

TEST_F(Arenas, ForkChildAllocatesWhileOtherThreadsAreBusy) {
  std::atomic<bool> stop{false};
  std::vector<std::thread> workers;
  for (int t = 0; t < 2; ++t) {
    workers.emplace_back([&stop, t] {
      Rng rng(static_cast<uint64_t>(t) + 7);
      std::vector<void*> live(64, nullptr);
      while (!stop.load(std::memory_order_relaxed)) {
        const size_t slot = rng.below(64);
        tm_free(live[slot]);
        live[slot] = tm_malloc(rng.chance(90) ? rng.range(1, 2048) : rng.range(8193, 300 * KiB));
      }
      for (void* p : live) tm_free(p);
    });
  }
  for (int round = 0; round < 10; ++round) {
    const pid_t child = fork();
    ASSERT_GE(child, 0);
    if (child == 0) {
      // Only this thread exists; every allocator lock must be free. The child allocates
      // with tinymalloc only: the sanitizer runtimes' own malloc is not fork-safe (an ASan
      // child hung in its allocator's region lock, held by a thread that did not survive).
      static void* blocks[300];
      for (int i = 0; i < 300; ++i) {
        void* p = tm_malloc(static_cast<size_t>(1 + i * 37 % 20000));
        if (p == nullptr) _exit(2);
        std::memset(p, i & 0xff, 1);
        blocks[i] = p;
      }
      for (void* p : blocks) tm_free(p);
      tm_check_report_t report;
      if (tm_check_heap_report(&report) != 0) {
        fprintf(stderr, "child heap check: %s\n", report.message);
        _exit(1);
      }
      _exit(0);
    }
    int status = 0;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    pid_t done = 0;
    while ((done = waitpid(child, &status, WNOHANG)) == 0 && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    if (done == 0) {
      kill(child, SIGKILL);
      waitpid(child, &status, 0);
      ADD_FAILURE() << "fork child " << round << " deadlocked";
      break;
    }
    ASSERT_TRUE(WIFEXITED(status)) << "child died by a signal";
    EXPECT_EQ(WEXITSTATUS(status), 0) << "child round " << round;
  }
  stop = true;
  for (std::thread& t : workers) t.join();
}

}  // namespace
