/*
 * wire.h - internal frame codec of lib/: the per-kind validation table, the
 * incremental fd-aware frame reader and the queued frame writer. Used by
 * sockctl.c (server side) and client.c. Not installed; the protocol itself is
 * include/vmsig/vmsig_wire.h and docs/protocol.rst.
 *
 * Errors (the same on both sides; docs/protocol.rst "Error replies"):
 *   -EMSGSIZE  declared len > VMSIG_WIRE_MAX_PAYLOAD (refused before reading it)
 *   -EPROTO    unknown kind (except, from a client, one in the command range
 *              0x1000..0x1fff: framed and passed on, the server answers it
 *              -EOPNOTSUPP), kind not allowed in this direction, nonzero
 *              header flags/ts_ns/status from a client, unknown header
 *              flags from a server, a kind other
 *              than the one the reader expects (vmsig__wire_reader_expect),
 *              descriptors where the frame declares none (or a count that
 *              differs from the declared one), any descriptors from a peer
 *              whose direction has no kind that carries them (closed as they
 *              arrive), more descriptors than fit (MSG_CTRUNC)
 *   -EBADMSG   payload size wrong for the kind, or inner lengths (INPUT len,
 *              MEMWRITE len, MEMCTX nseg, fd_index) inconsistent with it
 *   -EPIPE     the peer closed (also in the middle of a frame) or reset
 */
#ifndef VMSIG_LIB_WIRE_H
#define VMSIG_LIB_WIRE_H

#include <stddef.h>
#include <stdint.h>
#include "kinds.h"

/* A row of the one kind table (kinds.h). */
typedef vmsig_kind_row vmsig_wire_kind;

/* Fixed payload bytes of a known kind (vmsig_kind_payload_size). */
uint32_t vmsig__wire_fixed(const vmsig_wire_kind *k);

/* The row of a kind, or NULL if the kind is unknown. */
const vmsig_wire_kind *vmsig__wire_kind(uint32_t kind);
/* The whole table (for tests and docs). */
const vmsig_wire_kind *vmsig__wire_kinds(unsigned *n);

/*
 * Check a header received from a peer that sends in direction `dir`.
 * Returns 0, -EMSGSIZE, -EPROTO or -EBADMSG; why (if not NULL) names the
 * problem in words.
 */
int vmsig__wire_check_hdr(const vmsig_wire_hdr *h, unsigned dir, char *why, size_t whylen);
/* Check a complete payload against its header (inner lengths, MEMCTX
 * segments). nfds: descriptors that came with it. 0, -EBADMSG, -EPROTO. */
int vmsig__wire_check_payload(const vmsig_wire_hdr *h, const void *payload, unsigned nfds,
                              char *why, size_t whylen);

/* ---- codec between vmsig_event and frames ---- */

/* Header of an event/command frame: kind, flags, id = ev->seq, ts, endpoint,
 * len = fixed + ool_len. -EINVAL for a kind without a fixed event payload. */
int vmsig__wire_event_hdr(const vmsig_event *ev, unsigned nfds, vmsig_wire_hdr *h);
/* Event of a validated frame: u = the fixed payload, ool = the tail (points
 * into payload, borrowed). dir: VMSIG_DIR_UP for EV_*, DOWN for CMD_*. */
void vmsig__wire_frame_event(const vmsig_wire_hdr *h, const void *payload, vmsig_event *ev);

/* ---- reader ---- */

/* One received frame. payload is borrowed until the next reader call; fds
 * are transferred to the caller with the frame (it closes or keeps them). */
typedef struct vmsig_wire_frame {
    vmsig_wire_hdr hdr;
    const uint8_t *payload;
    int fds[VMSIG_WIRE_MAX_FDS];
    unsigned nfds;
} vmsig_wire_frame;

typedef struct vmsig_wire_reader vmsig_wire_reader;

/* dir: the direction the peer sends in. NULL on OOM. */
vmsig_wire_reader *vmsig__wire_reader_new(unsigned dir);

/*
 * Take only frames of `kind` from now on (0: any kind of the direction, the
 * default), e.g. HELLO before a handshake. Another kind is refused with
 * -EPROTO as soon as its header is in (after the checks of
 * vmsig__wire_check_hdr), before any of its payload is buffered.
 */
void vmsig__wire_reader_expect(vmsig_wire_reader *r, uint16_t kind);

/*
 * Take only payloads of at most max_len bytes from now on (0: up to
 * VMSIG_WIRE_MAX_PAYLOAD, the default); a larger one is refused with
 * -EMSGSIZE as soon as its header is in. The server lowers it for a control
 * whose grant cannot use a large frame (no MEMWRITE).
 */
