/*
 * fuzz_client.h - the input format of fuzz-client (fuzz_client.c), shared
 * with the seed generator (corpus-client/gen-seeds.c).
 *
 * An input is a server-to-client session:
 *   byte 0       mode, FZC_* below
 *   byte 1       n, the number of control bytes that follow
 *   n bytes      control bytes, one per sendmsg() chunk, used cyclically
 *                (none: the stream goes out in chunks of 4096 bytes)
 *   the rest     the byte stream the "server" writes to the client
 * A control byte: bits 0..5 the chunk's length (fzc_chunk_len), bits 6..7
 * how many descriptors ride on the chunk (fzc_chunk_fds; ignored with
 * FZC_ALIGNED).
 */
#ifndef VMSIG_FUZZ_CLIENT_H
#define VMSIG_FUZZ_CLIENT_H

#include <stdint.h>

/* Descriptors go where a conforming server puts them: the header of every
 * frame that declares fds starts a new sendmsg(), which carries hdr.nfds
 * descriptors (at most 17), unless FZC_SKEW moves them. */
#define FZC_ALIGNED 0x01u
/* A control byte's descriptor count 3 means 17: one more than fits. */
#define FZC_FD17    0x02u
/* With FZC_ALIGNED: the control bytes' descriptors come on top. */
#define FZC_EXTRA   0x04u
/* Also run the session through the client library (vmsig_client_connect,
 * vmsig_client_next) against a server thread. */
#define FZC_CLIENT  0x08u
/* With FZC_CLIENT: auto_map (map every MEMCTX, read each segment). */
#define FZC_AUTOMAP 0x80u
/* With FZC_ALIGNED, bits 4..6: a server that attaches each frame's fds to a
 * sendmsg() starting that many bytes away from the frame's header. */
#define FZC_SKEW(i) ((uint8_t)(((i) & 7u) << 4))

#define FZC_CHUNK_MAX 4096u /* bytes in one sendmsg() */

/* A control byte for a chunk of len (1..62) bytes with nfds (0..3) fds. */
#define FZC_CTL(len, nfds) ((uint8_t)((((len) - 1u) & 0x3fu) | ((unsigned)(nfds) << 6)))
#define FZC_CTL_512  ((uint8_t)62u)  /* a 512-byte chunk, no fds */
#define FZC_CTL_BIG  ((uint8_t)63u)  /* a FZC_CHUNK_MAX chunk, no fds */

static inline uint32_t fzc_chunk_len(uint8_t c)
{
    unsigned v = c & 0x3fu;
    return v < 62 ? v + 1 : v == 62 ? 512u : FZC_CHUNK_MAX;
}

/* Skew 0: the header; 1: one byte into it; 2: its last byte; 3: just after
 * it; 4: one byte before it (a read that starts in the previous frame, still
 * correct); 5: a header's length before it; 6: into the payload; 7: half a
 * header before it. */
static inline int64_t fzc_skew(uint8_t mode, int64_t hdr)
{
    switch ((mode >> 4) & 7u) {
    case 1: return 1;
    case 2: return hdr - 1;
    case 3: return hdr;
    case 4: return -1;
    case 5: return -hdr;
    case 6: return hdr + 16;
    case 7: return -hdr / 2;
    default: return 0;
    }
}

static inline unsigned fzc_chunk_fds(uint8_t c, uint8_t mode)
{
    unsigned n = c >> 6;
    return n == 3 && (mode & FZC_FD17) ? 17u : n;
}

#endif /* VMSIG_FUZZ_CLIENT_H */
