/*
 * vmsig: the QEMU side of the signal seam (-object vmsig,...)
 *
 * A user-creatable object, built as the loadable module vmsig-obj.so and
 * loaded on demand by -object / object-add (see module_obj() below).
 * This is the skeleton: it holds and validates the options; the core glue
 * (run-state hooks, memory listener, socket controls) comes on top of it.
 *
 * This work is licensed under the terms of the GNU GPL, version 2 or later.
 * See the COPYING file in the top-level directory.
 */

#include "qemu/osdep.h"
#include <sys/un.h>
#include "qapi/error.h"
#include "qapi/visitor.h"
#include "qemu/module.h"
#include "qom/object.h"
#include "qom/object_interfaces.h"

#define TYPE_VMSIG "vmsig"

OBJECT_DECLARE_SIMPLE_TYPE(VmsigState, VMSIG)

struct VmsigState {
    Object parent_obj;

    /* options; fixed once complete() has run */
    char *path;
    char *grants;
    char *policy;
    uint32_t endpoint;
    uint32_t queue_limit;
    uint32_t handshake_timeout;
    uint32_t max_controls;

    bool completed;
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

static const char *const vmsig_policies[] = { "deny", "preempt", "priority" };

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

static char *vmsig_get_policy(Object *obj, Error **errp)
{
    return g_strdup(VMSIG(obj)->policy);
}

static void vmsig_set_policy(Object *obj, const char *value, Error **errp)
{
    VmsigState *s = VMSIG(obj);

    if (vmsig_check_mutable(s, "policy", errp)) {
        g_free(s->policy);
        s->policy = g_strdup(value);
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
    for (i = 0; i < ARRAY_SIZE(vmsig_policies); i++) {
        if (s->policy && !strcmp(s->policy, vmsig_policies[i])) {
            break;
        }
    }
    if (i == ARRAY_SIZE(vmsig_policies)) {
        error_setg(errp, "vmsig: policy '%s' is not one of deny, preempt, "
                   "priority", s->policy ? s->policy : "");
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

static void vmsig_complete(UserCreatable *uc, Error **errp)
{
    VmsigState *s = VMSIG(uc);

    if (!vmsig_check_options(s, errp)) {
        return;
    }
    s->completed = true;
}

static void vmsig_finalize(Object *obj)
{
    VmsigState *s = VMSIG(obj);

    g_free(s->path);
    g_free(s->grants);
    g_free(s->policy);
}

static void vmsig_class_init(ObjectClass *oc, void *data)
{
    UserCreatableClass *ucc = USER_CREATABLE_CLASS(oc);
    ObjectProperty *op;
    size_t i;

    ucc->complete = vmsig_complete;

    object_class_property_add_str(oc, "path", vmsig_get_path, vmsig_set_path);
    object_class_property_set_description(oc, "path",
        "UNIX socket path to listen on for controls (required)");
    object_class_property_add_str(oc, "grants", vmsig_get_grants,
                                  vmsig_set_grants);
    object_class_property_set_description(oc, "grants",
        "Path of the grants file");
    op = object_class_property_add_str(oc, "policy", vmsig_get_policy,
                                       vmsig_set_policy);
    object_property_set_default_str(op, "deny");
    object_class_property_set_description(oc, "policy",
        "Arbitration policy: deny, preempt or priority");

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
