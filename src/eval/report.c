/*
 * report.c — what an evaluation writes: the Markdown report with its two
 * SVG charts, and the JSON of every score (see eval.h).
 *
 * Scores are printed as percentages with one decimal. The charts are
 * plain hand-written SVG (grouped vertical bars, a legend, a 0..100 axis),
 * so that they render in any browser and in the repository's viewer.
 */
#include "eval/eval.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

/* ---- text out ---------------------------------------------------------------------------- */

static rm_status tb_write(rm_text *b, const char *path) {
    rm_status st = b->failed ? rm_err(RAMOLE_ERR_NOMEM, "out of memory writing %s", path)
                             : rm_file_write_atomic(path, b->s ? b->s : "", b->len);
    rm_free(b->s);
    memset(b, 0, sizeof *b);
    return st;
}

/* A percentage cell: "57.3", or "–" when not run. */
static void tb_pct(rm_text *b, double x) {
    if (isnan(x)) rm_text_printf(b, " – |");
    else rm_text_printf(b, " %.1f |", 100 * x);
}

/* Text safe inside SVG/XML. */
static void tb_xml(rm_text *b, const char *s) {
    for (; *s; s++) {
        if (*s == '<') rm_text_printf(b, "&lt;");
        else if (*s == '>') rm_text_printf(b, "&gt;");
        else if (*s == '&') rm_text_printf(b, "&amp;");
        else if (*s == '"') rm_text_printf(b, "&quot;");
        else rm_text_printf(b, "%c", *s);
    }
}

/* Text safe inside a Markdown table cell. */
static void tb_md(rm_text *b, const char *s) {
    for (; *s; s++) {
        if (*s == '|') rm_text_printf(b, "\\|");
        else if (*s == '\n') rm_text_printf(b, " ");
        else rm_text_printf(b, "%c", *s);
    }
}

/* ---- clusters ---------------------------------------------------------------------------- */

/* The evaluated clusters in order of first appearance: names[] point into r; returns the count. */
static int clusters_of(const rm_eval_report *r, const char **names) {
    int n = 0;
    for (int t = 0; t < r->n_tasks; t++) {
        if (!r->tasks[t].evaluated) continue;
        int j = 0;
        while (j < n && strcmp(names[j], r->tasks[t].cluster)) j++;
        if (j == n) names[n++] = r->tasks[t].cluster;
    }
    return n;
}

/* ---- SVG ----------------------------------------------------------------------------------- */

static const char *const palette[] = {"#9e9e9e", "#2e7d32", "#f9a825", "#1565c0", "#8e24aa", "#c62828"};

/* Grouped bars: v[g * n_series + s] in [0, 1] (NAN: no bar), one group per label. */
static rm_status svg_bars(const char *path, const char *title, const char *const *groups, int n_groups,
                          const char *const *series, const char *const *colors, int n_series, const double *v) {
    const int bar = 12, gap = 18, left = 50, top = 40, height = 220, bottom = 110;
    int group_w = n_series * bar + gap, width = left + n_groups * group_w + 20;
    if (width < 420) width = 420;
    int total_h = top + height + bottom + 20 * ((n_series + 2) / 3);
    rm_text b = {0};
    rm_text_printf(&b, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" font-family=\"sans-serif\" "
              "font-size=\"11\">\n<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n", width, total_h);
    rm_text_printf(&b, "<text x=\"%d\" y=\"20\" font-size=\"14\">", left);
    tb_xml(&b, title);
    rm_text_printf(&b, "</text>\n");
    for (int y = 0; y <= 100; y += 20) {
        int py = top + height - y * height / 100;
        rm_text_printf(&b, "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"#ddd\"/>"
                  "<text x=\"%d\" y=\"%d\" text-anchor=\"end\">%d</text>\n", left, py, width - 10, py, left - 6, py + 4, y);
    }
    for (int g = 0; g < n_groups; g++) {
        int x0 = left + g * group_w + gap / 2;
        for (int s = 0; s < n_series; s++) {
            double x = v[g * n_series + s];
            if (isnan(x)) continue;
            int h = (int)lround((x < 0 ? 0 : x > 1 ? 1 : x) * height);
            rm_text_printf(&b, "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"%s\"><title>", x0 + s * bar,
                      top + height - h, bar - 1, h, colors[s]);
            tb_xml(&b, groups[g]);
            rm_text_printf(&b, ", ");
            tb_xml(&b, series[s]);
            rm_text_printf(&b, ": %.1f</title></rect>\n", 100 * x);
        }
        int cx = x0 + n_series * bar / 2, cy = top + height + 12;
        rm_text_printf(&b, "<text x=\"%d\" y=\"%d\" text-anchor=\"end\" transform=\"rotate(-40 %d %d)\">", cx, cy, cx, cy);
        tb_xml(&b, groups[g]);
        rm_text_printf(&b, "</text>\n");
    }
    rm_text_printf(&b, "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"black\"/>\n", left, top + height, width - 10,
              top + height);
    for (int s = 0; s < n_series; s++) {
        int lx = left + (s % 3) * 130, ly = top + height + bottom + 20 * (s / 3);
        rm_text_printf(&b, "<rect x=\"%d\" y=\"%d\" width=\"10\" height=\"10\" fill=\"%s\"/><text x=\"%d\" y=\"%d\">", lx,
                  ly - 9, colors[s], lx + 14, ly);
        tb_xml(&b, series[s]);
        rm_text_printf(&b, "</text>\n");
    }
    rm_text_printf(&b, "</svg>\n");
    return tb_write(&b, path);
}

