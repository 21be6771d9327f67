/*
 * ramole/adapter.h — LoRA adapters as objects: load a PEFT folder or a
 * GGUF LoRA file against its base, make a random one, change how it is
 * stored, write it in either format. Included by ramole.h.
 */
#ifndef RAMOLE_ADAPTER_H
#define RAMOLE_ADAPTER_H

#include "../ramole.h"

#ifdef __cplusplus
extern "C" {
#endif

/* An adapter fitted to one base model: valid until ramole_adapter_free,
 * and only while that model lives. */
typedef struct ramole_adapter ramole_adapter;

/* 1 when path holds an adapter (a PEFT folder or a GGUF LoRA file), 0 when
 * it holds something else or nothing. */
int ramole_adapter_is_adapter(const char *path);

/*
 * Load the adapter at path for base m. Errors name the file and tensor: a
 * rank outside 1..RAMOLE_MAX_RANK, an adapter made for another base
 * (RAMOLE_ERR_MISMATCH), a missing or misshapen matrix.
 */
ramole_status ramole_adapter_load(const ramole_model *m, const char *path, ramole_adapter **out);

typedef struct {
    int rank;               /* 1..RAMOLE_MAX_RANK */
    float alpha;            /* scale alpha / rank */
    unsigned targets;       /* bits (1u << ramole_target); every layer is adapted */
    uint64_t seed;
    float std;              /* standard deviation of A and B (B is not zero) */
} ramole_adapter_random_params;

/* A random adapter for tests and benchmarks: the same seed gives the same
 * adapter over an HF base and a GGUF base of one model. */
ramole_status ramole_adapter_random(const ramole_model *m, const ramole_adapter_random_params *p,
                                    ramole_adapter **out);
void ramole_adapter_free(ramole_adapter *a);

typedef struct {
    const char *name;       /* the file or folder name; valid while the adapter lives */
    int rank;               /* the configured rank (r) */
    int max_rank;           /* the largest rank of any module */
    float alpha;            /* lora_alpha: scale alpha / rank (alpha / sqrt(rank) with rsLoRA) */
    int rslora;
    unsigned targets;       /* bits (1u << ramole_target) adapted in some layer */
    int n_modules;          /* adapted (layer, target) pairs */
    ramole_type type;       /* how A and B are stored */
    int gate_pool_prompt;   /* as a router: 1 if it pools its gates over the prompt ("ramole.gate_pool"),
                             * 0 if it routes each token on its own (the paper's) */
    float retrieval_prior;  /* as a router: lambda of its retrieval prior ("ramole.retrieval_prior"; 0: none,
                             * the paper's): gates softmax(score + lambda x each expert's retrieval score) */
} ramole_adapter_info;

void ramole_adapter_get_info(const ramole_adapter *a, ramole_adapter_info *out);

/* Store the matrices as t: RAMOLE_TYPE_F32, F16 or BF16. */
ramole_status ramole_adapter_convert(ramole_adapter *a, ramole_type t);
/* Write a as a PEFT folder (adapter_config.json + adapter_model.safetensors)
 * or a GGUF LoRA file (gguf non-zero), replaced whole or not at all. */
ramole_status ramole_adapter_save(const ramole_adapter *a, const char *path, int gguf);

#ifdef __cplusplus
}
#endif
#endif /* RAMOLE_ADAPTER_H */