void vmsig__wire_reader_max_len(vmsig_wire_reader *r, uint32_t max_len);
/* Closes every fd it still holds. NULL is a no-op. */
void vmsig__wire_reader_free(vmsig_wire_reader *r);

/*
 * One recvmsg (MSG_CMSG_CLOEXEC | MSG_DONTWAIT, EINTR retried) into the
 * buffer. Returns the bytes read (> 0), -EAGAIN (nothing now: go back to the
 * loop), -EPIPE (EOF or reset), -EPROTO (MSG_CTRUNC; the fds that did arrive
 * are closed) or another -errno.
 */
int vmsig__wire_reader_fill(vmsig_wire_reader *r, int fd);

/*
 * 1 if the last fill read less than the room it offered: the socket was
 * (very likely) empty, so a level-triggered loop may skip the read that
 * would only return EAGAIN; if more arrived, the fd is readable again.
 */
int vmsig__wire_reader_short(const vmsig_wire_reader *r);

/*
 * The next complete frame from the buffer: 1 and *f filled, 0 if more bytes
 * are needed, or a negative errno as listed at the top (the connection is
 * then unusable). Headers are checked as soon as they are in, so an oversized
 * length is refused before its payload is read.
 */
int vmsig__wire_reader_next(vmsig_wire_reader *r, vmsig_wire_frame *f);

/* Words for the last error of the reader ("" if none). */
const char *vmsig__wire_reader_error(const vmsig_wire_reader *r);

/* Bytes buffered but not yet returned as frames (a partial frame if > 0). */
size_t vmsig__wire_reader_pending(const vmsig_wire_reader *r);

/* ---- writer ---- */

typedef struct vmsig_wire_writer vmsig_wire_writer;

vmsig_wire_writer *vmsig__wire_writer_new(void);
/* Frees queued frames and closes their fds. NULL is a no-op. */
void vmsig__wire_writer_free(vmsig_wire_writer *w);

/*
 * Queue a frame: h (h->len must equal l1 + l2, h->nfds == nfds), payload in
 * two parts (either may be NULL/0), fds transferred to the writer on success
 * (closed when sent or dropped). at_head puts it before every frame not yet
 * started. Returns 0 or -ENOMEM (fds stay the caller's).
 */
int vmsig__wire_writer_push(vmsig_wire_writer *w, const vmsig_wire_hdr *h,
                            const void *p1, size_t l1, const void *p2, size_t l2,
                            const int *fds, unsigned nfds, int at_head);

/*
 * Write what the socket takes (sendmsg, MSG_NOSIGNAL | MSG_DONTWAIT, fds on
 * the first byte of their frame, EINTR retried). Returns 0 (queue empty),
 * -EAGAIN (frames left: wait for EPOLLOUT), -EPIPE (peer gone),
 * -ETOOMANYREFS (the kernel's limit on descriptors in flight: the peer is
 * there but holds too many unread) or -errno.
 */
int vmsig__wire_writer_flush(vmsig_wire_writer *w, int fd);

/* Descriptors sent on frames the peer has not read yet (SIOCOUTQ on fd;
 * conservative: may count a frame read a moment ago). */
unsigned vmsig__wire_writer_fds_in_flight(vmsig_wire_writer *w, int fd);

/* hold: flush does not start a frame with fds (it returns -EAGAIN there),
 * so a peer gets no new descriptors before it has read its last ones. */
void vmsig__wire_writer_hold_fds(vmsig_wire_writer *w, int hold);
/* 1 if the next frame to go is one with fds, not yet started. */
int vmsig__wire_writer_fds_next(const vmsig_wire_writer *w);

/* Frames queued (including one partly written). */
unsigned vmsig__wire_writer_count(const vmsig_wire_writer *w);
/* 1 if a frame is partly written (the stream is mid-frame). */
int vmsig__wire_writer_midframe(const vmsig_wire_writer *w);

/* Drop the queued, not yet started frame of `kind` for `endpoint` (the
 * oldest one). Returns 1 if one was dropped, else 0. */
int vmsig__wire_writer_drop(vmsig_wire_writer *w, uint16_t kind, uint32_t endpoint);
/* Drop every frame not yet started. */
void vmsig__wire_writer_drop_unstarted(vmsig_wire_writer *w);

/* ---- blocking helpers for the client side (poll on a non-blocking fd) ---- */

/* Flush everything, waiting at most until deadline_ns (CLOCK_MONOTONIC;
 * 0 = forever). 0, -ETIMEDOUT, -EPIPE, -errno. */
int vmsig__wire_writer_flush_wait(vmsig_wire_writer *w, int fd, uint64_t deadline_ns);

uint64_t vmsig__now_ns(void);

#endif /* VMSIG_LIB_WIRE_H */
