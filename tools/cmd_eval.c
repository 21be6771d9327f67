/*
 * cmd_eval.c — `ramole eval`: the paper's comparison on a world
 * (include/ramole/eval.h). This file parses options, shows progress on stderr,
 * prints the averages and asks the library to write the report.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

#define MAX_LIST 4096

static int usage_eval(FILE *f) {
    fprintf(f,
            "usage: ramole eval --world DIR [--modes base,perfect,selection,mixture,fusion,router] [--settings id,ood]\n"
            "           [--tasks a,b,...] [--limit N] [--router DIR] [-t THREADS] [--max-seqs N] [--prefix-cache MIB]\n"
            "           [--out docs/EVAL.md] [--json FILE]\n"
            "every test example of every task (or of --tasks) under each mode, in distribution (id: every adapter in\n"
            "the pool) and out of distribution (ood: the task's own adapter removed); writes the report (--out, with\n"
            "SVG charts in its folder's eval/) and, with --json, every per-task score and generation. --router DIR\n"
            "runs the router mode with DIR's router instead of the world's router/ (to compare routers).\n"
            "defaults: every mode and setting, all tasks and examples, -t all CPUs, --max-seqs 32, --prefix-cache 64 (0: off),\n"
            "          --out docs/EVAL.md\n");
    return f == stderr ? 2 : 0;
}

/* Split a comma list in place into items[]; false on an empty item or too many. */
static bool split_list(const char *opt, char *s, char **items, int *n) {
    *n = 0;
    for (char *tok = s;;) {
        char *c = strchr(tok, ',');
        if (c) *c = 0;
        if (!*tok || *n == MAX_LIST) {
            fprintf(stderr, "ramole eval: %s: %s\n", opt, *tok ? "too many items" : "an empty item");
            return false;
        }
        items[(*n)++] = tok;
        if (!c) return true;
        tok = c + 1;
    }
}

typedef struct {
    bool tty;
    double last;
} progress_view;

static void show_progress(const ramole_eval_progress *p, void *user) {
    progress_view *v = user;
    bool end = p->done == p->total;
    if (!end && p->seconds - v->last < (v->tty ? 0.2 : 5.0)) return;
    v->last = p->seconds;
    double rate = p->seconds > 0 ? p->done / p->seconds : 0;
    char eta[32];
    cli_fmt_time(rate > 0 ? (p->total - p->done) / rate : NAN, eta, sizeof eta);
    fprintf(stderr, "%seval: tasks %d/%d  generations %d/%d  %.1f examples/s  %.1f tokens/s  ETA %s%s", v->tty ? "\r" : "",
            p->tasks_done, p->n_tasks, p->done, p->total, rate, p->seconds > 0 ? p->tokens / p->seconds : 0.0, eta,
            v->tty ? (end ? "\n" : "   ") : "\n");
}

/* The command as typed, for the report (arguments with spaces quoted). */
static char *command_line(int argc, char **argv) {
    size_t n = 16;
    for (int i = 0; i < argc; i++) n += strlen(argv[i]) + 3;
    char *s = malloc(n);
    if (!s) return NULL;
    strcpy(s, "ramole");
    for (int i = 0; i < argc; i++) {
        bool q = strpbrk(argv[i], " \t'\"") != NULL;
        strcat(s, q ? " '" : " ");
        strcat(s, argv[i]);
        if (q) strcat(s, "'");
    }
    return s;
}

int cmd_eval(int argc, char **argv) {
    const char *cmd = "eval", *out = "docs/EVAL.md", *json = NULL;
    ramole_eval_params p = {0};
    char *tasks[MAX_LIST], *items[MAX_LIST];
    int n;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
        long x;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) return usage_eval(stdout);
        if (!(v = cli_value(cmd, argc, argv, &i))) return 2;
        if (!strcmp(a, "--world")) p.world = v;
        else if (!strcmp(a, "--router")) p.router = v;
        else if (!strcmp(a, "--out")) out = v;
        else if (!strcmp(a, "--json")) json = v;
        else if (!strcmp(a, "--limit")) { if (!cli_int(cmd, a, v, 1, 1 << 30, &x)) return 2; p.limit = (int)x; }
        else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) { if (!cli_int(cmd, a, v, 1, 256, &x)) return 2; p.n_threads = (int)x; }
        else if (!strcmp(a, "--max-seqs")) { if (!cli_int(cmd, a, v, 1, 1024, &x)) return 2; p.max_seqs = (int)x; }
        else if (!strcmp(a, "--prefix-cache")) { if (!cli_int(cmd, a, v, 0, 1 << 20, &x)) return 2; p.prefix_cache_mib = x ? (int)x : -1; }
        else if (!strcmp(a, "--tasks")) {
            if (!split_list(a, argv[i], tasks, &n)) return 2;
            p.tasks = (const char *const *)tasks, p.n_tasks = n;
        } else if (!strcmp(a, "--modes") || !strcmp(a, "--settings")) {
            bool modes = !strcmp(a, "--modes");
            char *copy = strdup(v);
            if (!copy || !split_list(a, copy, items, &n)) return free(copy), 2;
            for (int k = 0; k < n; k++) {
                ramole_eval_mode m;
                ramole_eval_setting s;
                if (modes && ramole_eval_mode_from_name(items[k], &m)) p.modes |= 1u << m;
                else if (!modes && ramole_eval_setting_from_name(items[k], &s)) p.settings |= 1u << s;
                else {
                    fprintf(stderr, "ramole eval: %s: unknown '%s' (%s)\n", a, items[k],
                            modes ? "base, perfect, selection, mixture, fusion, router" : "id, ood");
                    free(copy);
                    return 2;
                }
            }
            free(copy);
        } else {
            fprintf(stderr, "ramole eval: unknown option '%s'\n", a);
            return usage_eval(stderr);
        }
    }
    if (!p.world) {
        fprintf(stderr, "ramole eval: --world DIR is required\n");
        return usage_eval(stderr);
    }
    progress_view view = {isatty(2), -1e9};
    p.progress = show_progress;
    p.user = &view;
    ramole_eval_report *r = NULL;
    ramole_status st = ramole_eval_run(&p, &r);
    if (st != RAMOLE_OK) return cli_fail(cmd, st);
    char *line = command_line(argc, argv);
    st = ramole_eval_write_markdown(r, out, line);
    if (st == RAMOLE_OK && json) st = ramole_eval_write_json(r, json);
    free(line);
    if (st != RAMOLE_OK) {
        ramole_eval_report_free(r);
        return cli_fail(cmd, st);
    }
    /* the averages, one line per setting */
    for (int s = 0; s < RAMOLE_EVAL_SETTING_COUNT; s++) {
        if (!(ramole_eval_report_settings(r) & (1u << s))) continue;
        printf("%s:", ramole_eval_setting_name((ramole_eval_setting)s));
        for (int m = 0; m < RAMOLE_EVAL_MODE_COUNT; m++)
            if (ramole_eval_report_modes(r) & (1u << m))
                printf(" %s %.1f", ramole_eval_mode_name((ramole_eval_mode)m), 100 * ramole_eval_mean(r, NULL, (ramole_eval_setting)s, (ramole_eval_mode)m));
        printf("\n");
    }
    fprintf(stderr, "wrote %s%s%s\n", out, json ? " and " : "", json ? json : "");
    ramole_eval_report_free(r);
    return 0;
}
