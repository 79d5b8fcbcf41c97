/*
 * vmsig: the QEMU side of the signal seam (-object vmsig,...)
 *
 * A user-creatable object, built as the loadable module vmsig-obj.so and
 * loaded on demand by -object / object-add (see module_obj() below).
 * It hosts the QEMU-free vmsig core (lib/) on QEMU's main loop and is the
 * thin glue between the two:
 *
 *   QEMU -> core   run-state changes (VM change state handler) and QEMU's
 *                  suspend, wakeup, powerdown, shutdown and reset notifiers
 *                  (the last one from the runstate patch in patches/)
 *                  become SEAM events;
 *   core -> QEMU   DOWN commands that passed the core's grant and
 *                  arbitration checks run through QEMU's own QMP functions
 *                  (qmp_stop, qmp_cont, qmp_system_reset, ...).
 *
 * Everything here runs on the main loop thread with the BQL held; nothing
 * blocks and nothing a peer sends can abort QEMU (the core validates every
 * frame and drops a misbehaving control, never more).
 *
 * This work is licensed under the terms of the GNU GPL, version 2 or later.
 * See the COPYING file in the top-level directory.
 */

#include "qemu/osdep.h"
#include <pwd.h>
#include <sys/resource.h>
#include <sys/un.h>
#include "qapi/error.h"
#include "qapi/visitor.h"
#include "qemu/module.h"
#include "qemu/cutils.h"
#include "qemu/error-report.h"
#include "qemu/main-loop.h"
#include "qapi/qapi-commands-control.h"
#include "qapi/qapi-commands-machine.h"
#include "qapi/qapi-commands-misc.h"
#include "qapi/qapi-types-qom.h"
#include "qapi/qapi-types-run-state.h"
#include "qom/object.h"
#include "qom/object_interfaces.h"
#include "hw/boards.h"
#include "vmsig-compat.h"
#include "vmsig/vmsig_core.h"
#include "vmsig-qemu.h"
#include "trace.h"

#define TYPE_VMSIG "vmsig"

OBJECT_DECLARE_SIMPLE_TYPE(VmsigState, VMSIG)

struct VmsigState {
    Object parent_obj;

    /* options; fixed once complete() has run */
    char *path;
    char *grants;
    int policy;                     /* VmsigPolicy */
    uint32_t endpoint;
    uint32_t queue_limit;
    uint32_t handshake_timeout;
    uint32_t max_controls;
    bool log_events;
    uint64_t snapshot_limit;        /* bytes all snapshots may use */

    bool completed;

    /* set up by complete(), torn down by vmsig_teardown() */
    vmsig_grants *grant_table;      /* borrowed by the core's listener */
    vmsig_core *core;
    VmsigMem *mem;
    VmsigSnap *snap;
    vmsig_inproc *log;              /* log-events: the in-process control */
    VMChangeStateEntry *vmse;
    Notifier suspend;               /* QEMU's notifiers -> SEAM */
    Notifier wakeup;
    Notifier powerdown;
    Notifier shutdown;
    Notifier reset;
    RunState last_rs;               /* state in the last RUNSTATE published */
    bool notifiers_added;
};

/* One row per integer option: the table drives registration and checks. */
typedef struct VmsigUintOption {
    const char *name;
    size_t offset;
    uint32_t def;
    uint32_t min;
    uint32_t max;
    const char *description;
} VmsigUintOption;

static const VmsigUintOption vmsig_uint_options[] = {
    { "endpoint", offsetof(VmsigState, endpoint), 0, 0, 63,
      "This VM's endpoint id (0..63)" },
    { "queue-limit", offsetof(VmsigState, queue_limit), 256, 1, 65536,
      "Depth of each control's outgoing queue (1..65536)" },
    { "handshake-timeout", offsetof(VmsigState, handshake_timeout),
      5000, 1, 600000,
      "Milliseconds a control has to finish the handshake (1..600000)" },
    { "max-controls", offsetof(VmsigState, max_controls), 256, 1, 65536,
      "Maximum number of attached controls (1..65536)" },
};

static uint32_t *vmsig_uint_field(VmsigState *s, const VmsigUintOption *o)
{
    return (uint32_t *)((char *)s + o->offset);
}

/* The options configure a listening socket; changing them later would lie. */
static bool vmsig_check_mutable(VmsigState *s, const char *name, Error **errp)
{
    if (s->completed) {
        error_setg(errp, "vmsig: property '%s' cannot be changed after "
                   "the object is created", name);
        return false;
    }
    return true;
}

