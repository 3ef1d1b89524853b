// Fuzz target fit_index: tmalloc::FitIndex (src/fit_index.h) against a naive model, with fake
// free blocks (FreeBlock headers in a buffer; the index only touches headers and links).
//
// Input: ops of 5 bytes {op, id, m, lo, hi} (missing bytes read as 0); id % 64 names a fake
// block, v = lo | hi << 8:
//   op % 4 == 0: insert block id with size S(m, v) (skipped when already filed)
//   op % 4 == 1: remove block id (skipped when not filed)
//   op % 4 == 2: find_fit(S(m, v))
//   op % 4 == 3: find_fit(size of block id + 16 * ((int8_t)m % 8)), then remove the result
//                when it is non-null (how the allocator uses it)
// Sizes S(m, v), multiples of 16 from 32 to 4 MiB:
//   m % 4 == 0: 32 + 16 * (v % 256)                 (small lists, first level 0 and 1)
//   m % 4 == 1: log-uniform in [256, 4 MiB)
//   m % 4 == 2: 2^k + j * 2^(k-4) + {-16, 0, +16, +32}   (list boundaries)
//   m % 4 == 3: size of block (v % 64) + 16 * ((int8_t)(v >> 8) % 8)   (same list)
// After every op: count(), bytes(), largest() and validate() against the model. find_fit:
// the result is a filed block of size >= n; nullptr only when no filed block outside the
// request's own list fits (the documented bounded scan of that list); and the documented
// quality bound: the result is within 1/16 of the best fit.
#include <cstdint>
#include <cstring>
#include <new>

#include "fit_index.h"
#include "unit_check.h"

