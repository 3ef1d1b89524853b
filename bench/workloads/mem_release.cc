// mem_release: does the allocator give memory back to the OS after a burst?
//
// Allocates a working set of --mb MiB (default 1 GiB) in blocks of log-uniform sizes 1 KiB ..
// 256 KiB, touching every page, then frees all of it. With --threads N > 1, N threads allocate a
// share each and exit, and N new threads free those shares (every free is by a thread other than
// the allocating one, which is already dead); with --threads 1 the main thread does both. Then the
// main thread does one tiny malloc/free every 10 ms (so allocators that purge lazily, on their next
// call, get the chance) for up to --wait-ms milliseconds, sampling the RSS (/proc/self/statm).
// It stops early once the RSS is back at the baseline (the RSS before the working set was
// allocated), within 10% of the baseline or 1% of the working set (about 10 MiB for 1 GiB),
// whichever is larger. (The baseline is only about 3 MiB: 10% of it alone would leave an
// allocator less than 300 KiB of caches, which even allocators that return 99.9% exceed.)
//
// Result line: mem_release threads=N ops=<blocks> checksum=0x... time_s=<allocate + free phases only>
//              baseline_kib=... peak_kib=... after_free_kib=... final_kib=... settle_ms=<ms after the
//              last free when the RSS was first back at the baseline as above, -1 if never>
//              returned_pct=<100 * (peak - final) / (peak - baseline)>
#include <thread>
#include <vector>

#include "common.h"

namespace {

constexpr const char* kName = "mem_release";
constexpr size_t kPage = 4096;

struct Block {
  void* p = nullptr;
  size_t size = 0;
  uint64_t tag = 0;
};

// On its own cache line: the threads' counters must not false-share (the benchmark would
// measure itself).
struct alignas(64) Share {
  std::vector<Block> blocks;
  uint64_t sum = 0;
  bool ok = true;
};

void allocate(Share* s, uint64_t tid, uint64_t bytes) {
  bench::Rng rng(0x4e1ea5e0 + tid);
  for (uint64_t total = 0; total < bytes;) {
    Block b;
    b.size = rng.log_uniform(1024, 256 * 1024);
    b.tag = rng.next();
    b.p = bench::xmalloc(kName, b.size);
    bench::fill_block(b.p, b.size, b.tag, kPage);
    s->blocks.push_back(b);
    total += b.size;
  }
}

void release(Share* s) {
  for (Block& b : s->blocks) {
    s->sum += bench::check_block(b.p, b.size, b.tag, &s->ok, kPage);
    free(b.p);
  }
}

}  // namespace

int main(int argc, char** argv) {
  bench::Args args(argc, argv);
  uint64_t threads = args.u64("threads", 1);
  uint64_t mb = args.u64("mb", 1024);
  uint64_t wait_ms = args.u64("wait-ms", 3000);
  args.finish("1 GiB burst, free, then watch the RSS come back down");
  if (threads == 0 || mb == 0) bench::fail(kName, "bad parameters");

  // Warm up the allocator (and, with threads, the thread machinery) before the baseline.
  std::vector<Share> shares(threads);
  // The mean block is about 46 KiB; the lists are freed with the working set.
  for (Share& s : shares) s.blocks.reserve((mb << 20) / threads / 32768 + 64);
  free(bench::xmalloc(kName, 64));
  std::thread([] { free(bench::xmalloc(kName, 64)); }).join();
  uint64_t baseline = bench::rss_bytes();

  double t0 = bench::now_s();
  uint64_t bytes = mb << 20;
  if (threads == 1) {
    allocate(&shares[0], 0, bytes);
  } else {
    std::vector<std::thread> ts;
    for (uint64_t t = 0; t < threads; t++) ts.emplace_back(allocate, &shares[t], t, bytes / threads);
    for (std::thread& t : ts) t.join();
  }
  uint64_t peak = bench::rss_bytes();
  if (threads == 1) {
    release(&shares[0]);
  } else {
    std::vector<std::thread> ts;
    for (uint64_t t = 0; t < threads; t++) ts.emplace_back(release, &shares[(t + 1) % threads]);
    for (std::thread& t : ts) t.join();
  }
  uint64_t checksum = 0, blocks = 0;
  for (Share& s : shares) {
    if (!s.ok) bench::fail(kName, "a block's contents changed while it was live");
    checksum += s.sum;
    blocks += s.blocks.size();
  }
  shares.clear();  // the block lists are part of the working set
  shares.shrink_to_fit();
  double t1 = bench::now_s();
  uint64_t after_free = bench::rss_bytes();

  // Watch the RSS: one tiny malloc/free every 10 ms.
  uint64_t slack = peak > baseline ? (peak - baseline) / 100 : 0;
  uint64_t threshold = baseline + (baseline / 10 > slack ? baseline / 10 : slack);
  uint64_t rss = after_free;
  int64_t settle_ms = rss <= threshold ? 0 : -1;
  for (uint64_t waited = 0; settle_ms < 0 && waited < wait_ms; waited += 10) {
    usleep(10000);
    volatile char* p = static_cast<char*>(bench::xmalloc(kName, 16));
    p[0] = 1;
    free(const_cast<char*>(p));
    rss = bench::rss_bytes();
    if (rss <= threshold) settle_ms = static_cast<int64_t>((bench::now_s() - t1) * 1000.0);
  }
  uint64_t final_rss = rss;
  double returned = peak > baseline ? 100.0 * (static_cast<double>(peak) - static_cast<double>(final_rss)) /
                                          static_cast<double>(peak - baseline)
                                    : 0.0;
  char extra[256];
  snprintf(extra, sizeof extra,
           "baseline_kib=%llu peak_kib=%llu after_free_kib=%llu final_kib=%llu settle_ms=%lld returned_pct=%.1f",
           static_cast<unsigned long long>(baseline / 1024), static_cast<unsigned long long>(peak / 1024),
           static_cast<unsigned long long>(after_free / 1024), static_cast<unsigned long long>(final_rss / 1024),
           static_cast<long long>(settle_ms), returned);
  bench::print_result(kName, threads, blocks, checksum, t1 - t0, extra);
  return 0;
}