/* clusters.svg: per cluster (and the average), one bar per mode that ran, in distribution. */
static rm_status chart_clusters(const rm_eval_report *r, const char *path) {
    const char **groups = rm_malloc(((size_t)r->n_tasks + 1) * sizeof *groups);
    const char *series[RM_EVAL_MODE_COUNT], *colors[RM_EVAL_MODE_COUNT];
    if (!groups) return rm_err(RAMOLE_ERR_NOMEM, "out of memory");
    int ng = clusters_of(r, groups), ns = 0;
    groups[ng++] = "average";
    int modes[RM_EVAL_MODE_COUNT];
    for (int m = 0; m < RM_EVAL_MODE_COUNT; m++)
        if (r->modes & (1u << m)) modes[ns] = m, series[ns] = rm_eval_mode_name((rm_eval_mode)m), colors[ns++] = palette[m];
    double *v = rm_malloc((size_t)ng * (size_t)ns * sizeof *v);
    if (!v) {
        rm_free(groups);
        return rm_err(RAMOLE_ERR_NOMEM, "out of memory");
    }
    rm_eval_setting s = r->settings & (1u << RM_EVAL_ID) ? RM_EVAL_ID : RM_EVAL_OOD;
    for (int g = 0; g < ng; g++)
        for (int k = 0; k < ns; k++)
            v[g * ns + k] = rm_eval_mean(r, g == ng - 1 ? NULL : groups[g], s, (rm_eval_mode)modes[k]);
    char title[128];
    snprintf(title, sizeof title, "Score by cluster and mode (%s)", s == RM_EVAL_ID ? "in distribution" : "out of distribution");
    rm_status st = svg_bars(path, title, groups, ng, series, colors, ns, v);
    rm_free(v), rm_free(groups);
    return st;
}

/* id_vs_ood.svg: per mode, the average in and out of distribution. */
static rm_status chart_id_ood(const rm_eval_report *r, const char *path) {
    const char *groups[RM_EVAL_MODE_COUNT], *series[2], *colors[2] = {"#1565c0", "#ef6c00"};
    double v[RM_EVAL_MODE_COUNT * 2];
    int ng = 0, ns = 0, settings[2];
    for (int s = 0; s < RM_EVAL_SETTING_COUNT; s++)
        if (r->settings & (1u << s)) settings[ns] = s, series[ns++] = s == RM_EVAL_ID ? "in distribution" : "out of distribution";
    for (int m = 0; m < RM_EVAL_MODE_COUNT; m++) {
        if (!(r->modes & (1u << m))) continue;
        for (int k = 0; k < ns; k++) v[ng * ns + k] = rm_eval_mean(r, NULL, (rm_eval_setting)settings[k], (rm_eval_mode)m);
        groups[ng++] = rm_eval_mode_name((rm_eval_mode)m);
    }
    return svg_bars(path, "Average score by mode, in and out of distribution", groups, ng, series, colors, ns, v);
}

