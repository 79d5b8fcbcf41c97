/* placeholder */
#include "bench.h"
int bench_vm_main(const bench_opts *o, int argc, char **argv) { return 0; }
