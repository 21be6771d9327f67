/*
 * st_index.h — the safetensors weights of a Hugging Face model folder as one
 * set: a single model.safetensors, or the shards that
 * model.safetensors.index.json names in its "weight_map" (tensor name ->
 * shard file name).
 *
 * Opening validates every shard (rm_st_open) and every weight_map entry:
 * shard names must be plain file names in the folder, and each listed
 * tensor must be in the shard the index names. The set's tensors are those
 * of the weight_map (or of the single file), sorted by name; tensors a shard
 * holds but the index does not list are not part of the set.
 */
#ifndef RM_ST_INDEX_H
#define RM_ST_INDEX_H

#include "formats/safetensors.h"

typedef struct rm_st_set rm_st_set;

/*
 * path: a model folder, an index .json file, or one .safetensors file.
 * ERR_NOT_FOUND if a folder has neither model.safetensors.index.json nor
 * model.safetensors; ERR_FORMAT for a bad index (naming the index file and
 * the tensor or shard); shard errors as rm_st_open. Tensors and shards are
 * valid until rm_st_set_free.
 */
rm_status rm_st_set_open(const char *path, rm_st_set **out);
void      rm_st_set_free(rm_st_set *s); /* NULL is a no-op */
int       rm_st_set_shard_count(const rm_st_set *s);
const rm_safetensors *rm_st_set_shard(const rm_st_set *s, int i); /* in order of first use */
int       rm_st_set_count(const rm_st_set *s);
const rm_st_tensor *rm_st_set_get(const rm_st_set *s, int i);     /* sorted by name */
const rm_st_tensor *rm_st_set_find(const rm_st_set *s, const char *name); /* NULL if absent */
/* The shard holding a tensor of the set (NULL if t is not in it). */
const rm_safetensors *rm_st_set_shard_of(const rm_st_set *s, const rm_st_tensor *t);

#endif
