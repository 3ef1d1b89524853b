// One million random operations (deterministic PRNG): malloc / calloc / aligned_alloc /
// realloc / free of log-uniform sizes from 1 B to 1 MiB over a live set of up to 2000 slots.
// Every block carries a per-slot pattern checked before it is freed or resized;
// tm_check_heap() runs every 1000 operations and the counters are compared with the
// model. Prints the memory efficiency: peak mapped bytes / peak live requested bytes.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "test_util.h"
#include "tinymalloc.h"

namespace {

using namespace tmtest;

struct Slot {
  char* p = nullptr;
  size_t n = 0;
  uint64_t seed = 0;
};

// Operation count; TM_WORKLOAD_OPS overrides it (e.g. for a quick local run).
long workload_ops() {
  const char* env = std::getenv("TM_WORKLOAD_OPS");
  if (env != nullptr && *env != '\0') return std::atol(env);
  return 1000000;
}

class Workload : public HeapTest {};

TEST_F(Workload, MillionRandomOperations) {
  constexpr size_t kSlots = 2000;
  const long total_ops = workload_ops();
  std::vector<Slot> slots(kSlots);
  Rng rng(0x7e57);
  size_t live_requested = 0;
  size_t live_count = 0;
  size_t peak_requested = 0;
  size_t sampled_peak_mapped = 0;
  uint64_t next_seed = 1;
  size_t counts[5] = {};  // malloc, calloc, aligned, realloc, free
  tm_stats_reset_peaks();
  const tm_stats_t start = stats();
  const auto t0 = std::chrono::steady_clock::now();

  for (long op = 0; op < total_ops; ++op) {
    Slot& s = slots[rng.below(kSlots)];
    if (s.p == nullptr) {
      const size_t n = rng.log_uniform(1, 1 * MiB);
      const uint64_t kind = rng.below(10);
      char* p;
      if (kind < 7) {
        p = static_cast<char*>(tm_malloc(n));
        ++counts[0];
      } else if (kind < 9) {
        p = static_cast<char*>(tm_calloc(1, n));
        ++counts[1];
        ASSERT_NE(p, nullptr);
        bool zero = true;
        for_sparse(n, [&](size_t i) { zero = zero && p[i] == 0; });
        ASSERT_TRUE(zero) << "calloc returned dirty memory, op " << op << " size " << n;
      } else {
        const size_t a = size_t{1} << rng.range(4, 12);
        p = static_cast<char*>(tm_aligned_alloc(a, n));
        ++counts[2];
        ASSERT_NE(p, nullptr);
        ASSERT_TRUE(is_aligned(p, a));
      }
      ASSERT_NE(p, nullptr) << "op " << op << " size " << n;
      s.p = p;
      s.n = n;
      s.seed = next_seed++;
      fill_sparse(p, n, s.seed);
      live_requested += n;
      ++live_count;
    } else {
      ASSERT_TRUE(check_sparse(s.p, s.n, s.seed)) << "block contents changed, op " << op << " size " << s.n;
      if (rng.chance(50)) {
        tm_free(s.p);
        ++counts[4];
        live_requested -= s.n;
        --live_count;
        s = Slot{};
      } else {
        const size_t n = rng.log_uniform(1, 1 * MiB);
        auto* q = static_cast<char*>(tm_realloc(s.p, n));
        ++counts[3];
        ASSERT_NE(q, nullptr) << "realloc " << s.n << " -> " << n;
        const size_t keep = s.n < n ? s.n : n;
        ASSERT_TRUE(check_sparse(q, keep, s.seed, s.n)) << "realloc lost contents, " << s.n << " -> " << n;
        live_requested = live_requested - s.n + n;
        s.p = q;
        s.n = n;
        s.seed = next_seed++;
        fill_sparse(q, n, s.seed);
      }
    }
    if (live_requested > peak_requested) peak_requested = live_requested;
    if (op % 100 == 0) {
      const tm_stats_t st = stats();
      if (st.mapped_bytes > sampled_peak_mapped) sampled_peak_mapped = st.mapped_bytes;
    }
    if (op % 1000 == 999) {
      ASSERT_EQ(tm_check_heap(), 0) << "op " << op << ": " << heap_report();
      const tm_stats_t st = stats();
      ASSERT_EQ(st.live_blocks, start.live_blocks + live_count) << "op " << op;
      ASSERT_EQ(st.requested_bytes, start.requested_bytes + live_requested) << "op " << op;
    }
  }

  const tm_stats_t end = stats();
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const size_t peak_mapped = end.peak_mapped_bytes;
  // The allocator's own peaks must cover what the test saw.
  EXPECT_GE(peak_mapped, sampled_peak_mapped);
  // A realloc that moves holds both blocks for a moment, so the allocator's peak may exceed
  // the model's by at most one block (1 MiB here), never fall below it.
  // The peak is sampled every TM_PEAK_SAMPLE_BYTES of growth (one thread here).
  EXPECT_GE(end.peak_requested_bytes + TM_PEAK_SAMPLE_BYTES, start.requested_bytes + peak_requested)
      << "peak_requested_bytes below the model's high-water mark by more than the sampling step";
  EXPECT_LE(end.peak_requested_bytes, start.requested_bytes + peak_requested + 1 * MiB)
      << "peak_requested_bytes far above the model's high-water mark";
  const double efficiency = static_cast<double>(peak_mapped) / static_cast<double>(peak_requested);
  std::printf(
      "workload: %ld ops in %.2f s (malloc %zu, calloc %zu, aligned %zu, realloc %zu, free %zu)\n"
      "workload: peak live requested %.1f MiB, peak mapped %.1f MiB, final mapped %.1f MiB, committed %.1f MiB\n"
      "workload: memory efficiency (peak mapped / peak requested) = %.3f\n"
      "workload: os map calls %zu, unmap calls %zu, purge calls %zu\n",
      total_ops, seconds, counts[0], counts[1], counts[2], counts[3], counts[4],
      static_cast<double>(peak_requested) / MiB, static_cast<double>(peak_mapped) / MiB,
      static_cast<double>(end.mapped_bytes) / MiB, static_cast<double>(end.committed_bytes) / MiB, efficiency,
      end.os_map_calls - start.os_map_calls, end.os_unmap_calls - start.os_unmap_calls,
      end.os_purge_calls - start.os_purge_calls);
  std::fflush(stdout);
  EXPECT_LT(efficiency, 3.0) << "peak mapped / peak requested is too high";
  EXPECT_GE(efficiency, 1.0) << "mapped less than was requested: the counters are wrong";

  for (Slot& s : slots) {
    if (s.p != nullptr) {
      ASSERT_TRUE(check_sparse(s.p, s.n, s.seed));
      tm_free(s.p);
    }
  }
  TM_ASSERT_HEAP_OK();
  tm_release_cached();
  const tm_stats_t released = stats();
  std::printf("workload: mapped after freeing everything and tm_release_cached: %.1f MiB\n",
              static_cast<double>(released.mapped_bytes) / MiB);
}

}  // namespace
