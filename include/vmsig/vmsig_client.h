/*
 * vmsig_client.h - client library: attach to a vmsig server (the QEMU object,
 * or any vmsig core listening on a UNIX socket), receive events and their
 * fds, send commands and wait for replies, map guest RAM read-only.
 *
 * ABI (docs/library.md): libvmsig.so.1 exports only the vmsig_[a-z]* names
 * declared in these headers. Within soname 1 functions and constants are
 * only added, never removed, renumbered or changed in meaning; structs with
 * a `version` field (vmsig_core_config, vmsig_client_config) grow only at
 * the end, and the library takes every version from 1 to the current one,
 * reading a field only if the caller's version has it. Other structs and
 * the callback tables are frozen. The wire protocol evolves separately, by
 * negotiated features (docs/protocol.rst).
 *
 * A vmsig_client is used by one thread at a time. Calls that wait take a
 * timeout in milliseconds (-1 = forever). Errors are negative errno:
 *   -ENOENT / -ECONNREFUSED  no server at path
 *   -EPERM       refused by grant (handshake or command)
 *   -EBUSY       the command's class is owned by another control
 *   -ETIMEDOUT   nothing arrived in time (also while the server keeps sending
 *                other frames: every wait ends at its deadline)
 *   -EPIPE       the server is gone (BYE or closed); vmsig_client_bye() says why
 *   -EPROTO      the server sent something malformed
 *   -ENOBUFS     too many events arrived while waiting for a reply (see
 *                VMSIG_CLIENT_QUEUE_MAX); the client dropped the connection
 */
#ifndef VMSIG_CLIENT_H
#define VMSIG_CLIENT_H

#include <stddef.h>
#include <stdint.h>
#include "vmsig_event.h"

typedef struct vmsig_client vmsig_client;
typedef struct vmsig_memmap vmsig_memmap;

/* Versions of vmsig_client_config: 1 (up to auto_map), 2 (features_off).
 * vmsig_client_connect takes every version from 1 to the current one and
 * reads a field only if the version has it. */
#define VMSIG_CLIENT_CONFIG_VERSION 2u

/*
 * Events that arrive while vmsig_client_call (or a shorthand, or
 * vmsig_client_subscribe) waits for its reply are queued for
 * vmsig_client_next. The queue is bounded: at most VMSIG_CLIENT_QUEUE_MAX
 * events holding at most VMSIG_CLIENT_QUEUE_FDS descriptors; a MEMCTX
 * replaces a queued older MEMCTX of the same endpoint (closing its fds; the
 * seq gap shows it). Past the bound the call returns -ENOBUFS and the client
 * drops the connection: the events queued so far can still be read with
 * vmsig_client_next, then -EPIPE, and vmsig_client_bye() returns -ENOBUFS.
 */
#define VMSIG_CLIENT_QUEUE_MAX 1024u
#define VMSIG_CLIENT_QUEUE_FDS 256u

typedef struct vmsig_client_config {
    uint32_t version;     /* VMSIG_CLIENT_CONFIG_VERSION */
    const char *path;     /* server socket */
    const char *token;    /* optional; NULL = identify by uid */
    vmsig_sub sub;        /* requested subscription; all zero = everything granted */
    /* connect() + handshake together, and the shorthands' calls;
     * 0 = 5000, < 0 = no limit */
    int timeout_ms;
    /* Map every MEMCTX as it arrives and keep the newest as the current map
     * (vmsig_client_memmap). Its fds are then consumed by the client. */
    int auto_map;
    /* version 2 */
    uint64_t features_off; /* VMSIG_FEAT_* not to offer in HELLO; 0 = offer all we know */
    /* When connect fails: the server's words (its BYE text) or what went
     * wrong, NUL-terminated, into why[0..whylen). Optional (NULL). */
    char *why;
    size_t whylen;
} vmsig_client_config;

/* Connect and handshake (blocking, bounded by timeout_ms, also while the
 * server's listen backlog is full). cfg is copied.
 * HELLO offers VMSIG_FEATURES_KNOWN minus cfg->features_off; the negotiated
 * set is vmsig_client_welcome()->features.
 * NULL with *err = -ENOENT, -ECONNREFUSED, -EPERM (no grant; token wrong),
 * -EINVAL (bad config, or the server refused a HELLO field), -EPROTONOSUPPORT
 * (major version), -EMFILE (the server is full: max-controls), -ECONNRESET
 * (the server closed the connection before WELCOME without saying why),
 * -ETIMEDOUT, -EPROTO (malformed answer; also a WELCOME with features not
 * offered, a nonzero reserved field or a minor above ours), -ENOMEM, or the
 * status of the server's BYE; cfg->why gets its text. */