/* ---- Markdown ---------------------------------------------------------------------------------- */

static void cpu_name(char *out, size_t n) {
    snprintf(out, n, "unknown CPU");
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f) return;
    char line[512];
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, "model name", 10)) {
            char *c = strchr(line, ':');
            if (c) {
                c += 1 + (c[1] == ' ');
                c[strcspn(c, "\n")] = 0;
                snprintf(out, n, "%s", c);
            }
            break;
        }
    fclose(f);
}

static void md_scores(rm_text *b, const rm_eval_report *r, rm_eval_setting s, const char **clusters, int nc) {
    rm_text_printf(b, "| cluster | tasks |");
    for (int m = 0; m < RM_EVAL_MODE_COUNT; m++)
        if (r->modes & (1u << m)) rm_text_printf(b, " %s |", rm_eval_mode_name((rm_eval_mode)m));
    rm_text_printf(b, "\n|---|---:|");
    for (int m = 0; m < RM_EVAL_MODE_COUNT; m++)
        if (r->modes & (1u << m)) rm_text_printf(b, "---:|");
    rm_text_printf(b, "\n");
    for (int c = 0; c <= nc; c++) {
        const char *name = c < nc ? clusters[c] : NULL;
        int nt = 0;
        for (int t = 0; t < r->n_tasks; t++) nt += r->tasks[t].evaluated && (!name || !strcmp(name, r->tasks[t].cluster));
        rm_text_printf(b, "| ");
        if (name) tb_md(b, name);
        else rm_text_printf(b, "**average**");
        rm_text_printf(b, " | %d |", nt);
        for (int m = 0; m < RM_EVAL_MODE_COUNT; m++)
            if (r->modes & (1u << m)) tb_pct(b, rm_eval_mean(r, name, s, (rm_eval_mode)m));
        rm_text_printf(b, "\n");
    }
    rm_text_printf(b, "\n");
}

static void md_retrieval(rm_text *b, const rm_eval_report *r) {
    rm_text_printf(b, "| tasks | adapters | queries | top-1 | top-3 |\n|---|---:|---:|---:|---:|\n");
    static const char *const label[3] = {"seen", "unseen", "all"};
    for (int kind = 0; kind < 3; kind++) {
        int n = 0, q = 0, t1 = 0, t3 = 0;
        for (int t = 0; t < r->n_tasks; t++) {
            const rm_eval_task *k = &r->tasks[t];
            if (!k->evaluated || (kind == 0 && !k->seen) || (kind == 1 && k->seen)) continue;
            n++, q += k->n_test, t1 += k->top1, t3 += k->top3;
        }
        rm_text_printf(b, "| %s | %d | %d |", label[kind], n, q);
        tb_pct(b, q ? (double)t1 / q : NAN);
        tb_pct(b, q ? (double)t3 / q : NAN);
        rm_text_printf(b, "\n");
    }
    rm_text_printf(b, "\nThe pool holds all %d adapters; a query is one test input, right when its own task's adapter "
              "is retrieved first (top-1) or among the first three (top-3).\n\n", r->n_tasks);
}

