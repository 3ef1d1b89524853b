// Bitmap helpers (bitmap.h) against a std::vector<bool> model.
#include <gtest/gtest.h>

#include "internal_headers.h"

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "test_util.h"

namespace {

constexpr uint64_t kSentinel = 0xC0FFEE00DEADBEEFULL;

// A bitmap with guard words on both sides so out-of-range writes are caught.
struct Guarded {
  explicit Guarded(size_t w, uint64_t init = 0) : words(w), storage(w + 2, init) {
    storage.front() = kSentinel;
    storage.back() = kSentinel;
  }
  uint64_t* bits() { return storage.data() + 1; }
  const uint64_t* bits() const { return storage.data() + 1; }
  bool guards_intact() const { return storage.front() == kSentinel && storage.back() == kSentinel; }
  size_t words;
  std::vector<uint64_t> storage;
};

void expect_matches(const Guarded& g, const std::vector<bool>& model) {
  ASSERT_EQ(model.size(), g.words * 64);
  size_t set = 0;
  for (size_t i = 0; i < model.size(); ++i) {
    ASSERT_EQ(tmi::bitmap_test(g.bits(), i), model[i]) << "bit " << i;
    set += model[i] ? 1 : 0;
  }
  EXPECT_EQ(tmi::bitmap_count(g.bits(), g.words), set);
  EXPECT_TRUE(g.guards_intact());
}

size_t model_find(const std::vector<bool>& model, size_t from) {
  for (size_t i = from; i < model.size(); ++i) {
    if (model[i]) return i;
  }
  return model.size();
}

TEST(Bitmap, FillEveryCount) {
  for (size_t words : {size_t{1}, size_t{2}, size_t{3}, size_t{5}, tmi::kRunBitmapWords}) {
    for (size_t count = 0; count <= words * 64; ++count) {
      for (uint64_t init : {uint64_t{0}, ~uint64_t{0}, uint64_t{0x5555555555555555ULL}}) {
        Guarded g(words, init);
        tmi::bitmap_fill(g.bits(), words, count);
        ASSERT_TRUE(g.guards_intact()) << "fill wrote outside the bitmap, words=" << words << " count=" << count;
        ASSERT_EQ(tmi::bitmap_count(g.bits(), words), count) << "words=" << words << " count=" << count;
        for (size_t i = 0; i < words * 64; ++i) {
          ASSERT_EQ(tmi::bitmap_test(g.bits(), i), i < count)
              << "words=" << words << " count=" << count << " bit=" << i;
        }
      }
    }
  }
}

TEST(Bitmap, FillMatchesBlocksPerRunForEveryClass) {
  // The way a run initialises its free bitmap.
  for (size_t c = 0; c < tmi::kSmallClassCount; ++c) {
    Guarded g(tmi::kRunBitmapWords, ~uint64_t{0});
    const size_t n = tmi::blocks_per_run(c);
    tmi::bitmap_fill(g.bits(), tmi::kRunBitmapWords, n);
    EXPECT_EQ(tmi::bitmap_count(g.bits(), tmi::kRunBitmapWords), n);
    EXPECT_TRUE(g.guards_intact());
  }
}

TEST(Bitmap, SetClearTestAgainstModel) {
  tmtest::Rng rng(12345);
  for (size_t words : {size_t{1}, size_t{2}, size_t{7}, tmi::kRunBitmapWords}) {
    Guarded g(words);
    std::vector<bool> model(words * 64, false);
    // Edge bits first: word boundaries and the very last bit.
    const size_t edges[] = {0, 1, 62, 63, 64, 65, 127, 128, words * 64 - 2, words * 64 - 1};
    for (size_t e : edges) {
      if (e >= words * 64) continue;
      tmi::bitmap_set(g.bits(), e);
      model[e] = true;
      expect_matches(g, model);
      tmi::bitmap_set(g.bits(), e);  // idempotent
      expect_matches(g, model);
    }
    for (size_t e : edges) {
      if (e >= words * 64) continue;
      tmi::bitmap_clear(g.bits(), e);
      model[e] = false;
      tmi::bitmap_clear(g.bits(), e);
      expect_matches(g, model);
    }
    for (int op = 0; op < 4000; ++op) {
      const size_t i = rng.below(words * 64);
      if (rng.chance(50)) {
        tmi::bitmap_set(g.bits(), i);
        model[i] = true;
      } else {
        tmi::bitmap_clear(g.bits(), i);
        model[i] = false;
      }
      ASSERT_EQ(tmi::bitmap_test(g.bits(), i), model[i]);
      if (op % 97 == 0) expect_matches(g, model);
    }
    expect_matches(g, model);
  }
}

TEST(Bitmap, FindFirstWithEveryHint) {
  tmtest::Rng rng(777);
  for (size_t words : {size_t{1}, size_t{2}, size_t{3}, size_t{9}, tmi::kRunBitmapWords}) {
    for (int round = 0; round < 60; ++round) {
      Guarded g(words);
      std::vector<bool> model(words * 64, false);
      // Density varies from empty to sparse to dense; round 0 is all-empty.
      const unsigned density = round == 0 ? 0 : static_cast<unsigned>(rng.below(round % 3 == 0 ? 3 : 60));
      for (size_t i = 0; i < words * 64; ++i) {
        if (rng.below(100) < density) {
          tmi::bitmap_set(g.bits(), i);
          model[i] = true;
        }
      }
      if (round % 5 == 1) {  // only the very last bit
        std::fill(model.begin(), model.end(), false);
        tmi::bitmap_fill(g.bits(), words, 0);
        tmi::bitmap_set(g.bits(), words * 64 - 1);
        model[words * 64 - 1] = true;
      }
      for (size_t hint_word = 0; hint_word <= words; ++hint_word) {
        size_t hint = hint_word;
        const size_t got = tmi::bitmap_find_first(g.bits(), words, &hint);
        const size_t want = model_find(model, hint_word * 64);
        ASSERT_EQ(got, want) << "words=" << words << " hint=" << hint_word << " round=" << round;
        if (want == words * 64) {
          EXPECT_EQ(hint, words) << "hint not moved to the end on failure";
        } else {
          EXPECT_EQ(hint, want / 64) << "hint not updated to the word holding the bit";
        }
        ASSERT_TRUE(g.guards_intact());
      }
    }
  }
}

TEST(Bitmap, FindFirstIgnoresBitsBelowHint) {
  Guarded g(4);
  tmi::bitmap_set(g.bits(), 3);    // word 0
  tmi::bitmap_set(g.bits(), 200);  // word 3
  size_t hint = 1;
  EXPECT_EQ(tmi::bitmap_find_first(g.bits(), 4, &hint), 200u);
  EXPECT_EQ(hint, 3u);
  hint = 0;
  EXPECT_EQ(tmi::bitmap_find_first(g.bits(), 4, &hint), 3u);
  EXPECT_EQ(hint, 0u);
  hint = 4;
  EXPECT_EQ(tmi::bitmap_find_first(g.bits(), 4, &hint), 256u);
  EXPECT_EQ(hint, 4u);
}

TEST(Bitmap, AllocateEverythingThenRefill) {
  // The run allocation pattern: fill n free bits, take the lowest free bit until none is left
  // (hint carried along), then free random bits and take them again.
  tmtest::Rng rng(99);
  for (size_t n : {size_t{1}, size_t{8}, size_t{63}, size_t{64}, size_t{65}, size_t{455}, size_t{4096}}) {
    const size_t words = (n + 63) / 64;
    Guarded g(words);
    tmi::bitmap_fill(g.bits(), words, n);
    std::vector<bool> model(words * 64, false);
    for (size_t i = 0; i < n; ++i) model[i] = true;
    size_t hint = 0;
    for (size_t expect = 0; expect < n; ++expect) {
      const size_t got = tmi::bitmap_find_first(g.bits(), words, &hint);
      ASSERT_EQ(got, expect) << "n=" << n;
      tmi::bitmap_clear(g.bits(), got);
      model[got] = false;
    }
    EXPECT_EQ(tmi::bitmap_find_first(g.bits(), words, &hint), words * 64);
    EXPECT_EQ(tmi::bitmap_count(g.bits(), words), 0u);
    // Free a random subset, remember the lowest, re-take in ascending order.
    size_t lowest = words * 64;
    size_t freed = 0;
    for (size_t i = 0; i < n; ++i) {
      if (rng.chance(30)) {
        tmi::bitmap_set(g.bits(), i);
        model[i] = true;
        ++freed;
        if (i < lowest) lowest = i;
      }
    }
    expect_matches(g, model);
    hint = lowest == words * 64 ? 0 : lowest / 64;
    size_t prev = 0;
    for (size_t k = 0; k < freed; ++k) {
      const size_t got = tmi::bitmap_find_first(g.bits(), words, &hint);
      ASSERT_LT(got, n);
      ASSERT_TRUE(model[got]);
      if (k > 0) {
        ASSERT_GT(got, prev);
      }
      prev = got;
      tmi::bitmap_clear(g.bits(), got);
      model[got] = false;
    }
    EXPECT_EQ(tmi::bitmap_count(g.bits(), words), 0u);
    EXPECT_TRUE(g.guards_intact());
  }
}

TEST(Bitmap, CountEdgeWords) {
  Guarded g(3);
  EXPECT_EQ(tmi::bitmap_count(g.bits(), 3), 0u);
  g.bits()[0] = ~uint64_t{0};
  EXPECT_EQ(tmi::bitmap_count(g.bits(), 3), 64u);
  g.bits()[2] = uint64_t{1} << 63;
  EXPECT_EQ(tmi::bitmap_count(g.bits(), 3), 65u);
  EXPECT_EQ(tmi::bitmap_count(g.bits(), 2), 64u) << "count must stop at `words`";
  EXPECT_EQ(tmi::bitmap_count(g.bits(), 0), 0u);
  EXPECT_TRUE(tmi::bitmap_test(g.bits(), 191));
  EXPECT_FALSE(tmi::bitmap_test(g.bits(), 190));
}

}  // namespace
