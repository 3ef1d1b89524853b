// Global lock order and the fork handlers (see fork.h).
#include "fork.h"

#include <pthread.h>

#include "arena.h"
#include "guarded.h"
#include "large.h"
#include "medium.h"
#include "sanitizer.h"
#include "segment_pool.h"
#include "small.h"
#include "thread_cache.h"
#include "trace.h"

namespace tmalloc {

namespace {

// Arenas locked by the fork prepare handler (read by the parent and child handlers).
unsigned g_fork_arenas;

// Prepare handlers run by the forking thread and not yet matched by a parent or child
// handler. The handlers are installed twice in a fork child that redid an initialisation
// its parent had begun (init_once.h): only the outermost pair acts (glibc runs every
// prepare handler, then every parent or child handler, in the forking thread).
constinit thread_local unsigned t_fork_depth __attribute__((tls_model(TM_TLS_MODEL))) = 0;

// Before fork(): no allocator lock may be held by another thread inside the child.
void fork_prepare() {
  if (t_fork_depth++ != 0) return;
  guarded_lock();  // outermost: held around OS calls only, never inside another lock
  g_fork_arenas = heap_lock_all();
  pool_lock();
  registry_lock();
}

// After fork() in the parent: release in reverse order.
void fork_parent() {
  if (--t_fork_depth != 0) return;
  registry_unlock();
  pool_unlock();
  heap_unlock_all(g_fork_arenas);
  guarded_unlock();
}

// After fork() in the child: this thread took every lock, so it can release them; then the
// caches of the threads that did not survive go back to the heap.
void fork_child() {
  if (--t_fork_depth != 0) return;
  registry_unlock();
  pool_unlock();
  heap_unlock_all(g_fork_arenas);
  guarded_unlock();
  cache_forget_other_threads_in_child();
  trace_fork_child();
}

}  // namespace

TM_NO_COVERAGE unsigned heap_lock_all() {
  arena_activation_lock();
  const unsigned arenas = arenas_used();
  small_lock_all(arenas);
  medium_lock_all(arenas);
  large_lock();
  return arenas;
}

TM_NO_COVERAGE void heap_unlock_all(unsigned arenas) {
  large_unlock();
  medium_unlock_all(arenas);
  small_unlock_all(arenas);
  arena_activation_unlock();
}

void fork_handlers_install() { pthread_atfork(fork_prepare, fork_parent, fork_child); }

}  // namespace tmalloc