vmsig_client *vmsig_client_connect(const vmsig_client_config *cfg, int *err);

/* The server's WELCOME: our principal, grant and effective subscription.
 * Borrowed, lives as long as the client. */
const vmsig_wire_welcome *vmsig_client_welcome(const vmsig_client *c);

/* The socket, for poll(); readable means vmsig_client_next may not block. */
int vmsig_client_fd(const vmsig_client *c);

/* One received UP event. ev.ool points into the client's buffer; fds are the
 * frame's descriptors (none for a MEMCTX with auto_map: the client consumed
 * them). Everything is valid until the next call on c. The fds are the
 * client's: it keeps its own record of them and closes them at the next call
 * on c (or vmsig_client_close), except those taken with
 * vmsig_client_take_fd. fds[] is a copy for the caller to use (fstat, mmap,
 * vmsig_memmap_new) until then; writing to it changes nothing, and the
 * struct need not outlive the call that filled it. */
typedef struct vmsig_msg {
    vmsig_event ev;
    int fds[VMSIG_WIRE_MAX_FDS];
    unsigned nfds;
    /* Events lost right before this one: ev.seq minus the previous event's
     * seq minus 1 (the server coalesced or dropped them for a slow reader,
     * or our own queue replaced a MEMCTX). Filtering never counts. */
    uint64_t lost;
} vmsig_msg;

/* Next UP event (events that arrived while waiting for a reply come first).
 * Returns 0, -ETIMEDOUT, -EPIPE, -EPROTO. */
int vmsig_client_next(vmsig_client *c, vmsig_msg *out, int timeout_ms);

/* Take fd i (0..nfds-1) of the event the last vmsig_client_next returned:
 * from now on the caller owns it (and closes it); the client forgets it.
 * Returns the fd, or -EBADF if there is no such fd, it was taken already, or
 * another call on c came in between (the fds are closed then). */
int vmsig_client_take_fd(vmsig_client *c, unsigned i);

/* Send a DOWN command and wait for its reply. cmd->seq is set to a fresh
 * request id. Returns the reply's status (0 or negative errno: -EPERM,
 * -EBUSY, -EINVAL, ... from the server), or -ETIMEDOUT, -EPIPE, -EPROTO,
 * -ENOBUFS (event queue bound, see VMSIG_CLIENT_QUEUE_MAX). The reply (status
 * and body) is copied to *reply if not NULL. The wait never passes
 * timeout_ms, however many frames keep arriving. */
int vmsig_client_call(vmsig_client *c, vmsig_event *cmd, vmsig_reply *reply, int timeout_ms);

/* Shorthands over vmsig_client_call, with the config's timeout_ms (so is
 * vmsig_client_subscribe). */
int vmsig_client_vm(vmsig_client *c, uint32_t endpoint, uint32_t op, vmsig_wire_vminfo *info);
int vmsig_client_lifecycle(vmsig_client *c, uint32_t endpoint, uint32_t op);
int vmsig_client_power(vmsig_client *c, uint32_t endpoint, uint32_t op);
int vmsig_client_acquire(vmsig_client *c, uint32_t endpoint, uint32_t cls);
int vmsig_client_release(vmsig_client *c, uint32_t endpoint, uint32_t cls);
int vmsig_client_memwrite(vmsig_client *c, uint32_t endpoint, uint64_t gpa,
                          const void *data, uint32_t len);
/* INPUT_TEXT: text is sent as in->len bytes when in->len is set (a piece of
 * a longer string; -EINVAL if the string is shorter), else the whole
 * NUL-terminated string. Other ops: text NULL. */
int vmsig_client_input(vmsig_client *c, uint32_t endpoint, const vmsig_wire_input *in,
                       const char *text);
int vmsig_client_subscribe(vmsig_client *c, const vmsig_sub *sub);

/* After -EPIPE: the BYE status and text if the server sent one ("" if not);
 * -ENOBUFS and a text if the client itself dropped the connection. */
int vmsig_client_bye(const vmsig_client *c, const char **text);

