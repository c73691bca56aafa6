// Page-cache helper for the datanode (Node has no binding for it): fadvise(fd, offset, length,
// advice) answers 0 or the errno; used to drop written, synced extent bytes from the page cache
// (POSIX_FADV_DONTNEED) when three replicas share one machine's memory.
#define _GNU_SOURCE
#include <node_api.h>
#include <fcntl.h>

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

NAPI_MODULE_INIT() {
  napi_value fn, c;
  napi_create_function(env, "fadvise", NAPI_AUTO_LENGTH, js_fadvise, NULL, &fn);
  napi_set_named_property(env, exports, "fadvise", fn);
  napi_create_int32(env, POSIX_FADV_DONTNEED, &c);
  napi_set_named_property(env, exports, "DONTNEED", c);
  return exports;
}
