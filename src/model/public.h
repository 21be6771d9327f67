/*
 * public.h — the public handles of include/ramole.h that wrap model-level
 * objects, shared by every file that implements the public contract
 * (src/engine/api.c, src/api/).
 */
#ifndef RM_MODEL_PUBLIC_H
#define RM_MODEL_PUBLIC_H

#include "model/model.h"

struct ramole_model {
    rm_model *m;
};

#endif
