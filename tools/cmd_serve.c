/*
 * cmd_serve.c — `ramole serve`: the OpenAI-compatible server
 * (include/ramole/serve.h). Parses options, starts the server, prints
 * where it listens, and waits for SIGTERM or SIGINT to stop it gracefully.
 */
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"

static void usage_serve(void) {
    fprintf(stderr, "usage: ramole serve -m MODEL [--registry URL | --no-registry] [--host 127.0.0.1] [--port 8080] "
                    "[--name NAME] [-t THREADS] [--max-seqs N] [--ctx N] [--kv-type f16|f32] [--prefill-tokens auto|all|N] [--prefix-cache MIB (64; 0: off)] [--queue N] "
                    "[--max-body BYTES] [--timeout S] [--deadline S] [--grace S] [--top-k K] [--feedback-ttl S]\n");
}

int cmd_serve(int argc, char **argv) {
    const char *cmd = "serve", *model = NULL, *registry = NULL, *host = "127.0.0.1", *name = NULL;
    long threads = ramole_cpu_count(), max_seqs = 16, n_ctx = 0, port = 8080, queue = 64, max_body = 1 << 20,
         timeout = 30, top_k = 3;
    double grace = 10, deadline = 600, feedback_ttl = RAMOLE_FEEDBACK_TTL;
    bool no_registry = false;
    long prefill = 0, prefix_cache = 64;
    ramole_kv_type kv_type = RAMOLE_KV_F32;
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
        else if (!strcmp(a, "--top-k")) { VAL(); if (!cli_int(cmd, a, v, 1, RAMOLE_MAX_ADAPTERS, &top_k)) return 2; }
        else if (!strcmp(a, "--deadline")) { VAL(); if (!cli_float(cmd, a, v, 0.001, 86400, &deadline)) return 2; }
        else if (!strcmp(a, "--feedback-ttl")) { VAL(); if (!cli_float(cmd, a, v, 1, 3650 * 86400.0, &feedback_ttl)) return 2; }
        else if (!strcmp(a, "--grace")) { VAL(); if (!cli_float(cmd, a, v, 0, 3600, &grace)) return 2; }
        else if (!strcmp(a, "--kv-type")) { VAL(); if (!cli_kv_type(cmd, v, &kv_type)) return 2; }
        else if (!strcmp(a, "--prefill-tokens")) { VAL(); if (!cli_prefill_tokens(cmd, v, &prefill)) return 2; }
        else if (!strcmp(a, "--prefix-cache")) { VAL(); if (!cli_int(cmd, a, v, 0, 1 << 20, &prefix_cache)) return 2; }
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

    ramole_serve_options o = {.model = model, .registry = registry, .no_registry = no_registry, .host = host,
                              .port = (int)port, .model_name = name, .n_threads = (int)threads,
                              .max_seqs = (int)max_seqs, .n_ctx = (int)n_ctx, .kv_type = kv_type, .prefill_tokens = (int)prefill,
                              .prefix_cache_mib = prefix_cache ? (int)prefix_cache : -1,
                              .queue = (int)queue, .max_body = (size_t)max_body, .timeout_s = (int)timeout,
                              .default_top_k = (int)top_k, .deadline_s = deadline, .feedback_ttl_s = feedback_ttl};
    ramole_server *srv = NULL;
    ramole_status st = ramole_server_open(&o, &srv);
    if (st != RAMOLE_OK) return cli_fail(cmd, st);
    const char *url = ramole_server_registry_url(srv);
    printf("listening on http://%s:%d\n", host, ramole_server_port(srv));
    printf("base %s; registry %s with %d active adapters\n", model, url ? url : "(none)",
           ramole_server_active_adapters(srv));
    printf(ramole_server_keys_required(srv) ? "API keys required\n"
                                            : "no API key in the registry: running open, on loopback only\n");
    fflush(stdout);
    int sig = 0;
    sigwait(&sigs, &sig);
    fprintf(stderr, "serve: %s: finishing in-flight requests (at most %.0f s)\n", sig == SIGINT ? "SIGINT" : "SIGTERM",
            grace);
    ramole_server_shutdown(srv, grace);
    ramole_server_free(srv);
    return 0;
}
