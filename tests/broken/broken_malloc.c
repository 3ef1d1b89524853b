/* A deliberately broken malloc for LD_PRELOAD: glibc's allocator (through its __libc_*
 * entry points) with exactly one contract clause broken, chosen at build time with
 * -DBROKEN_<CLAUSE>. tools/tm-check-allocator must report each of these libraries under that
 * clause and nothing else (ctest label `checker`, tests/broken/CMakeLists.txt):
 *
 *   BROKEN_ALIGN        align-pow2: aligned requests of 32+ bytes alignment whose size has
 *                       bit 4 set get only half the alignment
 *   BROKEN_REALLOC      realloc-preserves: a growing realloc of a block of 64+ bytes copies
 *                       only the first half of the old block
 *   BROKEN_CALLOC       calloc-zero: calloc skips zeroing a block that was freed recently
 *   BROKEN_USABLE       usable-size: blocks of up to 240 bytes come from 256-byte cells and
 *                       malloc_usable_size says 272 (16 bytes of the next cell)
 *   BROKEN_OVERLAP      no-overlap: blocks of 33-64 bytes come from 64-byte cells placed 32
 *                       bytes apart, so neighbours share memory
 *
 * The breaks of calloc and of the cell-based sizes apply only to calls made from the
 * program's own code (the harness's system backend), not from shared libraries: the
 * program's C++ containers allocate through libstdc++'s operator new, and the C library and
 * the dynamic linker (thread control blocks, TLS) through their own calls, and keep working;
 * with a real allocator broken this way they would not, and the harness would report a crash.
 *
 * Everything else is glibc's behaviour (errno, realloc(p, 0), huge sizes), so the glibc
 * contract profile finds nothing else. Thread-safe (one spin lock around the cell state). */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <link.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

extern void* __libc_malloc(size_t n);
extern void* __libc_calloc(size_t count, size_t n);
extern void* __libc_realloc(void* p, size_t n);
extern void __libc_free(void* p);
extern void* __libc_memalign(size_t alignment, size_t n);

#if defined(BROKEN_USABLE) || defined(BROKEN_OVERLAP) || defined(BROKEN_CALLOC)
static volatile char lock_word;

/* The lock around the cells and the free ring. */
static void lock(void) {
  while (__atomic_test_and_set(&lock_word, __ATOMIC_ACQUIRE)) {
  }
}
static void unlock(void) { __atomic_clear(&lock_word, __ATOMIC_RELEASE); }
#endif

/* glibc's malloc_usable_size (looked up once; dlsym allocates through the glibc entry points
 * of this file, which do not need it). */
static size_t glibc_usable(void* p) {
  static size_t (*real)(void*);
  if (real == NULL) real = (size_t(*)(void*))dlsym(RTLD_NEXT, "malloc_usable_size");
  return real(p);
}

#if defined(BROKEN_USABLE) || defined(BROKEN_OVERLAP) || defined(BROKEN_CALLOC)
/* The executable's code: [exe_lo, exe_hi) (its first executable segment). */
static uintptr_t exe_lo, exe_hi;
static int exe_known;

/* dl_iterate_phdr callback: the first object is the program. */
static int find_program(struct dl_phdr_info* info, size_t size, void* data) {
  (void)size;
  (void)data;
  for (int i = 0; i < info->dlpi_phnum; ++i) {
    const ElfW(Phdr)* ph = &info->dlpi_phdr[i];
    if (ph->p_type == PT_LOAD && (ph->p_flags & PF_X) != 0) {
      exe_lo = info->dlpi_addr + ph->p_vaddr;
      exe_hi = exe_lo + ph->p_memsz;
      break;
    }
  }
  return 1;
}

/* Whether a return address lies in the program's own code. */
static int called_from_program(void* ra) {
  if (!__atomic_load_n(&exe_known, __ATOMIC_ACQUIRE)) {
    dl_iterate_phdr(find_program, NULL);
    __atomic_store_n(&exe_known, 1, __ATOMIC_RELEASE);
  }
  return (uintptr_t)ra >= exe_lo && (uintptr_t)ra < exe_hi;
}

#endif

#if defined(BROKEN_USABLE) || defined(BROKEN_OVERLAP)
/* Cells: a static arena of kCells cells, handed out by index (free ones on an out-of-band
 * stack, so writes into a free cell corrupt nothing), with one spare cell of room after the
 * last so a block's overstated or overlapping tail stays inside the arena. */
#if defined(BROKEN_USABLE)
enum { kCellSize = 256, kStride = 256, kCellMax = 240, kCellMin = 1, kCells = 1 << 15 };
#else
enum { kCellSize = 64, kStride = 32, kCellMax = 64, kCellMin = 33, kCells = 1 << 16 };
#endif
static _Alignas(256) unsigned char arena[(size_t)kCells * kStride + 2 * kCellSize];
static unsigned free_stack[kCells];
static unsigned free_top, next_cell;

