// Input for the realprog g++ test: compiled by g++ (cc1plus) with and without
// LD_PRELOAD=libtinymalloc.so (the object files must be identical), then run with and without
// the preload (the output must be identical). Template-heavy on purpose: the standard
// containers, <regex>, <variant>, <functional> and user templates make cc1plus allocate a
// lot; at run time everything goes through operator new/delete (sized, aligned and array forms).
#include <algorithm>
#include <array>
#include <cstdint>
#include <cstdio>
#include <deque>
#include <functional>
#include <list>
#include <map>
#include <memory>
#include <numeric>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <unordered_map>
#include <variant>
#include <vector>

namespace {

// splitmix64: deterministic on every run.
class Rng {
 public:
  explicit Rng(std::uint64_t seed) : state_(seed) {}
  std::uint64_t next() {
    std::uint64_t z = (state_ += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
  }
  std::uint32_t below(std::uint32_t n) { return static_cast<std::uint32_t>(next() % n); }

 private:
  std::uint64_t state_;
};

template <typename T>
std::uint64_t mix(std::uint64_t h, const T& value) {
  h ^= std::hash<T>{}(value) + 0x9E3779B97F4A7C15ULL + (h << 6) + (h >> 2);
  return h;
}

template <typename Container>
std::uint64_t digest(const Container& c) {
  std::uint64_t h = 1469598103934665603ULL;
  for (const auto& x : c) h = mix(h, x);
  return h;
}

template <typename K, typename V>
std::uint64_t digest(const std::map<K, V>& m) {
  std::uint64_t h = 1469598103934665603ULL;
  for (const auto& [k, v] : m) h = mix(mix(h, k), v);
  return h;
}

// An over-aligned type: operator new(size_t, align_val_t) and its delete.
struct alignas(64) CacheLine {
  std::array<std::uint64_t, 8> words{};
};

// A small expression tree with variant nodes and unique_ptr ownership.
struct Expr;
using ExprPtr = std::unique_ptr<Expr>;
struct Num {
  long value;
};
struct Bin {
  char op;
  ExprPtr lhs, rhs;
};
struct Expr {
  std::variant<Num, Bin> node;
};

ExprPtr random_expr(Rng& rng, int depth) {
  auto e = std::make_unique<Expr>();
  if (depth == 0 || rng.below(4) == 0) {
    e->node = Num{static_cast<long>(rng.below(100))};
  } else {
    static constexpr char kOps[] = {'+', '-', '*'};
    e->node = Bin{kOps[rng.below(3)], random_expr(rng, depth - 1), random_expr(rng, depth - 1)};
  }
  return e;
}

template <typename... Fs>
struct Overloaded : Fs... {
  using Fs::operator()...;
};

long eval(const Expr& e) {
  return std::visit(Overloaded{[](const Num& n) { return n.value; },
                               [](const Bin& b) {
                                 long l = eval(*b.lhs), r = eval(*b.rhs);
                                 switch (b.op) {
                                   case '+':
                                     return (l + r) % 1000003;
                                   case '-':
                                     return (l - r) % 1000003;
                                   default:
                                     return (l * r) % 1000003;
                                 }
                               }},
                    e.node);
}

std::string show(const Expr& e) {
  return std::visit(Overloaded{[](const Num& n) { return std::to_string(n.value); },
                               [](const Bin& b) { return "(" + show(*b.lhs) + b.op + show(*b.rhs) + ")"; }},
                    e.node);
}

std::string make_word(Rng& rng) {
  static const char* const kParts[] = {"al", "be", "cor", "dun", "el", "fa", "gri", "hov", "is", "jo"};
  std::string w;
  for (unsigned n = 1 + rng.below(4); n > 0; n--) w += kParts[rng.below(10)];
  return w;
}

void phase_containers(Rng& rng) {
  std::unordered_map<std::string, int> counts;
  std::map<std::string, std::vector<int>> positions;
  std::set<std::uint64_t> seen;
  std::deque<std::string> window;
  std::list<std::pair<int, std::string>> lru;
  for (int i = 0; i < 150000; i++) {
    std::string w = make_word(rng);
    counts[w]++;
    auto& pos = positions[w];
    if (pos.size() < 16) pos.push_back(i);
    seen.insert(rng.next() % 50000);
    window.push_back(w);
    if (window.size() > 1000) window.pop_front();
    lru.emplace_front(i, std::move(w));
    if (lru.size() > 500) lru.pop_back();
  }
  std::vector<std::pair<std::string, int>> sorted(counts.begin(), counts.end());
  std::sort(sorted.begin(), sorted.end(), [](const auto& a, const auto& b) {
    return a.second != b.second ? a.second > b.second : a.first < b.first;
  });
  std::printf("containers: distinct=%zu seen=%zu window=%zu lru=%zu\n", counts.size(), seen.size(), window.size(),
              lru.size());
  for (std::size_t i = 0; i < 5 && i < sorted.size(); i++)
    std::printf("  %-12s %d\n", sorted[i].first.c_str(), sorted[i].second);
  std::uint64_t h = 0;
  for (const auto& [w, pos] : positions) h = mix(mix(h, w), digest(pos));
  std::printf("  positions=%zu digest=%016llx seen=%016llx\n", positions.size(), static_cast<unsigned long long>(h),
              static_cast<unsigned long long>(digest(seen)));
}

void phase_exprs(Rng& rng) {
  long total = 0;
  std::size_t chars = 0;
  std::string sample;
  for (int i = 0; i < 2000; i++) {
    ExprPtr e = random_expr(rng, 10);
    total = (total + eval(*e)) % 1000003;
    std::string s = show(*e);
    chars += s.size();
    if (i == 0) sample = s.substr(0, 60);
  }
  std::printf("exprs: total=%ld chars=%zu sample=%s\n", total, chars, sample.c_str());
}

void phase_regex_streams(Rng& rng) {
  std::ostringstream log;
  for (int i = 0; i < 4000; i++)
    log << "id=" << rng.below(100000) << " user=" << make_word(rng) << " size=" << rng.below(1 << 20) << '\n';
  const std::string text = log.str();
  const std::regex line_re(R"(id=(\d+) user=([a-z]+) size=(\d+))");
  std::map<std::string, long> bytes_by_user;
  std::size_t lines = 0;
  for (auto it = std::sregex_iterator(text.begin(), text.end(), line_re); it != std::sregex_iterator(); ++it) {
    bytes_by_user[(*it)[2].str()] += std::stol((*it)[3].str());
    lines++;
  }
  std::printf("regex: lines=%zu users=%zu text=%zu digest=%016llx\n", lines, bytes_by_user.size(), text.size(),
              static_cast<unsigned long long>(digest(bytes_by_user)));
}

void phase_aligned_and_arrays(Rng& rng) {
  std::vector<std::unique_ptr<CacheLine>> lines;
  std::vector<std::unique_ptr<int[]>> arrays;
  std::size_t misaligned = 0;
  std::uint64_t h = 0;
  for (int i = 0; i < 30000; i++) {
    auto line = std::make_unique<CacheLine>();
    if (reinterpret_cast<std::uintptr_t>(line.get()) % alignof(CacheLine) != 0) misaligned++;
    line->words[i % 8] = static_cast<std::uint64_t>(i);
    lines.push_back(std::move(line));
    std::size_t n = 1 + rng.below(i % 50 == 0 ? 40000 : 300);
    auto arr = std::make_unique<int[]>(n);
    std::iota(arr.get(), arr.get() + n, i);
    h = mix(h, std::accumulate(arr.get(), arr.get() + n, 0L));
    arrays.push_back(std::move(arr));
    if (arrays.size() > 2000) arrays.erase(arrays.begin(), arrays.begin() + 1000);
    if (lines.size() > 3000) lines.erase(lines.begin() + static_cast<long>(rng.below(3000)));
  }
  std::printf("aligned: lines=%zu arrays=%zu misaligned=%zu digest=%016llx\n", lines.size(), arrays.size(), misaligned,
              static_cast<unsigned long long>(h));
}

}  // namespace

int main() {
  Rng rng(20240601);
  phase_containers(rng);
  phase_exprs(rng);
  phase_regex_streams(rng);
  phase_aligned_and_arrays(rng);
  std::printf("done\n");
  return 0;
}