namespace {

const char* const kTarget = "fit_index";
constexpr unsigned kBlocks = 64;

struct Model {
  bool filed[kBlocks] = {};
  size_t size[kBlocks] = {};
};

size_t make_size(uint8_t m, uint16_t v, const tmalloc::FreeBlock* blocks) {
  size_t s;
  switch (m % 4) {
    case 0:
      s = 32 + 16 * (v % 256u);
      break;
    case 1: {
      const unsigned lg = 8 + (v >> 11) % 14u;  // 256 .. 2 MiB base
      s = (size_t{1} << lg) + (((size_t)(v & 0x7FF)) << lg >> 11);
      break;
    }
    case 2: {
      const unsigned lg = 8 + (v & 0xFF) % 14u;
      const size_t granule = size_t{1} << (lg - 4);
      static const int d[4] = {-16, 0, 16, 32};
      s = (size_t{1} << lg) + ((v >> 8) % 16u) * granule + d[(v >> 12) % 4u];
      break;
    }
    default: {
      const size_t base = blocks[v % kBlocks].size();
      const int d = static_cast<int8_t>(v >> 8) % 8;
      s = base + 16 * d;
      if (base == 0) s = 256 + 16 * (v >> 8);
      break;
    }
  }
  s &= ~size_t{15};
  if (s < 32) s = 32;
  if (s > (size_t{4} << 20)) s = size_t{4} << 20;
  return s;
}

bool slot_less(tmalloc::FitIndex::Slot a, tmalloc::FitIndex::Slot b) {
  return a.first != b.first ? a.first < b.first : a.second < b.second;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  tm_fuzz::unit_trace().clear();
  alignas(16) static unsigned char storage[kBlocks * sizeof(tmalloc::FreeBlock)];
  memset(storage, 0, sizeof storage);
  tmalloc::FreeBlock* blocks = reinterpret_cast<tmalloc::FreeBlock*>(storage);
  tmalloc::FitIndex* index = new tmalloc::FitIndex();
  Model model;

  auto id_of = [&](const tmalloc::FreeBlock* b) -> long {
    const auto off = reinterpret_cast<const unsigned char*>(b) - storage;
    if (off < 0 || off >= static_cast<long>(sizeof storage) || off % sizeof(tmalloc::FreeBlock) != 0) return -1;
    return off / static_cast<long>(sizeof(tmalloc::FreeBlock));
  };

  for (size_t pos = 0, i = 0; pos < size; pos += 5, ++i) {
    uint8_t r[5] = {};
    memcpy(r, data + pos, size - pos < 5 ? size - pos : 5);
    const unsigned id = r[1] % kBlocks;
    const uint16_t v = static_cast<uint16_t>(r[3] | r[4] << 8);
    switch (r[0] % 4) {
      case 0: {
        if (model.filed[id]) {
          tm_fuzz::trace("#%zu insert block %u: already filed, skipped", i, id);
          break;
        }
        const size_t s = make_size(r[2], v, blocks);
        blocks[id].prev_size = 0;
        blocks[id].set(s, true);
        if (blocks[id].size() != s || !blocks[id].is_free()) {
          tm_fuzz::unit_fail(kTarget, "BlockHeader::set(%zu, free) reads back size %zu free %d", s, blocks[id].size(),
                             blocks[id].is_free());
        }
        const auto sl = tmalloc::FitIndex::slot_for_size(s);
        tm_fuzz::trace("#%zu insert block %u size %zu (list %u,%u)", i, id, s, sl.first, sl.second);
        index->insert(&blocks[id]);
        model.filed[id] = true;
        model.size[id] = s;
        break;
      }
      case 1:
        if (!model.filed[id]) {
          tm_fuzz::trace("#%zu remove block %u: not filed, skipped", i, id);
          break;
        }
        tm_fuzz::trace("#%zu remove block %u size %zu", i, id, model.size[id]);
        index->remove(&blocks[id]);
        model.filed[id] = false;
        if (blocks[id].next_free != nullptr || blocks[id].prev_free != nullptr) {
          tm_fuzz::unit_fail(kTarget, "remove(block %u) left its links non-null", id);
        }
        break;
      default: {
        size_t n;
        if (r[0] % 4 == 2) {
          n = make_size(r[2], v, blocks);
        } else {
          const size_t base = model.size[id] ? model.size[id] : 256;
          const long d = 16L * (static_cast<int8_t>(r[2]) % 8);
          n = static_cast<size_t>(static_cast<long>(base) + d);
          if (n < 32) n = 32;
        }
        const tmalloc::FreeBlock* got = index->find_fit(n);
        const long gid = got ? id_of(got) : -1;
        size_t best = 0;
        long best_id = -1;
        long outside_fit = -1;  // a fitting block outside n's own list
        const auto own = tmalloc::FitIndex::slot_for_size(n);
        for (unsigned b = 0; b < kBlocks; ++b) {
          if (!model.filed[b] || model.size[b] < n) continue;
          if (best_id < 0 || model.size[b] < best) {
            best = model.size[b];
            best_id = b;
          }
          const auto sl = tmalloc::FitIndex::slot_for_size(model.size[b]);
          if (slot_less(own, sl) && outside_fit < 0) outside_fit = b;
        }
        tm_fuzz::trace("#%zu find_fit(%zu) (own list %u,%u) = %s%ld (size %zu); best fit: block %ld (size %zu)", i, n,
                       own.first, own.second, got ? "block " : "null ", gid, got ? got->size() : 0, best_id, best);
        if (got != nullptr) {
          if (gid < 0 || !model.filed[gid]) {
            tm_fuzz::unit_fail(kTarget, "find_fit(%zu) returned %p, which is not a filed block", n, (const void*)got);
          }
          if (got->size() < n)
            tm_fuzz::unit_fail(kTarget, "find_fit(%zu) returned block %ld of size %zu < %zu", n, gid, got->size(), n);
          if ((got->size() - best) * 16 > best) {
            tm_fuzz::unit_fail(kTarget,
                               "find_fit(%zu) returned block %ld of size %zu, more than 1/16 above the best fit "
                               "(block %ld, size %zu); fit_index.h documents a result within 1/16 of the best fit",
                               n, gid, got->size(), best_id, best);
          }
        } else if (outside_fit >= 0) {
          tm_fuzz::unit_fail(kTarget,
                             "find_fit(%zu) returned nullptr, but block %ld of size %zu (in a higher list) fits", n,
                             outside_fit, model.size[outside_fit]);
        } else if (best_id >= 0) {
          tm_fuzz::unit_fail(kTarget,
                             "find_fit(%zu) returned nullptr, but block %ld of size %zu in the request's own list fits "
                             "(fit_index.h documents a result within 1/16 of the best fit)",
                             n, best_id, best);
        }
        if (r[0] % 4 == 3 && got != nullptr) {
          index->remove(const_cast<tmalloc::FreeBlock*>(got));
          model.filed[gid] = false;
          tm_fuzz::trace("   removed block %ld", gid);
        }
        break;
      }
    }
    // Bookkeeping against the model.
    size_t count = 0, bytes = 0, largest = 0;
    for (unsigned b = 0; b < kBlocks; ++b) {
      if (!model.filed[b]) continue;
      ++count;
      bytes += model.size[b];
      if (model.size[b] > largest) largest = model.size[b];
    }
    if (index->count() != count || index->bytes() != bytes) {
      tm_fuzz::unit_fail(kTarget, "after op #%zu: count() %zu bytes() %zu; model %zu blocks, %zu bytes", i,
                         index->count(), index->bytes(), count, bytes);
    }
    if (index->largest() != largest) {
      tm_fuzz::unit_fail(kTarget, "after op #%zu: largest() = %zu, model %zu", i, index->largest(), largest);
    }
    if (const void* bad = index->validate()) {
      const long bid = id_of(static_cast<const tmalloc::FreeBlock*>(bad));
      tm_fuzz::unit_fail(kTarget, "after op #%zu: validate() reports %p%s", i, bad,
                         bid >= 0 ? " (a fake block)" : " (a list head, bitmap or the index)");
    }
    for (unsigned b = 0; b < kBlocks; ++b) {
      if (model.filed[b] && model.size[b] != blocks[b].size()) {
        tm_fuzz::unit_fail(kTarget, "after op #%zu: header of filed block %u now says size %zu, was %zu", i, b,
                           blocks[b].size(), model.size[b]);
      }
    }
  }
  delete index;
  tm_fuzz::unit_done(kTarget);
  return 0;
}