static int in_arena(const void* p) {
  return (const unsigned char*)p >= arena && (const unsigned char*)p < arena + sizeof arena;
}

/* A cell for a block of n bytes, or NULL (size not served by cells, or all cells taken). */
static void* cell_alloc(size_t n) {
  if (n < kCellMin || n > kCellMax) return NULL;
  void* p = NULL;
  lock();
  if (free_top > 0) {
    p = arena + (size_t)free_stack[--free_top] * kStride;
  } else if (next_cell < kCells) {
    p = arena + (size_t)next_cell++ * kStride;
  }
  unlock();
  return p;
}

static void cell_free(void* p) {
  lock();
  free_stack[free_top++] = (unsigned)(((unsigned char*)p - arena) / kStride);
  unlock();
}
#endif

#if defined(BROKEN_CALLOC)
/* The last blocks freed: a calloc that gets one of them back skips the zeroing. */
enum { kRing = 64 };
static void* recently_freed[kRing];
static unsigned ring_next;

static void remember_free(void* p) {
  lock();
  recently_freed[ring_next++ % kRing] = p;
  unlock();
}

static int was_freed_recently(void* p) {
  int found = 0;
  lock();
  for (unsigned i = 0; i < kRing; ++i) found |= recently_freed[i] == p;
  unlock();
  return found;
}
#endif

/* A block for a request of n bytes made from return address ra. */
static void* allocate(size_t n, void* ra) {
#if defined(BROKEN_USABLE) || defined(BROKEN_OVERLAP)
  if (called_from_program(ra)) {
    void* c = cell_alloc(n);
    if (c != NULL) return c;
  }
#else
  (void)ra;
#endif
  return __libc_malloc(n);
}

void* malloc(size_t n) { return allocate(n, __builtin_return_address(0)); }

void free(void* p) {
  if (p == NULL) return;
#if defined(BROKEN_USABLE) || defined(BROKEN_OVERLAP)
  if (in_arena(p)) {
    cell_free(p);
    return;
  }
#endif
#if defined(BROKEN_CALLOC)
  remember_free(p);
#endif
  __libc_free(p);
}

size_t malloc_usable_size(void* p) {
  if (p == NULL) return 0;
#if defined(BROKEN_USABLE)
  if (in_arena(p)) return kCellSize + 16;
#elif defined(BROKEN_OVERLAP)
  if (in_arena(p)) return kCellSize;
#endif
  return glibc_usable(p);
}

void* calloc(size_t count, size_t n) {
  size_t total;
  if (__builtin_mul_overflow(count, n, &total)) {
    errno = ENOMEM;
    return NULL;
  }
#if defined(BROKEN_CALLOC)
  void* p = __libc_malloc(total);
  if (p != NULL && !(called_from_program(__builtin_return_address(0)) && was_freed_recently(p))) memset(p, 0, total);
  return p;
#else
  void* p = allocate(total, __builtin_return_address(0));
  if (p != NULL) memset(p, 0, total);
  return p;
#endif
}

void* realloc(void* p, size_t n) {
  void* const ra = __builtin_return_address(0);
  if (p == NULL) return allocate(n, ra);
  if (n == 0) {
    free(p);
    return NULL;
  }
#if defined(BROKEN_REALLOC)
  const size_t old = glibc_usable(p);
  if (n > old && old >= 64) {
    void* q = __libc_malloc(n);
    if (q == NULL) return NULL;
    memcpy(q, p, old / 2);
    __libc_free(p);
    return q;
  }
#endif
#if defined(BROKEN_USABLE) || defined(BROKEN_OVERLAP)
  if (in_arena(p)) {
    void* q = allocate(n, ra);
    if (q == NULL) return NULL;
    memmove(q, p, n < kCellMax ? n : kCellMax);
    cell_free(p);
    return q;
  }
#endif
  return __libc_realloc(p, n);
}

/* The alignment an aligned request of n bytes gets. */
static size_t effective_alignment(size_t alignment, size_t n) {
#if defined(BROKEN_ALIGN)
  if (alignment >= 32 && (n & 16) != 0) return alignment / 2;
#else
  (void)n;
#endif
  return alignment;
}

void* memalign(size_t alignment, size_t n) { return __libc_memalign(effective_alignment(alignment, n), n); }

void* aligned_alloc(size_t alignment, size_t n) { return memalign(alignment, n); }

int posix_memalign(void** out, size_t alignment, size_t n) {
  if (alignment % sizeof(void*) != 0 || (alignment & (alignment - 1)) != 0 || alignment == 0) return EINVAL;
  const int saved = errno;
  void* p = memalign(alignment, n);
  if (p == NULL) {
    const int err = errno;
    errno = saved;
    return err;
  }
  *out = p;
  return 0;
}

void* valloc(size_t n) { return memalign(4096, n); }

void* pvalloc(size_t n) { return memalign(4096, (n + 4095) & ~(size_t)4095); }
