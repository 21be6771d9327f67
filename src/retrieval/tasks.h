/*
 * tasks.h — retrieval data: sample inputs grouped by task, the held-out
 * task split, task representations and top-1 retrieval accuracy.
 *
 * File: JSONL, one object per line {"task": NAME, "input": TEXT}; other
 * keys (such as "output") are ignored, blank lines skipped. Tasks are
 * numbered in order of first appearance. Errors name the file and the
 * 1-based line: malformed JSON, a line that is not an object, a missing,
 * non-string or empty "task" or "input"; and a task with fewer than
 * min_per_task examples (named), or a file without examples.
 *
 * A task's representation (as an adapter's in the pool) is the
 * renormalised mean of the embeddings of up to m of its inputs: the first
 * m in file order.
 *
 * Accuracy: each query input is embedded alone and compared
 * with every task's representation; the candidates of its own task are
 * built from up to m of its OTHER inputs (the query is never its own
 * evidence). Top-1 is right when the best cosine is its own task (ties go
 * to the lower task number, as in rm_index).
 */
#ifndef RM_RETRIEVAL_TASKS_H
#define RM_RETRIEVAL_TASKS_H

#include "core/core.h"

typedef struct {
    int n;                 /* examples */
    char **inputs;         /* [n] */
    int32_t *task;         /* [n] */
    int *line;             /* [n] 1-based */
    int n_tasks;
    char **names;          /* [n_tasks] */
    int *count;            /* [n_tasks] examples per task */
} rm_task_data;

rm_status rm_task_data_load(const char *path, int min_per_task, rm_task_data **out);
/* The same from memory; name is used in messages. */
rm_status rm_task_data_parse(const char *text, size_t len, const char *name, int min_per_task, rm_task_data **out);
void      rm_task_data_free(rm_task_data *d);
/* Task number of a name, -1 if absent. */
int       rm_task_data_find(const rm_task_data *d, const char *name);

/* held[n_tasks]: round(frac * n_tasks) tasks chosen by a seeded shuffle
 * (frac in [0, 1); at least one when frac > 0, at most n_tasks - 2 so
 * that training keeps two tasks). */
rm_status rm_task_split_fraction(const rm_task_data *d, double frac, uint64_t seed, bool *held);
/* held[n_tasks] from a file of task names, one per line (blank lines
 * skipped); an unknown name is an error naming the file and line. */
rm_status rm_task_split_file(const rm_task_data *d, const char *path, bool *held);

/* held[n] (per example): in every task with train_task[t] (NULL: all),
 * round(frac * count) inputs chosen by a seeded shuffle, leaving at least
 * two to train on (none held from a task of fewer than three). */
rm_status rm_task_split_inputs(const rm_task_data *d, double frac, uint64_t seed, const bool *train_task, bool *held);

/* The first (at most) m inputs of every task in file order, grouped by
 * task: task t's are rows[off[t] .. off[t + 1]) (off: [n_tasks + 1],
 * rows: [n]). These are the inputs a task's representation is made of. */
rm_status rm_task_samples(const rm_task_data *d, int m, int *off, int *rows);

/* out[n_tasks][dim]: every task's representation from E[n][dim] (unit
 * embeddings of the examples), at most m inputs each. */
rm_status rm_task_vectors(const rm_task_data *d, const float *E, int dim, int m, float *out);

typedef struct {
    int queries, correct;
} rm_retrieval_score;

/* Top-1 accuracy over the inputs i with query[i] (per example; NULL: all);
 * candidates are all tasks (see above). */
rm_status rm_task_top1(const rm_task_data *d, const float *E, int dim, int m, const bool *query,
                       rm_retrieval_score *out);

#endif /* RM_RETRIEVAL_TASKS_H */
