"""The vmsig wire protocol, generated from include/vmsig/ by python/tools/gen_wire.py.

Do not edit: run `python3 python/tools/gen_wire.py` after changing the headers.
tests/python/test_layout.py checks this file against the headers (regenerating it)
and every offset against a C compiler's offsetof().
"""
# flake8: noqa

# Every integer #define VMSIG_* of vmsig_wire.h, vmsig_event.h, vmsig_keys.h.
VMSIG_WIRE_MAJOR = 1
VMSIG_WIRE_MINOR = 2
VMSIG_FEAT_VMINFO_HOST = 1
VMSIG_FEAT_CPU = 2
VMSIG_FEAT_SNAPSHOT = 4
VMSIG_FEATURES_KNOWN = 7
VMSIG_WIRE_MAX_PAYLOAD = 0x101000
VMSIG_WIRE_MAX_FDS = 0x10
VMSIG_MEMWRITE_MAX = 0x100000
VMSIG_TEXT_MAX = 0x400
VMSIG_MEMCTX_MAX_SEGS = 0x40
VMSIG_TOKEN_MAX = 0x40
VMSIG_ENDPOINT_MAX = 0x40
VMSIG_MSG_HELLO = 1
VMSIG_MSG_WELCOME = 2
VMSIG_MSG_REPLY = 3
VMSIG_MSG_BYE = 4
VMSIG_MSG_SUBSCRIBE = 5
VMSIG_EV_RUNSTATE = 0x101
VMSIG_EV_RESET = 0x102
VMSIG_EV_POWERDOWN = 0x103
VMSIG_EV_SUSPEND = 0x104
VMSIG_EV_WAKEUP = 0x105
VMSIG_EV_SHUTDOWN = 0x106
VMSIG_EV_SNAPSHOT = 0x107
VMSIG_EV_MEMCTX = 0x201
VMSIG_EV_MEMWRITE_DONE = 0x202
VMSIG_EV_ARB = 0x301
VMSIG_CMD_NOP = 0x1000
VMSIG_CMD_VM = 0x1001
VMSIG_CMD_LIFECYCLE = 0x1002
VMSIG_CMD_POWER = 0x1003
VMSIG_CMD_INPUT = 0x1004
VMSIG_CMD_MEMWRITE = 0x1005
VMSIG_CMD_ACQUIRE = 0x1006
VMSIG_CMD_RELEASE = 0x1007
VMSIG_CMD_CPU = 0x1008
VMSIG_CMD_SNAPSHOT = 0x1009
VMSIG_F_SNAPSHOT = 1
VMSIG_F_KNOWN = 1
VMSIG_RS_DEBUG = 0
VMSIG_RS_INMIGRATE = 1
VMSIG_RS_INTERNAL_ERROR = 2
VMSIG_RS_IO_ERROR = 3
VMSIG_RS_PAUSED = 4
VMSIG_RS_POSTMIGRATE = 5
VMSIG_RS_PRELAUNCH = 6
VMSIG_RS_FINISH_MIGRATE = 7
VMSIG_RS_RESTORE_VM = 8
VMSIG_RS_RUNNING = 9
VMSIG_RS_SAVE_VM = 0xa
VMSIG_RS_SHUTDOWN = 0xb
VMSIG_RS_SUSPENDED = 0xc
VMSIG_RS_WATCHDOG = 0xd
VMSIG_RS_GUEST_PANICKED = 0xe
VMSIG_RS_COLO = 0xf
VMSIG_RS_OTHER = 0x10
VMSIG_RS__COUNT = 0x11
VMSIG_SC_NONE = 0
VMSIG_SC_HOST_ERROR = 1
VMSIG_SC_HOST_QMP_QUIT = 2
VMSIG_SC_HOST_QMP_SYSTEM_RESET = 3
VMSIG_SC_HOST_SIGNAL = 4
VMSIG_SC_HOST_UI = 5
VMSIG_SC_GUEST_SHUTDOWN = 6
VMSIG_SC_GUEST_RESET = 7
VMSIG_SC_GUEST_PANIC = 8
VMSIG_SC_SUBSYSTEM_RESET = 9
VMSIG_SC_SNAPSHOT_LOAD = 0xa
VMSIG_SC_OTHER = 0xb
VMSIG_SC__COUNT = 0xc
VMSIG_ARB_GRANTED = 1
VMSIG_ARB_PREEMPTED = 2
VMSIG_ARB_RELEASED = 3
VMSIG_CLASS_INPUT = 1
VMSIG_CLASS_RUN = 2
VMSIG_CLASS_POWER = 3
VMSIG_CLASS_MEMWRITE = 4
VMSIG_CLASS_SNAPSHOT = 5
VMSIG_CLASS__COUNT = 6
VMSIG_VM_QUERY = 1
VMSIG_VM_STOP = 2
VMSIG_VM_CONT = 3
VMSIG_LC_PAUSE = 1
VMSIG_LC_RESUME = 2
VMSIG_LC_WAKEUP = 3
VMSIG_PWR_POWERDOWN = 1
VMSIG_PWR_RESET = 2
VMSIG_PWR_QUIT = 3
VMSIG_INPUT_KEY = 1
VMSIG_INPUT_BTN = 2
VMSIG_INPUT_REL = 3
VMSIG_INPUT_ABS = 4
VMSIG_INPUT_TEXT = 5
VMSIG_BTN_LEFT = 0
VMSIG_BTN_MIDDLE = 1
VMSIG_BTN_RIGHT = 2
VMSIG_BTN_WHEEL_UP = 3
VMSIG_BTN_WHEEL_DOWN = 4
VMSIG_BTN_SIDE = 5
VMSIG_BTN_EXTRA = 6
VMSIG_BTN__COUNT = 7
VMSIG_AXIS_X = 0
VMSIG_AXIS_Y = 1
VMSIG_ABS_MAX = 0x7fff
VMSIG_CPU_REGS = 1
VMSIG_ARCH_X86_64 = 1
VMSIG_CPU_F_HALTED = 1
VMSIG_CPU_F_LMA = 2
VMSIG_CPU_F_PAGING = 4
VMSIG_SNAP_SAVE = 1
VMSIG_SNAP_RESTORE = 2
VMSIG_SNAP_DELETE = 3
VMSIG_SNAP_LIST = 4
VMSIG_SNAP_THEN_KEEP = 0
VMSIG_SNAP_THEN_RUN = 1
VMSIG_SNAP_THEN_PAUSE = 2
VMSIG_SNAP_F_FULL = 1
VMSIG_SNAP_F_KNOWN = 1
VMSIG_SNAP_NAME_MAX = 0x20
VMSIG_SNAP_MAX = 0x10
VMSIG_DIR_UP = 1
VMSIG_DIR_DOWN = 2
VMSIG_SRC_SEAM = 0
VMSIG_SRC_MEMCTX = 1
VMSIG_SRC_ARB = 2
VMSIG_SRC_ALL = 7
VMSIG_CAP_OBSERVE = 1
VMSIG_CAP_INPUT = 2
VMSIG_CAP_LIFECYCLE = 8
VMSIG_CAP_POWER = 0x20
VMSIG_CAP_VM = 0x40
VMSIG_CAP_MEMCTX = 0x80
VMSIG_CAP_MEMWRITE = 0x100
VMSIG_CAP_CPU = 0x200
VMSIG_CAP_SNAPSHOT = 0x400
VMSIG_CAP_ALL_1_0 = 0x1eb
VMSIG_CAP_RETIRED = 0x14
VMSIG_REPLY_BODY_MAX_1_0 = 0x100
VMSIG_REPLY_BODY_MAX = 0x400

