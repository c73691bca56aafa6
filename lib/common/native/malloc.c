// mallopt for the data-path daemons (Node has no binding): retain(mmapThreshold, trimThreshold)
// fixes glibc's mmap threshold (below it, blocks come from the heap and are reused after free,
// instead of fresh mmap'd pages every time) and its trim threshold (free heap memory is kept up
// to that much instead of being handed back to the kernel). Answers 1 when both were set, 0
// when mallopt refused, -1 on a C library without these knobs (musl). misalignment(buf, align)
// answers how far buf's first byte is past the last multiple of align (a power of two) in
// memory: O_DIRECT needs aligned buffers, and JavaScript cannot see an address.
#include <node_api.h>
#include <stdint.h>
#if defined(__GLIBC__)
#include <malloc.h>
#endif

static napi_value js_retain(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  napi_value out;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 2) {
    napi_throw_type_error(env, NULL, "retain(mmapThreshold, trimThreshold)");
    return NULL;
  }
  int32_t mmapThreshold, trimThreshold;
  if (napi_get_value_int32(env, argv[0], &mmapThreshold) != napi_ok || napi_get_value_int32(env, argv[1], &trimThreshold) != napi_ok || mmapThreshold < 0 ||
      trimThreshold < 0) {
    napi_throw_type_error(env, NULL, "retain: thresholds must be non-negative 32-bit integers");
    return NULL;
  }
#if defined(__GLIBC__)
  int ok = mallopt(M_MMAP_THRESHOLD, mmapThreshold) == 1 && mallopt(M_TRIM_THRESHOLD, trimThreshold) == 1;
  napi_create_int32(env, ok ? 1 : 0, &out);
#else
  napi_create_int32(env, -1, &out);
#endif
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
  napi_value fn;
  napi_create_function(env, "retain", NAPI_AUTO_LENGTH, js_retain, NULL, &fn);
  napi_set_named_property(env, exports, "retain", fn);
  napi_create_function(env, "misalignment", NAPI_AUTO_LENGTH, js_misalignment, NULL, &fn);
  napi_set_named_property(env, exports, "misalignment", fn);
  return exports;
}
