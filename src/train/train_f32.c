/*
 * train_f32.c — the training model in float (what trainers run).
 * The code is train_impl.h, shared with train_f64.c.
 */
#define REAL float
#define TM_TYPE rm_tm_f32
#define TM_(name) rm_tm_f32_##name
#define GEMM cblas_sgemm
#define REXP expf
#include "train/train_impl.h"