# Struct layouts: name -> (struct format, size, [(field, offset, size)]).
# Nested structs are flattened with dotted names (sub.source_mask).
STRUCTS = {
    'vmsig_wire_hdr': ('<HBBIQQIi', 32, [
        ('kind', 0, 2),
        ('nfds', 2, 1),
        ('flags', 3, 1),
        ('len', 4, 4),
        ('id', 8, 8),
        ('ts_ns', 16, 8),
        ('endpoint', 24, 4),
        ('status', 28, 4),
    ]),
    'vmsig_wire_sub': ('<IIQ', 16, [
        ('source_mask', 0, 4),
        ('reserved', 4, 4),
        ('endpoint_mask', 8, 8),
    ]),
    'vmsig_wire_hello': ('<HHIQIIQ64s', 96, [
        ('major', 0, 2),
        ('minor', 2, 2),
        ('flags', 4, 4),
        ('features', 8, 8),
        ('sub.source_mask', 16, 4),
        ('sub.reserved', 20, 4),
        ('sub.endpoint_mask', 24, 8),
        ('token', 32, 64),
    ]),
    'vmsig_wire_welcome': ('<HHIQIiIIQIIIIQ', 64, [
        ('major', 0, 2),
        ('minor', 2, 2),
        ('principal', 4, 4),
        ('endpoint_mask', 8, 8),
        ('caps', 16, 4),
        ('priority', 20, 4),
        ('sub.source_mask', 24, 4),
        ('sub.reserved', 28, 4),
        ('sub.endpoint_mask', 32, 8),
        ('max_payload', 40, 4),
        ('max_fds', 44, 4),
        ('queue_limit', 48, 4),
        ('reserved', 52, 4),
        ('features', 56, 8),
    ]),
    'vmsig_wire_bye': ('<120s', 120, [
        ('text', 0, 120),
    ]),
    'vmsig_wire_seam': ('<IIII', 16, [
        ('state', 0, 4),
        ('cause', 4, 4),
        ('running', 8, 4),
        ('guest', 12, 4),
    ]),
    'vmsig_wire_memseg': ('<QQQII', 32, [
        ('gpa', 0, 8),
        ('size', 8, 8),
        ('offset', 16, 8),
        ('fd_index', 24, 4),
        ('flags', 28, 4),
    ]),
    'vmsig_wire_memctx': ('<QQIi104s', 128, [
        ('generation', 0, 8),
        ('ram_size', 8, 8),
        ('nseg', 16, 4),
        ('status', 20, 4),
        ('why', 24, 104),
    ]),
    'vmsig_wire_memwrite_done': ('<QQQII', 32, [
        ('gpa', 0, 8),
        ('len', 8, 8),
        ('generation', 16, 8),
        ('writer', 24, 4),
        ('reserved', 28, 4),
    ]),
    'vmsig_wire_arb': ('<IIII', 16, [
        ('cls', 0, 4),
        ('what', 4, 4),
        ('owner', 8, 4),
        ('by', 12, 4),
    ]),
    'vmsig_wire_cmd': ('<II', 8, [
        ('op', 0, 4),
        ('arg', 4, 4),
    ]),
    'vmsig_wire_vminfo': ('<IIIIQQ32s32s', 96, [
        ('state', 0, 4),
        ('running', 4, 4),
        ('vcpus', 8, 4),
        ('endpoint', 12, 4),
        ('ram_size', 16, 8),
        ('memctx_gen', 24, 8),
        ('version', 32, 32),
        ('name', 64, 32),
    ]),
    'vmsig_wire_vminfo_host': ('<II16s16s', 40, [
        ('pid', 0, 4),
        ('reserved', 4, 4),
        ('accel', 8, 16),
        ('uuid', 24, 16),
    ]),
    'vmsig_wire_input': ('<IIiI', 16, [
        ('op', 0, 4),
        ('code', 4, 4),
        ('value', 8, 4),
        ('len', 12, 4),
    ]),
    'vmsig_wire_cpu': ('<II', 8, [
        ('op', 0, 4),
        ('index', 4, 4),
    ]),
    'vmsig_wire_seg': ('<QIHH', 16, [
        ('base', 0, 8),
        ('limit', 8, 4),
        ('selector', 12, 2),
        ('attr', 14, 2),
    ]),
    'vmsig_wire_dtr': ('<QII', 16, [
        ('base', 0, 8),
        ('limit', 8, 4),
        ('reserved', 12, 4),
    ]),
    'vmsig_wire_cpu_regs': ('<IIII16QQQQQQQQQQIHHQIHHQIHHQIHHQIHHQIHHQIHHQIHHQIIQII', 368, [
        ('index', 0, 4),
        ('arch', 4, 4),
        ('flags', 8, 4),
        ('reserved', 12, 4),
        ('gpr', 16, 128),
        ('rip', 144, 8),
        ('rflags', 152, 8),
        ('cr0', 160, 8),
        ('cr2', 168, 8),
        ('cr3', 176, 8),
        ('cr4', 184, 8),
        ('efer', 192, 8),
        ('kernel_gs_base', 200, 8),
        ('es.base', 208, 8),
        ('es.limit', 216, 4),
        ('es.selector', 220, 2),
        ('es.attr', 222, 2),
        ('cs.base', 224, 8),
        ('cs.limit', 232, 4),
        ('cs.selector', 236, 2),
        ('cs.attr', 238, 2),
        ('ss.base', 240, 8),
        ('ss.limit', 248, 4),
        ('ss.selector', 252, 2),
        ('ss.attr', 254, 2),
        ('ds.base', 256, 8),
        ('ds.limit', 264, 4),
        ('ds.selector', 268, 2),
        ('ds.attr', 270, 2),
        ('fs.base', 272, 8),
        ('fs.limit', 280, 4),
        ('fs.selector', 284, 2),
        ('fs.attr', 286, 2),
        ('gs.base', 288, 8),
        ('gs.limit', 296, 4),
        ('gs.selector', 300, 2),
        ('gs.attr', 302, 2),
        ('ldt.base', 304, 8),
        ('ldt.limit', 312, 4),
        ('ldt.selector', 316, 2),
        ('ldt.attr', 318, 2),
        ('tr.base', 320, 8),
        ('tr.limit', 328, 4),
        ('tr.selector', 332, 2),
        ('tr.attr', 334, 2),
        ('gdt.base', 336, 8),
        ('gdt.limit', 344, 4),
        ('gdt.reserved', 348, 4),
        ('idt.base', 352, 8),
        ('idt.limit', 360, 4),
        ('idt.reserved', 364, 4),
    ]),
    'vmsig_wire_snapshot': ('<IIII32s', 48, [
        ('op', 0, 4),
        ('then', 4, 4),
        ('flags', 8, 4),
        ('reserved', 12, 4),
        ('name', 16, 32),
    ]),
    'vmsig_wire_snap_info': ('<32sQQII', 56, [
        ('name', 0, 32),
        ('ram_bytes', 32, 8),
        ('age_ms', 40, 8),
        ('state_bytes', 48, 4),
        ('restores', 52, 4),
    ]),
    'vmsig_wire_snap_result': ('<32sQQIIQQQII', 88, [
        ('info.name', 0, 32),
        ('info.ram_bytes', 32, 8),
        ('info.age_ms', 40, 8),
        ('info.state_bytes', 48, 4),
        ('info.restores', 52, 4),
        ('generation', 56, 8),
        ('pages', 64, 8),
        ('stopped_ns', 72, 8),
        ('full', 80, 4),
        ('reserved', 84, 4),
    ]),
    'vmsig_wire_snap_list': ('<IIQQ', 24, [
        ('count', 0, 4),
        ('max', 4, 4),
        ('used', 8, 8),
        ('limit', 16, 8),
    ]),
    'vmsig_wire_snap_event': ('<IIQ32s', 48, [
        ('what', 0, 4),
        ('by', 4, 4),
        ('generation', 8, 8),
        ('name', 16, 32),
    ]),
    'vmsig_wire_memwrite': ('<QII', 16, [
        ('gpa', 0, 8),
        ('len', 8, 4),
        ('flags', 12, 4),
    ]),
}

