/* ramole.c — the command line: dispatches to one tools/cmd_*.c per verb. */
#include <stdio.h>
#include <string.h>

#include "ramole.h"

int main(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        fprintf(stderr, "usage: ramole COMMAND [ARGS]\n");
        return argc < 2 ? 2 : 0;
    }
    if (!strcmp(argv[1], "--version")) {
        printf("ramole %s\n", RAMOLE_VERSION);
        return 0;
    }
    fprintf(stderr, "ramole: unknown command '%s' (see ramole --help)\n", argv[1]);
    return 2;
}
