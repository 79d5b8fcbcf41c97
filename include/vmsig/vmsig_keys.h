/*
 * vmsig_keys.h - the key codes of VMSIG_INPUT_KEY: vmsig's own numbers,
 * which are the Linux input event codes (KEY_* in
 * <linux/input-event-codes.h>), named with QEMU's qcode spellings. The QEMU
 * glue maps them to QEMU's QKeyCode; a code it cannot map is refused with
 * -EINVAL. Two names may share a code (aliases); vmsig_key_name() gives the
 * first listed. New keys are only ever added.
 *
 * VMSIG_KEYS(X) expands X(name, code) once per key, ascending by code.
 */
#ifndef VMSIG_KEYS_H
#define VMSIG_KEYS_H

#include <stdint.h>

#define VMSIG_KEYS(X) \
    X(esc,                 1) /* KEY_ESC */ \
    X(1,                   2) /* KEY_1 */ \
    X(2,                   3) /* KEY_2 */ \
    X(3,                   4) /* KEY_3 */ \
    X(4,                   5) /* KEY_4 */ \
    X(5,                   6) /* KEY_5 */ \
    X(6,                   7) /* KEY_6 */ \
    X(7,                   8) /* KEY_7 */ \
    X(8,                   9) /* KEY_8 */ \
    X(9,                  10) /* KEY_9 */ \
    X(0,                  11) /* KEY_0 */ \
    X(minus,              12) /* KEY_MINUS */ \
    X(equal,              13) /* KEY_EQUAL */ \
    X(backspace,          14) /* KEY_BACKSPACE */ \
    X(tab,                15) /* KEY_TAB */ \
    X(q,                  16) /* KEY_Q */ \
    X(w,                  17) /* KEY_W */ \
    X(e,                  18) /* KEY_E */ \
    X(r,                  19) /* KEY_R */ \
    X(t,                  20) /* KEY_T */ \
    X(y,                  21) /* KEY_Y */ \
    X(u,                  22) /* KEY_U */ \
    X(i,                  23) /* KEY_I */ \
    X(o,                  24) /* KEY_O */ \
    X(p,                  25) /* KEY_P */ \
    X(bracket_left,       26) /* KEY_LEFTBRACE */ \
    X(bracket_right,      27) /* KEY_RIGHTBRACE */ \
    X(ret,                28) /* KEY_ENTER */ \
    X(ctrl,               29) /* KEY_LEFTCTRL */ \
    X(a,                  30) /* KEY_A */ \
    X(s,                  31) /* KEY_S */ \
    X(d,                  32) /* KEY_D */ \
    X(f,                  33) /* KEY_F */ \
    X(g,                  34) /* KEY_G */ \
    X(h,                  35) /* KEY_H */ \
    X(j,                  36) /* KEY_J */ \
    X(k,                  37) /* KEY_K */ \
    X(l,                  38) /* KEY_L */ \
    X(semicolon,          39) /* KEY_SEMICOLON */ \
    X(apostrophe,         40) /* KEY_APOSTROPHE */ \
    X(grave_accent,       41) /* KEY_GRAVE */ \
    X(shift,              42) /* KEY_LEFTSHIFT */ \
    X(backslash,          43) /* KEY_BACKSLASH */ \
    X(z,                  44) /* KEY_Z */ \
    X(x,                  45) /* KEY_X */ \
    X(c,                  46) /* KEY_C */ \
    X(v,                  47) /* KEY_V */ \
    X(b,                  48) /* KEY_B */ \
    X(n,                  49) /* KEY_N */ \
    X(m,                  50) /* KEY_M */ \
    X(comma,              51) /* KEY_COMMA */ \
    X(dot,                52) /* KEY_DOT */ \
    X(slash,              53) /* KEY_SLASH */ \
    X(shift_r,            54) /* KEY_RIGHTSHIFT */ \
    X(kp_multiply,        55) /* KEY_KPASTERISK */ \
    X(asterisk,           55) /* KEY_KPASTERISK */ \
    X(alt,                56) /* KEY_LEFTALT */ \
    X(spc,                57) /* KEY_SPACE */ \
    X(caps_lock,          58) /* KEY_CAPSLOCK */ \
    X(f1,                 59) /* KEY_F1 */ \
    X(f2,                 60) /* KEY_F2 */ \
    X(f3,                 61) /* KEY_F3 */ \
    X(f4,                 62) /* KEY_F4 */ \
    X(f5,                 63) /* KEY_F5 */ \
    X(f6,                 64) /* KEY_F6 */ \
    X(f7,                 65) /* KEY_F7 */ \
    X(f8,                 66) /* KEY_F8 */ \
    X(f9,                 67) /* KEY_F9 */ \
    X(f10,                68) /* KEY_F10 */ \
    X(num_lock,           69) /* KEY_NUMLOCK */ \
    X(scroll_lock,        70) /* KEY_SCROLLLOCK */ \
    X(kp_7,               71) /* KEY_KP7 */ \
    X(kp_8,               72) /* KEY_KP8 */ \
    X(kp_9,               73) /* KEY_KP9 */ \
    X(kp_subtract,        74) /* KEY_KPMINUS */ \
    X(kp_4,               75) /* KEY_KP4 */ \
    X(kp_5,               76) /* KEY_KP5 */ \
    X(kp_6,               77) /* KEY_KP6 */ \
    X(kp_add,             78) /* KEY_KPPLUS */ \
    X(kp_1,               79) /* KEY_KP1 */ \
    X(kp_2,               80) /* KEY_KP2 */ \
    X(kp_3,               81) /* KEY_KP3 */ \
    X(kp_0,               82) /* KEY_KP0 */ \
    X(kp_decimal,         83) /* KEY_KPDOT */ \
    X(less,               86) /* KEY_102ND */ \
    X(f11,                87) /* KEY_F11 */ \
    X(f12,                88) /* KEY_F12 */ \
    X(ro,                 89) /* KEY_RO */ \
    X(hiragana,           91) /* KEY_HIRAGANA */ \
    X(henkan,             92) /* KEY_HENKAN */ \
    X(katakanahiragana,   93) /* KEY_KATAKANAHIRAGANA */ \
    X(muhenkan,           94) /* KEY_MUHENKAN */ \
    X(kp_enter,           96) /* KEY_KPENTER */ \
    X(ctrl_r,             97) /* KEY_RIGHTCTRL */ \
    X(kp_divide,          98) /* KEY_KPSLASH */ \
    X(sysrq,              99) /* KEY_SYSRQ */ \
    X(print,              99) /* KEY_SYSRQ */ \
    X(alt_r,             100) /* KEY_RIGHTALT */ \
    X(lf,                101) /* KEY_LINEFEED */ \
    X(home,              102) /* KEY_HOME */ \
    X(up,                103) /* KEY_UP */ \
    X(pgup,              104) /* KEY_PAGEUP */ \
    X(left,              105) /* KEY_LEFT */ \
    X(right,             106) /* KEY_RIGHT */ \
    X(end,               107) /* KEY_END */ \
    X(down,              108) /* KEY_DOWN */ \
    X(pgdn,              109) /* KEY_PAGEDOWN */ \
    X(insert,            110) /* KEY_INSERT */ \
    X(delete,            111) /* KEY_DELETE */ \
    X(audiomute,         113) /* KEY_MUTE */ \
    X(volumedown,        114) /* KEY_VOLUMEDOWN */ \
    X(volumeup,          115) /* KEY_VOLUMEUP */ \
    X(power,             116) /* KEY_POWER */ \
    X(kp_equals,         117) /* KEY_KPEQUAL */ \
    X(pause,             119) /* KEY_PAUSE */ \
    X(kp_comma,          121) /* KEY_KPCOMMA */ \
    X(lang1,             122) /* KEY_HANGEUL */ \
    X(lang2,             123) /* KEY_HANJA */ \
    X(yen,               124) /* KEY_YEN */ \
    X(meta_l,            125) /* KEY_LEFTMETA */ \
    X(meta_r,            126) /* KEY_RIGHTMETA */ \
    X(compose,           127) /* KEY_COMPOSE */ \
    X(stop,              128) /* KEY_STOP */ \
    X(again,             129) /* KEY_AGAIN */ \
    X(props,             130) /* KEY_PROPS */ \
    X(undo,              131) /* KEY_UNDO */ \
    X(front,             132) /* KEY_FRONT */ \
    X(copy,              133) /* KEY_COPY */ \
    X(open,              134) /* KEY_OPEN */ \
    X(paste,             135) /* KEY_PASTE */ \
    X(find,              136) /* KEY_FIND */ \
    X(cut,               137) /* KEY_CUT */ \
    X(help,              138) /* KEY_HELP */ \
    X(menu,              139) /* KEY_MENU */ \
    X(calculator,        140) /* KEY_CALC */ \
    X(sleep,             142) /* KEY_SLEEP */ \
    X(wake,              143) /* KEY_WAKEUP */ \
    X(mail,              155) /* KEY_MAIL */ \
    X(ac_bookmarks,      156) /* KEY_BOOKMARKS */ \
    X(computer,          157) /* KEY_COMPUTER */ \
    X(ac_back,           158) /* KEY_BACK */ \
    X(ac_forward,        159) /* KEY_FORWARD */ \
    X(audionext,         163) /* KEY_NEXTSONG */ \
    X(audioplay,         164) /* KEY_PLAYPAUSE */ \
    X(audioprev,         165) /* KEY_PREVIOUSSONG */ \
    X(audiostop,         166) /* KEY_STOPCD */ \
    X(ac_home,           172) /* KEY_HOMEPAGE */ \
    X(ac_refresh,        173) /* KEY_REFRESH */ \
    X(mediaselect,       226) /* KEY_MEDIA */ \

/* Name of a key code ("a", "ret", "shift"), NULL if the code has none. */
const char *vmsig_key_name(uint32_t code);
/* Code of a key name (QEMU qcode spelling, case-insensitive), -1 if unknown. */
int vmsig_key_by_name(const char *name);

#endif /* VMSIG_KEYS_H */
