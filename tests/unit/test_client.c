/*
 * test_client.c - the client library against a core served by its own
 * thread (the core is single-threaded: only that thread touches it).
 */
#include <errno.h>
#include <glib.h>
#include <string.h>
#include <unistd.h>

#include "vmsig/vmsig_client.h"
#include "vmsig/vmsig_core.h"

typedef struct server {
    vmsig_core *core; /* touched by the server thread only */
    GThread *th;
    volatile int stop;
    char *dir, *path;
    GMutex lock;
    GCond cond;
    int ready;
} server;

static int backend_cmd(void *opaque, const vmsig_event *cmd, uint32_t principal,
                       vmsig_reply *reply)
{
    vmsig_core *core = ((server *)opaque)->core;
    if (cmd->kind == VMSIG_CMD_VM && cmd->u.cmd.op == VMSIG_VM_QUERY) {
        vmsig_wire_vminfo vi = { .state = VMSIG_RS_RUNNING, .running = 1, .vcpus = 4,
                                 .endpoint = cmd->endpoint, .ram_size = 1u << 30 };
        g_strlcpy(vi.name, "client-vm", sizeof(vi.name));
        g_strlcpy(vi.version, "7.2.22", sizeof(vi.version));
        memcpy(reply->body, &vi, sizeof(vi));
        reply->len = sizeof(vi);
    }
    if (cmd->kind == VMSIG_CMD_LIFECYCLE && cmd->u.cmd.op == VMSIG_LC_PAUSE) {
        /* Events published before the reply is sent. */
        vmsig_event ev;
        memset(&ev, 0, sizeof(ev));
        ev.dir = VMSIG_DIR_UP;
        ev.endpoint = cmd->endpoint;
        ev.kind = VMSIG_EV_RUNSTATE;
        ev.u.seam.state = VMSIG_RS_PAUSED;
        vmsig_core_publish(core, &ev);
        ev.kind = VMSIG_EV_SUSPEND;
        ev.u.seam.state = VMSIG_RS_SUSPENDED;
        vmsig_core_publish(core, &ev);
    }
    return 0;
}

static const vmsig_backend_ops backend = { .command = backend_cmd };

static gpointer serve(gpointer data)
{
    server *s = data;
    int err;
    char *text = g_strdup_printf("uid:%u endpoints=0,1 caps=OBSERVE,VM,INPUT,LIFECYCLE priority=1\n"
                                 "token:watcher endpoints=1 caps=OBSERVE\n",
                                 (unsigned)getuid());
    vmsig_grants *g = vmsig_grants_parse(text, &err, NULL, 0);
    g_free(text);
    g_assert_nonnull(g);
    vmsig_core_config cfg = { .version = VMSIG_CORE_CONFIG_VERSION, .backend = &backend,
                              .backend_opaque = s };
    vmsig_core *core = vmsig_core_new(&cfg, &err);
    g_assert_nonnull(core);
    s->core = core;
    g_assert_cmpint(vmsig_core_listen(core, s->path, g), ==, 0);
    vmsig_event ev;
    memset(&ev, 0, sizeof(ev));
    ev.dir = VMSIG_DIR_UP;
    ev.kind = VMSIG_EV_RUNSTATE;
    ev.u.seam.state = VMSIG_RS_RUNNING;
    ev.u.seam.running = 1;
    vmsig_core_publish(core, &ev);
    g_mutex_lock(&s->lock);
    s->ready = 1;
    g_cond_signal(&s->cond);
    g_mutex_unlock(&s->lock);
    vmsig_loop_run(core, &s->stop, -1);
    vmsig_core_free(core);
    vmsig_grants_free(g);
    return NULL;
}

static server *server_start(void)
{
    server *s = g_new0(server, 1);
    s->dir = g_dir_make_tmp("vmsig-client-XXXXXX", NULL);
    s->path = g_build_filename(s->dir, "s", NULL);
    g_mutex_init(&s->lock);
    g_cond_init(&s->cond);
    s->th = g_thread_new("server", serve, s);
    g_mutex_lock(&s->lock);
    while (!s->ready) {
        g_cond_wait(&s->cond, &s->lock);
    }
    g_mutex_unlock(&s->lock);
    return s;
}

static void server_stop(server *s)
{
    s->stop = 1;
    g_thread_join(s->th);
    rmdir(s->dir);
    g_free(s->path);
    g_free(s->dir);
    g_mutex_clear(&s->lock);
    g_cond_clear(&s->cond);
    g_free(s);
}

static vmsig_client *connect_to(server *s, const char *token, int *err)
{
    vmsig_client_config cfg = { .version = VMSIG_CLIENT_CONFIG_VERSION, .path = s->path,
                                .token = token, .timeout_ms = 3000 };
    return vmsig_client_connect(&cfg, err);
}

