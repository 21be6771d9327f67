/*
 * screen.h — screening of an uploaded adapter before it joins the pool.
 *
 *   finite   every value of A, B and every scale is finite (loading checks
 *            this too; an in-memory adapter is checked again here);
 *   norms    per adapted module, the Frobenius norm of s B A, computed as
 *            sqrt(sum_ij (B^T B)_ij (A A^T)_ij) in double (r x r products,
 *            never the dout x din matrix); the registry compares each with
 *            the median of the pool's adapters on that module;
 *   KL probe on each probe input, the mean over positions of
 *            KL(p_with || p_base) of the base's next-token distribution
 *            with the adapter applied (weight 1) against without it, both
 *            sequences in one batch; the mean over probes is the result.
 *            An adapter that changes the base's behaviour on general text
 *            it was not made for scores high.
 */
#ifndef RM_REGISTRY_SCREEN_H
#define RM_REGISTRY_SCREEN_H

#include "lora/adapter.h"

#define RM_SCREEN_PROBE_TOKENS 64 /* probe inputs are cut to this many tokens */

/* ERR_RANGE naming the first non-finite value's module. */
rm_status rm_screen_finite(const rm_model *base, const rm_adapter *a);
/* norms[layer * RM_TARGET_COUNT + t] = |s B A|_F, -1 where not adapted. */
rm_status rm_screen_norms(const rm_model *base, const rm_adapter *a, double *norms);
/* Mean KL over the probes (tokenized with the base's tokenizer). */
rm_status rm_screen_kl(const rm_model *base, const rm_adapter *a, const char *const *probes, int n_probes,
                       double *kl);
/* The built-in probe inputs: general text. */
extern const char *const rm_screen_default_probes[];
extern const int rm_screen_n_default_probes;

#endif