static void vmsig_get_uint(Object *obj, Visitor *v, const char *name,
                           void *opaque, Error **errp)
{
    uint32_t value = *vmsig_uint_field(VMSIG(obj), opaque);

    visit_type_uint32(v, name, &value, errp);
}

static void vmsig_set_uint(Object *obj, Visitor *v, const char *name,
                           void *opaque, Error **errp)
{
    VmsigState *s = VMSIG(obj);
    uint32_t value;

    if (!vmsig_check_mutable(s, name, errp) ||
        !visit_type_uint32(v, name, &value, errp)) {
        return;
    }
    *vmsig_uint_field(s, opaque) = value;
}

static char *vmsig_get_path(Object *obj, Error **errp)
{
    return g_strdup(VMSIG(obj)->path);
}

static void vmsig_set_path(Object *obj, const char *value, Error **errp)
{
    VmsigState *s = VMSIG(obj);

    if (vmsig_check_mutable(s, "path", errp)) {
        g_free(s->path);
        s->path = g_strdup(value);
    }
}

static char *vmsig_get_grants(Object *obj, Error **errp)
{
    return g_strdup(VMSIG(obj)->grants);
}

static void vmsig_set_grants(Object *obj, const char *value, Error **errp)
{
    VmsigState *s = VMSIG(obj);

    if (vmsig_check_mutable(s, "grants", errp)) {
        g_free(s->grants);
        s->grants = g_strdup(value);
    }
}

static int vmsig_get_policy(Object *obj, Error **errp)
{
    return VMSIG(obj)->policy;
}

static void vmsig_set_policy(Object *obj, int value, Error **errp)
{
    VmsigState *s = VMSIG(obj);

    if (vmsig_check_mutable(s, "policy", errp)) {
        s->policy = value;
    }
}

/* The core's policy: VmsigPolicy's names are the core's. */
static vmsig_arb_policy vmsig_policy(VmsigState *s)
{
    return vmsig_arb_policy_by_name(VmsigPolicy_str(s->policy));
}

#define VMSIG_SNAPSHOT_LIMIT_DEFAULT (1ull << 30)

static bool vmsig_get_log_events(Object *obj, Error **errp)
{
    return VMSIG(obj)->log_events;
}

static void vmsig_set_log_events(Object *obj, bool value, Error **errp)
{
    VmsigState *s = VMSIG(obj);

    if (vmsig_check_mutable(s, "log-events", errp)) {
        s->log_events = value;
    }
}

static void vmsig_get_snapshot_limit(Object *obj, Visitor *v, const char *name,
                                     void *opaque, Error **errp)
{
    uint64_t value = VMSIG(obj)->snapshot_limit;

    visit_type_size(v, name, &value, errp);
}

static void vmsig_set_snapshot_limit(Object *obj, Visitor *v, const char *name,
                                     void *opaque, Error **errp)
{
    VmsigState *s = VMSIG(obj);
    uint64_t value;

    if (vmsig_check_mutable(s, name, errp) &&
        visit_type_size(v, name, &value, errp)) {
        s->snapshot_limit = value;
    }
}

static bool vmsig_check_options(VmsigState *s, Error **errp)
{
    size_t i;

    if (!s->path || !*s->path) {
        error_setg(errp, "vmsig: property 'path' is required "
                   "(the UNIX socket to listen on)");
        return false;
    }
    if (strlen(s->path) >= sizeof(((struct sockaddr_un *)NULL)->sun_path)) {
        error_setg(errp, "vmsig: path '%s' is too long for a UNIX socket "
                   "(at most %zu bytes)", s->path,
                   sizeof(((struct sockaddr_un *)NULL)->sun_path) - 1);
        return false;
    }
    if (s->grants && !*s->grants) {
        error_setg(errp, "vmsig: property 'grants' is an empty path");
        return false;
    }
    if (!vmsig_policy(s)) {
        error_setg(errp, "vmsig: policy '%s' has no arbitration function",
                   VmsigPolicy_str(s->policy));
        return false;
    }
    for (i = 0; i < ARRAY_SIZE(vmsig_uint_options); i++) {
        const VmsigUintOption *o = &vmsig_uint_options[i];
        uint32_t value = *vmsig_uint_field(s, o);

        if (value < o->min || value > o->max) {
            error_setg(errp, "vmsig: %s %" PRIu32 " is out of range "
                       "(%" PRIu32 "..%" PRIu32 ")",
                       o->name, value, o->min, o->max);
            return false;
        }
    }
    return true;
}

/* ---- UP: QEMU happenings -> SEAM events ---- */

