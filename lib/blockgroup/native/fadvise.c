// Page-cache helpers for the datanode (Node has no binding for either):
// fadvise(fd, offset, length, advice) answers 0 or the errno; used to drop written, synced
// extent bytes from the page cache (POSIX_FADV_DONTNEED) when three replicas share one
// machine's memory. misalignment(buf, align) answers how far buf's first byte is past the
// last multiple of align (a power of two) in memory: O_DIRECT reads need an aligned buffer.
#define _GNU_SOURCE
#include <node_api.h>
#include <fcntl.h>
#include <stdint.h>

static napi_value js_fadvise(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  napi_value out;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 4) {
    napi_throw_type_error(env, NULL, "fadvise(fd, offset, length, advice)");
    return NULL;
  }
  int32_t fd, advice;
  double offset, length;
  if (napi_get_value_int32(env, argv[0], &fd) != napi_ok || napi_get_value_double(env, argv[1], &offset) != napi_ok ||
      napi_get_value_double(env, argv[2], &length) != napi_ok || napi_get_value_int32(env, argv[3], &advice) != napi_ok ||
      fd < 0 || offset < 0 || length < 0 || offset > 9007199254740991.0 || length > 9007199254740991.0) {
    napi_throw_type_error(env, NULL, "fadvise: fd, offset and length must be non-negative integers");
    return NULL;
  }
  int r = posix_fadvise(fd, (off_t)offset, (off_t)length, advice);
  napi_create_int32(env, r, &out);
  return out;
}

static napi_value js_misalignment(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  napi_value out;
  void *data = NULL;
  size_t len = 0;
  int32_t align;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 2 || napi_get_typedarray_info(env, argv[0], NULL, &len, &data, NULL, NULL) != napi_ok ||
      napi_get_value_int32(env, argv[1], &align) != napi_ok || align <= 0 || (align & (align - 1)) != 0) {
    napi_throw_type_error(env, NULL, "misalignment(uint8array, powerOfTwo)");
    return NULL;
  }
  napi_create_int32(env, (int32_t)((uintptr_t)data & (uintptr_t)(align - 1)), &out);
  return out;
}

NAPI_MODULE_INIT() {
  napi_value fn, c;
  napi_create_function(env, "fadvise", NAPI_AUTO_LENGTH, js_fadvise, NULL, &fn);
  napi_set_named_property(env, exports, "fadvise", fn);
  napi_create_function(env, "misalignment", NAPI_AUTO_LENGTH, js_misalignment, NULL, &fn);
  napi_set_named_property(env, exports, "misalignment", fn);
  napi_create_int32(env, POSIX_FADV_DONTNEED, &c);
  napi_set_named_property(env, exports, "DONTNEED", c);
  return exports;
}
