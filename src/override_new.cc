// C++ operator new / delete for libtinymalloc.so / libtinymalloc.a. The throwing forms run
// the new-handler loop and throw std::bad_alloc; the nothrow forms return nullptr. This
// file is built with exceptions (the rest of the core is not).
#include <new>

#include "api_internal.h"
#include "fast_path.h"
#include "platform.h"
#include "tinymalloc.h"

namespace {

// Allocates or, on failure, calls the installed new-handler and retries; throws
// std::bad_alloc when there is none. `site` is operator new's caller (debug mode names it).
void* allocate_or_throw(size_t size, size_t alignment, const void* site) {
  for (;;) {
    void* p = tmalloc::allocate_for_new(size, alignment, site);
    if (p != nullptr) return p;
    std::new_handler handler = std::get_new_handler();
    if (handler == nullptr) throw std::bad_alloc();
    handler();
  }
}

// Nothrow variant of allocate_or_throw.
void* allocate_nothrow(size_t size, size_t alignment, const void* site) noexcept {
  try {
    return allocate_or_throw(size, alignment, site);
  } catch (...) {
    return nullptr;
  }
}

}  // namespace

TM_EXPORT void* operator new(size_t size) { return allocate_or_throw(size, 0, __builtin_return_address(0)); }
TM_EXPORT void* operator new[](size_t size) { return allocate_or_throw(size, 0, __builtin_return_address(0)); }
TM_EXPORT void* operator new(size_t size, const std::nothrow_t&) noexcept {
  return allocate_nothrow(size, 0, __builtin_return_address(0));
}
TM_EXPORT void* operator new[](size_t size, const std::nothrow_t&) noexcept {
  return allocate_nothrow(size, 0, __builtin_return_address(0));
}
TM_EXPORT void* operator new(size_t size, std::align_val_t alignment) {
  return allocate_or_throw(size, static_cast<size_t>(alignment), __builtin_return_address(0));
}
TM_EXPORT void* operator new[](size_t size, std::align_val_t alignment) {
  return allocate_or_throw(size, static_cast<size_t>(alignment), __builtin_return_address(0));
}
TM_EXPORT void* operator new(size_t size, std::align_val_t alignment, const std::nothrow_t&) noexcept {
  return allocate_nothrow(size, static_cast<size_t>(alignment), __builtin_return_address(0));
}
TM_EXPORT void* operator new[](size_t size, std::align_val_t alignment, const std::nothrow_t&) noexcept {
  return allocate_nothrow(size, static_cast<size_t>(alignment), __builtin_return_address(0));
}

// The unsized deletes run free's fast path themselves (fast_path.h).
TM_EXPORT void operator delete(void* p) noexcept { tmalloc::free_fast(p); }
TM_EXPORT void operator delete[](void* p) noexcept { tmalloc::free_fast(p); }
TM_EXPORT void operator delete(void* p, const std::nothrow_t&) noexcept { tm_free(p); }
TM_EXPORT void operator delete[](void* p, const std::nothrow_t&) noexcept { tm_free(p); }
TM_EXPORT void operator delete(void* p, size_t size) noexcept { tm_free_sized(p, size); }
TM_EXPORT void operator delete[](void* p, size_t size) noexcept { tm_free_sized(p, size); }
TM_EXPORT void operator delete(void* p, std::align_val_t) noexcept { tm_free(p); }
TM_EXPORT void operator delete[](void* p, std::align_val_t) noexcept { tm_free(p); }
TM_EXPORT void operator delete(void* p, size_t size, std::align_val_t) noexcept { tm_free_sized(p, size); }
TM_EXPORT void operator delete[](void* p, size_t size, std::align_val_t) noexcept { tm_free_sized(p, size); }
TM_EXPORT void operator delete(void* p, std::align_val_t, const std::nothrow_t&) noexcept { tm_free(p); }
TM_EXPORT void operator delete[](void* p, std::align_val_t, const std::nothrow_t&) noexcept { tm_free(p); }
