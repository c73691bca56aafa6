// crc32c: CRC-32C (Castagnoli) with the SSE4.2 crc32 instruction, for lib/blockgroup/crc32c.ts.
// The instruction has a latency of three cycles and a throughput of one per cycle, so one
// dependent chain runs at a third of the possible speed: long inputs are cut into three
// adjacent streams checksummed in the same loop (three independent chains), then joined. The
// join is linear algebra over GF(2): crc(A||B) = shift_L(crc(A)) ^ crc(B) for a raw register
// value (no pre/post inversion), where shift_L feeds L zero bytes; for the fixed stream length
// L that operator is tabulated once (4 x 256 entries, built with the instruction itself).
//
// Exports: supported (boolean: the CPU has SSE4.2), crc32c(buf, crc, start, end) -> uint32
// with the same contract as the TypeScript version (crc continues a previous result; 0 starts).
// Bounds are checked here as well as in JS: a bad call answers an exception, never reads past
// the buffer. Anything that is not x86-64 builds a stub with supported = false.
#include <node_api.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#if defined(__x86_64__)
#include <nmmintrin.h>
#define HAVE_X86 1
#else
#define HAVE_X86 0
#endif

// Bytes per stream in the three-way loop: long enough that the join (two table shifts) is
// noise, short enough that a 4 KiB input already uses it.
#define STREAM 1024

static int g_supported = 0;
static uint32_t g_shift[4][256];

#if HAVE_X86
__attribute__((target("sse4.2"))) static uint32_t crc_one(uint32_t c, const uint8_t *p, size_t n) {
  uint64_t c64 = c;
  while (n > 0 && ((uintptr_t)p & 7) != 0) {
    c64 = _mm_crc32_u8((uint32_t)c64, *p++);
    n--;
  }
  while (n >= 8) {
    uint64_t w;
    memcpy(&w, p, 8);
    c64 = _mm_crc32_u64(c64, w);
    p += 8;
    n -= 8;
  }
  while (n > 0) {
    c64 = _mm_crc32_u8((uint32_t)c64, *p++);
    n--;
  }
  return (uint32_t)c64;
}

static inline uint32_t shift(uint32_t c) {
  return g_shift[0][c & 0xff] ^ g_shift[1][(c >> 8) & 0xff] ^ g_shift[2][(c >> 16) & 0xff] ^ g_shift[3][c >> 24];
}

__attribute__((target("sse4.2"))) static void init_tables(void) {
  static const uint8_t zeros[STREAM] = {0};
  for (int j = 0; j < 4; j++)
    for (int b = 0; b < 256; b++) g_shift[j][b] = crc_one((uint32_t)b << (8 * j), zeros, STREAM);
}

__attribute__((target("sse4.2"))) static uint32_t crc_raw(uint32_t c, const uint8_t *p, size_t n) {
  while (n > 0 && ((uintptr_t)p & 7) != 0) {
    c = _mm_crc32_u8(c, *p++);
    n--;
  }
  while (n >= 3 * STREAM) {
    uint64_t a = c, b = 0, d = 0;
    const uint8_t *pa = p, *pb = p + STREAM, *pd = p + 2 * STREAM;
    for (size_t i = 0; i < STREAM; i += 8) {
      uint64_t wa, wb, wd;
      memcpy(&wa, pa + i, 8);
      memcpy(&wb, pb + i, 8);
      memcpy(&wd, pd + i, 8);
      a = _mm_crc32_u64(a, wa);
      b = _mm_crc32_u64(b, wb);
      d = _mm_crc32_u64(d, wd);
    }
    c = shift(shift((uint32_t)a) ^ (uint32_t)b) ^ (uint32_t)d;
    p += 3 * STREAM;
    n -= 3 * STREAM;
  }
  return crc_one(c, p, n);
}
#endif

static napi_value throw_type(napi_env env, const char *msg) {
  napi_throw_type_error(env, "BLOCKGROUP_CRC_ARGS", msg);
  return NULL;
}

// crc32c(buf: Uint8Array, crc: number, start: number, end: number): number
static napi_value js_crc32c(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 4) return throw_type(env, "crc32c: want (buf, crc, start, end)");
  bool is_ta = false;
  napi_is_typedarray(env, argv[0], &is_ta);
  if (!is_ta) return throw_type(env, "crc32c: buf must be a Uint8Array");
  napi_typedarray_type type;
  size_t len = 0;
  void *data = NULL;
  if (napi_get_typedarray_info(env, argv[0], &type, &len, &data, NULL, NULL) != napi_ok || type != napi_uint8_array) return throw_type(env, "crc32c: buf must be a Uint8Array");
  uint32_t crc = 0;
  double start = 0, end = 0;
  if (napi_get_value_uint32(env, argv[1], &crc) != napi_ok || napi_get_value_double(env, argv[2], &start) != napi_ok || napi_get_value_double(env, argv[3], &end) != napi_ok) {
    return throw_type(env, "crc32c: crc, start and end must be numbers");
  }
  if (!(start >= 0 && start <= end && end <= (double)len)) return throw_type(env, "crc32c: range outside the buffer");
  uint32_t out = crc;
#if HAVE_X86
  if (!g_supported) return throw_type(env, "crc32c: this CPU has no SSE4.2");
  out = ~crc_raw(~crc, (const uint8_t *)data + (size_t)start, (size_t)end - (size_t)start);
#else
  (void)data;
  return throw_type(env, "crc32c: not built for this CPU");
#endif
  napi_value r;
  napi_create_uint32(env, out, &r);
  return r;
}

NAPI_MODULE_INIT() {
#if HAVE_X86
  __builtin_cpu_init();
  g_supported = __builtin_cpu_supports("sse4.2") ? 1 : 0;
  if (g_supported) init_tables();
#endif
  napi_value fn, sup;
  napi_create_function(env, "crc32c", NAPI_AUTO_LENGTH, js_crc32c, NULL, &fn);
  napi_set_named_property(env, exports, "crc32c", fn);
  napi_get_boolean(env, g_supported != 0, &sup);
  napi_set_named_property(env, exports, "supported", sup);
  return exports;
}