/* Every evaluated task: metric, seen, retrieval and each mode's score per setting ("id / ood"). */
static void md_tasks(rm_text *b, const rm_eval_report *r) {
    rm_text_printf(b, "<details><summary>Per task</summary>\n\nScores in distribution / out of distribution "
                   "(base and perfect ran once).\n\n| task | cluster | metric | seen | examples |");
    if (r->retrieval) rm_text_printf(b, " top-1 | top-3 |");
    for (int m = 0; m < RM_EVAL_MODE_COUNT; m++)
        if (r->modes & (1u << m)) rm_text_printf(b, " %s |", rm_eval_mode_name((rm_eval_mode)m));
    rm_text_printf(b, "\n|---|---|---|---|---:|");
    if (r->retrieval) rm_text_printf(b, "---:|---:|");
    for (int m = 0; m < RM_EVAL_MODE_COUNT; m++)
        if (r->modes & (1u << m)) rm_text_printf(b, "---:|");
    rm_text_printf(b, "\n");
    for (int t = 0; t < r->n_tasks; t++) {
        const rm_eval_task *k = &r->tasks[t];
        if (!k->evaluated) continue;
        rm_text_printf(b, "| ");
        tb_md(b, k->name);
        rm_text_printf(b, " | ");
        tb_md(b, k->cluster);
        rm_text_printf(b, " | %s | %s | %d |", rm_metric_name(k->metric), k->seen ? "yes" : "no", k->n_test);
        if (r->retrieval) {
            tb_pct(b, k->n_test ? (double)k->top1 / k->n_test : NAN);
            tb_pct(b, k->n_test ? (double)k->top3 / k->n_test : NAN);
        }
        for (int m = 0; m < RM_EVAL_MODE_COUNT; m++) {
            if (!(r->modes & (1u << m))) continue;
            bool both = rm_eval_mode_retrieves((rm_eval_mode)m) && r->settings == (1u << RM_EVAL_SETTING_COUNT) - 1;
            rm_eval_setting s0 = r->settings & (1u << RM_EVAL_ID) ? RM_EVAL_ID : RM_EVAL_OOD;
            if (isnan(k->score[s0][m])) rm_text_printf(b, " –");
            else rm_text_printf(b, " %.1f", 100 * k->score[s0][m]);
            if (both) rm_text_printf(b, " / %.1f", 100 * k->score[RM_EVAL_OOD][m]);
            rm_text_printf(b, " |");
        }
        rm_text_printf(b, "\n");
    }
    rm_text_printf(b, "\n</details>\n\n");
}

/* mkdir -p: every folder of path (the last component included). */
static rm_status make_dirs(const char *path) {
    char *p = rm_strdup(path);
    if (!p) return rm_err(RAMOLE_ERR_NOMEM, "out of memory");
    rm_status st = RAMOLE_OK;
    for (char *c = p + 1;; c++) {
        if (*c && *c != '/') continue;
        char keep = *c;
        *c = 0;
        if (mkdir(p, 0755) != 0 && !rm_dir_exists(p)) {
            st = rm_err(RAMOLE_ERR_IO, "%s: cannot create the folder", p);
            break;
        }
        if (!(*c = keep)) break;
    }
    rm_free(p);
    return st;
}

