// Compiler attributes and small helpers shared by the allocator core.
#pragma once

#include <cstddef>
#include <cstdint>

#define TM_LIKELY(x) __builtin_expect(!!(x), 1)
#define TM_UNLIKELY(x) __builtin_expect(!!(x), 0)
#define TM_NOINLINE __attribute__((noinline))
#define TM_ALWAYS_INLINE inline __attribute__((always_inline))
#define TM_EXPORT __attribute__((visibility("default")))
// For the declarations of globals the fast paths read: -fvisibility=hidden covers only
// definitions, so without it each access from another file goes through the GOT (one
// more instruction and one more load per access).
#define TM_INTERNAL __attribute__((visibility("hidden")))

namespace tmalloc {

// Rounds x up to a multiple of the power of two `align`.
constexpr size_t align_up(size_t x, size_t align) { return (x + align - 1) & ~(align - 1); }
// Rounds x down to a multiple of `align` (a power of two).
constexpr size_t align_down(size_t x, size_t align) { return x & ~(align - 1); }

// True when x is a non-zero power of two.
constexpr bool is_power_of_two(size_t x) { return x != 0 && (x & (x - 1)) == 0; }

// Address of a pointer as an integer.
inline uintptr_t addr_of(const void* p) { return reinterpret_cast<uintptr_t>(p); }

// Bits no user-space address has (47-bit address space on x86-64, 48 elsewhere; larger
// spaces are only handed out to mmap hints above them, which tinymalloc never gives). A link
// with one of them set was not written by the allocator.
#if defined(__x86_64__)
inline constexpr uintptr_t kNonUserAddressBits = ~((uintptr_t{1} << 47) - 1);
#else
inline constexpr uintptr_t kNonUserAddressBits = ~((uintptr_t{1} << 48) - 1);
#endif

// Requests above this are refused with ENOMEM before any OS call (no mapping that large
// can exist in a 47-bit user address space).
inline constexpr size_t kMaxRequest = size_t{1} << 46;

}  // namespace tmalloc
