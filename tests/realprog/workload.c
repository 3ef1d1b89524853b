/* Input for the realprog gcc test: compiled by gcc with and without LD_PRELOAD=libtinymalloc.so
 * (the object files and the assembly must be identical), then run with and without the preload
 * (the output must be identical). It is written to give the compiler something to chew on
 * (macros, generic containers, inlining candidates, switch tables) and to make the program
 * allocate heavily with malloc, calloc, realloc, aligned_alloc, posix_memalign and free. It
 * also writes the slack that malloc_usable_size reports (so an overstated usable size corrupts
 * a neighbouring block). Its output depends on nothing but its own deterministic pseudo-random
 * stream, never on the allocator's addresses or slack sizes.
 *
 * `workload usable-slack` runs only phase_usable_slack instead: the growable-buffer idiom of
 * SQLite's StrAccum (built with malloc_usable_size) or Redis's sds, which takes the usable size
 * as the capacity, writes up to it, and relies on realloc keeping those bytes when it grows the
 * buffer, as glibc, jemalloc, mimalloc and tcmalloc do. */
#define _POSIX_C_SOURCE 200809L
#include <malloc.h> /* malloc_usable_size (glibc) */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- Utilities ----------------------------------------------------------------------- */

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define MIN(a, b) ((a) < (b) ? (a) : (b))
#define MAX(a, b) ((a) > (b) ? (a) : (b))
#define DIE(...)                   \
  do {                             \
    fprintf(stderr, "workload: "); \
    fprintf(stderr, __VA_ARGS__);  \
    fputc('\n', stderr);           \
    exit(2);                       \
  } while (0)

static void *xmalloc(size_t n) {
  void *p = malloc(n);
  if (p == NULL) DIE("out of memory (%zu bytes)", n);
  return p;
}

static void *xrealloc(void *p, size_t n) {
  void *q = realloc(p, n);
  if (q == NULL) DIE("out of memory (realloc %zu bytes)", n);
  return q;
}

static void *xcalloc(size_t n, size_t size) {
  void *p = calloc(n, size);
  if (p == NULL) DIE("out of memory (calloc %zu x %zu)", n, size);
  return p;
}

static char *xstrdup(const char *s) {
  size_t n = strlen(s) + 1;
  return memcpy(xmalloc(n), s, n);
}

/* xorshift64*: a deterministic stream, identical on every run. */
typedef struct {
  uint64_t state;
} rng_t;

static uint64_t rng_next(rng_t *r) {
  uint64_t x = r->state;
  x ^= x >> 12;
  x ^= x << 25;
  x ^= x >> 27;
  r->state = x;
  return x * 0x2545F4914F6CDD1DULL;
}

static uint32_t rng_below(rng_t *r, uint32_t n) { return (uint32_t)(rng_next(r) % n); }

/* FNV-1a, used for the hash table and for the running checksum. */
static uint64_t fnv1a(const void *data, size_t n, uint64_t h) {
  const unsigned char *p = data;
  for (size_t i = 0; i < n; i++) {
    h ^= p[i];
    h *= 0x100000001b3ULL;
  }
  return h;
}
#define FNV_SEED 0xcbf29ce484222325ULL

/* ---- A generic growable vector, instantiated by a macro ------------------------------ */

#define DEFINE_VEC(name, type)                            \
  typedef struct {                                        \
    type *data;                                           \
    size_t len, cap;                                      \
  } name##_t;                                             \
  static inline void name##_push(name##_t *v, type x) {   \
    if (v->len == v->cap) {                               \
      v->cap = v->cap ? v->cap * 2 : 4;                   \
      v->data = xrealloc(v->data, v->cap * sizeof(type)); \
    }                                                     \
    v->data[v->len++] = x;                                \
  }                                                       \
  static inline void name##_shrink(name##_t *v) {         \
    if (v->len > 0 && v->len < v->cap) {                  \
      v->cap = v->len;                                    \
      v->data = xrealloc(v->data, v->cap * sizeof(type)); \
    }                                                     \
  }                                                       \
  static inline void name##_free(name##_t *v) {           \
    free(v->data);                                        \
    v->data = NULL;                                       \
    v->len = v->cap = 0;                                  \
  }

