// Shared body of cache_scratch and cache_thrash, after Hoard's cache-scratch and cache-thrash
// (mimalloc-bench "cscratch"/"cthrash"): false sharing caused by the allocator.
//
// Every thread repeatedly allocates a small object (--size bytes, default 8) with new[], writes
// and reads every byte of it --repetitions times, and deletes it; --iterations objects in all are
// split evenly over the threads (as in Hoard). An allocator
// that hands objects from the same cache line to different threads makes those writes slow
// (the line bounces between cores). In cache_scratch the main thread first allocates one object
// per thread, hands it over and the thread starts by deleting it ("passive" false sharing: the
// freed memory must not be reused in a way that keeps threads on one line); in cache_thrash each
// thread only uses its own objects ("active" false sharing).
#pragma once

#include <thread>
#include <vector>

#include "common.h"

namespace bench {

inline uint64_t hammer(uint64_t tid, char* handed, uint64_t size, uint64_t iterations, uint64_t repetitions) {
  delete[] handed;  // nullptr for cache_thrash
  uint64_t sum = 0;
  for (uint64_t i = 0; i < iterations; i++) {
    char* a = new char[size];
    volatile char* v = a;
    for (uint64_t r = 0; r < repetitions; r++) {
      for (uint64_t k = 0; k < size; k++) {
        v[k] = static_cast<char>(k + r + tid);
        sum += static_cast<unsigned char>(v[k]);
      }
    }
    delete[] a;
  }
  return mix64(sum ^ tid);
}

inline int false_sharing_main(const char* name, bool scratch, int argc, char** argv) {
  Args args(argc, argv);
  uint64_t threads = args.u64("threads", 1);
  uint64_t size = args.u64("size", 8);
  uint64_t iterations = args.u64("iterations", 1000);
  uint64_t repetitions = args.u64("repetitions", 200000);
  args.finish(scratch ? "passive false sharing (objects handed from main to the threads)"
                      : "active false sharing (each thread allocates its own objects)");
  if (threads == 0 || size == 0) fail(name, "threads and size must be > 0");

  double t0 = now_s();
  std::vector<char*> handed(threads, nullptr);
  if (scratch) {
    // Allocated back to back by one thread: adjacent objects, likely on one cache line.
    for (uint64_t t = 0; t < threads; t++) {
      handed[t] = new char[size];
      memset(handed[t], 0, size);
    }
  }
  std::vector<uint64_t> sums(threads);
  std::vector<std::thread> ts;
  for (uint64_t t = 0; t < threads; t++)
    ts.emplace_back([&, t] { sums[t] = hammer(t, handed[t], size, share(iterations, threads, t), repetitions); });
  for (std::thread& t : ts) t.join();
  uint64_t checksum = 0;
  for (uint64_t s : sums) checksum += s;
  double t1 = now_s();

  // Self-check: the sum each thread must have seen.
  uint64_t expect = 0;
  for (uint64_t t = 0; t < threads; t++) {
    uint64_t sum = 0;
    for (uint64_t r = 0; r < repetitions; r++)
      for (uint64_t k = 0; k < size; k++) sum += static_cast<unsigned char>(static_cast<char>(k + r + t));
    expect += mix64(sum * share(iterations, threads, t) ^ t);
  }
  if (expect != checksum) fail(name, "a thread read back bytes it did not write");
  print_result(name, threads, iterations, checksum, t1 - t0);
  return 0;
}

}  // namespace bench