/*
 * QEMU's RunState and ShutdownCause -> vmsig's own wire numbers
 * (vmsig_wire.h). A value this switch does not name, one a newer QEMU added,
 * is VMSIG_RS_OTHER / VMSIG_SC_OTHER: QEMU renumbering or extending its
 * enums changes neither the build nor the wire.
 */
static uint32_t vmsig_rs(RunState state)
{
    switch (state) {
    case RUN_STATE_DEBUG:
        return VMSIG_RS_DEBUG;
    case RUN_STATE_INMIGRATE:
        return VMSIG_RS_INMIGRATE;
    case RUN_STATE_INTERNAL_ERROR:
        return VMSIG_RS_INTERNAL_ERROR;
    case RUN_STATE_IO_ERROR:
        return VMSIG_RS_IO_ERROR;
    case RUN_STATE_PAUSED:
        return VMSIG_RS_PAUSED;
    case RUN_STATE_POSTMIGRATE:
        return VMSIG_RS_POSTMIGRATE;
    case RUN_STATE_PRELAUNCH:
        return VMSIG_RS_PRELAUNCH;
    case RUN_STATE_FINISH_MIGRATE:
        return VMSIG_RS_FINISH_MIGRATE;
    case RUN_STATE_RESTORE_VM:
        return VMSIG_RS_RESTORE_VM;
    case RUN_STATE_RUNNING:
        return VMSIG_RS_RUNNING;
    case RUN_STATE_SAVE_VM:
        return VMSIG_RS_SAVE_VM;
    case RUN_STATE_SHUTDOWN:
        return VMSIG_RS_SHUTDOWN;
    case RUN_STATE_SUSPENDED:
        return VMSIG_RS_SUSPENDED;
    case RUN_STATE_WATCHDOG:
        return VMSIG_RS_WATCHDOG;
    case RUN_STATE_GUEST_PANICKED:
        return VMSIG_RS_GUEST_PANICKED;
    case RUN_STATE_COLO:
        return VMSIG_RS_COLO;
    default:
        return VMSIG_RS_OTHER;
    }
}

static uint32_t vmsig_sc(ShutdownCause cause)
{
    switch (cause) {
    case SHUTDOWN_CAUSE_NONE:
        return VMSIG_SC_NONE;
    case SHUTDOWN_CAUSE_HOST_ERROR:
        return VMSIG_SC_HOST_ERROR;
    case SHUTDOWN_CAUSE_HOST_QMP_QUIT:
        return VMSIG_SC_HOST_QMP_QUIT;
    case SHUTDOWN_CAUSE_HOST_QMP_SYSTEM_RESET:
        return VMSIG_SC_HOST_QMP_SYSTEM_RESET;
    case SHUTDOWN_CAUSE_HOST_SIGNAL:
        return VMSIG_SC_HOST_SIGNAL;
    case SHUTDOWN_CAUSE_HOST_UI:
        return VMSIG_SC_HOST_UI;
    case SHUTDOWN_CAUSE_GUEST_SHUTDOWN:
        return VMSIG_SC_GUEST_SHUTDOWN;
    case SHUTDOWN_CAUSE_GUEST_RESET:
        return VMSIG_SC_GUEST_RESET;
    case SHUTDOWN_CAUSE_GUEST_PANIC:
        return VMSIG_SC_GUEST_PANIC;
    case SHUTDOWN_CAUSE_SUBSYSTEM_RESET:
        return VMSIG_SC_SUBSYSTEM_RESET;
    case SHUTDOWN_CAUSE_SNAPSHOT_LOAD:
        return VMSIG_SC_SNAPSHOT_LOAD;
    default:
        return VMSIG_SC_OTHER;
    }
}

static void vmsig_publish_runstate(VmsigState *s, RunState state, bool running)
{
    vmsig_event ev = {
        .kind = VMSIG_EV_RUNSTATE,
        .endpoint = s->endpoint,
        .u.seam = { .state = vmsig_rs(state), .running = running },
    };

    s->last_rs = state;
    vmsig_core_publish(s->core, &ev); /* the core stamps seq and ts */
}

/*
 * A SEAM event other than RUNSTATE. Some run-state changes happen without
 * the VM change-state handlers (suspend sets RUN_STATE_SUSPENDED directly,
 * wakeup sets RUN_STATE_RUNNING): a RUNSTATE follows whenever the state now
 * differs from the last one published, so RUNSTATE alone tracks the state.
 */