DEFINE_VEC(u64vec, uint64_t)
DEFINE_VEC(strvec, char *)

/* ---- A growable string --------------------------------------------------------------- */

typedef struct {
  char *buf;
  size_t len, cap;
} sbuf_t;

static void sbuf_reserve(sbuf_t *s, size_t extra) {
  if (s->len + extra + 1 <= s->cap) return;
  size_t cap = s->cap ? s->cap : 16;
  while (cap < s->len + extra + 1) cap += cap / 2 + 8;
  s->buf = xrealloc(s->buf, cap);
  s->cap = cap;
}

static void sbuf_putc(sbuf_t *s, char c) {
  sbuf_reserve(s, 1);
  s->buf[s->len++] = c;
  s->buf[s->len] = '\0';
}

static void sbuf_puts(sbuf_t *s, const char *str) {
  size_t n = strlen(str);
  sbuf_reserve(s, n);
  memcpy(s->buf + s->len, str, n + 1);
  s->len += n;
}

/* ---- Words from a tiny grammar -------------------------------------------------------- */

static const char *const kSyllables[] = {"ka",  "lo",  "mi",  "nu",  "ra", "te", "zo",  "qui",
                                         "ste", "bar", "fen", "dor", "ix", "ul", "pra", "von"};

static char *make_word(rng_t *r) {
  sbuf_t s = {0};
  /* Zipf-like: short words are much more common, so the table sees many repeats. */
  unsigned n = 1 + (unsigned)(__builtin_ctzll(rng_next(r) | (1ULL << 5)));
  for (unsigned i = 0; i < n; i++) sbuf_puts(&s, kSyllables[rng_below(r, n == 1 ? 4 : ARRAY_LEN(kSyllables))]);
  return s.buf;
}

/* ---- Hash table of word -> count, chained, with resizing ----------------------------- */

typedef struct entry {
  struct entry *next;
  uint64_t hash;
  long count;
  char key[]; /* flexible array member: one allocation per entry */
} entry_t;

typedef struct {
  entry_t **buckets;
  size_t nbuckets, size;
} table_t;

static void table_init(table_t *t, size_t n) {
  t->buckets = xcalloc(n, sizeof(entry_t *));
  t->nbuckets = n;
  t->size = 0;
}

static void table_grow(table_t *t) {
  size_t n = t->nbuckets * 2;
  entry_t **b = xcalloc(n, sizeof(entry_t *));
  for (size_t i = 0; i < t->nbuckets; i++) {
    entry_t *e = t->buckets[i];
    while (e != NULL) {
      entry_t *next = e->next;
      size_t j = e->hash & (n - 1);
      e->next = b[j];
      b[j] = e;
      e = next;
    }
  }
  free(t->buckets);
  t->buckets = b;
  t->nbuckets = n;
}

static entry_t *table_add(table_t *t, const char *key, long delta) {
  size_t n = strlen(key);
  uint64_t h = fnv1a(key, n, FNV_SEED);
  entry_t **slot = &t->buckets[h & (t->nbuckets - 1)];
  for (entry_t *e = *slot; e != NULL; e = e->next) {
    if (e->hash == h && strcmp(e->key, key) == 0) {
      e->count += delta;
      return e;
    }
  }
  entry_t *e = xmalloc(sizeof(entry_t) + n + 1);
  memcpy(e->key, key, n + 1);
  e->hash = h;
  e->count = delta;
  e->next = *slot;
  *slot = e;
  if (++t->size > t->nbuckets * 3 / 4) table_grow(t);
  return e;
}

/* Removes the entries whose count is below `min`; returns how many were removed. */
static size_t table_prune(table_t *t, long min) {
  size_t removed = 0;
  for (size_t i = 0; i < t->nbuckets; i++) {
    entry_t **pp = &t->buckets[i];
    while (*pp != NULL) {
      entry_t *e = *pp;
      if (e->count < min) {
        *pp = e->next;
        free(e);
        removed++;
      } else {
        pp = &e->next;
      }
    }
  }
  t->size -= removed;
  return removed;
}

static void table_free(table_t *t) {
  for (size_t i = 0; i < t->nbuckets; i++) {
    entry_t *e = t->buckets[i];
    while (e != NULL) {
      entry_t *next = e->next;
      free(e);
      e = next;
    }
  }
  free(t->buckets);
}

