/*
 * vmsig-input.c - CMD_INPUT through QEMU's input layer (ui/input.c), to
 * whichever keyboard/pointer handler is active, exactly as QMP send-key and
 * input-send-event reach them.
 *
 * Runs on the main loop thread with the BQL held.
 *
 * This work is licensed under the terms of the GNU GPL, version 2 or later.
 * See the COPYING file in the top-level directory.
 */

#include "qemu/osdep.h"
#include "qapi/qapi-types-ui.h"
#include "qemu/timer.h"
#include "vmsig-compat.h"
#include "ui/input.h"
#include "vmsig-qemu.h"

/*
 * QEMU's delayed key queue (ui/input.c) holds 1024 entries and silently
 * drops what does not fit, which could leave a key held down. A character
 * costs 2 entries per key event plus 1 for its delay; refuse text that
 * would not fit in most of the queue.
 */
#define VMSIG_TEXT_QUEUE_BUDGET 960
/* qemu_input_event_send_key_delay(0): QEMU's default pause between keys */
#define VMSIG_TEXT_KEY_DELAY_NS (10 * SCALE_MS)

/* Key for a US-layout ASCII character; *shift set when Shift is needed. */
static int vmsig_char_qcode(unsigned char c, bool *shift)
{
    static const char shifted_digits[] = ")!@#$%^&*(";
    static const struct {
        char plain, shifted;
        QKeyCode q;
    } sym[] = {
        { '-', '_', Q_KEY_CODE_MINUS },
        { '=', '+', Q_KEY_CODE_EQUAL },
        { '[', '{', Q_KEY_CODE_BRACKET_LEFT },
        { ']', '}', Q_KEY_CODE_BRACKET_RIGHT },
        { '\\', '|', Q_KEY_CODE_BACKSLASH },
        { ';', ':', Q_KEY_CODE_SEMICOLON },
        { '\'', '"', Q_KEY_CODE_APOSTROPHE },
        { '`', '~', Q_KEY_CODE_GRAVE_ACCENT },
        { ',', '<', Q_KEY_CODE_COMMA },
        { '.', '>', Q_KEY_CODE_DOT },
        { '/', '?', Q_KEY_CODE_SLASH },
    };
    /* a..z in QKeyCode order is not alphabetical: look them up */
    static const QKeyCode letters[26] = {
        Q_KEY_CODE_A, Q_KEY_CODE_B, Q_KEY_CODE_C, Q_KEY_CODE_D, Q_KEY_CODE_E,
        Q_KEY_CODE_F, Q_KEY_CODE_G, Q_KEY_CODE_H, Q_KEY_CODE_I, Q_KEY_CODE_J,
        Q_KEY_CODE_K, Q_KEY_CODE_L, Q_KEY_CODE_M, Q_KEY_CODE_N, Q_KEY_CODE_O,
        Q_KEY_CODE_P, Q_KEY_CODE_Q, Q_KEY_CODE_R, Q_KEY_CODE_S, Q_KEY_CODE_T,
        Q_KEY_CODE_U, Q_KEY_CODE_V, Q_KEY_CODE_W, Q_KEY_CODE_X, Q_KEY_CODE_Y,
        Q_KEY_CODE_Z,
    };
    static const QKeyCode digits[10] = {
        Q_KEY_CODE_0, Q_KEY_CODE_1, Q_KEY_CODE_2, Q_KEY_CODE_3, Q_KEY_CODE_4,
        Q_KEY_CODE_5, Q_KEY_CODE_6, Q_KEY_CODE_7, Q_KEY_CODE_8, Q_KEY_CODE_9,
    };
    const char *p;
    size_t i;

    *shift = false;
    if (c >= 'a' && c <= 'z') {
        return letters[c - 'a'];
    }
    if (c >= 'A' && c <= 'Z') {
        *shift = true;
        return letters[c - 'A'];
    }
    if (c >= '0' && c <= '9') {
        return digits[c - '0'];
    }
    p = c ? strchr(shifted_digits, c) : NULL;
    if (p) {
        *shift = true;
        return digits[p - shifted_digits];
    }
    switch (c) {
    case ' ':
        return Q_KEY_CODE_SPC;
    case '\n':
        return Q_KEY_CODE_RET;
    case '\t':
        return Q_KEY_CODE_TAB;
    }
    for (i = 0; i < ARRAY_SIZE(sym); i++) {
        if (c == sym[i].plain || c == sym[i].shifted) {
            *shift = c == sym[i].shifted;
            return sym[i].q;
        }
    }
    return -EINVAL;
}

/*
 * Type text like QMP send-key types a chord, one character at a time:
 * [Shift down] key down, key up [Shift up], then a pause, so the guest
 * sees each character whole and in order. Nothing is sent unless every
 * character has a key.
 */
/*
 * When the text typed last has left QEMU's key queue (QEMU_CLOCK_VIRTUAL
 * ns): the queue is global, so this is too.
 */
static int64_t vmsig_text_until;

