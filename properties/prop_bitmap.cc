// src/bitmap.h (run bitmaps: bit set = free block) against std::bitset under random op
// sequences: fill, set, clear, test, find_first (with a hint word), count.
//
// Reproduce a failure:
//   RC_PARAMS="reproduce=<base64 printed by RapidCheck>" ./tm_prop_bitmap --gtest_filter=Bitmap.<Name>
//   RC_PARAMS="seed=<seed>" ./tm_prop_bitmap      (seed from "Using configuration: seed=...")
//   Longer sequences: RC_PARAMS="max_size=400".
#include <gtest/gtest.h>
#include <rapidcheck/gtest.h>

#include <bitset>
#include <ostream>
#include <vector>

#include "bitmap.h"
#include "config.h"

namespace {

constexpr size_t kMaxWords = tmalloc::kRunBitmapWords;  // 64 words: 4096 blocks
constexpr size_t kMaxBits = kMaxWords * 64;
using Model = std::bitset<kMaxBits>;

enum class BitOpKind { kFill, kSet, kClear, kTest, kFindFirst, kCount, kAllocate };

struct BitOp {
  BitOpKind kind = BitOpKind::kTest;
  size_t arg = 0;  // bit index (reduced modulo the bitmap size), fill count, or hint word
};

const char* kind_name(BitOpKind k) {
  switch (k) {
    case BitOpKind::kFill:
      return "fill";
    case BitOpKind::kSet:
      return "set";
    case BitOpKind::kClear:
      return "clear";
    case BitOpKind::kTest:
      return "test";
    case BitOpKind::kFindFirst:
      return "find_first";
    case BitOpKind::kCount:
      return "count";
    case BitOpKind::kAllocate:
      return "allocate";
  }
  return "?";
}

void showValue(const BitOp& op, std::ostream& os) { os << kind_name(op.kind) << "(" << op.arg << ")"; }

rc::Gen<BitOp> gen_op() {
  return rc::gen::build<BitOp>(
      rc::gen::set(&BitOp::kind, rc::gen::weightedElement<BitOpKind>({{1, BitOpKind::kFill},
                                                                      {6, BitOpKind::kSet},
                                                                      {6, BitOpKind::kClear},
                                                                      {3, BitOpKind::kTest},
                                                                      {3, BitOpKind::kFindFirst},
                                                                      {1, BitOpKind::kCount},
                                                                      {4, BitOpKind::kAllocate}})),
      rc::gen::set(&BitOp::arg, rc::gen::inRange<size_t>(0, kMaxBits + 1)));
}

// Reference find_first: lowest set bit at or after bit hint*64, or words*64.
size_t model_find_first(const Model& m, size_t words, size_t hint) {
  for (size_t i = hint * 64; i < words * 64; ++i) {
    if (m.test(i)) return i;
  }
  return words * 64;
}

RC_GTEST_PROP(Bitmap, MatchesBitsetModel, ()) {
  const size_t words = *rc::gen::inRange<size_t>(1, kMaxWords + 1);
  const size_t bits_n = words * 64;
  const size_t initial = *rc::gen::inRange<size_t>(0, bits_n + 1);
  const auto ops = *rc::gen::container<std::vector<BitOp>>(gen_op());

  std::vector<uint64_t> bits(words, 0xA5A5A5A5A5A5A5A5u);  // garbage: fill must overwrite it
  Model model;
  tmalloc::bitmap_fill(bits.data(), words, initial);
  for (size_t i = 0; i < initial; ++i) model.set(i);
  size_t hint = 0;  // the allocator's invariant: words below the hint are all clear
  bool saw_found = false, saw_full = false;

  for (const BitOp& op : ops) {
    switch (op.kind) {
      case BitOpKind::kFill: {
        const size_t count = op.arg % (bits_n + 1);
        tmalloc::bitmap_fill(bits.data(), words, count);
        model.reset();
        for (size_t i = 0; i < count; ++i) model.set(i);
        hint = 0;
        break;
      }
      case BitOpKind::kSet: {
        const size_t i = op.arg % bits_n;
        tmalloc::bitmap_set(bits.data(), i);
        model.set(i);
        if (i / 64 < hint) hint = i / 64;  // a freed block lowers the hint
        break;
      }
      case BitOpKind::kClear: {
        const size_t i = op.arg % bits_n;
        tmalloc::bitmap_clear(bits.data(), i);
        model.reset(i);
        break;
      }
      case BitOpKind::kTest: {
        const size_t i = op.arg % bits_n;
        RC_ASSERT(tmalloc::bitmap_test(bits.data(), i) == model.test(i));
        break;
      }
      case BitOpKind::kFindFirst: {
        // Any hint word at or below the lowest non-empty word gives the lowest set bit.
        const size_t first = model_find_first(model, words, 0);
        const size_t max_hint = first / 64 < words ? first / 64 : words;
        size_t h = op.arg % (max_hint + 1);
        const size_t got = tmalloc::bitmap_find_first(bits.data(), words, &h);
        RC_ASSERT(got == first);
        RC_ASSERT(h == max_hint);
        break;
      }
      case BitOpKind::kCount:
        RC_ASSERT(tmalloc::bitmap_count(bits.data(), words) == model.count());
        break;
      case BitOpKind::kAllocate: {
        // The run's allocation step: lowest free bit from the hint, then clear it.
        size_t h = hint;
        const size_t got = tmalloc::bitmap_find_first(bits.data(), words, &h);
        RC_ASSERT(got == model_find_first(model, words, 0));
        hint = h;
        if (got < bits_n) {
          RC_ASSERT(tmalloc::bitmap_test(bits.data(), got));
          tmalloc::bitmap_clear(bits.data(), got);
          model.reset(got);
        }
        (got < bits_n ? saw_found : saw_full) = true;
        break;
      }
    }
  }
  // Final state: word by word.
  for (size_t w = 0; w < words; ++w) {
    uint64_t expect = 0;
    for (size_t b = 0; b < 64; ++b) {
      if (model.test(w * 64 + b)) expect |= uint64_t{1} << b;
    }
    RC_ASSERT(bits[w] == expect);
  }
  RC_ASSERT(tmalloc::bitmap_count(bits.data(), words) == model.count());
  RC_CLASSIFY(saw_found, "allocate found a free bit");
  RC_CLASSIFY(saw_full, "allocate found the bitmap full");
}

// bitmap_find_first with a hint past the last set bit reports "none" and parks the hint at
// the end; with hint == words it scans nothing.
RC_GTEST_PROP(Bitmap, FindFirstFromHintScansOnlyFromHint, ()) {
  const size_t words = *rc::gen::inRange<size_t>(1, kMaxWords + 1);
  std::vector<uint64_t> bits(words);
  for (auto& w : bits)
    w = *rc::gen::weightedOneOf<uint64_t>({{1, rc::gen::arbitrary<uint64_t>()}, {2, rc::gen::just<uint64_t>(0)}});
  size_t hint = *rc::gen::inRange<size_t>(0, words + 1);
  const size_t start = hint;
  const size_t got = tmalloc::bitmap_find_first(bits.data(), words, &hint);
  size_t expect = words * 64;
  for (size_t i = start * 64; i < words * 64; ++i) {
    if (tmalloc::bitmap_test(bits.data(), i)) {
      expect = i;
      break;
    }
  }
  RC_ASSERT(got == expect);
  RC_ASSERT(hint == (expect < words * 64 ? expect / 64 : words));
}

}  // namespace