static int cmp_entry(const void *a, const void *b) {
  const entry_t *x = *(entry_t *const *)a, *y = *(entry_t *const *)b;
  if (x->count != y->count) return x->count > y->count ? -1 : 1;
  return strcmp(x->key, y->key);
}

/* ---- A binary search tree with deletion ----------------------------------------------- */

typedef struct node {
  struct node *left, *right;
  uint64_t key;
  char *label;
} node_t;

static node_t *tree_insert(node_t *root, uint64_t key, int *inserted) {
  node_t **pp = &root;
  while (*pp != NULL) {
    if (key == (*pp)->key) return root;
    pp = key < (*pp)->key ? &(*pp)->left : &(*pp)->right;
  }
  node_t *n = xcalloc(1, sizeof *n);
  char label[32];
  snprintf(label, sizeof label, "n%llx", (unsigned long long)key);
  n->key = key;
  n->label = xstrdup(label);
  *pp = n;
  *inserted = 1;
  return root;
}

static node_t *tree_delete(node_t *root, uint64_t key, int *deleted) {
  if (root == NULL) return NULL;
  if (key < root->key) {
    root->left = tree_delete(root->left, key, deleted);
  } else if (key > root->key) {
    root->right = tree_delete(root->right, key, deleted);
  } else {
    *deleted = 1;
    if (root->left == NULL || root->right == NULL) {
      node_t *child = root->left ? root->left : root->right;
      free(root->label);
      free(root);
      return child;
    }
    node_t *m = root->right;
    while (m->left != NULL) m = m->left;
    root->key = m->key;
    char *tmp = root->label;
    root->label = m->label;
    m->label = tmp; /* the successor's node is freed below with the old label */
    m->key = key;
    int ignored = 0;
    root->right = tree_delete(root->right, key, &ignored);
  }
  return root;
}

static void tree_walk(const node_t *n, uint64_t *sum, size_t *count, size_t depth, size_t *max_depth) {
  while (n != NULL) {
    tree_walk(n->left, sum, count, depth + 1, max_depth);
    *sum = fnv1a(n->label, strlen(n->label), *sum ^ n->key);
    (*count)++;
    *max_depth = MAX(*max_depth, depth);
    n = n->right;
    depth++;
  }
}

static void tree_free(node_t *n) {
  while (n != NULL) {
    tree_free(n->left);
    node_t *right = n->right;
    free(n->label);
    free(n);
    n = right;
  }
}

/* ---- Phases ---------------------------------------------------------------------------- */

static void phase_words(rng_t *r) {
  table_t t;
  table_init(&t, 64);
  sbuf_t text = {0};
  for (int i = 0; i < 200000; i++) {
    char *w = make_word(r);
    table_add(&t, w, 1);
    if (i < 2000) {
      sbuf_puts(&text, w);
      sbuf_putc(&text, (i % 12 == 11) ? '\n' : ' ');
    }
    free(w);
  }
  size_t distinct = t.size;
  size_t pruned = table_prune(&t, 2);
  entry_t **all = xmalloc(t.size * sizeof *all);
  size_t k = 0;
  for (size_t i = 0; i < t.nbuckets; i++)
    for (entry_t *e = t.buckets[i]; e != NULL; e = e->next) all[k++] = e;
  qsort(all, k, sizeof *all, cmp_entry);
  printf("words: distinct=%zu pruned=%zu kept=%zu buckets=%zu text=%zu bytes checksum=%016llx\n", distinct, pruned,
         t.size, t.nbuckets, text.len, (unsigned long long)fnv1a(text.buf, text.len, FNV_SEED));
  for (size_t i = 0; i < MIN(k, (size_t)12); i++) printf("  %2zu %-24s %ld\n", i + 1, all[i]->key, all[i]->count);
  free(all);
  free(text.buf);
  table_free(&t);
}

