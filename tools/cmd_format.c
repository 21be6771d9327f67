/*
 * cmd_format.c — `ramole check-format`: whether texts satisfy a response
 * format (a JSON Schema or a GBNF grammar), as llama.cpp's gbnf-validator
 * tells for its grammars. One line per file on standard output:
 * "FILE: valid", "FILE: incomplete" (every byte taken, the answer not
 * finished) or "FILE: invalid at byte N". Exit 0 when all are valid.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static int usage(const char *cmd) {
    fprintf(stderr, "usage: ramole %s (--json-schema TEXT | --json-schema-file F | --grammar GBNF | --grammar-file F) "
            "FILE...\n", cmd);
    return 2;
}

int cmd_check_format(int argc, char **argv) {
    const char *cmd = "check-format";
    char *schema = NULL, *gbnf = NULL;
    int first = 0, rc = 0;
    for (int i = 1; i < argc && !first; i++) {
        const char *a = argv[i], *v;
        char **slot = !strncmp(a, "--json-schema", 13) ? &schema : !strncmp(a, "--grammar", 9) ? &gbnf : NULL;
        bool file = cli_ends_with(a, "-file");
        if (!slot || (strcmp(a, "--json-schema") && strcmp(a, "--json-schema-file") && strcmp(a, "--grammar") &&
                      strcmp(a, "--grammar-file"))) {
            if (a[0] == '-' && a[1]) {
                fprintf(stderr, "ramole %s: unknown option '%s'\n", cmd, a);
                rc = 2;
                goto out;
            }
            first = i;
            break;
        }
        if (schema || gbnf) {
            fprintf(stderr, "ramole %s: give one format\n", cmd);
            rc = 2;
            goto out;
        }
        if (!(v = cli_value(cmd, argc, argv, &i)) || !(*slot = file ? cli_read_text(cmd, v) : strdup(v))) {
            rc = 2;
            goto out;
        }
    }
    if ((!schema && !gbnf) || !first) {
        rc = usage(cmd);
        goto out;
    }
    for (int i = first; i < argc; i++) {
        char *text = cli_read_text(cmd, argv[i]);
        if (!text) {
            rc = 2;
            goto out;
        }
        size_t prefix;
        int complete;
        ramole_status st = ramole_format_check(schema, gbnf, text, strlen(text), &prefix, &complete);
        size_t len = strlen(text);
        free(text);
        if (st != RAMOLE_OK) {
            rc = cli_fail(cmd, st) + 1;
            goto out;
        }
        if (complete) printf("%s: valid\n", argv[i]);
        else if (prefix == len) printf("%s: incomplete\n", argv[i]), rc = rc ? rc : 1;
        else printf("%s: invalid at byte %zu\n", argv[i], prefix), rc = rc ? rc : 1;
    }
out:
    free(schema);
    free(gbnf);
    return rc;
}