# Key codes (VMSIG_KEYS of vmsig_keys.h): QEMU qcode name -> Linux KEY_* code.
KEYS = {
    'esc': 1,
    '1': 2,
    '2': 3,
    '3': 4,
    '4': 5,
    '5': 6,
    '6': 7,
    '7': 8,
    '8': 9,
    '9': 10,
    '0': 11,
    'minus': 12,
    'equal': 13,
    'backspace': 14,
    'tab': 15,
    'q': 16,
    'w': 17,
    'e': 18,
    'r': 19,
    't': 20,
    'y': 21,
    'u': 22,
    'i': 23,
    'o': 24,
    'p': 25,
    'bracket_left': 26,
    'bracket_right': 27,
    'ret': 28,
    'ctrl': 29,
    'a': 30,
    's': 31,
    'd': 32,
    'f': 33,
    'g': 34,
    'h': 35,
    'j': 36,
    'k': 37,
    'l': 38,
    'semicolon': 39,
    'apostrophe': 40,
    'grave_accent': 41,
    'shift': 42,
    'backslash': 43,
    'z': 44,
    'x': 45,
    'c': 46,
    'v': 47,
    'b': 48,
    'n': 49,
    'm': 50,
    'comma': 51,
    'dot': 52,
    'slash': 53,
    'shift_r': 54,
    'kp_multiply': 55,
    'asterisk': 55,
    'alt': 56,
    'spc': 57,
    'caps_lock': 58,
    'f1': 59,
    'f2': 60,
    'f3': 61,
    'f4': 62,
    'f5': 63,
    'f6': 64,
    'f7': 65,
    'f8': 66,
    'f9': 67,
    'f10': 68,
    'num_lock': 69,
    'scroll_lock': 70,
    'kp_7': 71,
    'kp_8': 72,
    'kp_9': 73,
    'kp_subtract': 74,
    'kp_4': 75,
    'kp_5': 76,
    'kp_6': 77,
    'kp_add': 78,
    'kp_1': 79,
    'kp_2': 80,
    'kp_3': 81,
    'kp_0': 82,
    'kp_decimal': 83,
    'less': 86,
    'f11': 87,
    'f12': 88,
    'ro': 89,
    'hiragana': 91,
    'henkan': 92,
    'katakanahiragana': 93,
    'muhenkan': 94,
    'kp_enter': 96,
    'ctrl_r': 97,
    'kp_divide': 98,
    'sysrq': 99,
    'print': 99,
    'alt_r': 100,
    'lf': 101,
    'home': 102,
    'up': 103,
    'pgup': 104,
    'left': 105,
    'right': 106,
    'end': 107,
    'down': 108,
    'pgdn': 109,
    'insert': 110,
    'delete': 111,
    'audiomute': 113,
    'volumedown': 114,
    'volumeup': 115,
    'power': 116,
    'kp_equals': 117,
    'pause': 119,
    'kp_comma': 121,
    'lang1': 122,
    'lang2': 123,
    'yen': 124,
    'meta_l': 125,
    'meta_r': 126,
    'compose': 127,
    'stop': 128,
    'again': 129,
    'props': 130,
    'undo': 131,
    'front': 132,
    'copy': 133,
    'open': 134,
    'paste': 135,
    'find': 136,
    'cut': 137,
    'help': 138,
    'menu': 139,
    'calculator': 140,
    'sleep': 142,
    'wake': 143,
    'mail': 155,
    'ac_bookmarks': 156,
    'computer': 157,
    'ac_back': 158,
    'ac_forward': 159,
    'audionext': 163,
    'audioplay': 164,
    'audioprev': 165,
    'audiostop': 166,
    'ac_home': 172,
    'ac_refresh': 173,
    'mediaselect': 226,
}

# Capability names (VMSIG_CAPS of vmsig_event.h).
CAP_NAMES = {
    'OBSERVE': VMSIG_CAP_OBSERVE,
    'INPUT': VMSIG_CAP_INPUT,
    'LIFECYCLE': VMSIG_CAP_LIFECYCLE,
    'POWER': VMSIG_CAP_POWER,
    'VM': VMSIG_CAP_VM,
    'MEMCTX': VMSIG_CAP_MEMCTX,
    'MEMWRITE': VMSIG_CAP_MEMWRITE,
    'CPU': VMSIG_CAP_CPU,
    'SNAPSHOT': VMSIG_CAP_SNAPSHOT,
}