static void phase_tree(rng_t *r) {
  node_t *root = NULL;
  size_t inserted = 0, deleted = 0;
  u64vec_t keys = {0};
  for (int round = 0; round < 6; round++) {
    for (int i = 0; i < 30000; i++) {
      int ins = 0;
      uint64_t key = rng_below(r, 1000000);
      root = tree_insert(root, key, &ins);
      if (ins) {
        inserted++;
        u64vec_push(&keys, key);
      }
    }
    for (size_t i = round & 1; i < keys.len; i += 3) {
      int del = 0;
      root = tree_delete(root, keys.data[i], &del);
      deleted += (size_t)del;
    }
    keys.len = 0;
    uint64_t sum = FNV_SEED;
    size_t count = 0, max_depth = 0;
    tree_walk(root, &sum, &count, 0, &max_depth);
    printf("tree round %d: inserted=%zu deleted=%zu live=%zu depth=%zu checksum=%016llx\n", round, inserted, deleted,
           count, max_depth, (unsigned long long)sum);
  }
  u64vec_free(&keys);
  tree_free(root);
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static void phase_strings(rng_t *r) {
  strvec_t v = {0};
  for (int i = 0; i < 60000; i++) {
    size_t n = 1 + rng_below(r, i % 100 == 0 ? 20000 : 200); /* mostly small, a few medium/large */
    char *s = xmalloc(n + 1);
    for (size_t j = 0; j < n; j++) s[j] = (char)('a' + rng_below(r, 26));
    /* The usable slack after the terminator is ours to write. */
    size_t usable = malloc_usable_size(s);
    if (usable < n + 1) DIE("malloc_usable_size %zu < requested %zu", usable, n + 1);
    memset(s + n, '\0', usable - n);
    strvec_push(&v, s);
    if (i % 7 == 3) { /* grow or shrink a random earlier string in place */
      size_t k = rng_below(r, (uint32_t)v.len);
      size_t old = strlen(v.data[k]);
      size_t m = rng_below(r, 2) ? old * 3 + 1 : old / 2;
      v.data[k] = xrealloc(v.data[k], m + 1);
      for (size_t j = old; j < m; j++) v.data[k][j] = 'Z';
      memset(v.data[k] + m, '\0', malloc_usable_size(v.data[k]) - m);
    }
  }
  strvec_shrink(&v);
  qsort(v.data, v.len, sizeof(char *), cmp_str);
  uint64_t h = FNV_SEED;
  size_t total = 0;
  for (size_t i = 0; i < v.len; i++) {
    size_t n = strlen(v.data[i]);
    total += n;
    h = fnv1a(v.data[i], n, h);
    free(v.data[i]);
  }
  printf("strings: count=%zu total=%zu checksum=%016llx\n", v.len, total, (unsigned long long)h);
  strvec_free(&v);
}

static void phase_aligned(rng_t *r) {
  static const size_t kAligns[] = {16, 32, 64, 256, 4096, 65536};
  void *blocks[512] = {0};
  size_t misaligned = 0, allocated = 0;
  uint64_t h = FNV_SEED;
  for (int i = 0; i < 20000; i++) {
    size_t slot = rng_below(r, ARRAY_LEN(blocks));
    free(blocks[slot]);
    size_t align = kAligns[rng_below(r, ARRAY_LEN(kAligns))];
    size_t size = align * (1 + rng_below(r, 8)) + (i % 3 == 0 ? 0 : rng_below(r, 100));
    void *p = NULL;
    if (i % 2 == 0) {
      size = (size + align - 1) / align * align; /* aligned_alloc wants a multiple */
      p = aligned_alloc(align, size);
    } else if (posix_memalign(&p, align, size) != 0) {
      p = NULL;
    }
    if (p == NULL) DIE("aligned allocation of %zu (alignment %zu) failed", size, align);
    if ((uintptr_t)p % align != 0) misaligned++;
    memset(p, (int)(i & 0xff), size);
    h = fnv1a(p, MIN(size, (size_t)64), h);
    blocks[slot] = p;
    allocated++;
  }
  for (size_t i = 0; i < ARRAY_LEN(blocks); i++) free(blocks[i]);
  printf("aligned: allocated=%zu misaligned=%zu checksum=%016llx\n", allocated, misaligned, (unsigned long long)h);
}

/* A tiny stack machine, for the compiler's switch lowering; its programs are random. */
enum op { OP_PUSH, OP_ADD, OP_MUL, OP_XOR, OP_DUP, OP_SWAP, OP_DROP, OP_ROT, OP_COUNT };

static uint64_t run_machine(const unsigned char *code, size_t n, uint64_t *stack, size_t cap) {
  size_t sp = 0;
  for (size_t pc = 0; pc < n; pc++) {
    switch ((enum op)(code[pc] % OP_COUNT)) {
      case OP_PUSH:
        if (sp < cap) stack[sp++] = code[pc] * 2654435761u;
        break;
      case OP_ADD:
        if (sp >= 2) {
          stack[sp - 2] += stack[sp - 1];
          sp--;
        }
        break;
      case OP_MUL:
        if (sp >= 2) {
          stack[sp - 2] *= stack[sp - 1] | 1;
          sp--;
        }
        break;
      case OP_XOR:
        if (sp >= 2) {
          stack[sp - 2] ^= stack[sp - 1] >> 7;
          sp--;
        }
        break;
      case OP_DUP:
        if (sp >= 1 && sp < cap) {
          stack[sp] = stack[sp - 1];
          sp++;
        }
        break;
      case OP_SWAP:
        if (sp >= 2) {
          uint64_t t = stack[sp - 1];
          stack[sp - 1] = stack[sp - 2];
          stack[sp - 2] = t;
        }
        break;
      case OP_DROP:
        if (sp >= 1) sp--;
        break;
      case OP_ROT:
        if (sp >= 3) {
          uint64_t t = stack[sp - 3];
          stack[sp - 3] = stack[sp - 2];
          stack[sp - 2] = stack[sp - 1];
          stack[sp - 1] = t;
        }
        break;
      case OP_COUNT:
        break;
    }
  }
  uint64_t h = FNV_SEED ^ sp;
  for (size_t i = 0; i < sp; i++) h = fnv1a(&stack[i], sizeof stack[i], h);
  return h;
}

static void phase_machine(rng_t *r) {
  uint64_t h = FNV_SEED;
  for (int i = 0; i < 3000; i++) {
    size_t n = 16 + rng_below(r, 2000);
    unsigned char *code = xmalloc(n);
    for (size_t j = 0; j < n; j++) code[j] = (unsigned char)rng_next(r);
    size_t cap = 8 + rng_below(r, 256);
    uint64_t *stack = xcalloc(cap, sizeof *stack);
    h ^= run_machine(code, n, stack, cap);
    h *= 0x100000001b3ULL;
    free(stack);
    free(code);
  }
  printf("machine: checksum=%016llx\n", (unsigned long long)h);
}

/* A buffer whose capacity is what malloc_usable_size reports (see the comment at the top). */
static void phase_usable_slack(rng_t *r) {
  char *buf = NULL;
  size_t len = 0, cap = 0, reallocs = 0, slack_used = 0;
  uint64_t h = FNV_SEED;
  for (int i = 0; i < 400000; i++) {
    if (len + 1 > cap) {
      size_t want = len + 1 + len / 8 + rng_below(r, 64); /* odd sizes: most blocks have slack */
      buf = xrealloc(buf, want);
      cap = malloc_usable_size(buf);
      if (cap < want) DIE("malloc_usable_size %zu < requested %zu", cap, want);
      slack_used += cap - want;
      reallocs++;
    }
    buf[len] = (char)('a' + (i * 7 + (int)(len % 13)) % 26);
    len++;
    if (i % 50000 == 49999) {
      h = fnv1a(buf, len, h);
      printf("usable-slack: len=%zu checksum=%016llx\n", len, (unsigned long long)h);
    }
  }
  printf("usable-slack: reallocs=%s slack-bytes-used=%s\n", reallocs > 10 ? ">10" : "<=10",
         slack_used > 0 ? ">0" : "0");
  free(buf);
}

int main(int argc, char **argv) {
  rng_t r = {0x9E3779B97F4A7C15ULL};
  if (argc > 1 && strcmp(argv[1], "usable-slack") == 0) {
    phase_usable_slack(&r);
    return 0;
  }
  phase_words(&r);
  phase_tree(&r);
  phase_strings(&r);
  phase_aligned(&r);
  phase_machine(&r);
  printf("done\n");
  return 0;
}
