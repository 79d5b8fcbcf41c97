/* generated from trace-events by qemu-module/meson.build */
#include "trace-vmsig.h"
