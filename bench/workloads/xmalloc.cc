// xmalloc: producer/consumer after xmalloc-test (mimalloc-bench "xmalloc-testN").
//
// Producer threads allocate blocks of 16..512 B, fill them and push them in batches of --batch
// through a mutex-protected bounded queue (--depth batches); consumer threads verify each block
// and free it. Every free is therefore a cross-thread free. With --threads N there are N/2
// producers and N/2 consumers (at least one of each). With --threads 1 one thread alternates:
// it produces a batch into a local FIFO of --depth batches and, once the FIFO is full, consumes the
// oldest batch, so blocks live about as long as in the threaded case but all frees are local.
// --blocks blocks in all are split evenly over the producers.
//
// Result line: xmalloc threads=N ops=<blocks allocated and freed> checksum=0x... time_s=...
#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>
#include <vector>

#include "common.h"

namespace {

constexpr const char* kName = "xmalloc";
constexpr size_t kMaxBatch = 256;

struct Batch {
  uint32_t n = 0;
  void* p[kMaxBatch];
  uint32_t size[kMaxBatch];
  uint64_t tag[kMaxBatch];
};

// Bounded FIFO of batch pointers.
class Queue {
 public:
  void push(Batch* b) {
    {
      std::lock_guard<std::mutex> g(mu_);
      q_.push_back(b);
    }
    cv_.notify_one();
  }
  // Blocks until a batch is available; returns nullptr once closed and drained.
  Batch* pop() {
    std::unique_lock<std::mutex> g(mu_);
    cv_.wait(g, [this] { return !q_.empty() || closed_; });
    if (q_.empty()) return nullptr;
    Batch* b = q_.front();
    q_.pop_front();
    return b;
  }
  void close() {
    {
      std::lock_guard<std::mutex> g(mu_);
      closed_ = true;
    }
    cv_.notify_all();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Batch*> q_;
  bool closed_ = false;
};

struct Producer {
  bench::Rng rng{0};
  uint64_t id = 0;
  uint64_t made = 0;
};

void produce(Producer& pr, Batch* b, uint64_t count) {
  b->n = static_cast<uint32_t>(count);
  for (uint64_t i = 0; i < count; i++) {
    uint32_t size = static_cast<uint32_t>(pr.rng.range(16, 512));
    uint64_t tag = bench::mix64((pr.id << 40) ^ pr.made++);
    void* p = bench::xmalloc(kName, size);
    bench::fill_block(p, size, tag);
    b->p[i] = p;
    b->size[i] = size;
    b->tag[i] = tag;
  }
}

uint64_t consume(Batch* b, bool* ok) {
  uint64_t h = 0;
  for (uint32_t i = 0; i < b->n; i++) {
    h += bench::check_block(b->p[i], b->size[i], b->tag[i], ok);
    free(b->p[i]);
  }
  b->n = 0;
  return h;
}

}  // namespace

int main(int argc, char** argv) {
  bench::Args args(argc, argv);
  uint64_t threads = args.u64("threads", 1);
  uint64_t blocks = args.u64("blocks", 12000000);
  uint64_t batch = args.u64("batch", 64);
  uint64_t depth = args.u64("depth", 64);
  args.finish("producer/consumer with cross-thread frees; --blocks in all");
  if (threads == 0 || batch == 0 || batch > kMaxBatch || depth == 0) bench::fail(kName, "bad parameters");

  uint64_t checksum = 0;
  bool ok = true;
  uint64_t producers = threads == 1 ? 1 : threads / 2;
  uint64_t consumers = threads == 1 ? 0 : threads - producers;
  std::vector<Batch> pool(depth + producers + consumers + 1);
  double t0 = bench::now_s();

  if (threads == 1) {
    Producer pr;
    pr.rng = bench::Rng(0x3a110c00);
    std::deque<Batch*> fifo;
    size_t next = 0;
    for (uint64_t left = blocks; left > 0;) {
      Batch* b;
      if (fifo.size() >= depth) {
        b = fifo.front();
        fifo.pop_front();
        checksum += consume(b, &ok);
      } else {
        b = &pool[next++];
      }
      uint64_t n = left < batch ? left : batch;
      produce(pr, b, n);
      left -= n;
      fifo.push_back(b);
    }
    for (Batch* b : fifo) checksum += consume(b, &ok);
  } else {
    Queue full, empty;
    for (Batch& b : pool) empty.push(&b);
    std::vector<std::thread> ts;
    std::vector<uint64_t> sums(consumers, 0);
    std::vector<char> oks(consumers, 1);
    for (uint64_t c = 0; c < consumers; c++) {
      ts.emplace_back([&, c] {
        bool cok = true;
        while (Batch* b = full.pop()) {
          sums[c] += consume(b, &cok);
          empty.push(b);
        }
        oks[c] = cok;
      });
    }
    std::vector<std::thread> ps;
    for (uint64_t p = 0; p < producers; p++) {
      ps.emplace_back([&, p] {
        Producer pr;
        pr.id = p;
        pr.rng = bench::Rng(0x3a110c00 + p);
        for (uint64_t left = bench::share(blocks, producers, p); left > 0;) {
          Batch* b = empty.pop();
          uint64_t n = left < batch ? left : batch;
          produce(pr, b, n);
          left -= n;
          full.push(b);
        }
      });
    }
    for (std::thread& t : ps) t.join();
    full.close();
    for (std::thread& t : ts) t.join();
    for (uint64_t c = 0; c < consumers; c++) {
      checksum += sums[c];
      ok = ok && oks[c];
    }
  }
  double t1 = bench::now_s();
  if (!ok) bench::fail(kName, "a consumer saw a block whose contents changed");
  bench::print_result(kName, threads, blocks, checksum, t1 - t0);
  return 0;
}