static void vmsig_publish_seam(VmsigState *s, uint32_t kind, uint32_t cause,
                               bool guest)
{
    RunState state = vmsig_runstate();
    vmsig_event ev = {
        .kind = kind,
        .endpoint = s->endpoint,
        .u.seam = {
            .state = vmsig_rs(state),
            .running = runstate_is_running(),
            .cause = cause,
            .guest = guest,
        },
    };

    trace_vmsig_seam(kind, ev.u.seam.state, cause, guest);
    vmsig_core_publish(s->core, &ev);
    if (state != s->last_rs) {
        vmsig_publish_runstate(s, state, runstate_is_running());
    }
}

static void vmsig_vm_state_change(void *opaque, bool running, RunState state)
{
    vmsig_publish_runstate(opaque, state, running);
}

/*
 * QEMU's own notifiers, all called on the main loop thread with the BQL
 * held (runstate.c, main_loop_should_exit), where QMP clients get the
 * matching QAPI event.  STOP/RESUME are covered by the run-state handler.
 */
static void vmsig_shutdown(Notifier *n, void *data)
{
    VmsigState *s = container_of(n, VmsigState, shutdown);
    ShutdownCause cause = *(ShutdownCause *)data;

    vmsig_publish_seam(s, VMSIG_EV_SHUTDOWN, vmsig_sc(cause),
                       shutdown_caused_by_guest(cause));
}

/* The resets that emit a RESET event (the runstate patch in patches/) */
static void vmsig_reset(Notifier *n, void *data)
{
    VmsigState *s = container_of(n, VmsigState, reset);
    ShutdownCause cause = *(ShutdownCause *)data;

    vmsig_publish_seam(s, VMSIG_EV_RESET, vmsig_sc(cause),
                       shutdown_caused_by_guest(cause));
}

static void vmsig_powerdown(Notifier *n, void *data)
{
    vmsig_publish_seam(container_of(n, VmsigState, powerdown),
                       VMSIG_EV_POWERDOWN, 0, false);
}

/*
 * qemu_system_suspend() calls the suspend notifiers with the vCPUs paused
 * and sets RUN_STATE_SUSPENDED right after them (without the change-state
 * handlers): the event says the state it is about to be in.
 */
static void vmsig_suspend(Notifier *n, void *data)
{
    VmsigState *s = container_of(n, VmsigState, suspend);
    vmsig_event ev = {
        .kind = VMSIG_EV_SUSPEND,
        .endpoint = s->endpoint,
        .u.seam = { .state = VMSIG_RS_SUSPENDED, .running = false },
    };

    trace_vmsig_seam(ev.kind, ev.u.seam.state, 0, false);
    vmsig_core_publish(s->core, &ev);
    vmsig_publish_runstate(s, RUN_STATE_SUSPENDED, false);
}

/* after qemu_system_wakeup_request() set RUN_STATE_RUNNING */
static void vmsig_wakeup(Notifier *n, void *data)
{
    vmsig_publish_seam(container_of(n, VmsigState, wakeup),
                       VMSIG_EV_WAKEUP, 0, false);
}

/* ---- DOWN: commands -> QEMU ---- */

/*
 * A QEMU function refused: the errno says what kind of refusal (see
 * docs/qemu.md "Errors"), the body carries QEMU's own message.
 */
static int vmsig_reply_error(vmsig_reply *reply, int errnum, Error *err)
{
    const char *msg = error_get_pretty(err);
    size_t len = MIN(strlen(msg), VMSIG_REPLY_BODY_MAX - 1);

    memcpy(reply->body, msg, len);
    reply->body[len] = '\0';
    reply->len = len + 1;
    error_free(err);
    return -errnum;
}

/* The errno for a refused run-state command, from QEMU's state. */
static int vmsig_run_errno(void)
{
    return qemu_system_dump_in_progress() ? EBUSY : EINVAL;
}

/*
 * CMD_VM query: vmsig_wire_vminfo, then always vmsig_wire_vminfo_host. The
 * core cuts the body back to the vminfo for a control that did not
 * negotiate VMSIG_FEAT_VMINFO_HOST, so the glue need not know features.
 */
