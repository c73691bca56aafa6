// fileio: page-cache hints for lib/blockgroup/fileio.ts, which Node's fs does not offer.
//
//   willNeed(fd, offset, length, cb)        posix_fadvise(POSIX_FADV_WILLNEED): start reading the
//                                           range into the page cache now (returns once the I/O
//                                           is submitted, not done)
//   dontNeed(fd, offset, length, cb)        posix_fadvise(POSIX_FADV_DONTNEED): drop clean cached
//                                           pages of the range (tests use it to make a file cold)
//   resident(fd, offset, length) -> number  bytes of the range in the page cache (mincore of a
//                                           mapping; tests use it to see a hint's effect)
//
// The first two can block for a while (page allocation, a full request queue), so they run on
// libuv's thread pool (napi async work) and call cb(errno) on the loop, 0 meaning success. The
// caller keeps the fd open until cb runs. Linux only: anything else builds with supported=false.
#include <node_api.h>
#include <stdint.h>
#include <stdlib.h>

#if defined(__linux__)
#include <errno.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>
#define HAVE_LINUX 1
#else
#define HAVE_LINUX 0
#endif

enum op { OP_WILLNEED, OP_DONTNEED };

typedef struct {
  napi_async_work work;
  napi_ref cb;
  int op;
  int fd;
  int64_t offset;
  int64_t length;
  int err;
} job_t;

static napi_value throw_type(napi_env env, const char *msg) {
  napi_throw_type_error(env, "BLOCKGROUP_FILEIO_ARGS", msg);
  return NULL;
}

// fd: a non-negative int32; offset, length: non-negative safe integers (length 0 = to the end).
static int read_range(napi_env env, napi_value *argv, int *fd, int64_t *off, int64_t *len) {
  double f = -1, o = -1, l = -1;
  if (napi_get_value_double(env, argv[0], &f) != napi_ok || napi_get_value_double(env, argv[1], &o) != napi_ok ||
      napi_get_value_double(env, argv[2], &l) != napi_ok)
    return 0;
  if (!(f >= 0 && f <= 2147483647.0 && f == (double)(int)f)) return 0;
  if (!(o >= 0 && o <= 9007199254740991.0 && l >= 0 && l <= 9007199254740991.0)) return 0;
  *fd = (int)f;
  *off = (int64_t)o;
  *len = (int64_t)l;
  return 1;
}

static void execute(napi_env env, void *data) {
  (void)env;
  job_t *j = (job_t *)data;
#if HAVE_LINUX
  int r = 0;
  // posix_fadvise answers the error number itself (it does not set errno).
  r = posix_fadvise(j->fd, (off_t)j->offset, (off_t)j->length, j->op == OP_WILLNEED ? POSIX_FADV_WILLNEED : POSIX_FADV_DONTNEED);
  j->err = r;
#else
  j->err = 38; // ENOSYS
#endif
}

static void complete(napi_env env, napi_status status, void *data) {
  job_t *j = (job_t *)data;
  napi_value cb, global, arg, ret;
  if (napi_get_reference_value(env, j->cb, &cb) == napi_ok && cb != NULL) {
    napi_get_global(env, &global);
    napi_create_int32(env, status == napi_ok ? j->err : 125 /* ECANCELED */, &arg);
    napi_call_function(env, global, cb, 1, &arg, &ret);
  }
  napi_delete_reference(env, j->cb);
  napi_delete_async_work(env, j->work);
  free(j);
}

static napi_value start_job(napi_env env, napi_callback_info info, int op) {
  size_t argc = 4;
  napi_value argv[4];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 4) return throw_type(env, "fileio: want (fd, offset, length, cb)");
  napi_valuetype t;
  napi_typeof(env, argv[3], &t);
  if (t != napi_function) return throw_type(env, "fileio: cb must be a function");
  job_t *j = (job_t *)calloc(1, sizeof(job_t));
  if (j == NULL) return throw_type(env, "fileio: out of memory");
  if (!read_range(env, argv, &j->fd, &j->offset, &j->length)) {
    free(j);
    return throw_type(env, "fileio: fd, offset and length must be non-negative integers");
  }
  j->op = op;
  napi_value name;
  napi_create_string_utf8(env, "blockgroup.fileio", NAPI_AUTO_LENGTH, &name);
  if (napi_create_reference(env, argv[3], 1, &j->cb) != napi_ok || napi_create_async_work(env, NULL, name, execute, complete, j, &j->work) != napi_ok ||
      napi_queue_async_work(env, j->work) != napi_ok) {
    free(j);
    return throw_type(env, "fileio: cannot queue the call");
  }
  return NULL;
}

static napi_value js_will_need(napi_env env, napi_callback_info info) { return start_job(env, info, OP_WILLNEED); }
static napi_value js_dont_need(napi_env env, napi_callback_info info) { return start_job(env, info, OP_DONTNEED); }

// resident(fd, offset, length): bytes of [offset, offset+length) cached (page granular, clipped to
// the file's size as mapped). Synchronous: a test helper, never on a data path.
static napi_value js_resident(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 3) return throw_type(env, "fileio: want (fd, offset, length)");
  int fd;
  int64_t off, len;
  if (!read_range(env, argv, &fd, &off, &len) || len <= 0) return throw_type(env, "fileio: fd, offset and length must be non-negative integers, length > 0");
  double out = 0;
#if HAVE_LINUX
  long page = sysconf(_SC_PAGESIZE);
  int64_t start = off - off % page;
  size_t span = (size_t)(off + len - start);
  void *m = mmap(NULL, span, PROT_READ, MAP_SHARED, fd, (off_t)start);
  if (m == MAP_FAILED) {
    napi_throw_error(env, "BLOCKGROUP_FILEIO_ERRNO", "fileio: mmap failed");
    return NULL;
  }
  size_t pages = (span + (size_t)page - 1) / (size_t)page;
  unsigned char *vec = (unsigned char *)malloc(pages);
  if (vec != NULL && mincore(m, span, vec) == 0) {
    for (size_t i = 0; i < pages; i++)
      if (vec[i] & 1) out += (double)page;
  }
  free(vec);
  munmap(m, span);
#else
  (void)fd;
#endif
  napi_value r;
  napi_create_double(env, out, &r);
  return r;
}

NAPI_MODULE_INIT() {
  napi_value fn, sup;
  napi_create_function(env, "willNeed", NAPI_AUTO_LENGTH, js_will_need, NULL, &fn);
  napi_set_named_property(env, exports, "willNeed", fn);
  napi_create_function(env, "dontNeed", NAPI_AUTO_LENGTH, js_dont_need, NULL, &fn);
  napi_set_named_property(env, exports, "dontNeed", fn);
  napi_create_function(env, "resident", NAPI_AUTO_LENGTH, js_resident, NULL, &fn);
  napi_set_named_property(env, exports, "resident", fn);
  napi_get_boolean(env, HAVE_LINUX != 0, &sup);
  napi_set_named_property(env, exports, "supported", sup);
  return exports;
}
