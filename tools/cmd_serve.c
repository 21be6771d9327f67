/*
 * cmd_serve.c — `ramole serve`: the OpenAI-compatible server (src/serve).
 * Parses options, opens the model and registry, starts the server, prints
 * where it listens, and waits for SIGTERM or SIGINT to stop it gracefully.
 */
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "serve/serve.h"

static void usage_serve(void) {
    fprintf(stderr, "usage: ramole serve -m MODEL [--registry URL | --no-registry] [--host 127.0.0.1] [--port 8080] "
                    "[--name NAME] [-t THREADS] [--max-seqs N] [--ctx N] [--kv-type f16|f32] [--prefill-tokens auto|all|N] [--queue N] "
                    "[--max-body BYTES] [--timeout S] [--deadline S] [--grace S] [--top-k K] [--feedback-ttl S]\n");
}

int cmd_serve(int argc, char **argv) {
    const char *cmd = "serve", *model = NULL, *registry = NULL, *host = "127.0.0.1", *name = NULL;
    long threads = rm_cpu_count(), max_seqs = 16, n_ctx = 0, port = 8080, queue = 64, max_body = 1 << 20,
         timeout = 30, top_k = 3;
    double grace = 10, deadline = 600, feedback_ttl = RM_REG_RESPONSE_TTL;
    bool no_registry = false;
    long prefill = 0;
    rm_type kv_type = RM_TYPE_F32;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
#define VAL() if (!(v = cli_value(cmd, argc, argv, &i))) return 2
        if (!strcmp(a, "-m") || !strcmp(a, "--model")) { VAL(); model = v; }
        else if (!strcmp(a, "--registry")) { VAL(); registry = v; }
        else if (!strcmp(a, "--no-registry")) no_registry = true;
        else if (!strcmp(a, "--host")) { VAL(); host = v; }
        else if (!strcmp(a, "--name")) { VAL(); name = v; }
        else if (!strcmp(a, "--port")) { VAL(); if (!cli_int(cmd, a, v, 0, 65535, &port)) return 2; }
        else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) { VAL(); if (!cli_int(cmd, a, v, 1, 256, &threads)) return 2; }
        else if (!strcmp(a, "--max-seqs")) { VAL(); if (!cli_int(cmd, a, v, 1, 4096, &max_seqs)) return 2; }
        else if (!strcmp(a, "-c") || !strcmp(a, "--ctx")) { VAL(); if (!cli_int(cmd, a, v, 1, 1 << 20, &n_ctx)) return 2; }
        else if (!strcmp(a, "--queue")) { VAL(); if (!cli_int(cmd, a, v, 1, 1 << 20, &queue)) return 2; }
        else if (!strcmp(a, "--max-body")) { VAL(); if (!cli_int(cmd, a, v, 64, 1L << 30, &max_body)) return 2; }
        else if (!strcmp(a, "--timeout")) { VAL(); if (!cli_int(cmd, a, v, 1, 3600, &timeout)) return 2; }
        else if (!strcmp(a, "--top-k")) { VAL(); if (!cli_int(cmd, a, v, 1, RM_LORA_MAX_K, &top_k)) return 2; }
        else if (!strcmp(a, "--deadline")) { VAL(); if (!cli_float(cmd, a, v, 0.001, 86400, &deadline)) return 2; }
        else if (!strcmp(a, "--feedback-ttl")) { VAL(); if (!cli_float(cmd, a, v, 1, 3650 * 86400.0, &feedback_ttl)) return 2; }
        else if (!strcmp(a, "--grace")) { VAL(); if (!cli_float(cmd, a, v, 0, 3600, &grace)) return 2; }
        else if (!strcmp(a, "--kv-type")) { VAL(); if (!cli_kv_type(cmd, v, &kv_type)) return 2; }
        else if (!strcmp(a, "--prefill-tokens")) { VAL(); if (!cli_prefill_tokens(cmd, v, &prefill)) return 2; }
        else {
            fprintf(stderr, "ramole %s: unknown option '%s'\n", cmd, a);
            usage_serve();
            return 2;
        }
#undef VAL
    }
    if (!model) {
        fprintf(stderr, "ramole %s: -m MODEL is required\n", cmd);
        usage_serve();
        return 2;
    }
    /* SIGTERM and SIGINT go to sigwait below, not to the server's threads */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);

    rm_model *m = NULL;
    rm_registry *reg = NULL;
    rm_server *srv = NULL;
    char *url = NULL;
    int rc = 1;
    rm_status st;
    if ((st = rm_model_open(model, &m)) != RAMOLE_OK) goto fail;
    if (!no_registry) {
        if (registry) url = rm_strdup(registry);
        else if ((st = rm_registry_default_url(&url)) != RAMOLE_OK) goto fail;
        if ((st = rm_registry_open(url, &reg)) != RAMOLE_OK) goto fail;
    }
    rm_engine_params ep = {.n_threads = (int)threads, .max_seqs = (int)max_seqs, .n_ctx = (int)n_ctx,
                           .prefill_tokens = (int)prefill,
                           .kv_type = kv_type};
    rm_server_opts so = {.host = host, .port = (int)port, .model_name = name, .queue = (int)queue,
                         .max_body = (size_t)max_body, .timeout_s = (int)timeout, .default_top_k = (int)top_k,
                         .deadline_s = deadline, .feedback_ttl_s = feedback_ttl};
    if ((st = rm_server_new(m, reg, &ep, &so, &srv)) != RAMOLE_OK || (st = rm_server_start(srv)) != RAMOLE_OK)
        goto fail;
    int n_active = 0;
    rm_reg_adapter *ads = NULL;
    int n = 0;
    if (reg && rm_registry_adapter_list(reg, NULL, &ads, &n) == RAMOLE_OK)
        for (int i = 0; i < n; i++) n_active += ads[i].status == RM_REG_ACTIVE;
    rm_reg_adapters_free(ads, n);
    printf("listening on http://%s:%d\n", host, rm_server_port(srv));
    printf("base %s; registry %s with %d active adapters\n", model, reg ? rm_registry_url(reg) : "(none)", n_active);
    printf(rm_server_keys_required(srv) ? "API keys required\n"
                                        : "no API key in the registry: running open, on loopback only\n");
    fflush(stdout);
    int sig = 0;
    sigwait(&sigs, &sig);
    fprintf(stderr, "serve: %s: finishing in-flight requests (at most %.0f s)\n", sig == SIGINT ? "SIGINT" : "SIGTERM",
            grace);
    rm_server_shutdown(srv, grace);
    rc = 0;
    goto out;
fail:
    rc = cli_fail(cmd, st);
out:
    rm_server_free(srv);
    rm_registry_free(reg);
    rm_model_free(m);
    rm_free(url);
    return rc;
}
