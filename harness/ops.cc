// Op format v1, v2 (pool ops) and v3 (advance_time): decoder (total: any byte string
// decodes), canonical encoder, printer.
// The format is specified in harness/FORMAT.md; keep the two in sync.
#include <cinttypes>
#include <cstring>

#include "config.h"
#include "size_class.h"
#include "tm_harness.h"

namespace tmh {

namespace {

constexpr uint64_t kSizeMax = UINT64_MAX;

}  // namespace

// ---- Tables (FORMAT.md "Tables") ---------------------------------------------------------

const int64_t kSmallDeltas[8] = {0, +1, -1, +16, -16, +15, -15, +17};

const int64_t kRelDeltas[32] = {0,   1,    -1,   15,    -15,  16,    -16,   17,     -17,  32,   -32,
                                48,  240,  -240, 241,   -241, 255,   -255,  256,    -256, 257,  -257,
                                272, -272, 4096, -4096, 8192, -8192, 65536, -65536, 1024, -1024};

const uint64_t kThresholds[32] = {
    1,
    16,
    17,
    tmalloc::kSmallLinearMax,  // 128: end of the 16-byte classes
    tmalloc::kMediumMinBlock,  // 256: smallest split remainder
    tmalloc::kMediumMinBlock - 16,
    tmalloc::kMediumMinBlock + 16,
    1024,
    4096,
    tmalloc::kSmallMax,  // 8192: small / medium
    tmalloc::kSmallMax - 16,
    tmalloc::kSmallMax + 16,
    tmalloc::kSmallMax + tmalloc::kMediumMinBlock,
    tmalloc::kSmallMax + tmalloc::kMediumMinBlock + 16,
    16384,
    tmalloc::kRunSize,  // 64 KiB
    tmalloc::kRunSize - 16,
    2 * tmalloc::kRunSize,
    tmalloc::kMediumMax / 2,
    tmalloc::kMediumMax,  // 512 KiB: medium / large
    tmalloc::kMediumMax - 16,
    tmalloc::kMediumMax - tmalloc::kMediumMinBlock - 16,
    tmalloc::kMediumMax + 16,
    uint64_t{1} << 20,
    uint64_t{2} << 20,
    tmalloc::kSegmentSize,                               // 4 MiB
    tmalloc::kSegmentSize - tmalloc::kMediumHeaderSize,  // largest medium region payload area
    tmalloc::kSegmentSize - tmalloc::kMediumHeaderSize - 16,
    tmalloc::kSegmentSize - tmalloc::kLargeHeaderSize,
    tmalloc::kSegmentSize + tmalloc::kPageSize,
    uint64_t{8} << 20,
    kSaneMax,
};

const uint64_t kHugeSizes[16] = {
    kSizeMax,
    kSizeMax - 1,
    kSizeMax - 15,
    kSizeMax - 16,
    kSizeMax - 4095,
    kSizeMax - (uint64_t{1} << 20) + 1,
    kSizeMax - (uint64_t{1} << 30),
    kSizeMax - (uint64_t{4} << 20),
    kSizeMax / 2,
    kSizeMax / 2 + 1,
    uint64_t{1} << 62,
    uint64_t{1} << 48,
    uint64_t{1} << 47,
    (uint64_t{1} << 47) + 1,
    (uint64_t{1} << 47) + (uint64_t{4} << 20),
    kSizeMax - (uint64_t{1} << 47),
};

// advance_time steps (ms): around the half and whole default purge delay (1000 ms; the
// upkeep sweeps every half delay), short steps that add up to them, and long ones.
const uint64_t kTimeSteps[32] = {1,    2,    5,    10,   50,   100,   200,   250,   300,    400,    499,
                                 500,  501,  600,  750,  999,  1000,  1001,  1250,  1500,   1999,   2000,
                                 2001, 2500, 3000, 4000, 5000, 10000, 30000, 60000, 600000, 3600000};

uint64_t time_step_ms(uint8_t t) { return kTimeSteps[t % 32]; }

namespace {

const char* const kScaleNames[8] = {"", "*2", "/2", "*3/2", "*3/4", "*4", "/4", "*5/4"};

// Profile alias tables. v1: opcodes 16..63 (48 values); v2 (heap_pools): opcodes 27..63
// (37 values); v3 (every profile): opcodes 28..63 (36 values). Size categories 16..31 in all.
constexpr unsigned kV1Aliases = kOpcodeSpace - kCanonicalOpcodes;    // 48
constexpr unsigned kV2Aliases = kOpcodeSpace - kV2CanonicalOpcodes;  // 37
constexpr unsigned kV3Aliases = kOpcodeSpace - kV3CanonicalOpcodes;  // 36
struct ProfileTables {
  const char* name;
  // Weights per canonical op (sum 48) -> alias table.
  uint8_t op_weights[kCanonicalOpcodes];
  SizeCat size_alias[16];
  // v3 weights per canonical op 0..27 (sum 36).
  uint8_t op_weights_v3[kV3CanonicalOpcodes];
  // Whether the profile reads v2 (nibble 2); v2 weights per canonical op 0..26 (sum 37).
  bool reads_v2 = false;
  uint8_t op_weights_v2[kV2CanonicalOpcodes] = {};
};

using C = SizeCat;
constexpr ProfileTables kProfiles[static_cast<int>(Profile::kCount)] = {
    {"general",
     // mal cal rea fre ali pos usa chk ref oom frr alr swp rel tou pee
     {8, 3, 7, 8, 3, 2, 2, 2, 2, 1, 2, 2, 2, 1, 2, 1},
     // Aliases favour small and medium sizes (cheap, most code paths); the canonical
     // categories 0..15 keep every size class reachable.
     {C::kTiny, C::kClass, C::kClass, C::kThreshold, C::kPow2, C::kLogSmall, C::kLogSmall, C::kLogMedium, C::kLogMedium,
      C::kLogLarge, C::kMedium16, C::kRaw16, C::kRelative, C::kRelative, C::kSameAsPrev, C::kHuge},
     // mal cal rea fre ali pos usa chk ref oom frr alr swp rel tou pee
     {6, 2, 5, 6, 2, 1, 1, 2, 1, 1, 2, 1, 1, 1, 1, 1,
      // hcr hma hca hre hfr hrs hde hst har fil unf tim
      0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2}},
    {"realloc",
     {6, 2, 20, 5, 1, 1, 2, 1, 2, 1, 1, 1, 1, 1, 2, 1},
     {C::kRelative, C::kRelative, C::kRelative, C::kRelative, C::kRelative, C::kRelative, C::kRelative, C::kRelative,
      C::kThreshold, C::kClass, C::kPow2, C::kLogSmall, C::kLogMedium, C::kLogLarge, C::kSameAsPrev, C::kHuge},
     {4, 1, 15, 4, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0,  //
      0, 0, 0,  0, 0, 0, 0, 0, 0, 0, 0, 1}},
    {"split_coalesce",
     {12, 1, 4, 12, 1, 0, 1, 2, 1, 1, 5, 4, 2, 1, 1, 0},
     {C::kLogMedium, C::kLogMedium, C::kLogMedium, C::kLogMedium, C::kMedium16, C::kMedium16, C::kMedium16,
      C::kRelative, C::kRelative, C::kRelative, C::kRelative, C::kThreshold, C::kSameAsPrev, C::kSameAsPrev, C::kClass,
      C::kLogSmall},
     // Time matters most here: free medium blocks' interiors are purged when they stay free.
     {8, 1, 3, 9, 1, 0, 1, 1, 1, 1, 3, 3, 1, 1, 0, 0,  //
      0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2}},
    {"aligned",
     {4, 1, 4, 8, 13, 10, 2, 1, 1, 1, 1, 0, 1, 0, 1, 0},
     {C::kClass, C::kPow2, C::kPow2, C::kPow2, C::kTiny, C::kThreshold, C::kThreshold, C::kLogSmall, C::kLogSmall,
      C::kLogMedium, C::kLogMedium, C::kLogLarge, C::kRelative, C::kHuge, C::kMedium16, C::kSameAsPrev},
     {3, 1, 3, 6, 10, 7, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0,  //
      0, 0, 0, 0, 0,  0, 0, 0, 0, 0, 0, 1}},
    {"heap_pools",
     // v1 headers: the general mix.
     {8, 3, 7, 8, 3, 2, 2, 2, 2, 1, 2, 2, 2, 1, 2, 1},
     // Small and medium sizes mostly, large ones twice (pool large blocks), no raw16.
     {C::kTiny, C::kClass, C::kClass, C::kThreshold, C::kPow2, C::kLogSmall, C::kLogSmall, C::kLogMedium, C::kLogMedium,
      C::kLogLarge, C::kLogLarge, C::kMedium16, C::kRelative, C::kRelative, C::kSameAsPrev, C::kHuge},
     // mal cal rea fre ali pos usa chk ref oom frr alr swp rel tou pee
     {3, 1, 2, 3, 1, 0, 1, 1, 0, 1, 1, 1, 1, 1, 0, 0,
      // hcr hma hca hre hfr hrs hde hst har fil unf tim
      2, 4, 2, 3, 2, 2, 1, 1, 1, 0, 0, 1},
     true,
     // mal cal rea fre ali pos usa chk ref oom frr alr swp rel tou pee
     {3, 1, 2, 3, 1, 0, 1, 1, 0, 1, 1, 1, 1, 1, 0, 0,
      // hcr hma hca hre hfr hrs hde hst har fil unf
      2, 6, 2, 3, 2, 2, 1, 1, 1, 0, 0}},
};

// Sum of n weights (the alias tables' sizes are checked at compile time).
constexpr unsigned weight_sum(const uint8_t* w, unsigned n) {
  unsigned sum = 0;
  for (unsigned i = 0; i < n; ++i) sum += w[i];
  return sum;
}

constexpr bool weights_fill_tables() {
  for (const ProfileTables& t : kProfiles) {
    if (weight_sum(t.op_weights, kCanonicalOpcodes) != kV1Aliases) return false;
    if (weight_sum(t.op_weights_v3, kV3CanonicalOpcodes) != kV3Aliases) return false;
    if (t.reads_v2 && weight_sum(t.op_weights_v2, kV2CanonicalOpcodes) != kV2Aliases) return false;
  }
  return true;
}
static_assert(weights_fill_tables(), "profile weights must sum to 48 (v1), 37 (v2) and 36 (v3)");

// Fills table[0 .. n) with the canonical ops repeated by weight, in opcode order.
template <size_t N>
void fill_aliases(OpKind (&table)[N], const uint8_t* weights, unsigned canonical) {
  unsigned n = 0;
  for (unsigned op = 0; op < canonical; ++op) {
    for (unsigned w = 0; w < weights[op] && n < N; ++w) table[n++] = static_cast<OpKind>(op);
  }
  while (n < N) table[n++] = OpKind::kMalloc;  // only for a profile that does not read v2
}

struct OpAliasTables {
  OpKind table[static_cast<int>(Profile::kCount)][kV1Aliases];
  OpKind table_v2[static_cast<int>(Profile::kCount)][kV2Aliases];
  OpKind table_v3[static_cast<int>(Profile::kCount)][kV3Aliases];
  OpAliasTables() {
    for (int p = 0; p < static_cast<int>(Profile::kCount); ++p) {
      fill_aliases(table[p], kProfiles[p].op_weights, kCanonicalOpcodes);
      fill_aliases(table_v2[p], kProfiles[p].op_weights_v2, kV2CanonicalOpcodes);
      fill_aliases(table_v3[p], kProfiles[p].op_weights_v3, kV3CanonicalOpcodes);
    }
  }
};
const OpAliasTables& op_alias() {
  static const OpAliasTables t;
  return t;
}

unsigned size_arg_count(SizeCat c) {
  switch (c) {
    case C::kTiny:
    case C::kClass:
    case C::kThreshold:
    case C::kPow2:
    case C::kHuge:
    case C::kSameAsPrev:
      return 1;
    case C::kMedium16:
    case C::kRaw16:
    case C::kRelative:
      return 2;
    case C::kLogSmall:
    case C::kLogMedium:
    case C::kRaw24:
    case C::kBig:
      return 3;
    case C::kLogLarge:
    case C::kLogAny:
      return 4;
    case C::kRaw64:
      return 8;
  }
  return 0;
}

uint64_t add_delta(uint64_t base, int64_t delta) { return add_size_delta(base, delta); }

uint64_t le(const uint8_t* a, unsigned n) {
  uint64_t v = 0;
  for (unsigned i = 0; i < n; ++i) v |= uint64_t{a[i]} << (8 * i);
  return v;
}

struct Reader {
  const uint8_t* data;
  size_t size;
  size_t pos;
  uint8_t byte() { return pos < size ? data[pos++] : (pos++, uint8_t{0}); }
};

SizeExpr read_size(Reader& r, Profile profile) {
  SizeExpr s;
  const uint8_t sel = r.byte();
  const unsigned c = sel & 31u;
  s.cat = c < 16 ? static_cast<SizeCat>(c) : kProfiles[static_cast<int>(profile)].size_alias[c - 16];
  s.param = static_cast<uint8_t>(sel >> 5);
  const unsigned n = size_arg_count(s.cat);
  for (unsigned i = 0; i < n; ++i) s.args[i] = r.byte();
  return s;
}

void write_size(const SizeExpr& s, std::vector<uint8_t>& out) {
  out.push_back(static_cast<uint8_t>(static_cast<unsigned>(s.cat) | (s.param & 7u) << 5));
  const unsigned n = size_arg_count(s.cat);
  for (unsigned i = 0; i < n; ++i) out.push_back(s.args[i]);
}

std::string u64(uint64_t v) {
  char buf[32];
  snprintf(buf, sizeof buf, "%" PRIu64, v);
  return buf;
}

std::string signed_delta(int64_t d) {
  if (d == 0) return "";
  char buf[32];
  snprintf(buf, sizeof buf, "%+" PRId64, d);
  return buf;
}

std::string human(uint64_t v) {
  if (v >= kImpossibleMin) {
    char buf[48];
    snprintf(buf, sizeof buf, "0x%" PRIx64, v);
    return buf;
  }
  return u64(v);
}

}  // namespace

const char* scale_name(unsigned scale_index) { return kScaleNames[scale_index & 7]; }

const char* profile_name(Profile p) {
  return static_cast<int>(p) < static_cast<int>(Profile::kCount) ? kProfiles[static_cast<int>(p)].name : "?";
}

bool profile_from_name(std::string_view name, Profile* out) {
  if (name == "heap_ops" || name == "general") {
    *out = Profile::kGeneral;
    return true;
  }
  if (name == "pools") {
    *out = Profile::kPools;
    return true;
  }
  for (int p = 1; p < static_cast<int>(Profile::kCount); ++p) {
    if (name == kProfiles[p].name) {
      *out = static_cast<Profile>(p);
      return true;
    }
  }
  return false;
}

unsigned profile_max_version(Profile p) {
  (void)p;
  return kFormatVersionTime;
}

unsigned effective_version(uint8_t header, Profile p) {
  const unsigned nibble = header >> 4;
  if (nibble >= kFormatVersionTime) return kFormatVersionTime;
  const bool reads_v2 =
      static_cast<int>(p) < static_cast<int>(Profile::kCount) && kProfiles[static_cast<int>(p)].reads_v2;
  return nibble == kFormatVersionPools && reads_v2 ? kFormatVersionPools : kFormatVersion;
}

const char* op_name(OpKind k) {
  static const char* const names[kV3CanonicalOpcodes] = {
      "malloc",         "calloc",      "realloc",      "free",           "aligned_alloc",
      "posix_memalign", "usable_size", "check_heap",   "refill",         "oom_window",
      "free_range",     "alloc_range", "swap",         "release_cached", "touch_usable",
      "peek",           "heap_create", "heap_malloc",  "heap_calloc",    "heap_realloc",
      "heap_free",      "heap_reset",  "heap_destroy", "heap_stats",     "heap_alloc_range",
      "heap_fill",      "heap_unfill", "advance_time"};
  const unsigned i = static_cast<unsigned>(k);
  return i < kV3CanonicalOpcodes ? names[i] : "?";
}

const char* size_cat_name(SizeCat c) {
  static const char* const names[16] = {"tiny",      "class",    "threshold", "pow2",        "log-small", "log-medium",
                                        "log-large", "log-any",  "medium16",  "raw16",       "raw24",     "huge",
                                        "big",       "relative", "raw64",     "same-as-prev"};
  return names[static_cast<unsigned>(c) & 15];
}

uint64_t align_value(uint8_t a) {
  static const uint64_t nonpow2[8] = {3, 24, 48, 80, 1000, 4097, 3u << 20, kSizeMax};
  static const uint64_t overmax[8] = {uint64_t{1} << 31, uint64_t{1} << 32, uint64_t{1} << 33, uint64_t{1} << 40,
                                      uint64_t{1} << 47, uint64_t{1} << 48, uint64_t{1} << 62, uint64_t{1} << 63};
  static const uint64_t common[16] = {16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 65536, 16, 64, 8, 4};
  if (a < 31) return uint64_t{1} << a;
  if (a == 31) return 0;
  if (a < 40) return nonpow2[a - 32];
  if (a < 48) return overmax[a - 40];
  return common[a & 15];
}

int align_byte_for(uint64_t v) {
  for (int a = 0; a < 64; ++a) {
    if (align_value(static_cast<uint8_t>(a)) == v) return a;
  }
  return -1;
}

uint64_t count_value(uint8_t c) {
  const unsigned k = c & 63u;
  switch (c >> 6) {
    case 0:
      return k;
    case 1:
      return uint64_t{1} << k;
    case 2:
      return kSizeMax / (k + 1);
    default:
      return kSizeMax >> k;
  }
}

// ---- SizeExpr ------------------------------------------------------------------------------

SizeExpr SizeExpr::exact(uint64_t n) {
  SizeExpr s;
  if (n <= 64) {
    s.cat = C::kTiny;
    s.args[0] = static_cast<uint8_t>(n);
  } else if (n < (uint64_t{1} << 16)) {
    s.cat = C::kRaw16;
    for (int i = 0; i < 2; ++i) s.args[i] = static_cast<uint8_t>(n >> (8 * i));
  } else if (n < (uint64_t{1} << 24)) {
    s.cat = C::kRaw24;
    for (int i = 0; i < 3; ++i) s.args[i] = static_cast<uint8_t>(n >> (8 * i));
  } else {
    s.cat = C::kRaw64;
    for (int i = 0; i < 8; ++i) s.args[i] = static_cast<uint8_t>(n >> (8 * i));
  }
  return s;
}

SizeExpr SizeExpr::cls(unsigned class_index, unsigned delta_index) {
  SizeExpr s;
  s.cat = C::kClass;
  s.param = static_cast<uint8_t>(delta_index & 7);
  s.args[0] = static_cast<uint8_t>(class_index % tmalloc::kSmallClassCount);
  return s;
}

SizeExpr SizeExpr::pow2(unsigned k, unsigned delta_index) {
  SizeExpr s;
  s.cat = C::kPow2;
  s.param = static_cast<uint8_t>(delta_index & 7);
  s.args[0] = static_cast<uint8_t>(k % 27);
  return s;
}

SizeExpr SizeExpr::threshold(unsigned index, unsigned delta_index) {
  SizeExpr s;
  s.cat = C::kThreshold;
  s.param = static_cast<uint8_t>(delta_index & 7);
  s.args[0] = static_cast<uint8_t>(index % 32);
  return s;
}

SizeExpr SizeExpr::huge(unsigned index) {
  SizeExpr s;
  s.cat = C::kHuge;
  s.args[0] = static_cast<uint8_t>(index % 16);
  return s;
}

SizeExpr SizeExpr::relative(unsigned slot, bool usable, unsigned scale_index, unsigned delta_index, bool own_slot) {
  SizeExpr s;
  s.cat = C::kRelative;
  s.param = static_cast<uint8_t>(scale_index & 7);
  s.args[0] = static_cast<uint8_t>((slot % kSlots) | (usable ? 64u : 0u) | (own_slot ? 128u : 0u));
  s.args[1] = static_cast<uint8_t>(delta_index % 32);
  return s;
}

SizeExpr SizeExpr::same_as_prev(unsigned scale_index, unsigned delta_index) {
  SizeExpr s;
  s.cat = C::kSameAsPrev;
  s.param = static_cast<uint8_t>(scale_index & 7);
  s.args[0] = static_cast<uint8_t>(delta_index % 32);
  return s;
}

uint64_t SizeExpr::static_value() const {
  const int64_t delta = kSmallDeltas[param & 7];
  switch (cat) {
    case C::kTiny:
      return args[0] % 65u;
    case C::kClass:
      return add_delta(tmalloc::class_size(args[0] % tmalloc::kSmallClassCount), delta);
    case C::kThreshold:
      return add_delta(kThresholds[args[0] % 32u], delta);
    case C::kPow2:
      return add_delta(uint64_t{1} << (args[0] % 27u), delta);
    case C::kLogSmall: {
      const unsigned lg = 4 + args[0] % 9u;
      return (uint64_t{1} << lg) + ((le(args + 1, 2) << lg) >> 16);
    }
    case C::kLogMedium: {
      const unsigned lg = 13 + args[0] % 6u;
      return (uint64_t{1} << lg) + ((le(args + 1, 2) << lg) >> 16);
    }
    case C::kLogLarge: {
      const unsigned lg = 19 + args[0] % 5u;
      return (uint64_t{1} << lg) + ((le(args + 1, 3) << lg) >> 24);
    }
    case C::kLogAny: {
      const unsigned lg = args[0] % 24u;
      return (uint64_t{1} << lg) + ((le(args + 1, 3) << lg) >> 24);
    }
    case C::kMedium16:
      return add_delta(tmalloc::kSmallMax + 16 * (le(args, 2) % 32257u), delta);
    case C::kRaw16:
      return le(args, 2);
    case C::kRaw24:
      return le(args, 3);
    case C::kHuge:
      return kHugeSizes[args[0] % 16u];
    case C::kBig:
      return add_delta((uint64_t{64} << 20 << (args[0] % 5u)) + (le(args + 1, 2) << 12), delta);
    case C::kRaw64:
      return le(args, 8);
    case C::kRelative:
    case C::kSameAsPrev:
      return 0;
  }
  return 0;
}

std::string SizeExpr::describe() const {
  const int64_t delta = kSmallDeltas[param & 7];
  switch (cat) {
    case C::kRelative: {
      std::string s = (args[0] & 64) ? "usable(" : "size(";
      s += (args[0] & 128) ? std::string("own slot") : "slot " + std::to_string(args[0] & 63);
      s += ")";
      s += scale_name(param);
      s += signed_delta(kRelDeltas[args[1] % 32]);
      return s;
    }
    case C::kSameAsPrev:
      return std::string("prev") + scale_name(param) + signed_delta(kRelDeltas[args[0] % 32]);
    default:
      break;
  }
  std::string s = human(static_value());
  switch (cat) {
    case C::kClass:
      s += " (class " + std::to_string(args[0] % tmalloc::kSmallClassCount) + " size " +
           u64(tmalloc::class_size(args[0] % tmalloc::kSmallClassCount)) + signed_delta(delta) + ")";
      break;
    case C::kThreshold:
      s += " (" + u64(kThresholds[args[0] % 32u]) + signed_delta(delta) + ")";
      break;
    case C::kPow2:
      s += " (2^" + std::to_string(args[0] % 27u) + signed_delta(delta) + ")";
      break;
    case C::kHuge:
      if (static_value() == kSizeMax)
        s += " (SIZE_MAX)";
      else if (static_value() == kSizeMax / 2)
        s += " (SIZE_MAX/2)";
      break;
    case C::kBig:
      s += " (big: may fail)";
      break;
    default:
      break;
  }
  return s;
}

// ---- Op constructors -----------------------------------------------------------------------

namespace {
Op make(OpKind k, unsigned slot) {
  Op op;
  op.kind = k;
  op.opcode = static_cast<uint8_t>(k);
  op.slot = static_cast<uint8_t>(slot % kSlots);
  return op;
}
uint8_t align_byte_or_die(uint64_t a) {
  const int b = align_byte_for(a);
  if (b < 0) {
    fprintf(stderr, "tm_harness: alignment %" PRIu64 " is not encodable (see FORMAT.md)\n", a);
    abort();
  }
  return static_cast<uint8_t>(b);
}
}  // namespace

Op Op::malloc(unsigned slot, SizeExpr s) {
  Op op = make(OpKind::kMalloc, slot);
  op.size = s;
  return op;
}
Op Op::calloc(unsigned slot, uint8_t count_byte, SizeExpr s) {
  Op op = make(OpKind::kCalloc, slot);
  op.count = count_byte;
  op.size = s;
  return op;
}
Op Op::realloc(unsigned slot, SizeExpr s) {
  Op op = make(OpKind::kRealloc, slot);
  op.size = s;
  return op;
}
Op Op::free(unsigned slot) { return make(OpKind::kFree, slot); }
Op Op::aligned_alloc(unsigned slot, uint64_t alignment, SizeExpr s) {
  Op op = make(OpKind::kAlignedAlloc, slot);
  op.align = align_byte_or_die(alignment);
  op.size = s;
  return op;
}
Op Op::posix_memalign(unsigned slot, uint64_t alignment, SizeExpr s) {
  Op op = make(OpKind::kPosixMemalign, slot);
  op.align = align_byte_or_die(alignment);
  op.size = s;
  return op;
}
Op Op::usable_size(unsigned slot) { return make(OpKind::kUsableSize, slot); }
Op Op::check_heap() { return make(OpKind::kCheckHeap, 0); }
Op Op::refill(unsigned slot) { return make(OpKind::kRefill, slot); }
Op Op::oom_window(unsigned successful_maps, unsigned span) {
  Op op = make(OpKind::kOomWindow, 0);
  const unsigned sp = span < 1 ? 1 : (span > 32 ? 32 : span);
  op.arg = static_cast<uint8_t>((successful_maps & 7u) | ((sp - 1) << 3));
  return op;
}
Op Op::free_range(unsigned first, unsigned count, unsigned step, bool reverse) {
  Op op = make(OpKind::kFreeRange, first);
  op.count = static_cast<uint8_t>((count < 1 ? 1 : count) - 1);
  op.arg = static_cast<uint8_t>(((step < 1 ? 1 : step) - 1) % 16u | (reverse ? 16u : 0u));
  return op;
}
Op Op::alloc_range(unsigned first, unsigned count, SizeExpr s) {
  Op op = make(OpKind::kAllocRange, first);
  op.count = static_cast<uint8_t>((count < 1 ? 1 : count) - 1);
  op.size = s;
  return op;
}
Op Op::swap(unsigned a, unsigned b) {
  Op op = make(OpKind::kSwap, a);
  op.slot2 = static_cast<uint8_t>(b % kSlots);
  return op;
}
Op Op::release_cached() { return make(OpKind::kReleaseCached, 0); }
Op Op::touch_usable(unsigned slot) { return make(OpKind::kTouchUsable, slot); }
Op Op::peek(unsigned slot, uint16_t offset) {
  Op op = make(OpKind::kPeek, slot);
  op.offset = offset;
  return op;
}

namespace {
Op make_pool(OpKind k, unsigned pool, unsigned slot) {
  Op op = make(k, slot);
  op.pool = static_cast<uint8_t>(pool % kPoolSlots);
  return op;
}
}  // namespace

Op Op::heap_create(unsigned pool) { return make_pool(OpKind::kHeapCreate, pool, 0); }
Op Op::heap_malloc(unsigned pool, unsigned slot, SizeExpr s) {
  Op op = make_pool(OpKind::kHeapMalloc, pool, slot);
  op.size = s;
  return op;
}
Op Op::heap_calloc(unsigned pool, unsigned slot, uint8_t count_byte, SizeExpr s) {
  Op op = make_pool(OpKind::kHeapCalloc, pool, slot);
  op.count = count_byte;
  op.size = s;
  return op;
}
Op Op::heap_realloc(unsigned pool, unsigned slot, SizeExpr s) {
  Op op = make_pool(OpKind::kHeapRealloc, pool, slot);
  op.size = s;
  return op;
}
Op Op::heap_free(unsigned pool, unsigned slot) { return make_pool(OpKind::kHeapFree, pool, slot); }
Op Op::heap_reset(unsigned pool) { return make_pool(OpKind::kHeapReset, pool, 0); }
Op Op::heap_destroy(unsigned pool) { return make_pool(OpKind::kHeapDestroy, pool, 0); }
Op Op::heap_stats(unsigned pool) { return make_pool(OpKind::kHeapStats, pool, 0); }
Op Op::heap_alloc_range(unsigned pool, unsigned first, unsigned count, SizeExpr s) {
  Op op = make_pool(OpKind::kHeapAllocRange, pool, first);
  op.count = static_cast<uint8_t>((count < 1 ? 1 : count) - 1);
  op.size = s;
  return op;
}
Op Op::heap_fill() { return make(OpKind::kHeapFill, 0); }
Op Op::heap_unfill() { return make(OpKind::kHeapUnfill, 0); }
Op Op::advance_time(unsigned step) {
  Op o = make(OpKind::kAdvanceTime, 0);
  o.arg = static_cast<uint8_t>(step % 32);
  return o;
}

unsigned Program::encoded_version() const {
  const unsigned needed = uses_time() ? kFormatVersionTime : uses_pools() ? kFormatVersionPools : kFormatVersion;
  return version() > needed ? version() : needed;
}

unsigned range_slot(const Op& op, unsigned i) {
  if (op.kind != OpKind::kFreeRange) return (op.slot + i) % kSlots;
  const unsigned d = (i * op.range_step()) % kSlots;
  return op.range_reverse() ? (op.slot + kSlots - d) % kSlots : (op.slot + d) % kSlots;
}

// ---- Decode / encode -------------------------------------------------------------------------

size_t decode_operands(const uint8_t* data, size_t size, size_t pos, Profile profile, Op* out) {
  if (static_cast<int>(profile) >= static_cast<int>(Profile::kCount)) profile = Profile::kGeneral;
  Reader r{data, size, pos};
  Op& op = *out;
  switch (op.kind) {
    case OpKind::kMalloc:
    case OpKind::kRealloc:
      op.slot = r.byte() % kSlots;
      op.size = read_size(r, profile);
      break;
    case OpKind::kCalloc:
      op.slot = r.byte() % kSlots;
      op.count = r.byte();
      op.size = read_size(r, profile);
      break;
    case OpKind::kAlignedAlloc:
    case OpKind::kPosixMemalign:
      op.slot = r.byte() % kSlots;
      op.align = r.byte();
      op.size = read_size(r, profile);
      break;
    case OpKind::kFree:
    case OpKind::kUsableSize:
    case OpKind::kRefill:
    case OpKind::kTouchUsable:
      op.slot = r.byte() % kSlots;
      break;
    case OpKind::kCheckHeap:
    case OpKind::kReleaseCached:
      break;
    case OpKind::kOomWindow:
      op.arg = r.byte();
      break;
    case OpKind::kFreeRange:
      op.slot = r.byte() % kSlots;
      op.count = r.byte();
      op.arg = r.byte();
      break;
    case OpKind::kAllocRange:
      op.slot = r.byte() % kSlots;
      op.count = r.byte();
      op.size = read_size(r, profile);
      break;
    case OpKind::kSwap:
      op.slot = r.byte() % kSlots;
      op.slot2 = r.byte() % kSlots;
      break;
    case OpKind::kPeek: {
      op.slot = r.byte() % kSlots;
      const uint8_t lo = r.byte();
      const uint8_t hi = r.byte();
      op.offset = static_cast<uint16_t>(lo | hi << 8);
      break;
    }
    case OpKind::kHeapCreate:
    case OpKind::kHeapReset:
    case OpKind::kHeapDestroy:
    case OpKind::kHeapStats:
      op.pool = r.byte() % kPoolSlots;
      break;
    case OpKind::kHeapMalloc:
    case OpKind::kHeapRealloc:
      op.pool = r.byte() % kPoolSlots;
      op.slot = r.byte() % kSlots;
      op.size = read_size(r, profile);
      break;
    case OpKind::kHeapCalloc:
    case OpKind::kHeapAllocRange:
      op.pool = r.byte() % kPoolSlots;
      op.slot = r.byte() % kSlots;
      op.count = r.byte();
      op.size = read_size(r, profile);
      break;
    case OpKind::kHeapFree:
      op.pool = r.byte() % kPoolSlots;
      op.slot = r.byte() % kSlots;
      break;
    case OpKind::kHeapFill:
    case OpKind::kHeapUnfill:
      break;
    case OpKind::kAdvanceTime:
      op.arg = r.byte();
      break;
  }
  return r.pos;
}

Program decode(const uint8_t* data, size_t size, Profile profile) {
  if (static_cast<int>(profile) >= static_cast<int>(Profile::kCount)) profile = Profile::kGeneral;
  Program p;
  p.input_size = size;
  p.header = size > 0 ? data[0] : 0;
  p.format = static_cast<uint8_t>(effective_version(p.header, profile));
  Reader r{data, size, 1};
  // v1: 0..15 canonical, 16..63 aliases. v2: 0..26 canonical (16..26 pool ops), 27..63
  // aliases. v3: 0..27 canonical (27 advance_time), 28..63 aliases.
  const OpKind* alias = op_alias().table[static_cast<int>(profile)];
  unsigned canonical = kCanonicalOpcodes;
  if (p.format == kFormatVersionPools) {
    alias = op_alias().table_v2[static_cast<int>(profile)];
    canonical = kV2CanonicalOpcodes;
  } else if (p.format == kFormatVersionTime) {
    alias = op_alias().table_v3[static_cast<int>(profile)];
    canonical = kV3CanonicalOpcodes;
  }
  while (r.pos < size && p.ops.size() < kMaxOps) {
    Op op;
    op.pos = static_cast<uint32_t>(r.pos);
    op.opcode = r.byte();
    const unsigned c = op.opcode & (kOpcodeSpace - 1);
    op.kind = c < canonical ? static_cast<OpKind>(c) : alias[c - canonical];
    r.pos = decode_operands(data, size, r.pos, profile, &op);
    p.ops.push_back(op);
  }
  return p;
}

void encode_op(const Op& op, std::vector<uint8_t>& out) {
  out.push_back(static_cast<uint8_t>(op.kind));
  switch (op.kind) {
    case OpKind::kMalloc:
    case OpKind::kRealloc:
      out.push_back(op.slot);
      write_size(op.size, out);
      break;
    case OpKind::kCalloc:
      out.push_back(op.slot);
      out.push_back(op.count);
      write_size(op.size, out);
      break;
    case OpKind::kAlignedAlloc:
    case OpKind::kPosixMemalign:
      out.push_back(op.slot);
      out.push_back(op.align);
      write_size(op.size, out);
      break;
    case OpKind::kFree:
    case OpKind::kUsableSize:
    case OpKind::kRefill:
    case OpKind::kTouchUsable:
      out.push_back(op.slot);
      break;
    case OpKind::kCheckHeap:
    case OpKind::kReleaseCached:
      break;
    case OpKind::kOomWindow:
      out.push_back(op.arg);
      break;
    case OpKind::kFreeRange:
      out.push_back(op.slot);
      out.push_back(op.count);
      out.push_back(op.arg);
      break;
    case OpKind::kAllocRange:
      out.push_back(op.slot);
      out.push_back(op.count);
      write_size(op.size, out);
      break;
    case OpKind::kSwap:
      out.push_back(op.slot);
      out.push_back(op.slot2);
      break;
    case OpKind::kPeek:
      out.push_back(op.slot);
      out.push_back(static_cast<uint8_t>(op.offset));
      out.push_back(static_cast<uint8_t>(op.offset >> 8));
      break;
    case OpKind::kHeapCreate:
    case OpKind::kHeapReset:
    case OpKind::kHeapDestroy:
    case OpKind::kHeapStats:
      out.push_back(op.pool);
      break;
    case OpKind::kHeapMalloc:
    case OpKind::kHeapRealloc:
      out.push_back(op.pool);
      out.push_back(op.slot);
      write_size(op.size, out);
      break;
    case OpKind::kHeapCalloc:
    case OpKind::kHeapAllocRange:
      out.push_back(op.pool);
      out.push_back(op.slot);
      out.push_back(op.count);
      write_size(op.size, out);
      break;
    case OpKind::kHeapFree:
      out.push_back(op.pool);
      out.push_back(op.slot);
      break;
    case OpKind::kHeapFill:
    case OpKind::kHeapUnfill:
      break;
    case OpKind::kAdvanceTime:
      out.push_back(op.arg);
      break;
  }
}

std::vector<uint8_t> encode(const Program& p) {
  std::vector<uint8_t> out;
  const uint8_t header = static_cast<uint8_t>(p.encoded_version() << 4 | (p.header & 15));
  out.push_back(header);
  for (const Op& op : p.ops) encode_op(op, out);
  return out;
}

// ---- Printing ----------------------------------------------------------------------------------

namespace {

std::string align_desc(uint8_t a) {
  const uint64_t v = align_value(a);
  std::string s = human(v);
  if (v == 0 || (v & (v - 1)) != 0)
    s += " (not a power of two)";
  else if (v > (uint64_t{1} << 30))
    s += " (> TM_MAX_ALIGNMENT)";
  return s;
}

std::string count_desc(uint8_t c) {
  const uint64_t v = count_value(c);
  return human(v);
}

}  // namespace

std::string format_op(const Op& op, size_t index) {
  std::string s = "#" + std::to_string(index) + " " + op_name(op.kind);
  const std::string slot = " slot " + std::to_string(op.slot);
  switch (op.kind) {
    case OpKind::kMalloc:
      s += slot + " <- " + op.size.describe() + " bytes";
      break;
    case OpKind::kCalloc:
      s += slot + " <- " + count_desc(op.count) + " x " + op.size.describe() + " bytes";
      break;
    case OpKind::kRealloc:
      s += slot + " -> " + op.size.describe() + " bytes";
      break;
    case OpKind::kAlignedAlloc:
    case OpKind::kPosixMemalign:
      s += slot + " <- " + op.size.describe() + " bytes, align " + align_desc(op.align);
      break;
    case OpKind::kFree:
    case OpKind::kUsableSize:
    case OpKind::kRefill:
    case OpKind::kTouchUsable:
      s += slot;
      break;
    case OpKind::kCheckHeap:
    case OpKind::kReleaseCached:
      break;
    case OpKind::kOomWindow:
      s += ": OS maps fail after " + std::to_string(op.oom_successes()) + " more, for the next " +
           std::to_string(op.oom_span()) + " ops";
      break;
    case OpKind::kFreeRange:
    case OpKind::kAllocRange: {
      s += " slots";
      const unsigned n = op.range_count();
      for (unsigned i = 0; i < n; ++i) {
        if (i == 12 && n > 14) {
          s += " ... (" + std::to_string(n) + " slots)";
          break;
        }
        s += (i ? "," : " ") + std::to_string(range_slot(op, i));
      }
      if (op.kind == OpKind::kAllocRange) s += " <- " + op.size.describe() + " bytes each";
      break;
    }
    case OpKind::kSwap:
      s += slot + " <-> slot " + std::to_string(op.slot2);
      break;
    case OpKind::kPeek:
      s += slot + " byte " + std::to_string(op.offset);
      break;
    case OpKind::kHeapCreate:
    case OpKind::kHeapReset:
    case OpKind::kHeapDestroy:
    case OpKind::kHeapStats:
      s += " pool " + std::to_string(op.pool);
      break;
    case OpKind::kHeapMalloc:
      s += " pool " + std::to_string(op.pool) + slot + " <- " + op.size.describe() + " bytes";
      break;
    case OpKind::kHeapCalloc:
      s += " pool " + std::to_string(op.pool) + slot + " <- " + count_desc(op.count) + " x " + op.size.describe() +
           " bytes";
      break;
    case OpKind::kHeapRealloc:
      s += " pool " + std::to_string(op.pool) + slot + " -> " + op.size.describe() + " bytes";
      break;
    case OpKind::kHeapFree:
      s += " pool " + std::to_string(op.pool) + slot;
      break;
    case OpKind::kHeapAllocRange: {
      s += " pool " + std::to_string(op.pool) + " slots";
      const unsigned n = op.range_count();
      for (unsigned i = 0; i < n; ++i) {
        if (i == 12 && n > 14) {
          s += " ... (" + std::to_string(n) + " slots)";
          break;
        }
        s += (i ? "," : " ") + std::to_string(range_slot(op, i));
      }
      s += " <- " + op.size.describe() + " bytes each";
      break;
    }
    case OpKind::kHeapFill:
      s += ": create pools until the limit";
      break;
    case OpKind::kHeapUnfill:
      s += ": destroy the pools heap_fill created";
      break;
    case OpKind::kAdvanceTime:
      s += " by " + std::to_string(op.time_ms()) + " ms";
      break;
  }
  if (op.opcode != static_cast<uint8_t>(op.kind)) {
    char buf[32];
    snprintf(buf, sizeof buf, "  [opcode 0x%02x]", op.opcode);
    s += buf;
  }
  return s;
}

std::string format_program(const Program& p, Profile profile) {
  std::string s;
  char buf[256];
  std::string flags;
  if (p.paranoid()) flags += " paranoid";
  if (p.fill_usable()) flags += " fill-usable";
  static const char* const orders[4] = {"slot-ascending", "slot-descending", "address-ascending", "address-descending"};
  // Built programs (input_size 0) are shown with the version their encoding gets.
  const unsigned v =
      p.input_size > 0 ? p.format : effective_version(static_cast<uint8_t>(p.encoded_version() << 4), profile);
  char note[96] = "";
  if (p.version() != v && p.input_size > 0 && p.version() > 1) {
    snprintf(note, sizeof note, " (version nibble %u decoded as v%u in this profile)", p.version(), v);
  }
  snprintf(buf, sizeof buf,
           "tinymalloc harness trace: format v%u%s (header 0x%02x), profile %s, %zu ops, %zu bytes; "
           "flags:%s; final frees %s\n",
           v, note, p.header, profile_name(profile), p.ops.size(), p.input_size,
           flags.empty() ? " none" : flags.c_str(), orders[static_cast<int>(p.end_order())]);
  s += buf;
  for (size_t i = 0; i < p.ops.size(); ++i) {
    s += format_op(p.ops[i], i);
    s += '\n';
  }
  return s;
}

uint64_t add_size_delta(uint64_t base, int64_t delta) {
  if (delta < 0) {
    const uint64_t d = static_cast<uint64_t>(-delta);
    return base > d ? base - d : 0;
  }
  const uint64_t d = static_cast<uint64_t>(delta);
  return base > kSizeMax - d ? kSizeMax : base + d;
}

uint64_t scale_size(uint64_t v, unsigned scale_index) {
  auto mul = [](uint64_t x, uint64_t m) { return x > kSizeMax / m ? kSizeMax : x * m; };
  switch (scale_index & 7) {
    case 1:
      return mul(v, 2);
    case 2:
      return v / 2;
    case 3:
      return mul(v / 2, 3) + (v & 1);
    case 4:
      return mul(v / 4, 3);
    case 5:
      return mul(v, 4);
    case 6:
      return v / 4;
    case 7:
      return mul(v / 4, 5);
    default:
      return v;
  }
}

std::vector<unsigned> end_order_slots(EndOrder order, const std::vector<unsigned>& live_by_address) {
  std::vector<unsigned> slots;
  switch (order) {
    case EndOrder::kSlotAscending:
      for (unsigned s = 0; s < kSlots; ++s) slots.push_back(s);
      break;
    case EndOrder::kSlotDescending:
      for (unsigned s = kSlots; s-- > 0;) slots.push_back(s);
      break;
    case EndOrder::kAddressAscending:
      slots = live_by_address;
      break;
    case EndOrder::kAddressDescending:
      slots.assign(live_by_address.rbegin(), live_by_address.rend());
      break;
  }
  return slots;
}

}  // namespace tmh
