// Microbenchmarks of the allocation calls (Google Benchmark). Linked against the plain libc names,
// so `LD_PRELOAD=<allocator.so> <build>/bench/micro` measures any allocator; bench/compare --micro
// does that for all of them.
//
// Every benchmark keeps ANOTHER block of the same size live while it loops, so the allocator's
// run/page for that size does not become empty (and get released or reset) on every iteration,
// which would measure a slow path instead of the fast path.
#include <benchmark/benchmark.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>

#include <atomic>
#include <thread>
#include <vector>

namespace {

constexpr int64_t kSizes[] = {16, 32, 64, 128, 256, 512, 1024, 4096, 8192, 16384, 65536};

// malloc + free of one size, another block of the same size live.
void BM_malloc_free(benchmark::State& state) {
  size_t size = static_cast<size_t>(state.range(0));
  void* keep = malloc(size);
  benchmark::DoNotOptimize(keep);
  for (auto _ : state) {
    void* p = malloc(size);
    benchmark::DoNotOptimize(p);
    free(p);
  }
  free(keep);
  state.SetItemsProcessed(state.iterations());
}

// calloc + free (zeroing included), another block of the same size live.
void BM_calloc_free(benchmark::State& state) {
  size_t size = static_cast<size_t>(state.range(0));
  void* keep = calloc(1, size);
  benchmark::DoNotOptimize(keep);
  for (auto _ : state) {
    void* p = calloc(1, size);
    benchmark::DoNotOptimize(p);
    free(p);
  }
  free(keep);
  state.SetItemsProcessed(state.iterations());
}

// A growth chain: realloc from 16 B up to range(0) bytes, adding range(1) bytes at a time
// (or doubling when range(1) == 0), writing the last byte each time; then free. Items = reallocs.
void BM_realloc_chain(benchmark::State& state) {
  size_t max = static_cast<size_t>(state.range(0));
  size_t step = static_cast<size_t>(state.range(1));
  void* keep = malloc(16);
  benchmark::DoNotOptimize(keep);
  int64_t reallocs = 0;
  for (auto _ : state) {
    char* p = nullptr;
    for (size_t size = 16; size <= max; size = step ? size + step : size * 2) {
      p = static_cast<char*>(realloc(p, size));
      p[size - 1] = static_cast<char>(size);
      benchmark::DoNotOptimize(p);
      reallocs++;
    }
    free(p);
  }
  free(keep);
  state.SetItemsProcessed(reallocs);
}

// aligned_alloc(alignment = range(0), size = range(1)) + free, another such block live.
void BM_aligned_alloc(benchmark::State& state) {
  size_t align = static_cast<size_t>(state.range(0));
  size_t size = static_cast<size_t>(state.range(1));
  void* keep = aligned_alloc(align, size);
  benchmark::DoNotOptimize(keep);
  for (auto _ : state) {
    void* p = aligned_alloc(align, size);
    benchmark::DoNotOptimize(p);
    free(p);
  }
  free(keep);
  state.SetItemsProcessed(state.iterations());
}

// Cross-thread free: the benchmark thread allocates blocks of range(0) bytes, writes one byte and
// pushes them into a single-producer/single-consumer ring; a second thread pops and frees them.
// Time per item is the allocating thread's (wall clock); the freeing thread runs concurrently.
// Both sides yield the CPU while they wait, so the pair still progresses on a loaded machine.
void BM_cross_thread_free(benchmark::State& state) {
  size_t size = static_cast<size_t>(state.range(0));
  constexpr size_t kRing = 1024;
  std::vector<std::atomic<void*>> ring(kRing);
  for (auto& slot : ring) slot.store(nullptr, std::memory_order_relaxed);
  std::atomic<bool> done{false};
  std::thread consumer([&] {
    size_t tail = 0;
    for (;;) {
      void* p = ring[tail].load(std::memory_order_acquire);
      if (p) {
        ring[tail].store(nullptr, std::memory_order_release);
        free(p);
        tail = (tail + 1) % kRing;
      } else if (done.load(std::memory_order_acquire)) {
        // The producer has stopped; drain whatever is left.
        if (!ring[tail].load(std::memory_order_acquire)) break;
      } else {
        sched_yield();  // ring empty
      }
    }
  });
  size_t head = 0;
  void* keep = malloc(size);
  benchmark::DoNotOptimize(keep);
  for (auto _ : state) {
    char* p = static_cast<char*>(malloc(size));
    p[0] = 1;
    while (ring[head].load(std::memory_order_acquire) != nullptr) sched_yield();  // ring full
    ring[head].store(p, std::memory_order_release);
    head = (head + 1) % kRing;
  }
  done.store(true, std::memory_order_release);
  consumer.join();
  free(keep);
  state.SetItemsProcessed(state.iterations());
}

void sizes(benchmark::internal::Benchmark* b) {
  for (int64_t s : kSizes) b->Arg(s);
}

}  // namespace

BENCHMARK(BM_malloc_free)->Apply(sizes);
BENCHMARK(BM_calloc_free)->Arg(16)->Arg(256)->Arg(4096)->Arg(65536);
BENCHMARK(BM_realloc_chain)->Args({4096, 16})->Args({65536, 256})->Args({1 << 20, 0});
BENCHMARK(BM_aligned_alloc)->Args({64, 64})->Args({64, 1024})->Args({4096, 4096})->Args({4096, 16384});
BENCHMARK(BM_cross_thread_free)->Arg(64)->Arg(1024)->UseRealTime();

BENCHMARK_MAIN();
