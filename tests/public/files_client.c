/*
 * files_client.c — an outside program over the model-file and adapter
 * calls of include/ramole.h (built with -Iinclude only):
 *
 *   files_client DIR
 * makes a tiny random llama in DIR/base and a random adapter in DIR/a,
 * reads them back, and checks through the public calls that
 *   - the saved model has the preset's shape,
 *   - the adapter is told apart from the model, reads back with its rank,
 *     alpha and targets, and changes the logits,
 *   - the base with the adapter merged in gives the logits of the base
 *     with the adapter applied at run time,
 *   - a missing adapter fails with a message naming its path.
 * Prints one "ok NAME" line per check, or "FAIL NAME: why" and exits 1.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ramole.h"

static int failed;

static void check(const char *name, int ok, const char *why) {
    if (ok) printf("ok %s\n", name);
    else printf("FAIL %s: %s\n", name, why), failed = 1;
}

static int die(const char *what, ramole_status st) {
    fprintf(stderr, "files_client: %s: %s (%s)\n", what, ramole_last_error(), ramole_status_str(st));
    return 1;
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: files_client DIR\n");
        return 2;
    }
    char base_path[4096], ad_path[4096], missing[4096];
    snprintf(base_path, sizeof base_path, "%s/base", argv[1]);
    snprintf(ad_path, sizeof ad_path, "%s/a", argv[1]);
    snprintf(missing, sizeof missing, "%s/no_such_adapter", argv[1]);

    ramole_model_shape shape;
    if (!ramole_model_preset("llama", "tiny", &shape)) return die("preset", RAMOLE_ERR_NOT_FOUND);
    ramole_model *made = NULL, *m = NULL, *merged = NULL;
    ramole_adapter *a = NULL;
    ramole_status st = ramole_model_random(&shape, 9, 0.05f, NULL, &made);
    if (st == RAMOLE_OK) st = ramole_model_save(made, RAMOLE_FORMAT_HF, RAMOLE_TYPE_F32, base_path);
    ramole_model_free(made);
    if (st != RAMOLE_OK) return die("random model", st);
    if ((st = ramole_model_open(base_path, &m)) != RAMOLE_OK) return die("open", st);

    ramole_model_info info;
    ramole_model_get_info(m, &info);
    check("shape", info.hidden == shape.hidden && info.n_layers == shape.n_layers && info.n_heads == shape.n_heads &&
                       info.vocab_size == shape.vocab_size && info.format == RAMOLE_FORMAT_HF &&
                       info.main_type == RAMOLE_TYPE_F32 && !strcmp(info.arch, "llama"),
          "the saved model is not the preset's");

    ramole_adapter_random_params rp = {.rank = 4, .alpha = 8, .targets = (1u << RAMOLE_TARGET_COUNT) - 1,
                                       .seed = 4, .std = 0.05f};
    if ((st = ramole_adapter_random(m, &rp, &a)) != RAMOLE_OK) return die("random adapter", st);
    if ((st = ramole_adapter_save(a, ad_path, 0)) != RAMOLE_OK) return die("save adapter", st);
    ramole_adapter_free(a);
    a = NULL;
    check("adapter_sniffed", ramole_adapter_is_adapter(ad_path) && !ramole_adapter_is_adapter(base_path),
          "the PEFT folder and the model folder are not told apart");

    const int32_t tokens[] = {1, 7, 30, 99, 5};
    const int n = 5;
    ramole_run_params run = {.n_threads = 1};
    ramole_lora_set lora = {.mode = RAMOLE_COMPOSE_EXPLICIT, .n_adapters = 1, .adapters = {ad_path},
                            .weights = {1.0f}};
    float *plain = NULL, *adapted = NULL, *merged_logits = NULL;
    int rows_p = 0, rows_a = 0, rows_m = 0;
    if ((st = ramole_model_logits(m, &run, NULL, tokens, n, 1, &plain, &rows_p)) != RAMOLE_OK) return die("logits", st);
    if ((st = ramole_model_logits(m, &run, &lora, tokens, n, 1, &adapted, &rows_a)) != RAMOLE_OK)
        return die("logits with the adapter", st);
    if ((st = ramole_adapter_load(m, ad_path, &a)) != RAMOLE_OK) return die("load adapter", st);
    ramole_adapter_info ai;
    ramole_adapter_get_info(a, &ai);
    check("adapter_info", ai.rank == 4 && ai.max_rank == 4 && ai.alpha == 8 && !ai.rslora &&
                              ai.targets == rp.targets && ai.n_modules == RAMOLE_TARGET_COUNT * info.n_layers &&
                              ai.type == RAMOLE_TYPE_F32 && !strcmp(ai.name, "a"),
          "the adapter read back is not the one written");
    if ((st = ramole_model_merge(m, &a, NULL, 1, &merged)) != RAMOLE_OK) return die("merge", st);
    if ((st = ramole_model_logits(merged, &run, NULL, tokens, n, 1, &merged_logits, &rows_m)) != RAMOLE_OK)
        return die("logits of the merged model", st);
    check("rows", rows_p == n && rows_a == n && rows_m == n, "--all gives one row per token");

    size_t total = (size_t)n * (size_t)info.vocab_size;
    double moved = 0, diff = 0, scale = 0;
    for (size_t i = 0; i < total; i++) {
        moved = fmax(moved, fabs((double)adapted[i] - plain[i]));
        diff = fmax(diff, fabs((double)adapted[i] - merged_logits[i]));
        scale = fmax(scale, fabs((double)adapted[i]));
    }
    char why[160];
    snprintf(why, sizeof why, "the adapter moves the logits by at most %g (scale %g)", moved, scale);
    check("adapter_changes_logits", moved > 1e-3 * scale, why);
    snprintf(why, sizeof why, "merged and run-time logits differ by %g (scale %g)", diff, scale);
    check("merged_equals_runtime", diff <= 1e-4 * scale + 1e-5, why);

    ramole_adapter *none = NULL;
    st = ramole_adapter_load(m, missing, &none);
    check("missing_adapter_named", st != RAMOLE_OK && !none && strstr(ramole_last_error(), "no_such_adapter"),
          ramole_last_error());

    ramole_free(plain);
    ramole_free(adapted);
    ramole_free(merged_logits);
    ramole_adapter_free(a);
    ramole_model_free(merged);
    ramole_model_free(m);
    return failed;
}
