// Whole-heap locking in the one global lock order, and fork safety.
//
// Lock order (every path that holds two of these takes them in this order):
//   arena activation -> per arena: small class locks, small segments lock
//   -> per arena: medium lock -> large lock -> segment pool lock -> cache registry lock.
#pragma once

namespace tmalloc {

// Takes / releases every allocator lock (heap checks, stats, fork). Returns the number of
// arenas whose locks are held.
unsigned heap_lock_all();
void heap_unlock_all(unsigned arenas);

// Registers the pthread_atfork handlers (runtime init): the parent takes every lock before
// fork, so no lock is copied into the child while another thread holds it; parent and
// child release them after, and the child returns the caches of the threads that do not
// exist in it.
void fork_handlers_install();

}  // namespace tmalloc
