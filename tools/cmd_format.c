/*
 * cmd_format.c — `ramole check-format`: whether texts satisfy a response
 * format (a JSON Schema or a GBNF grammar), as llama.cpp's gbnf-validator
 * tells for its grammars. One line per file on standard output:
 * "FILE: valid", "FILE: incomplete" (every byte taken, the answer not
 * finished) or "FILE: invalid at byte N". Exit 0 when all are valid, 1
 * when one is not, 2 on a bad format or file.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

int cmd_check_format(int argc, char **argv) {
    const char *cmd = "check-format";
    static const struct {
        const char *opt;
        bool schema, file;
    } opts[] = {{"--json-schema", true, false}, {"--json-schema-file", true, true},
                {"--grammar", false, false}, {"--grammar-file", false, true}};
    char *format = NULL;
    bool schema = false;
    int i = 1, rc = 0;
    for (; i < argc && argv[i][0] == '-' && argv[i][1]; i++) {
        size_t k = 0;
        while (k < sizeof opts / sizeof *opts && strcmp(argv[i], opts[k].opt)) k++;
        const char *v;
        if (k == sizeof opts / sizeof *opts || format) {
            if (format) fprintf(stderr, "ramole %s: give one format\n", cmd);
            else fprintf(stderr, "ramole %s: unknown option '%s'\n", cmd, argv[i]);
            rc = 2;
            goto out;
        }
        schema = opts[k].schema;
        if (!(v = cli_value(cmd, argc, argv, &i)) ||
            !(format = opts[k].file ? cli_read_text(cmd, v, NULL) : strdup(v))) {
            rc = 2;
            goto out;
        }
    }
    if (!format || i == argc) {
        fprintf(stderr, "usage: ramole %s (--json-schema TEXT | --json-schema-file F | --grammar GBNF | "
                "--grammar-file F) FILE...\n", cmd);
        rc = 2;
        goto out;
    }
    for (; i < argc; i++) {
        size_t len, prefix;
        int complete;
        char *text = cli_read_text(cmd, argv[i], &len);
        if (!text) {
            rc = 2;
            goto out;
        }
        ramole_status st = ramole_format_check(schema ? format : NULL, schema ? NULL : format, text, len, &prefix,
                                               &complete);
        free(text);
        if (st != RAMOLE_OK) {
            cli_fail(cmd, st);
            rc = 2;
            goto out;
        }
        if (complete) printf("%s: valid\n", argv[i]);
        else if (prefix == len) printf("%s: incomplete\n", argv[i]);
        else printf("%s: invalid at byte %zu\n", argv[i], prefix);
        if (!complete) rc = 1;
    }
out:
    free(format);
    return rc;
}