static void vmsig_vminfo(VmsigState *s, vmsig_reply *reply)
{
    vmsig_wire_vminfo info = {
        .state = vmsig_rs(vmsig_runstate()),
        .running = runstate_is_running(),
        .vcpus = current_machine ? current_machine->smp.cpus : 0,
        .endpoint = s->endpoint,
        .ram_size = current_machine ? current_machine->ram_size : 0,
        .memctx_gen = vmsig_core_memctx_generation(s->core, s->endpoint),
    };
    vmsig_wire_vminfo_host host = { .pid = getpid() };

    QEMU_BUILD_BUG_ON(sizeof(info) + sizeof(host) > VMSIG_REPLY_BODY_MAX);
    pstrcpy(info.version, sizeof(info.version), QEMU_VERSION);
    pstrcpy(info.name, sizeof(info.name), qemu_name ? qemu_name : "");
    vmsig_accel_name(host.accel, sizeof(host.accel));
    if (qemu_uuid_set) {
        QEMU_BUILD_BUG_ON(sizeof(host.uuid) != sizeof(qemu_uuid.data));
        memcpy(host.uuid, qemu_uuid.data, sizeof(host.uuid));
    }
    memcpy(reply->body, &info, sizeof(info));
    memcpy(reply->body + sizeof(info), &host, sizeof(host));
    reply->len = sizeof(info) + sizeof(host);
}

static int vmsig_run_command(VmsigState *s, const vmsig_event *cmd,
                             vmsig_reply *reply)
{
    Error *err = NULL;
    int errnum = 0;

    switch (cmd->kind) {
    case VMSIG_CMD_VM:
        switch (cmd->u.cmd.op) {
        case VMSIG_VM_QUERY:
            vmsig_vminfo(s, reply);
            return 0;
        case VMSIG_VM_STOP:
            qmp_stop(&err);
            break;
        case VMSIG_VM_CONT:
            qmp_cont(&err);
            break;
        default:
            return -EINVAL;
        }
        break;
    case VMSIG_CMD_LIFECYCLE:
        switch (cmd->u.cmd.op) {
        case VMSIG_LC_PAUSE:
            qmp_stop(&err);
            break;
        case VMSIG_LC_RESUME:
            qmp_cont(&err);
            break;
        case VMSIG_LC_WAKEUP:
            qmp_system_wakeup(&err);
            if (err && !qemu_wakeup_suspend_enabled()) {
                errnum = EOPNOTSUPP;
            }
            break;
        default:
            return -EINVAL;
        }
        break;
    case VMSIG_CMD_POWER:
        switch (cmd->u.cmd.op) {
        case VMSIG_PWR_POWERDOWN:
            qmp_system_powerdown(&err);
            break;
        case VMSIG_PWR_RESET:
            qmp_system_reset(&err);
            break;
        case VMSIG_PWR_QUIT:
            qmp_quit(&err);
            break;
        default:
            return -EINVAL;
        }
        break;
    case VMSIG_CMD_MEMWRITE:
        return s->mem ? vmsig_mem_write(s->mem, OBJECT(s), cmd, reply)
                      : -ENODEV;
    case VMSIG_CMD_INPUT:
        return vmsig_input_command(cmd, reply);
    case VMSIG_CMD_CPU:
        return vmsig_cpu_command(s->core, OBJECT(s), cmd, reply);
    default:
        return -ENOSYS;
    }
    if (err) {
        return vmsig_reply_error(reply, errnum ? errnum : vmsig_run_errno(),
                                 err);
    }
    return 0;
}

static int vmsig_backend_command(void *opaque, const vmsig_event *cmd,
                                 uint32_t principal, vmsig_reply *reply)
{
    VmsigState *s = opaque;
    int ret;

    if (cmd->kind == VMSIG_CMD_SNAPSHOT) {
        ret = s->snap ? vmsig_snap_command(s->snap, OBJECT(s), cmd, principal,
                                           reply)
                      : -ENODEV;
    } else {
        ret = vmsig_run_command(s, cmd, reply);
    }

    trace_vmsig_command(cmd->kind, cmd->u.cmd.op, principal, ret);
    return ret;
}

static void vmsig_on_detach(void *opaque, const vmsig_grant *g, int why,
                            const char *text)
{
    trace_vmsig_detach(g ? g->principal : 0, why, text ? text : "");
}

static const vmsig_backend_ops vmsig_backend = {
    .command = vmsig_backend_command,
};

/* ---- hosting the core ---- */

static void vmsig_fd_read(void *opaque)
{
    VmsigState *s = opaque;

    vmsig_core_dispatch(s->core);
}