/* The snapshot: our endpoints' current RUNSTATE, flagged. */
static void skip_snapshot(vmsig_client *c)
{
    vmsig_msg m;
    g_assert_cmpint(vmsig_client_next(c, &m, 3000), ==, 0);
    g_assert_cmpuint(m.ev.kind, ==, VMSIG_EV_RUNSTATE);
    g_assert_cmpuint(m.ev.flags & VMSIG_F_SNAPSHOT, ==, VMSIG_F_SNAPSHOT);
    g_assert_cmpuint(m.ev.u.seam.state, ==, VMSIG_RS_RUNNING);
}

static void test_handshake(void)
{
    server *s = server_start();
    int err = 1;
    vmsig_client *c = connect_to(s, NULL, &err);
    g_assert_nonnull(c);
    g_assert_cmpint(err, ==, 0);
    const vmsig_wire_welcome *w = vmsig_client_welcome(c);
    g_assert_cmpuint(w->version, ==, VMSIG_WIRE_VERSION);
    g_assert_cmpuint(w->principal, ==, getuid());
    g_assert_cmpuint(w->endpoint_mask, ==, 3);
    g_assert_cmpuint(w->caps, ==, VMSIG_CAP_OBSERVE | VMSIG_CAP_VM | VMSIG_CAP_INPUT | VMSIG_CAP_LIFECYCLE);
    g_assert_cmpint(w->priority, ==, 1);
    g_assert_cmpuint(w->sub.endpoint_mask, ==, 3);
    g_assert_cmpuint(w->sub.source_mask & (1u << VMSIG_SRC_SEAM), !=, 0);
    g_assert_cmpuint(w->sub.source_mask & (1u << VMSIG_SRC_MEMCTX), ==, 0); /* not granted */
    g_assert_cmpuint(w->max_payload, ==, VMSIG_WIRE_MAX_PAYLOAD);
    g_assert_cmpuint(w->max_fds, ==, VMSIG_WIRE_MAX_FDS);
    g_assert_cmpuint(w->queue_limit, ==, 256);
    g_assert_cmpint(vmsig_client_fd(c), >=, 0);
    skip_snapshot(c);
    vmsig_msg m;
    g_assert_cmpint(vmsig_client_next(c, &m, 50), ==, -ETIMEDOUT);

    /* Token with a narrower grant; a wrong token is refused. */
    vmsig_client *t = connect_to(s, "watcher", &err);
    g_assert_nonnull(t);
    g_assert_cmpuint(vmsig_client_welcome(t)->endpoint_mask, ==, 2);
    g_assert_cmpuint(vmsig_client_welcome(t)->caps, ==, VMSIG_CAP_OBSERVE);
    vmsig_client_close(t);
    g_assert_null(connect_to(s, "nope", &err));
    g_assert_cmpint(err, ==, -EPERM);

    vmsig_client_config cfg = { .version = VMSIG_CLIENT_CONFIG_VERSION, .path = "/nonexistent/x" };
    g_assert_null(vmsig_client_connect(&cfg, &err));
    g_assert_cmpint(err, ==, -ENOENT);
    vmsig_client_close(c);
    server_stop(s);
}

static void test_call(void)
{
    server *s = server_start();
    int err;
    vmsig_client *c = connect_to(s, NULL, &err);
    g_assert_nonnull(c);
    vmsig_wire_vminfo vi;
    g_assert_cmpint(vmsig_client_vm(c, 0, VMSIG_VM_QUERY, &vi), ==, 0);
    g_assert_cmpstr(vi.name, ==, "client-vm");
    g_assert_cmpstr(vi.version, ==, "7.2.22");
    g_assert_cmpuint(vi.vcpus, ==, 4);
    vmsig_event ev;
    memset(&ev, 0, sizeof(ev));
    ev.kind = VMSIG_CMD_VM;
    ev.endpoint = 1;
    ev.u.cmd.op = VMSIG_VM_QUERY;
    vmsig_reply rep;
    g_assert_cmpint(vmsig_client_call(c, &ev, &rep, 3000), ==, 0);
    g_assert_cmpuint(rep.len, ==, sizeof(vmsig_wire_vminfo));
    g_assert_cmpuint(ev.seq, >, 0);
    /* Refusals come back as the reply status. */
    g_assert_cmpint(vmsig_client_vm(c, 7, VMSIG_VM_QUERY, NULL), ==, -EPERM);
    g_assert_cmpint(vmsig_client_power(c, 0, VMSIG_PWR_RESET), ==, -EPERM);
    vmsig_wire_input in = { .op = VMSIG_INPUT_TEXT };
    g_assert_cmpint(vmsig_client_input(c, 0, &in, "hello"), ==, 0);
    vmsig_sub sub = { 1u << VMSIG_SRC_SEAM, 2 };
    g_assert_cmpint(vmsig_client_subscribe(c, &sub), ==, 0);
    g_assert_cmpuint(vmsig_client_welcome(c)->sub.endpoint_mask, ==, 2);
    vmsig_client_close(c);
    server_stop(s);
}

