// The memory-pool ops of format v2 (FORMAT.md "Memory pool ops (v2)") and the pool model:
// which pool owns each block, pool creation at the limit, reset and destroy.
#include <cerrno>
#include <cinttypes>
#include <cstdlib>
#include <cstring>
#include <string>

#include "interpreter_impl.h"
#include "tm_harness.h"

namespace tmh {

void Interpreter::Impl::pool_totals(unsigned pi, uint64_t* n, uint64_t* usable) const {
  *n = *usable = 0;
  for (const Block& b : slots) {
    if (b.live && b.pool == static_cast<int>(pi)) {
      ++*n;
      *usable += b.usable;
    }
  }
}

void Interpreter::Impl::check_pool_stats(unsigned pi, const char* when) {
  if (pools[pi].h == nullptr) return;
  PoolStats st;
  be.heap_stats(pools[pi].h, &st);
  uint64_t n, usable;
  pool_totals(pi, &n, &usable);
  if (st.live_blocks != n) {
    deviate(Clause::kPools,
            "heap_stats of pool %u %s: live_blocks is %zu; the model has %" PRIu64 " blocks in this pool", pi, when,
            st.live_blocks, n);
  }
  if (st.usable_bytes != usable) {
    deviate(Clause::kPools,
            "heap_stats of pool %u %s: usable_bytes is %zu; the model's sum of usable_size() over its %" PRIu64
            " blocks is %" PRIu64,
            pi, when, st.usable_bytes, n, usable);
  }
  if (st.large_blocks > st.live_blocks) {
    deviate(Clause::kPools, "heap_stats of pool %u %s: large_blocks %zu > live_blocks %zu", pi, when, st.large_blocks,
            st.live_blocks);
  }
  if (st.mapped_bytes < st.usable_bytes) {
    deviate(Clause::kPools, "heap_stats of pool %u %s: mapped_bytes %zu < usable_bytes %zu", pi, when, st.mapped_bytes,
            st.usable_bytes);
  }
}

bool Interpreter::Impl::handle_in_use(const void* h) const {
  for (const PoolSlot& ps : pools) {
    if (ps.h == h) return true;
  }
  for (const void* x : extra_pools) {
    if (x == h) return true;
  }
  return false;
}

void* Interpreter::Impl::create_heap(const char* what) {
  const unsigned live = be.heaps_live();
  const bool room = live < be.max_heaps();
  errno = 0;
  void* h = be.heap_create();
  const int err = errno;
  if (h == nullptr) {
    if (room) {
      deviate(Clause::kPools,
              "%s: heap_create returned NULL (errno %d: %s) with only %u of %u pools live; it must succeed", what, err,
              strerror(err), live, be.max_heaps());
    }
    if (err != ENOMEM) {
      deviate(Clause::kPools,
              "%s: heap_create at the limit of %u pools returned NULL with errno %d (%s); expected ENOMEM", what,
              be.max_heaps(), err, strerror(err));
    }
    ++ctr.pool_limit_hits;
    return nullptr;
  }
  if (!room) {
    deviate(Clause::kPools, "%s: heap_create returned %s with %u pools live already; the limit is %u", what,
            ptr(h).c_str(), live, be.max_heaps());
  }
  if (handle_in_use(h))
    deviate(Clause::kPools, "%s: heap_create returned %s, the handle of a pool that is still live", what,
            ptr(h).c_str());
  ++ctr.pool_creates;
  return h;
}

bool Interpreter::Impl::ensure_pool(unsigned pi) {
  if (pools[pi].h != nullptr) return true;
  void* h = create_heap("creating the op's pool");
  if (h == nullptr) {
    ++ctr.skipped;
    outcome("skipped (its pool slot is empty and the pool limit is reached: heap_create failed, as expected)");
    return false;
  }
  pools[pi].h = h;
  pools[pi].birth_op = cur;
  check_pool_stats(pi, "of a new pool");
  return true;
}

uint64_t Interpreter::Impl::drop_pool_blocks(unsigned pi, const char* why) {
  for (unsigned s = 0; s < kSlots; ++s) {
    if (slots[s].live && slots[s].pool == static_cast<int>(pi)) verify_block(s, why, 0, UINT64_MAX, routine());
  }
  uint64_t n = 0;
  for (unsigned s = 0; s < kSlots; ++s) {
    Block& b = slots[s];
    if (!b.live || b.pool != static_cast<int>(pi)) continue;
    unlink(s);
    b.live = false;
    b.p = nullptr;
    ++n;
  }
  ctr.frees += n;
  ctr.pool_blocks_dropped += n;
  whole_heap = true;  // the pool's segments went back at once
  if (!resolved.empty()) resolved += "; ";
  resolved += std::to_string(n) + " block(s) of pool " + std::to_string(pi) + " dropped";
  return n;
}

void Interpreter::Impl::destroy_pool(unsigned pi, const char* why) {
  drop_pool_blocks(pi, why);
  void* h = pools[pi].h;
  pools[pi] = PoolSlot{};
  be.heap_destroy(h);
  ++ctr.pool_destroys;
  verify_all("after heap_destroy (blocks outside the pool must be intact)", routine());
}

bool Interpreter::Impl::skip_without_heaps() {
  if (be.has_heaps()) return false;
  ++ctr.skipped;
  outcome("skipped (backend has no memory pools)");
  return true;
}

void Interpreter::Impl::op_heap_create(const Op& op) {
  if (skip_without_heaps()) return;
  if (pools[op.pool].h != nullptr) destroy_pool(op.pool, "before heap_create replaced its pool");
  void* h = create_heap("heap_create");
  if (h == nullptr) {
    outcome("NULL (pool limit reached, expected)", nullptr, nullptr, ENOMEM);
    return;
  }
  pools[op.pool].h = h;
  pools[op.pool].birth_op = cur;
  check_pool_stats(op.pool, "of a new pool");
  outcome("ok", nullptr, h);
}

void Interpreter::Impl::op_heap_malloc(const Op& op) {
  if (skip_without_heaps()) return;
  const uint64_t n = resolve(op.size, op.slot);
  if (!ensure_pool(op.pool)) return;
  release(op.slot, "before its slot was reused");
  alloc_into(op.slot, n, op.pool);
  check_pool_stats(op.pool, "after heap_malloc");
}

void Interpreter::Impl::op_heap_calloc(const Op& op) {
  if (skip_without_heaps()) return;
  const uint64_t size = resolve(op.size, op.slot);
  if (!ensure_pool(op.pool)) return;
  release(op.slot, "before its slot was reused");
  calloc_into(op, size, op.pool);
  check_pool_stats(op.pool, "after heap_calloc");
}

bool Interpreter::Impl::skip_foreign_block(const Op& op) {
  const Block& b = slots[op.slot];
  if (!b.live || b.pool == static_cast<int>(op.pool)) return false;
  ++ctr.skipped;
  outcome(b.pool < 0 ? "skipped (the slot's block is not a pool block)"
                     : "skipped (the slot's block belongs to another pool)");
  return true;
}

void Interpreter::Impl::op_heap_realloc(const Op& op) {
  if (skip_without_heaps()) return;
  const uint64_t n = resolve(op.size, op.slot);
  if (skip_foreign_block(op)) return;
  if (!ensure_pool(op.pool)) return;
  realloc_slot(op.slot, n, op.pool);
  check_pool_stats(op.pool, "after heap_realloc");
}

void Interpreter::Impl::op_heap_free(const Op& op) {
  if (skip_without_heaps() || skip_foreign_block(op)) return;
  if (pools[op.pool].h == nullptr) {
    outcome("empty pool slot");
    return;
  }
  if (!slots[op.slot].live) {
    be.heap_free(pools[op.pool].h, nullptr);
    outcome("heap_free(NULL)");
    return;
  }
  const void* p = slots[op.slot].p;
  release(op.slot, "before heap_free", /*heap_free=*/true);
  outcome("freed", p);
}

void Interpreter::Impl::op_heap_reset(const Op& op) {
  if (skip_without_heaps()) return;
  if (pools[op.pool].h == nullptr) {
    outcome("empty pool slot");
    return;
  }
  drop_pool_blocks(op.pool, "before heap_reset");
  be.heap_reset(pools[op.pool].h);
  ++ctr.pool_resets;
  check_pool_stats(op.pool, "after heap_reset");
  verify_all("after heap_reset (blocks outside the pool must be intact)", routine());
  outcome("ok");
}

void Interpreter::Impl::op_heap_destroy(const Op& op) {
  if (skip_without_heaps()) return;
  if (pools[op.pool].h == nullptr) {
    outcome("empty pool slot");
    return;
  }
  destroy_pool(op.pool, "before heap_destroy");
  outcome("ok");
}

void Interpreter::Impl::op_heap_stats(const Op& op) {
  if (skip_without_heaps()) return;
  if (pools[op.pool].h == nullptr) {
    outcome("empty pool slot");
    return;
  }
  check_pool_stats(op.pool, "at heap_stats");
  outcome("ok");
}

void Interpreter::Impl::op_heap_alloc_range(const Op& op) {
  if (skip_without_heaps()) return;
  const uint64_t n = resolve(op.size, op.slot);
  if (!ensure_pool(op.pool)) return;
  for (unsigned i = 0; i < op.range_count(); ++i) {
    const unsigned s = range_slot(op, i);
    release(s, "before its slot was reused");
    alloc_into(s, n, op.pool);
  }
  check_pool_stats(op.pool, "after heap_alloc_range");
  if (*rec->outcome == '\0') outcome("ok");
}

void Interpreter::Impl::op_heap_fill() {
  if (skip_without_heaps()) return;
  const size_t before = extra_pools.size();
  for (unsigned guard = 0; guard <= be.max_heaps(); ++guard) {
    void* h = create_heap("heap_fill");
    if (h == nullptr) break;
    extra_pools.push_back(h);
  }
  resolved =
      std::to_string(extra_pools.size() - before) + " pool(s) created, " + std::to_string(be.heaps_live()) + " live";
  outcome("ok (pool limit reached)");
}

void Interpreter::Impl::op_heap_unfill() {
  if (skip_without_heaps()) return;
  resolved = std::to_string(extra_pools.size()) + " pool(s) destroyed";
  for (void* h : extra_pools) {
    be.heap_destroy(h);
    ++ctr.pool_destroys;
  }
  extra_pools.clear();
  outcome("ok");
}

void Interpreter::Impl::check_all_pools(const char* when) {
  for (unsigned pi = 0; pi < kPoolSlots; ++pi) check_pool_stats(pi, when);
}

}  // namespace tmh