/* Undo complete(), in reverse; safe on a partial setup and twice. */
static void vmsig_teardown(VmsigState *s)
{
    if (s->notifiers_added) {
        notifier_remove(&s->suspend);
        notifier_remove(&s->wakeup);
        notifier_remove(&s->powerdown);
        notifier_remove(&s->shutdown);
        notifier_remove(&s->reset);
        s->notifiers_added = false;
    }
    if (s->vmse) {
        qemu_del_vm_change_state_handler(s->vmse);
        s->vmse = NULL;
    }
    vmsig_inproc_free(s->log); /* before the core it is attached to */
    s->log = NULL;
    vmsig_snap_free(s->snap); /* before the map it copies */
    s->snap = NULL;
    vmsig_mem_free(s->mem);
    s->mem = NULL;
    if (s->core) {
        qemu_set_fd_handler(vmsig_core_fd(s->core), NULL, NULL, NULL);
        /* controls get BYE(-ESHUTDOWN); the socket file goes */
        vmsig_core_free(s->core);
        s->core = NULL;
    }
    vmsig_grants_free(s->grant_table);
    s->grant_table = NULL;
}

/*
 * Who QEMU runs as: a refused file or directory is often fine for the
 * user who wrote the command line and not for the one QEMU runs as
 * (libvirt starts QEMU as libvirt-qemu).
 */
static const char *vmsig_user_name(void)
{
    struct passwd *pw = getpwuid(geteuid());

    return pw ? pw->pw_name : "?";
}

static vmsig_grants *vmsig_load_grants(VmsigState *s, Error **errp)
{
    char text[256] = "";
    vmsig_grants *t;
    int err = 0;

    if (s->grants) {
        t = vmsig_grants_load(s->grants, &err, text, sizeof(text));
        if (!t && (err == -EACCES || err == -EPERM)) {
            error_setg(errp, "vmsig: grants file '%s' is not readable by "
                       "QEMU's user '%s' (uid %u): %s", s->grants,
                       vmsig_user_name(), (unsigned)geteuid(),
                       strerror(-err));
        } else if (!t) {
            error_setg(errp, "vmsig: grants file '%s': %s", s->grants,
                       *text ? text : strerror(-err));
        }
        return t;
    }
    /* No file: QEMU's own user may do everything but power and writes. */
    t = vmsig_grants_parse("", &err, text, sizeof(text));
    if (t) {
        vmsig_grant g = {
            .principal = getuid(),
            .endpoint_mask = 1ull << s->endpoint,
            .caps = VMSIG_CAP_ALL & ~(VMSIG_CAP_POWER | VMSIG_CAP_MEMWRITE),
            .priority = 0,
        };

        err = vmsig_grants_set(t, getuid(), NULL, &g);
        if (err < 0) {
            vmsig_grants_free(t);
            t = NULL;
        }
    }
    if (!t) {
        error_setg(errp, "vmsig: cannot set up the default grant: %s",
                   strerror(-err));
    }
    return t;
}

/* ---- in-process controls ---- */

vmsig_core *vmsig_object_core(const char *id, Error **errp)
{
    Object *obj = object_resolve_path_component(object_get_objects_root(), id);
    VmsigState *s = obj ? (VmsigState *)object_dynamic_cast(obj, TYPE_VMSIG)
                        : NULL;

    if (!s) {
        error_setg(errp, "vmsig: no vmsig object with id '%s'", id);
        return NULL;
    }
    if (!s->core) {
        error_setg(errp, "vmsig: object '%s' is not running", id);
        return NULL;
    }
    return s->core;
}

/*
 * log-events: one line on QEMU's log per event, from an in-process control
 * attached exactly as other code in QEMU would attach one.
 */
static int vmsig_log_event(void *opaque, const vmsig_event *ev)
{
    VmsigState *s = opaque;
    const char *id = object_get_canonical_path_component(OBJECT(s));
    const char *snap = ev->flags & VMSIG_F_SNAPSHOT ? " (snapshot)" : "";

    switch (ev->kind) {
    case VMSIG_EV_MEMWRITE_DONE:
        info_report("vmsig %s: seq=%" PRIu64 " memwrite-done gpa=0x%" PRIx64
                    " len=%" PRIu64 " writer=%u gen=%" PRIu64, id, ev->seq,
                    ev->u.memdone.gpa, ev->u.memdone.len, ev->u.memdone.writer,
                    ev->u.memdone.generation);
        break;
    case VMSIG_EV_ARB:
        info_report("vmsig %s: seq=%" PRIu64 " arb %s what=%u owner=%u by=%u",
                    id, ev->seq, vmsig_class_name(ev->u.arb.cls),
                    ev->u.arb.what, ev->u.arb.owner, ev->u.arb.by);
        break;
    default:
        info_report("vmsig %s: seq=%" PRIu64 " %s %s cause=%s%s", id, ev->seq,
                    vmsig_kind_name(ev->kind),
                    vmsig_runstate_name(ev->u.seam.state),
                    vmsig_cause_name(ev->u.seam.cause), snap);
        break;
    }
    return 0;
}

