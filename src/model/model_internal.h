/*
 * model_internal.h — what the two loaders (HF folder, GGUF) share: one
 * description of a tensor found in a file, and one routine that binds every
 * weight of the model by name and checks its shape and type.
 */
#ifndef RM_MODEL_INTERNAL_H
#define RM_MODEL_INTERNAL_H

#include "model/model.h"
#include "formats/gguf.h"
#include "formats/st_index.h"

/* Files a model holds open: the safetensors set of a HF folder, or a GGUF file. */
typedef struct rm_model_files {
    rm_st_set *st;
    rm_gguf *gguf;
} rm_model_files;
void rm_model_files_free(rm_model_files *f);

typedef struct {
    const char *name;
    const char *file;
    const void *data;
    int type;              /* rm_type or -1 */
    const char *type_name; /* for messages */
    int n_dims;
    int64_t shape[4];      /* outermost first (rows, cols) */
} rm_src_tensor;

/* Look a tensor up by name: RAMOLE_OK, RAMOLE_ERR_NOT_FOUND (no message
 * needed) or another error with a message. */
typedef rm_status (*rm_src_find_fn)(void *src, const char *name, rm_src_tensor *out);

/* Tensor names of one file family; "%d" stands for the layer index. */
typedef struct {
    const char *embd, *out_norm, *output, *rope_freqs;
    const char *attn_norm, *wq, *wk, *wv, *wo, *bq, *bk, *bv;
    const char *ffn_norm, *gate, *up, *down;
} rm_tensor_names;

/* rm_layer_weight for a layer being built (within model only). */
rm_weight *rm_layer_weight_mut(rm_layer *L, rm_target t);

extern const rm_tensor_names rm_names_hf;
extern const rm_tensor_names rm_names_gguf;

/* Bind all weights of m (m->cfg set) from src; allocates m->layers and
 * m->owned_f32. `origin` names the model for messages. */
rm_status rm_model_bind(rm_model *m, const rm_tensor_names *names, rm_src_find_fn find, void *src,
                        const char *origin);

/* rm_model_pack unless the environment sets RAMOLE_REPACK=0 (rm_model_open). */
rm_status rm_model_pack_default(rm_model *m);

#endif