static int vmsig_input_text(const char *text, uint32_t len)
{
    uint32_t i, entries = 0;
    int64_t now;
    bool shift;

    for (i = 0; i < len; i++) {
        if (vmsig_char_qcode(text[i], &shift) < 0) {
            return -EINVAL;
        }
        entries += (shift ? 8 : 4) + 1;
    }
    if (entries > VMSIG_TEXT_QUEUE_BUDGET) {
        return -E2BIG;
    }
    /*
     * QEMU's key queue is one for the whole machine (1024 entries) and
     * drops what does not fit, silently, possibly a Shift release: text
     * typed while earlier text is still queued is refused until it drained.
     */
    now = qemu_clock_get_ns(QEMU_CLOCK_VIRTUAL);
    if (now < vmsig_text_until) {
        return -EAGAIN;
    }
    vmsig_text_until = now + (int64_t)len * VMSIG_TEXT_KEY_DELAY_NS;
    for (i = 0; i < len; i++) {
        QKeyCode q = vmsig_char_qcode(text[i], &shift);

        if (shift) {
            qemu_input_event_send_key_qcode(NULL, Q_KEY_CODE_SHIFT, true);
        }
        qemu_input_event_send_key_qcode(NULL, q, true);
        qemu_input_event_send_key_qcode(NULL, q, false);
        if (shift) {
            qemu_input_event_send_key_qcode(NULL, Q_KEY_CODE_SHIFT, false);
        }
        qemu_input_event_send_key_delay(0); /* QEMU's default, 10 ms */
    }
    return 0;
}

/*
 * A VMSIG_INPUT_KEY code (a Linux input event code, vmsig_keys.h) as
 * QEMU's QKeyCode, by QEMU's own table; -EINVAL if QEMU has no key for it
 * (qemu_input_linux_to_qcode gives Q_KEY_CODE_UNMAPPED, also for a code past
 * the end of its table).
 */
static int vmsig_key_qcode(uint32_t code)
{
    int q = qemu_input_linux_to_qcode(code);

    if (q <= Q_KEY_CODE_UNMAPPED || q >= Q_KEY_CODE__MAX) {
        return -EINVAL;
    }
    return q;
}

/* vmsig's pointer buttons (VMSIG_BTN_*) as QEMU's InputButton. */
static int vmsig_button(uint32_t code)
{
    switch (code) {
    case VMSIG_BTN_LEFT:
        return INPUT_BUTTON_LEFT;
    case VMSIG_BTN_MIDDLE:
        return INPUT_BUTTON_MIDDLE;
    case VMSIG_BTN_RIGHT:
        return INPUT_BUTTON_RIGHT;
    case VMSIG_BTN_WHEEL_UP:
        return INPUT_BUTTON_WHEEL_UP;
    case VMSIG_BTN_WHEEL_DOWN:
        return INPUT_BUTTON_WHEEL_DOWN;
    case VMSIG_BTN_SIDE:
        return INPUT_BUTTON_SIDE;
    case VMSIG_BTN_EXTRA:
        return INPUT_BUTTON_EXTRA;
    default:
        return -EINVAL;
    }
}

/* vmsig's pointer axes (VMSIG_AXIS_*) as QEMU's InputAxis. */
static int vmsig_axis(uint32_t code)
{
    switch (code) {
    case VMSIG_AXIS_X:
        return INPUT_AXIS_X;
    case VMSIG_AXIS_Y:
        return INPUT_AXIS_Y;
    default:
        return -EINVAL;
    }
}

/* -EINVAL for a key code QEMU cannot map, naming it in the reply body. */
static int vmsig_key_refused(vmsig_reply *reply, uint32_t code)
{
    int n = snprintf((char *)reply->body, VMSIG_REPLY_BODY_MAX,
                     "vmsig: key code %" PRIu32 " (a Linux input event code) "
                     "has no QEMU key", code);

    reply->len = MIN(n, (int)VMSIG_REPLY_BODY_MAX - 1) + 1;
    return -EINVAL;
}

int vmsig_input_command(const vmsig_event *cmd, vmsig_reply *reply)
{
    const vmsig_wire_input *in = &cmd->u.input;
    bool down = in->value == 1;
    int q;

    /* QEMU's input layer drops events while the VM is stopped: say so. */
    if (!runstate_is_running() && !runstate_check(RUN_STATE_SUSPENDED)) {
        return -EAGAIN;
    }
    switch (in->op) {
    case VMSIG_INPUT_KEY:
        if ((in->value != 0 && in->value != 1) || in->len) {
            return -EINVAL;
        }
        q = vmsig_key_qcode(in->code);
        if (q < 0) {
            return vmsig_key_refused(reply, in->code);
        }
        qemu_input_event_send_key_qcode(NULL, q, down);
        return 0;
    case VMSIG_INPUT_BTN:
        q = vmsig_button(in->code);
        if (q < 0 || (in->value != 0 && in->value != 1) || in->len) {
            return -EINVAL;
        }
        qemu_input_queue_btn(NULL, q, down);
        qemu_input_event_sync();
        return 0;
    case VMSIG_INPUT_REL:
        q = vmsig_axis(in->code);
        if (q < 0 || in->len) {
            return -EINVAL;
        }
        qemu_input_queue_rel(NULL, q, in->value);
        qemu_input_event_sync();
        return 0;
    case VMSIG_INPUT_ABS:
        q = vmsig_axis(in->code);
        if (q < 0 || in->len || in->value < 0 || in->value > VMSIG_ABS_MAX) {
            return -EINVAL;
        }
        /* QEMU scales our 0..VMSIG_ABS_MAX to its own range */
        qemu_input_queue_abs(NULL, q, in->value, 0, VMSIG_ABS_MAX);
        qemu_input_event_sync();
        return 0;
    case VMSIG_INPUT_TEXT:
        if (!in->len || in->len > VMSIG_TEXT_MAX || cmd->ool_len != in->len ||
            !cmd->ool) {
            return -EINVAL;
        }
        return vmsig_input_text(cmd->ool, in->len);
    default:
        return -EINVAL;
    }
}