rm_status rm_eval_write_markdown(const rm_eval_report *r, const char *md_path, const char *command) {
    /* the charts' folder: DIR/eval next to the report */
    const char *slash = strrchr(md_path, '/');
    char *dir = slash ? rm_asprintf("%.*s/eval", (int)(slash - md_path), md_path) : rm_strdup("eval");
    char *svg1 = dir ? rm_asprintf("%s/clusters.svg", dir) : NULL, *svg2 = dir ? rm_asprintf("%s/id_vs_ood.svg", dir) : NULL;
    rm_status st = svg1 && svg2 ? RAMOLE_OK : rm_err(RAMOLE_ERR_NOMEM, "out of memory");
    if (st == RAMOLE_OK) st = make_dirs(dir);
    if (st == RAMOLE_OK) st = chart_clusters(r, svg1);
    if (st == RAMOLE_OK) st = chart_id_ood(r, svg2);
    if (st != RAMOLE_OK) goto out;

    const char **clusters = rm_malloc((size_t)r->n_tasks * sizeof *clusters);
    if (!clusters) {
        st = rm_err(RAMOLE_ERR_NOMEM, "out of memory");
        goto out;
    }
    int nc = clusters_of(r, clusters), n_eval = 0, n_ex = 0;
    for (int t = 0; t < r->n_tasks; t++)
        if (r->tasks[t].evaluated) n_eval++, n_ex += r->tasks[t].n_test;
    char cpu[256], date[64];
    cpu_name(cpu, sizeof cpu);
    time_t now = time(NULL);
    struct tm tmv;
    strftime(date, sizeof date, "%Y-%m-%d %H:%M UTC", gmtime_r(&now, &tmv));
    rm_text b = {0};
    rm_text_printf(&b, "# Evaluation\n\nThe paper's comparison (RAMoLE, arXiv 2406.16989) on the world `%s`: %d tasks in %d "
              "clusters, %d test examples, every score a mean over a task's examples (as a percentage) and the "
              "cluster and average rows means over tasks.\n\n", r->world, n_eval, nc, n_ex);
    char options[160] = "", prior[48] = ""; /* the router's options beyond the paper */
    if (r->router_prior != 0) snprintf(prior, sizeof prior, "retrieval prior %g", (double)r->router_prior);
    if (r->router_pooled || *prior)
        snprintf(options, sizeof options, "; ramole's options: %s%s%s",
                 r->router_pooled ? "gates pooled over the prompt" : "", r->router_pooled && *prior ? ", " : "", prior);
    rm_text_printf(&b, "Modes: **base** (no adapter), **perfect** (the task's own adapter), **selection** (the retrieved "
              "top-1), **mixture**, **fusion** and **router** (RouterLoRA, `%s`%s) over the retrieved top-%d. "
              "In distribution every adapter is in the pool; out of distribution the task's own adapter is removed "
              "(the top %d are retrieved and it is dropped). base and perfect do not use the pool: they ran once and "
              "stand in both tables.\n\n", r->router, options, RM_EVAL_TOP_K, RM_EVAL_TOP_K + 1);
    for (int s = 0; s < RM_EVAL_SETTING_COUNT; s++) {
        if (!(r->settings & (1u << s))) continue;
        rm_text_printf(&b, "## %s\n\n", s == RM_EVAL_ID ? "In distribution" : "Out of distribution");
        md_scores(&b, r, (rm_eval_setting)s, clusters, nc);
    }
    rm_text_printf(&b, "![score by cluster and mode](eval/clusters.svg)\n\n![in and out of distribution](eval/id_vs_ood.svg)\n\n");
    if (r->retrieval) {
        rm_text_printf(&b, "## Retrieval\n\nEmbedder: the base with `projection.safetensors`, layer %s, %s pooling; each "
                  "adapter is represented by the first %d inputs of its task's train.jsonl. Seen tasks are those the "
                  "retriever and router trained on.\n\n", r->layer, r->pooling, r->samples);
        md_retrieval(&b, r);
    }
    md_tasks(&b, r);
    rm_text_printf(&b, "## Throughput\n\n%d generations (an example under a mode and setting) ran through one engine in "
              "heterogeneous batches in %.1f s: %.1f examples/s, %.1f generated tokens/s (%lld generated, %lld through "
              "the forward with prompts).",
              r->n_gens, r->seconds, r->seconds > 0 ? r->n_gens / r->seconds : 0.0,
              r->seconds > 0 ? (double)r->tokens_generated / r->seconds : 0.0, (long long)r->tokens_generated,
              (long long)r->tokens_fed);
    if (r->retrieval) rm_text_printf(&b, " Retrieval for every example (index included): %.1f s.", r->retrieval_seconds);
    rm_text_printf(&b, "\n\n## Setup\n\n- world: `%s`, seed %llu\n- date: %s\n- CPU: %s, %d threads\n- examples per task: %s",
              r->world, (unsigned long long)r->seed, date, cpu, r->n_threads, r->limit ? "" : "all");
    if (r->limit) rm_text_printf(&b, "at most %d", r->limit);
    rm_text_printf(&b, "\n- command: `%s`\n\nPer-task scores: `ramole eval ... --json FILE`.\n", command ? command : "ramole eval");
    st = tb_write(&b, md_path);
    rm_free(clusters);
out:
    rm_free(dir), rm_free(svg1), rm_free(svg2);
    return st;
}

/* ---- JSON -------------------------------------------------------------------------------------- */

static json_t *num_or_null(double x) { return isnan(x) ? json_null() : json_real(x); }

