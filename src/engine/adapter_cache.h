/*
 * adapter_cache.h — the engine's adapters: loaded once, shared by every
 * request that names them, refcounted, and kept in an LRU bounded in bytes.
 *
 * A request names adapters (a path, or a registry id: whatever the source
 * understands). rm_adapter_cache_get returns a handle holding one
 * reference; the request releases it when it finishes. The same name gives
 * the same rm_adapter while it stays cached, so the batched forward groups
 * every token that uses it into one product.
 *
 * Eviction only ever takes adapters no request holds: the bound is on what
 * is kept for later, not on what runs. rm_adapter_cache_drop (an adapter
 * removed from the pool) unlists a name at once: new requests no longer
 * find it, and its memory is freed when the last request using it ends.
 *
 * The router's C_rj = B_r^T B_j is computed once per (router, expert) pair
 * and kept with the expert's entry (rm_adapter_cache_router_c); it goes when
 * either adapter goes.
 *
 * Threads: every call takes the cache's lock, so a server may drop names
 * from another thread while the scheduler thread gets and releases them.
 */
#ifndef RM_ADAPTER_CACHE_H
#define RM_ADAPTER_CACHE_H

#include "lora/compose.h"

/* Where adapters come from. NULL source: names are paths of PEFT folders
 * or GGUF LoRA files (rm_adapter_load). */
typedef struct {
    /* Load adapter `name` against `base` into *out (owned by the cache after). */
    rm_status (*load)(void *user, const rm_model *base, const char *name, rm_adapter **out);
    void *user;
} rm_adapter_source;

typedef struct rm_adapter_cache rm_adapter_cache;
typedef struct rm_adapter_handle rm_adapter_handle;

typedef struct {
    int entries;        /* listed adapters */
    int held;           /* entries (listed or dropped) with references */
    size_t bytes;       /* adapters and router matrices, listed or still held */
    uint64_t hits, misses, evictions;
} rm_adapter_cache_stats;

/*
 * max_bytes bounds what is cached beyond the adapters in use (0: no bound);
 * adapters are stored as `type` (f32, f16 or bf16). The source is copied;
 * its user pointer must outlive the cache.
 */
rm_status rm_adapter_cache_new(const rm_model *base, const rm_adapter_source *src, size_t max_bytes, rm_type type,
                               rm_adapter_cache **out);
/* Frees every entry; handles still held become invalid (a caller bug). */
void      rm_adapter_cache_free(rm_adapter_cache *c);

/* A handle to adapter `name`, loading it on a miss; one reference. Any
 * thread; callers that miss the same name at once read its file once (the
 * others wait for that load). */
rm_status rm_adapter_cache_get(rm_adapter_cache *c, const char *name, rm_adapter_handle **out);
/* Take one more reference. */
void      rm_adapter_cache_retain(rm_adapter_cache *c, rm_adapter_handle *h);
/* Drop one reference (NULL is a no-op); the adapter may be freed or evicted. */
void      rm_adapter_cache_release(rm_adapter_cache *c, rm_adapter_handle *h);
/* The adapter of a handle (valid while the handle is held). */
const rm_adapter *rm_adapter_handle_adapter(const rm_adapter_handle *h);
const char       *rm_adapter_handle_name(const rm_adapter_handle *h);
/* The load's number, unique within the cache: an adapter loaded again
 * (after a drop or an eviction) gets a new one, so it tells apart two
 * versions of one name. */
uint64_t          rm_adapter_handle_serial(const rm_adapter_handle *h);

/* C of (router, expert), built on first use (outside the lock) and kept
 * with the expert; valid while both handles are held. */
rm_status rm_adapter_cache_router_c(rm_adapter_cache *c, rm_adapter_handle *router, rm_adapter_handle *expert,
                                    const rm_router_c **out);

/* Unlist `name`; false if it was not cached. Holders keep it until they release. */
bool      rm_adapter_cache_drop(rm_adapter_cache *c, const char *name);

void      rm_adapter_cache_stats_get(rm_adapter_cache *c, rm_adapter_cache_stats *out);

#endif