static int vmsig_log_memctx(void *opaque, const vmsig_event *ev,
                            const int *fds, unsigned nfds)
{
    VmsigState *s = opaque;

    info_report("vmsig %s: seq=%" PRIu64 " memctx gen=%" PRIu64 " segs=%u "
                "fds=%u status=%d%s",
                object_get_canonical_path_component(OBJECT(s)),
                ev->seq, ev->u.memctx.generation, ev->u.memctx.nseg, nfds,
                ev->u.memctx.status,
                ev->flags & VMSIG_F_SNAPSHOT ? " (snapshot)" : "");
    return 0;
}

static bool vmsig_log_start(VmsigState *s, Error **errp)
{
    vmsig_inproc_cfg cfg = {
        .on_event = vmsig_log_event,
        .on_memctx = vmsig_log_memctx,
        .opaque = s,
        .sub = {
            .source_mask = VMSIG_SRC_ALL,
            .endpoint_mask = 1ull << s->endpoint,
        },
    };
    vmsig_grant g = {
        .principal = getuid(),
        .endpoint_mask = 1ull << s->endpoint,
        .caps = VMSIG_CAP_OBSERVE | VMSIG_CAP_MEMCTX, /* it only watches */
    };
    vmsig_core *core = vmsig_object_core(
        object_get_canonical_path_component(OBJECT(s)), errp);
    int err = 0;

    if (!core) {
        return false;
    }
    s->log = vmsig_inproc_new(core, &cfg, &g, &err);
    if (!s->log) {
        error_setg(errp, "vmsig: cannot attach the event log: %s",
                   strerror(-err));
        return false;
    }
    trace_vmsig_attach(object_get_canonical_path_component(OBJECT(s)),
                       g.principal);
    return true;
}

static bool vmsig_start(VmsigState *s, Error **errp)
{
    vmsig_core_config cfg = {
        .version = VMSIG_CORE_CONFIG_VERSION,
        .queue_limit = s->queue_limit,
        .max_controls = s->max_controls,
        .handshake_timeout_ms = s->handshake_timeout,
        .policy = vmsig_policy(s),
        .backend = &vmsig_backend,
        .backend_opaque = s,
        .on_detach = vmsig_on_detach,
        .log_opaque = s,
    };
    int err = 0;

    s->grant_table = vmsig_load_grants(s, errp);
    if (!s->grant_table) {
        return false;
    }
    s->core = vmsig_core_new(&cfg, &err);
    if (!s->core) {
        error_setg(errp, "vmsig: cannot create the core: %s", strerror(-err));
        return false;
    }
    err = vmsig_core_listen(s->core, s->path, s->grant_table);
    switch (err) {
    case 0:
        break;
    case -EEXIST:
        error_setg(errp, "vmsig: path '%s' exists and is not a socket",
                   s->path);
        return false;
    case -EADDRINUSE:
        error_setg(errp, "vmsig: another server is listening on '%s'",
                   s->path);
        return false;
    case -EMFILE: {
        /*
         * vmsig_core_listen: 2 * max-controls connections plus a reserve
         * of 64 fds for QEMU itself must fit under RLIMIT_NOFILE
         */
        struct rlimit rl = { 0 };
        getrlimit(RLIMIT_NOFILE, &rl);
        error_setg(errp, "vmsig: max-controls=%u does not fit the open file "
                   "limit (RLIMIT_NOFILE soft limit %llu; 2 * max-controls "
                   "connections plus 64 fds kept for QEMU must fit under "
                   "it): lower max-controls or raise the limit (ulimit -n)",
                   s->max_controls ? s->max_controls : 256,
                   (unsigned long long)rl.rlim_cur);
        return false;
    }
    case -EACCES:
    case -EPERM:
        error_setg(errp, "vmsig: cannot listen on '%s': %s: its directory "
                   "must be writable by QEMU's user '%s' (uid %u)", s->path,
                   strerror(-err), vmsig_user_name(), (unsigned)geteuid());
        return false;
    default:
        error_setg_errno(errp, -err, "vmsig: cannot listen on '%s'", s->path);
        return false;
    }
    qemu_set_fd_handler(vmsig_core_fd(s->core), vmsig_fd_read, NULL, s);
    trace_vmsig_listen(object_get_canonical_path_component(OBJECT(s)),
                       s->path, s->endpoint);

    /* the first snapshot a control gets is the state right now */
    vmsig_publish_runstate(s, vmsig_runstate(), runstate_is_running());
    s->vmse = qemu_add_vm_change_state_handler(vmsig_vm_state_change, s);
    s->suspend.notify = vmsig_suspend;
    s->wakeup.notify = vmsig_wakeup;
    s->powerdown.notify = vmsig_powerdown;
    s->shutdown.notify = vmsig_shutdown;
    s->reset.notify = vmsig_reset;
    qemu_register_suspend_notifier(&s->suspend);
    qemu_register_wakeup_notifier(&s->wakeup);
    qemu_register_powerdown_notifier(&s->powerdown);
    qemu_register_shutdown_notifier(&s->shutdown);
    qemu_register_reset_notifier(&s->reset);
    /*
     * No exit notifier: QEMU finalizes user-creatable objects itself
     * (qemu_cleanup -> user_creatable_cleanup), on the main thread; an
     * atexit hook could run on any thread that calls exit() while the
     * main loop is inside the core.
     */
    s->notifiers_added = true;

    s->mem = vmsig_mem_new(s->core, s->endpoint, errp);
    if (!s->mem) {
        return false;
    }
    s->snap = vmsig_snap_new(s->core, s->mem, s->endpoint, s->snapshot_limit);
    return !s->log_events || vmsig_log_start(s, errp);
}