rm_status rm_eval_write_json(const rm_eval_report *r, const char *path) {
    json_t *root = json_object(), *modes = json_array(), *settings = json_array(), *tasks = json_array(),
           *gens = json_array();
    for (int m = 0; m < RM_EVAL_MODE_COUNT; m++)
        if (r->modes & (1u << m)) json_array_append_new(modes, json_string(rm_eval_mode_name((rm_eval_mode)m)));
    for (int s = 0; s < RM_EVAL_SETTING_COUNT; s++)
        if (r->settings & (1u << s)) json_array_append_new(settings, json_string(rm_eval_setting_name((rm_eval_setting)s)));
    json_object_set_new(root, "world", json_string(r->world));
    json_object_set_new(root, "router", json_string(r->router));
    if (r->modes & (1u << RM_EVAL_ROUTER))
        json_object_set_new(root, "router_options",
                            json_pack("{s:s, s:f}", "gate_pool", r->router_pooled ? "prompt" : "token",
                                      "retrieval_prior", (double)r->router_prior));
    json_object_set_new(root, "seed", json_integer((json_int_t)r->seed));
    json_object_set_new(root, "modes", modes);
    json_object_set_new(root, "settings", settings);
    json_object_set_new(root, "retrieval", r->retrieval ? json_pack("{s:i, s:s, s:s}", "samples", r->samples, "layer",
                                                                    r->layer, "pooling", r->pooling)
                                                        : json_null());
    for (int t = 0; t < r->n_tasks; t++) {
        const rm_eval_task *k = &r->tasks[t];
        if (!k->evaluated) continue;
        json_t *o = json_pack("{s:s, s:s, s:s, s:b, s:i}", "name", k->name, "cluster", k->cluster, "metric",
                              rm_metric_name(k->metric), "seen", k->seen, "examples", k->n_test);
        json_object_set_new(o, "top1", r->retrieval ? json_integer(k->top1) : json_null());
        json_object_set_new(o, "top3", r->retrieval ? json_integer(k->top3) : json_null());
        json_t *sc = json_object();
        for (int s = 0; s < RM_EVAL_SETTING_COUNT; s++) {
            if (!(r->settings & (1u << s))) continue;
            json_t *ms = json_object();
            for (int m = 0; m < RM_EVAL_MODE_COUNT; m++)
                if (r->modes & (1u << m)) json_object_set_new(ms, rm_eval_mode_name((rm_eval_mode)m), num_or_null(k->score[s][m]));
            json_object_set_new(sc, rm_eval_setting_name((rm_eval_setting)s), ms);
        }
        json_object_set_new(o, "scores", sc);
        json_array_append_new(tasks, o);
    }
    json_object_set_new(root, "tasks", tasks);
    for (int g = 0; g < r->n_gens; g++) {
        const rm_eval_gen *x = &r->gens[g];
        json_t *ad = json_array();
        for (int j = 0; j < x->n_adapters; j++) json_array_append_new(ad, json_string(r->tasks[x->adapters[j]].name));
        json_t *o = json_pack("{s:s, s:i, s:s, s:s, s:o, s:s%, s:i, s:f}", "task", r->tasks[x->task].name, "example",
                              x->example, "mode", rm_eval_mode_name(x->mode), "setting",
                              rm_eval_mode_retrieves(x->mode) ? rm_eval_setting_name(x->setting) : "both", "adapters", ad,
                              "output", x->output ? x->output : "", x->output ? strlen(x->output) : (size_t)0, "tokens",
                              x->n_tokens, "score", x->score);
        if (rm_eval_mode_retrieves(x->mode)) {
            json_t *rs = json_array();
            for (int j = 0; j < x->n_adapters; j++) json_array_append_new(rs, json_real((double)x->retrieval[j]));
            json_object_set_new(o, "retrieval", rs);
        }
        json_array_append_new(gens, o);
    }
    json_object_set_new(root, "generations", gens);
    json_object_set_new(root, "throughput",
                        json_pack("{s:i, s:f, s:I, s:I, s:f}", "generations", r->n_gens, "seconds", r->seconds,
                                  "tokens_generated", (json_int_t)r->tokens_generated, "tokens_fed",
                                  (json_int_t)r->tokens_fed, "retrieval_seconds", r->retrieval_seconds));
    rm_status st = rm_json_write_atomic(path, root, JSON_INDENT(1));
    json_decref(root);
    return st;
}