static void test_events_during_call(void)
{
    server *s = server_start();
    int err;
    vmsig_client *c = connect_to(s, NULL, &err);
    g_assert_nonnull(c);
    /* The snapshot is still unread; PAUSE publishes two events before its reply. */
    g_assert_cmpint(vmsig_client_lifecycle(c, 0, VMSIG_LC_PAUSE), ==, 0);
    vmsig_msg m;
    skip_snapshot(c);
    g_assert_cmpint(vmsig_client_next(c, &m, 0), ==, 0);
    g_assert_cmpuint(m.ev.kind, ==, VMSIG_EV_RUNSTATE);
    g_assert_cmpuint(m.ev.u.seam.state, ==, VMSIG_RS_PAUSED);
    g_assert_cmpuint(m.ev.flags & VMSIG_F_SNAPSHOT, ==, 0);
    uint64_t seq = m.ev.seq;
    g_assert_cmpint(vmsig_client_next(c, &m, 0), ==, 0);
    g_assert_cmpuint(m.ev.kind, ==, VMSIG_EV_SUSPEND);
    g_assert_cmpuint(m.ev.seq, ==, seq + 1);
    g_assert_cmpint(vmsig_client_next(c, &m, 20), ==, -ETIMEDOUT);
    vmsig_client_close(c);
    server_stop(s);
}

static void test_arbitration(void)
{
    server *s = server_start();
    int err;
    vmsig_client *a = connect_to(s, NULL, &err);
    vmsig_client *b = connect_to(s, NULL, &err);
    g_assert_nonnull(a);
    g_assert_nonnull(b);
    vmsig_wire_input key = { .op = VMSIG_INPUT_KEY, .code = 30, .value = 1 };
    g_assert_cmpint(vmsig_client_acquire(a, 0, VMSIG_CLASS_INPUT), ==, 0);
    g_assert_cmpint(vmsig_client_acquire(b, 0, VMSIG_CLASS_INPUT), ==, -EBUSY);
    g_assert_cmpint(vmsig_client_input(b, 0, &key, NULL), ==, -EBUSY);
    g_assert_cmpint(vmsig_client_input(a, 0, &key, NULL), ==, 0);
    g_assert_cmpint(vmsig_client_release(b, 0, VMSIG_CLASS_INPUT), ==, -ENOENT);
    g_assert_cmpint(vmsig_client_release(a, 0, VMSIG_CLASS_INPUT), ==, 0);
    g_assert_cmpint(vmsig_client_acquire(b, 0, VMSIG_CLASS_INPUT), ==, 0);
    /* A dead owner's slot is free. */
    vmsig_client_close(b);
    g_usleep(150 * 1000);
    g_assert_cmpint(vmsig_client_acquire(a, 0, VMSIG_CLASS_INPUT), ==, 0);
    /* ARB events reached the observer. */
    vmsig_msg m;
    int arb = 0;
    while (vmsig_client_next(a, &m, 100) == 0) {
        arb += m.ev.kind == VMSIG_EV_ARB;
    }
    g_assert_cmpint(arb, >, 0);
    vmsig_client_close(a);
    server_stop(s);
}

static void test_shutdown(void)
{
    server *s = server_start();
    int err;
    vmsig_client *c = connect_to(s, NULL, &err);
    g_assert_nonnull(c);
    skip_snapshot(c);
    s->stop = 1; /* the server thread leaves its loop and frees the core */
    vmsig_msg m;
    g_assert_cmpint(vmsig_client_next(c, &m, 3000), ==, -EPIPE);
    const char *text = NULL;
    g_assert_cmpint(vmsig_client_bye(c, &text), ==, -ESHUTDOWN);
    g_assert_nonnull(strstr(text, "shutting down"));
    g_assert_cmpint(vmsig_client_vm(c, 0, VMSIG_VM_QUERY, NULL), ==, -EPIPE);
    vmsig_client_close(c);
    server_stop(s);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/client/handshake", test_handshake);
    g_test_add_func("/client/call", test_call);
    g_test_add_func("/client/events-during-call", test_events_during_call);
    g_test_add_func("/client/arbitration", test_arbitration);
    g_test_add_func("/client/shutdown", test_shutdown);
    return g_test_run();
}
