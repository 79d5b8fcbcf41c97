/*
 * bench.h - shared helpers of vmsig-bench: clocks, statistics, JSON rows.
 */
#ifndef VMSIG_BENCH_H
#define VMSIG_BENCH_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>

/* Repetition counts, set from --quick / --full. */
typedef struct bench_opts {
    int quick;
} bench_opts;

uint64_t now_ns(void);

/* Sorts v in place. Median / p99 of n samples (n > 0). */
double stat_median(double *v, size_t n);
double stat_p99(double *v, size_t n);

/*
 * A result row. vmsig / peer_value are NAN for "null". lower_better says how
 * ratio is formed: peer_value/vmsig (latencies) or vmsig/peer_value
 * (throughputs), so that ratio > 1 always means vmsig is better.
 * vmsig_p99 / peer_p99 are NAN when not measured. note may be NULL.
 */
typedef struct bench_row {
    const char *name;
    const char *unit;
    double vmsig, vmsig_p99;
    const char *peer;
    double peer_value, peer_p99;
    int lower_better;
    const char *target; /* human text of the target, or NULL */
    double target_ratio; /* ratio the target asks for (NAN: none / absolute) */
    double target_abs;   /* absolute bound on vmsig (NAN: none) */
    const char *note;
    int samples_vmsig, samples_peer;
    const char *extra_name; /* an extra numeric field (diagnostics), or NULL */
    double extra_value;
} bench_row;

/* Print one row as a JSON object on a line of its own on stdout. */
void bench_emit(const bench_row *r);

/* Log to stderr with a prefix. */
void blog(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

int bench_core_main(const bench_opts *o, int argc, char **argv);
int bench_socket_main(const bench_opts *o, int argc, char **argv);
int bench_vm_main(const bench_opts *o, int argc, char **argv);
/* Introspection rows against a booted Linux guest (bench-intro.c). */
int bench_intro_main(const bench_opts *o, int argc, char **argv);
/* In-memory snapshots vs QMP internal snapshots and memcpy (bench-snap.c). */
int bench_snap_main(const bench_opts *o, int argc, char **argv);
/* Self-test only: a stand-in vmsig server outside QEMU (bench-proxy.c). */
int bench_proxy_main(const bench_opts *o, int argc, char **argv);

#endif
