// Safe unlinking of the allocator's doubly linked lists (best-fit lists, the large-block list,
// segment lists, partial-run lists, the thread-cache registry). Before a node is taken out,
// its neighbours must point back at it: prev->next == node (or the list head is the node when
// it has no predecessor) and next->prev == node. A mismatch means a write the allocator did
// not make (an overflow into a free block's links, a use after free, a stray write into
// metadata); it is reported as "tinymalloc: corrupted <list> at 0x<node> (...)" and the
// process aborts, instead of writing through a link an attacker or a bug may have chosen.
#pragma once

#include "error.h"
#include "platform.h"
#include "text_buffer.h"

namespace tmalloc {

// Reports a node whose neighbours do not point back at it (never returns).
[[noreturn]] TM_NOINLINE void report_corrupted_list(const char* list, const void* node, const void* prev,
                                                    const void* prev_next, const void* next, const void* next_prev);

// Reports a node whose own links are not node addresses (never returns).
[[noreturn]] TM_NOINLINE void report_implausible_list_links(const char* list, const void* node, const void* prev,
                                                            const void* next);

// True when a link can be a node's address (or nullptr): 8-byte aligned and in user space.
// Checked before a link is followed, so a link overwritten with data reads nothing.
TM_ALWAYS_INLINE bool list_link_plausible(const void* link) { return (addr_of(link) & (kNonUserAddressBits | 7)) == 0; }

// Checks that `node` is linked where its own links say (through the members Prev and Next),
// `head` being the list's head; reports the list as corrupted otherwise.
template <auto Prev, auto Next, typename Node>
TM_ALWAYS_INLINE void list_verify_linked(Node* head, const Node* node, const char* list) {
  const Node* prev = node->*Prev;
  const Node* next = node->*Next;
  if (TM_UNLIKELY(!list_link_plausible(prev) || !list_link_plausible(next))) {
    report_implausible_list_links(list, node, prev, next);
  }
  const Node* prev_next = prev != nullptr ? prev->*Next : head;
  const Node* next_prev = next != nullptr ? next->*Prev : node;
  if (TM_UNLIKELY(prev_next != node || next_prev != node))
    report_corrupted_list(list, node, prev, prev_next, next, next_prev);
}

// Unlinks `node` from the list whose head is `head`, after list_verify_linked. The node's
// own links are left as they were (callers that reuse them clear them).
template <auto Prev, auto Next, typename Node>
TM_ALWAYS_INLINE void list_unlink(Node*& head, Node* node, const char* list) {
  list_verify_linked<Prev, Next>(head, node, list);
  Node* prev = node->*Prev;
  Node* next = node->*Next;
  if (prev != nullptr) {
    prev->*Next = next;
  } else {
    head = next;
  }
  if (next != nullptr) next->*Prev = prev;
}

// The same for nodes whose links are the members `prev` and `next`.
template <typename Node>
TM_ALWAYS_INLINE void list_unlink(Node*& head, Node* node, const char* list) {
  list_unlink<&Node::prev, &Node::next>(head, node, list);
}

}  // namespace tmalloc
