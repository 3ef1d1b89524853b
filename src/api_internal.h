// The allocator without the debug layer: what api.cc's public entry points call when debug
// mode is off, and what the debug layer (debug.cc) allocates with.
#pragma once

#include <cstddef>

namespace tmalloc {

// Allocates `size` bytes (<= kMaxRequest) at the default alignment, zeroed when `zero`.
void* core_allocate(size_t size, bool zero);
// Allocates `size` bytes aligned to the power of two `alignment`.
void* core_allocate_aligned(size_t alignment, size_t size);
// Frees p (misuse reports name `what`).
void core_release(void* p, const char* what);
// realloc of a live block to a non-zero size (the old block stays valid on failure).
void* core_reallocate(void* p, size_t size);
// Usable size of the live block p (misuse reports name `what`).
size_t core_usable_size(const void* p, const char* what);

// operator new's allocation: tm_malloc (alignment 0) or tm_aligned_alloc, recording
// `site` (the caller of operator new) as the allocation site in debug mode.
void* allocate_for_new(size_t size, size_t alignment, const void* site);

}  // namespace tmalloc