static void vmsig_complete(UserCreatable *uc, Error **errp)
{
    VmsigState *s = VMSIG(uc);

    if (!vmsig_check_options(s, errp)) {
        return;
    }
    if (!vmsig_start(s, errp)) {
        vmsig_teardown(s);
        return;
    }
    s->completed = true;
}

static bool vmsig_can_be_deleted(UserCreatable *uc)
{
    return true;
}

static void vmsig_finalize(Object *obj)
{
    VmsigState *s = VMSIG(obj);

    vmsig_teardown(s);

    g_free(s->path);
    g_free(s->grants);
}

static void vmsig_class_init(ObjectClass *oc, void *data)
{
    UserCreatableClass *ucc = USER_CREATABLE_CLASS(oc);
    ObjectProperty *op;
    size_t i;

    ucc->complete = vmsig_complete;
    ucc->can_be_deleted = vmsig_can_be_deleted;

    object_class_property_add_str(oc, "path", vmsig_get_path, vmsig_set_path);
    object_class_property_set_description(oc, "path",
        "UNIX socket path to listen on for controls (required)");
    object_class_property_add_str(oc, "grants", vmsig_get_grants,
                                  vmsig_set_grants);
    object_class_property_set_description(oc, "grants",
        "Path of the grants file");
    op = object_class_property_add_enum(oc, "policy", "VmsigPolicy",
                                        &VmsigPolicy_lookup,
                                        vmsig_get_policy, vmsig_set_policy);
    object_property_set_default_str(op, VmsigPolicy_str(VMSIG_POLICY_DENY));
    object_class_property_set_description(oc, "policy",
        "Arbitration policy: deny, preempt or priority");
    op = object_class_property_add_bool(oc, "log-events", vmsig_get_log_events,
                                        vmsig_set_log_events);
    object_property_set_default_bool(op, false);
    object_class_property_set_description(oc, "log-events",
        "Write every event to QEMU's log through an in-process control");

    op = object_class_property_add(oc, "snapshot-limit", "size",
                                   vmsig_get_snapshot_limit,
                                   vmsig_set_snapshot_limit, NULL, NULL);
    object_property_set_default_uint(op, VMSIG_SNAPSHOT_LIMIT_DEFAULT);
    object_class_property_set_description(oc, "snapshot-limit",
        "Bytes of host memory all in-memory snapshots may use together");

    for (i = 0; i < ARRAY_SIZE(vmsig_uint_options); i++) {
        const VmsigUintOption *o = &vmsig_uint_options[i];

        op = object_class_property_add(oc, o->name, "uint32",
                                       vmsig_get_uint, vmsig_set_uint,
                                       NULL, (void *)o);
        object_property_set_default_uint(op, o->def);
        object_class_property_set_description(oc, o->name, o->description);
    }
}

static const TypeInfo vmsig_info = {
    .name = TYPE_VMSIG,
    .parent = TYPE_OBJECT,
    .instance_size = sizeof(VmsigState),
    .instance_finalize = vmsig_finalize,
    .class_init = vmsig_class_init,
    .interfaces = (InterfaceInfo[]) {
        { TYPE_USER_CREATABLE },
        { }
    },
};

static void vmsig_register_types(void)
{
    type_register_static(&vmsig_info);
}

type_init(vmsig_register_types);
module_obj(TYPE_VMSIG);
