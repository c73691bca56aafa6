// setsockopt(SO_RCVLOWAT) for lib/rpc (Node has no binding): rcvlowat(fd, bytes) answers 0 or
// the errno. While a large frame is arriving the connection asks the kernel to wake it only
// once that many bytes are queued, so a 1 MiB frame costs a few reads instead of one wake-up
// and one read per 64 KiB segment; between frames it is set back to 1.
#include <node_api.h>
#include <sys/socket.h>
#include <errno.h>
#include <stdint.h>

static napi_value js_rcvlowat(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  napi_value out;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 2) {
    napi_throw_type_error(env, NULL, "rcvlowat(fd, bytes)");
    return NULL;
  }
  int32_t fd, bytes;
  if (napi_get_value_int32(env, argv[0], &fd) != napi_ok || napi_get_value_int32(env, argv[1], &bytes) != napi_ok || fd < 0 || bytes < 1) {
    napi_throw_type_error(env, NULL, "rcvlowat: fd must be >= 0 and bytes >= 1");
    return NULL;
  }
  int v = bytes;
  int r = setsockopt(fd, SOL_SOCKET, SO_RCVLOWAT, &v, sizeof v);
  napi_create_int32(env, r == 0 ? 0 : errno, &out);
  return out;
}

NAPI_MODULE_INIT() {
  napi_value fn;
  napi_create_function(env, "rcvlowat", NAPI_AUTO_LENGTH, js_rcvlowat, NULL, &fn);
  napi_set_named_property(env, exports, "rcvlowat", fn);
  return exports;
}
