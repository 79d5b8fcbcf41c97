/*
 * cmd-grants.c - `vmsig-helper grants FILE`: check a grants file the way the
 * server will read it and print the principal of every entry, so the ids
 * that WELCOME, ARB (owner/by) and MEMWRITE_DONE (writer) carry map back to
 * a line. Needs no socket. Tokens are never printed.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "helper.h"
#include <vmsig/vmsig_core.h>

int cmd_grants(int argc, char **argv)
{
    char err[256] = "";
    int rc = 0;

    if (argc != 2) {
        return usage_error("grants", "expected FILE");
    }
    vmsig_grants *t = vmsig_grants_load(argv[1], &rc, err, sizeof(err));
    if (!t) {
        fprintf(stderr, "vmsig-helper: %s: %s\n", argv[1], err[0] ? err : strerror(-rc));
        return EX_USAGE;
    }
    vmsig_grants_free(t);

    FILE *f = fopen(argv[1], "r");
    if (!f) {
        fprintf(stderr, "vmsig-helper: %s: %s\n", argv[1], strerror(errno));
        return EX_OTHER;
    }
    char line[4096];
    unsigned lineno = 0;
    while (fgets(line, sizeof(line), f)) {
        char word[256];
        lineno++;
        if (sscanf(line, " %255s", word) != 1 || word[0] == '#') {
            continue;
        }
        if (!strncmp(word, "token:", 6)) {
            uint32_t id = vmsig_token_principal(word + 6);
            if (G.json) {
                printf("{\"line\":%u,\"entry\":\"token\",\"principal\":%u}\n", lineno, id);
            } else {
                printf("line %u: token (not shown)  principal %u (0x%08x)\n", lineno, id, id);
            }
        } else if (!strncmp(word, "uid:", 4)) {
            unsigned long uid = strtoul(word + 4, NULL, 10);
            if (G.json) {
                printf("{\"line\":%u,\"entry\":\"uid\",\"principal\":%lu}\n", lineno, uid);
            } else {
                printf("line %u: uid %lu  principal %lu\n", lineno, uid, uid);
            }
        } else if (G.json) {
            printf("{\"line\":%u,\"entry\":\"default\",\"principal\":null}\n", lineno);
        } else {
            printf("line %u: default  principal = the peer's own uid\n", lineno);
        }
    }
    fclose(f);
    return EX_OK;
}
