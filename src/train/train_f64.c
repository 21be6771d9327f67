/*
 * train_f64.c — the training model in double, for gradient checks against
 * finite differences and golden gradients. The code is train_impl.h,
 * shared with train_f32.c.
 */
#define REAL double
#define TM_TYPE rm_tm_f64
#define TM_(name) rm_tm_f64_##name
#define GEMM cblas_dgemm
#define REXP exp
#include "train/train_impl.h"
