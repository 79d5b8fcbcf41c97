/*
 * bench.c - vmsig-bench entry point and shared helpers.
 *
 *   vmsig-bench [--quick] core               in-process dispatch rows
 *   vmsig-bench [--quick] socket             client <-> core RTT vs UNIX ping-pong
 *   vmsig-bench [--quick] vm OPTIONS         QEMU rows (see bench-vm.c)
 *   vmsig-bench [--quick] introspect OPTIONS registers and virtual reads of a booted guest (bench-intro.c)
 *   vmsig-bench [--quick] snap OPTIONS       in-memory snapshots vs QMP snapshot-save/load (bench-snap.c)
 *   vmsig-bench proxy OPTIONS                self-test stand-in server (bench-proxy.c)
 *
 * Every row goes to stdout as one JSON object per line; bench/run collects
 * them into bench/out/results.json. Progress goes to stderr.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "bench.h"

uint64_t now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return x < y ? -1 : x > y;
}

double stat_median(double *v, size_t n)
{
    qsort(v, n, sizeof(*v), cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

double stat_p99(double *v, size_t n)
{
    size_t i;

    qsort(v, n, sizeof(*v), cmp_double);
    i = (size_t)ceil(0.99 * (double)n);
    return v[i ? i - 1 : 0];
}

void blog(const char *fmt, ...)
{
    va_list ap;

    fprintf(stderr, "vmsig-bench: ");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n");
}

static void json_num(const char *key, double v)
{
    if (isnan(v) || isinf(v)) {
        printf(", \"%s\": null", key);
    } else {
        printf(", \"%s\": %.6g", key, v);
    }
}

static void json_str(const char *key, const char *s)
{
    printf(", \"%s\": ", key);
    if (!s) {
        printf("null");
        return;
    }
    putchar('"');
    for (; *s; s++) {
        if (*s == '"' || *s == '\\') {
            printf("\\%c", *s);
        } else if ((unsigned char)*s < 0x20) {
            printf("\\u%04x", *s);
        } else {
            putchar(*s);
        }
    }
    putchar('"');
}

void bench_emit(const bench_row *r)
{
    double ratio = NAN;

    if (!isnan(r->vmsig) && !isnan(r->peer_value) && r->vmsig > 0 && r->peer_value > 0) {
        ratio = r->lower_better ? r->peer_value / r->vmsig : r->vmsig / r->peer_value;
    }
    printf("{\"name\": \"%s\"", r->name);
    json_str("unit", r->unit);
    json_num("vmsig", r->vmsig);
    json_str("peer", r->peer);
    json_num("peer_value", r->peer_value);
    json_num("ratio", ratio);
    if (!isnan(r->vmsig_p99) || !isnan(r->peer_p99)) {
        json_num("vmsig_p99", r->vmsig_p99);
        json_num("peer_p99", r->peer_p99);
    }
    printf(", \"better\": \"%s\"", r->lower_better ? "lower" : "higher");
    if (r->target) {
        int met = -1;
        json_str("target", r->target);
        if (!isnan(r->target_abs)) {
            json_num(r->lower_better ? "target_max" : "target_min", r->target_abs);
        }
        if (!isnan(r->target_ratio)) {
            json_num("target_ratio", r->target_ratio);
        }
        if (!isnan(r->target_abs) && !isnan(r->vmsig)) {
            met = r->lower_better ? r->vmsig < r->target_abs : r->vmsig > r->target_abs;
        } else if (!isnan(r->target_ratio) && !isnan(ratio)) {
            met = ratio >= r->target_ratio;
        }
        printf(", \"target_met\": %s", met < 0 ? "null" : met ? "true" : "false");
    }
    if (r->extra_name) {
        json_num(r->extra_name, r->extra_value);
    }
    if (r->samples_vmsig || r->samples_peer) {
        printf(", \"samples\": [%d, %d]", r->samples_vmsig, r->samples_peer);
    }
    if (r->note) {
        json_str("note", r->note);
    }
    printf("}\n");
    fflush(stdout);
}

static int usage(void)
{
    fprintf(stderr, "usage: vmsig-bench [--quick] core|socket|vm|introspect|snap [OPTIONS]\n");
    return 2;
}

int main(int argc, char **argv)
{
    bench_opts o = { 0 };
    int i = 1;

    for (; i < argc && argv[i][0] == '-'; i++) {
        if (!strcmp(argv[i], "--quick")) {
            o.quick = 1;
        } else {
            return usage();
        }
    }
    if (i >= argc) {
        return usage();
    }
    if (!strcmp(argv[i], "core")) {
        return bench_core_main(&o, argc - i, argv + i);
    }
    if (!strcmp(argv[i], "socket")) {
        return bench_socket_main(&o, argc - i, argv + i);
    }
    if (!strcmp(argv[i], "vm")) {
        return bench_vm_main(&o, argc - i, argv + i);
    }
    if (!strcmp(argv[i], "proxy")) {
        return bench_proxy_main(&o, argc - i, argv + i);
    }
    if (!strcmp(argv[i], "introspect")) {
        return bench_intro_main(&o, argc - i, argv + i);
    }
    if (!strcmp(argv[i], "snap")) {
        return bench_snap_main(&o, argc - i, argv + i);
    }
    return usage();
}