/* Current map (auto_map), with a reference the caller must drop with
 * vmsig_memmap_unref; NULL if none yet. */
vmsig_memmap *vmsig_client_memmap(vmsig_client *c);

void vmsig_client_close(vmsig_client *c);

/* ---- read-only guest RAM ---- */

/* Map a MEMCTX event read-only (PROT_READ, MAP_SHARED). fds borrowed (the map
 * keeps its own mappings and its own duplicate of each fd it uses, for
 * vmsig_memmap_data; never the caller's fds). One reference. NULL with
 * *err = -ENODEV (the MEMCTX says unavailable), -EINVAL (segment outside its
 * fd, fd_index out of range), -errno of mmap.
 *
 * Each fd's size is checked once, here. If a file shrinks later, reading
 * mapped pages past its new end raises SIGBUS (vmsig_memmap_ptr,
 * vmsig_memmap_read, any direct access). A memfd sealed with F_SEAL_SHRINK
 * cannot shrink: QEMU's memory-backend-memfd seals by default, but not with
 * seal=off, and a memory-backend-file is never sealed. Unsealed files are
 * mapped all the same; vmsig_memmap_sealed tells them apart. */
vmsig_memmap *vmsig_memmap_new(const vmsig_event *memctx, const int *fds, unsigned nfds, int *err);
vmsig_memmap *vmsig_memmap_ref(vmsig_memmap *m);
/* Drop a reference; the mappings go when the last one does. */
void vmsig_memmap_unref(vmsig_memmap *m);

uint64_t vmsig_memmap_generation(const vmsig_memmap *m);
/* 1 if every fd the map uses is a memfd sealed against shrinking
 * (F_SEAL_SHRINK), so reads cannot fault (1 also for a map with no
 * segments); 0 if one is not: whoever can write that file (QEMU, its uid,
 * root) can truncate it, and reads of the lost range then raise SIGBUS. */
int vmsig_memmap_sealed(const vmsig_memmap *m);
uint64_t vmsig_memmap_ram_size(const vmsig_memmap *m);
unsigned vmsig_memmap_nseg(const vmsig_memmap *m);
/* Segment i of nseg, in ascending GPA order, never overlapping (checked when
 * the map is made). Borrowed from the map. */
const vmsig_wire_memseg *vmsig_memmap_seg(const vmsig_memmap *m, unsigned i);

/* Pointer to [gpa, gpa+len) if it lies in one segment, else NULL. Valid while
 * the caller holds a reference (reads fault if an unsealed file shrank, see
 * vmsig_memmap_sealed). */
const void *vmsig_memmap_ptr(const vmsig_memmap *m, uint64_t gpa, uint64_t len);

/* Copy [gpa, gpa+len) into buf, across segment boundaries. Returns 0 or
 * -EFAULT if any byte is not guest RAM in this map. SIGBUS, not -EFAULT, if
 * an unsealed file shrank under the map (vmsig_memmap_sealed). */
int vmsig_memmap_read(const vmsig_memmap *m, uint64_t gpa, void *buf, size_t len);

/*
 * Holes. Guest RAM the guest never wrote is a hole of its memfd; reading a
 * hole through a shared mapping makes the host allocate it (a page of zeros
 * per page touched: one full read of a 256 MiB guest grew its memfd from
 * 113 to 256 MiB). Scans and dumps should read only the data:
 *
 * vmsig_memmap_data: the first data (not hole) byte of guest RAM in
 * [gpa, end), found with SEEK_DATA/SEEK_HOLE on the map's own descriptors
 * without touching a page: 1 with [*data_gpa, *data_end) = that run of data
 * (within one segment, at most end), 0 if [gpa, end) holds no data,
 * -EINVAL. Where the file cannot tell (no SEEK_DATA, or the map could not
 * keep a descriptor) everything counts as data. Data found may become holes
 * and holes data while the guest runs; a hole reads as zeros.
 *
 * vmsig_memmap_read_sparse: vmsig_memmap_read, but holes are copied as zeros
 * without being read (no host allocation). 0 or -EFAULT.
 */
int vmsig_memmap_data(const vmsig_memmap *m, uint64_t gpa, uint64_t end, uint64_t *data_gpa,
                      uint64_t *data_end);
int vmsig_memmap_read_sparse(const vmsig_memmap *m, uint64_t gpa, void *buf, size_t len);

#endif /* VMSIG_CLIENT_H */
