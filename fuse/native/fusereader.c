// The /dev/fuse readers of fuse/kernel/transport.ts. Two ways:
// - poll (pollStart): the fd is made non-blocking and watched by the event loop itself
//   (uv_poll); when the kernel has requests, JS reads them on the main thread with readSync
//   until EAGAIN. A request then costs one wake-up of the serving thread, as in a C server.
// - threads (start): a few threads of our own block in read(2) and hand each request to JS
//   through a thread-safe function (one more thread hand-off per request than poll).
//   JS owns the buffers ("slots"); a thread reads only into a free slot, and JS gives a slot
//   back with release() once it no longer needs its bytes: the slots bound both memory and how
//   far reading runs ahead of the JS side. ENOENT (request interrupted), EINTR and EAGAIN are
//   retried here; any other errno (ENODEV: unmounted) is delivered once and ends that thread.
// Neither holds a libuv threadpool thread, which the volume's own file I/O needs.
#include <node_api.h>
#include <uv.h>
#include <fcntl.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_SLOTS 1024
#define MAX_THREADS 16

typedef struct {
  int fd;
  int nslots;
  void *bufs[MAX_SLOTS];
  size_t lens[MAX_SLOTS];
  napi_ref refs[MAX_SLOTS];
  int freelist[MAX_SLOTS]; // invariant: nfree <= nslots, each free slot once
  int nfree;
  int stopping;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  napi_threadsafe_function tsfn;
  int nthreads;
  pthread_t threads[MAX_THREADS];
} reader_t;

typedef struct {
  int slot;
  ssize_t n;
  int err;
} delivery_t;

#define CHECK(call)                                                  \
  do {                                                               \
    if ((call) != napi_ok) {                                         \
      napi_throw_error(env, NULL, "fusereader: " #call " failed");   \
      return NULL;                                                   \
    }                                                                \
  } while (0)

static void call_js(napi_env env, napi_value cb, void *context, void *data) {
  delivery_t *d = (delivery_t *)data;
  if (env != NULL && cb != NULL) {
    napi_value argv[3], undef;
    napi_create_int32(env, d->slot, &argv[0]);
    napi_create_double(env, (double)d->n, &argv[1]);
    napi_create_int32(env, d->err, &argv[2]);
    napi_get_undefined(env, &undef);
    napi_call_function(env, undef, cb, 3, argv, NULL);
  }
  free(d);
}

static void deliver(reader_t *r, int slot, ssize_t n, int err) {
  delivery_t *d = malloc(sizeof(delivery_t));
  if (d == NULL) return;
  d->slot = slot;
  d->n = n;
  d->err = err;
  if (napi_call_threadsafe_function(r->tsfn, d, napi_tsfn_blocking) != napi_ok) free(d);
}

static void *reader_main(void *arg) {
  reader_t *r = (reader_t *)arg;
  for (;;) {
    pthread_mutex_lock(&r->mu);
    while (r->nfree == 0 && !r->stopping) pthread_cond_wait(&r->cv, &r->mu);
    if (r->stopping) {
      pthread_mutex_unlock(&r->mu);
      break;
    }
    int slot = r->freelist[--r->nfree];
    pthread_mutex_unlock(&r->mu);
    ssize_t n = read(r->fd, r->bufs[slot], r->lens[slot]);
    if (n < 0) {
      int e = errno;
      if (e == ENOENT || e == EINTR || e == EAGAIN) {
        pthread_mutex_lock(&r->mu);
        r->freelist[r->nfree++] = slot;
        pthread_mutex_unlock(&r->mu);
        continue;
      }
      // The slot stays taken: the session is over.
      deliver(r, slot, 0, e);
      break;
    }
    deliver(r, slot, n, 0);
  }
  napi_release_threadsafe_function(r->tsfn, napi_tsfn_release);
  return NULL;
}

// Runs on the JS thread once every reader thread has exited: only then may the slot buffers go
// (a thread blocked in read(2) writes into its slot).
static void finalize(napi_env env, void *data, void *hint) {
  reader_t *r = (reader_t *)data;
  for (int i = 0; i < r->nslots; i++) {
    if (r->refs[i] != NULL) {
      napi_delete_reference(env, r->refs[i]);
      r->refs[i] = NULL;
    }
  }
}

// start(fd, slots: Buffer[], threads, cb(slot, n, errno)) -> handle
static napi_value start(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 4) {
    napi_throw_type_error(env, NULL, "fusereader: start(fd, slots, threads, cb)");
    return NULL;
  }
  int32_t fd, threads;
  uint32_t nslots;
  CHECK(napi_get_value_int32(env, argv[0], &fd));
  CHECK(napi_get_array_length(env, argv[1], &nslots));
  CHECK(napi_get_value_int32(env, argv[2], &threads));
  if (nslots < 1 || nslots > MAX_SLOTS || threads < 1 || threads > MAX_THREADS) {
    napi_throw_range_error(env, NULL, "fusereader: slots or threads out of range");
    return NULL;
  }
  // Never freed: a thread may still be blocked in read(2) after stop() until the kernel ends
  // the connection; a few KiB per mount session.
  reader_t *r = calloc(1, sizeof(reader_t));
  if (r == NULL) {
    napi_throw_error(env, NULL, "fusereader: out of memory");
    return NULL;
  }
  r->fd = fd;
  r->nslots = (int)nslots;
  for (uint32_t i = 0; i < nslots; i++) {
    napi_value b;
    CHECK(napi_get_element(env, argv[1], i, &b));
    CHECK(napi_get_buffer_info(env, b, &r->bufs[i], &r->lens[i]));
    CHECK(napi_create_reference(env, b, 1, &r->refs[i]));
    r->freelist[i] = (int)(nslots - 1 - i);
  }
  r->nfree = (int)nslots;
  pthread_mutex_init(&r->mu, NULL);
  pthread_cond_init(&r->cv, NULL);
  napi_value name;
  CHECK(napi_create_string_utf8(env, "fusereader", NAPI_AUTO_LENGTH, &name));
  // Queue size 0: unbounded, but at most nslots deliveries can be outstanding (each holds a slot).
  CHECK(napi_create_threadsafe_function(env, argv[3], NULL, name, 0, (size_t)threads, r, finalize, NULL, call_js, &r->tsfn));
  r->nthreads = threads;
  for (int i = 0; i < threads; i++) {
    if (pthread_create(&r->threads[i], NULL, reader_main, r) != 0) {
      napi_release_threadsafe_function(r->tsfn, napi_tsfn_release);
      continue;
    }
    pthread_detach(r->threads[i]);
  }
  napi_value handle;
  CHECK(napi_create_external(env, r, NULL, NULL, &handle));
  return handle;
}

static reader_t *get_reader(napi_env env, napi_value v) {
  void *p = NULL;
  if (napi_get_value_external(env, v, &p) != napi_ok) return NULL;
  return (reader_t *)p;
}

// release(handle, slot)
static napi_value release_slot(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  reader_t *r = argc >= 2 ? get_reader(env, argv[0]) : NULL;
  int32_t slot;
  if (r == NULL || napi_get_value_int32(env, argv[1], &slot) != napi_ok || slot < 0 || slot >= r->nslots) {
    napi_throw_type_error(env, NULL, "fusereader: release(handle, slot)");
    return NULL;
  }
  pthread_mutex_lock(&r->mu);
  if (r->nfree < r->nslots) r->freelist[r->nfree++] = slot;
  pthread_cond_signal(&r->cv);
  pthread_mutex_unlock(&r->mu);
  return NULL;
}

// stop(handle): threads waiting for a slot exit; one blocked in read(2) exits at its next
// request or when the connection ends (ENODEV), whichever comes first.
static napi_value stop(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  reader_t *r = argc >= 1 ? get_reader(env, argv[0]) : NULL;
  if (r == NULL) {
    napi_throw_type_error(env, NULL, "fusereader: stop(handle)");
    return NULL;
  }
  pthread_mutex_lock(&r->mu);
  r->stopping = 1;
  pthread_cond_broadcast(&r->cv);
  pthread_mutex_unlock(&r->mu);
  return NULL;
}

// ---------------------------------------------------------------- poll mode

typedef struct {
  uv_poll_t poll;
  napi_env env;
  napi_ref cb;
  napi_async_context ctx;
  int active;
  int closed;
} poller_t;

static void on_readable(uv_poll_t *h, int status, int events) {
  poller_t *p = (poller_t *)h->data;
  if (p->closed) return;
  napi_env env = p->env;
  napi_handle_scope scope;
  if (napi_open_handle_scope(env, &scope) != napi_ok) return;
  napi_value cb, recv, argv[1];
  napi_get_reference_value(env, p->cb, &cb);
  napi_get_global(env, &recv);
  // An error on the fd (POLLERR once the connection is gone): JS's next read says which.
  napi_create_int32(env, status, &argv[0]);
  // make_callback: the microtasks the callback queued (promise reactions) run before we return.
  napi_make_callback(env, p->ctx, recv, cb, 1, argv, NULL);
  napi_close_handle_scope(env, scope);
}

static poller_t *get_poller(napi_env env, napi_value v) {
  void *p = NULL;
  if (napi_get_value_external(env, v, &p) != napi_ok) return NULL;
  return (poller_t *)p;
}

// The poller is not freed: its JS handle may outlive it (a few dozen bytes per session).
static void on_closed(uv_handle_t *h) {}

// pollStart(fd, cb(status)) -> handle: fd becomes O_NONBLOCK; cb runs whenever it is readable.
static napi_value poll_start(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int32_t fd;
  if (argc < 2 || napi_get_value_int32(env, argv[0], &fd) != napi_ok) {
    napi_throw_type_error(env, NULL, "fusereader: pollStart(fd, cb)");
    return NULL;
  }
  int fl = fcntl(fd, F_GETFL);
  if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0) {
    napi_throw_error(env, NULL, "fusereader: cannot make the fd non-blocking");
    return NULL;
  }
  struct uv_loop_s *loop;
  CHECK(napi_get_uv_event_loop(env, &loop));
  poller_t *p = calloc(1, sizeof(poller_t));
  if (p == NULL) {
    napi_throw_error(env, NULL, "fusereader: out of memory");
    return NULL;
  }
  p->env = env;
  p->poll.data = p;
  napi_value name;
  CHECK(napi_create_string_utf8(env, "fusereader.poll", NAPI_AUTO_LENGTH, &name));
  CHECK(napi_async_init(env, NULL, name, &p->ctx));
  CHECK(napi_create_reference(env, argv[1], 1, &p->cb));
  if (uv_poll_init(loop, &p->poll, fd) != 0 || uv_poll_start(&p->poll, UV_READABLE, on_readable) != 0) {
    napi_throw_error(env, NULL, "fusereader: uv_poll on the fd failed");
    return NULL;
  }
  p->active = 1;
  napi_value handle;
  CHECK(napi_create_external(env, p, NULL, NULL, &handle));
  return handle;
}

// pollActive(handle, on): stop watching (the session is at its in-flight bound) or watch again.
static napi_value poll_active(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  poller_t *p = argc >= 2 ? get_poller(env, argv[0]) : NULL;
  bool on;
  if (p == NULL || napi_get_value_bool(env, argv[1], &on) != napi_ok) {
    napi_throw_type_error(env, NULL, "fusereader: pollActive(handle, on)");
    return NULL;
  }
  if (p->closed) return NULL;
  if (on && !p->active) uv_poll_start(&p->poll, UV_READABLE, on_readable);
  if (!on && p->active) uv_poll_stop(&p->poll);
  p->active = on;
  return NULL;
}

// pollStop(handle): for good (before the fd is closed).
static napi_value poll_stop(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  poller_t *p = argc >= 1 ? get_poller(env, argv[0]) : NULL;
  if (p == NULL) {
    napi_throw_type_error(env, NULL, "fusereader: pollStop(handle)");
    return NULL;
  }
  if (p->closed) return NULL;
  p->closed = 1;
  uv_poll_stop(&p->poll);
  napi_delete_reference(env, p->cb);
  napi_async_destroy(env, p->ctx);
  uv_close((uv_handle_t *)&p->poll, on_closed);
  return NULL;
}

// ---------------------------------------------------------------- fusermount (non-root mounts)

extern char **environ;

// fusermount(path, dir, opts) -> fd: runs `fusermount -o OPTS -- DIR` with _FUSE_COMMFD=3, a unix
// socket, on which the setuid helper sends back the /dev/fuse fd it mounted (SCM_RIGHTS). Done
// here because Node can neither make a socketpair for a child nor receive an fd.
static napi_value fusermount_mount(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  char path[512], dir[4096], opts[4096];
  size_t len;
  if (argc < 3 || napi_get_value_string_utf8(env, argv[0], path, sizeof(path), &len) != napi_ok ||
      napi_get_value_string_utf8(env, argv[1], dir, sizeof(dir), &len) != napi_ok ||
      napi_get_value_string_utf8(env, argv[2], opts, sizeof(opts), &len) != napi_ok) {
    napi_throw_type_error(env, NULL, "fusereader: fusermount(path, dir, opts)");
    return NULL;
  }
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
    napi_throw_error(env, NULL, "fusereader: socketpair failed");
    return NULL;
  }
  // The child's environment: ours plus _FUSE_COMMFD=3 (bounded copy).
  size_t n = 0;
  while (environ[n] != NULL && n < 4096) n++;
  char **envp = calloc(n + 2, sizeof(char *));
  if (envp == NULL) {
    close(sv[0]);
    close(sv[1]);
    napi_throw_error(env, NULL, "fusereader: out of memory");
    return NULL;
  }
  size_t k = 0;
  for (size_t i = 0; i < n; i++)
    if (strncmp(environ[i], "_FUSE_COMMFD=", 13) != 0) envp[k++] = environ[i];
  envp[k++] = "_FUSE_COMMFD=3";
  envp[k] = NULL;
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, sv[1], 3);
  char *args[] = {"fusermount", "-o", opts, "--", dir, NULL};
  pid_t pid;
  int rc = posix_spawnp(&pid, path, &fa, NULL, args, envp);
  posix_spawn_file_actions_destroy(&fa);
  free(envp);
  close(sv[1]);
  if (rc != 0) {
    close(sv[0]);
    napi_throw_error(env, NULL, "fusereader: cannot run fusermount");
    return NULL;
  }
  char byte;
  struct iovec iov = {&byte, 1};
  char ctrl[CMSG_SPACE(sizeof(int))];
  memset(ctrl, 0, sizeof(ctrl));
  struct msghdr msg;
  memset(&msg, 0, sizeof(msg));
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = ctrl;
  msg.msg_controllen = sizeof(ctrl);
  ssize_t got;
  do got = recvmsg(sv[0], &msg, 0); while (got < 0 && errno == EINTR);
  int fd = -1;
  struct cmsghdr *c = got > 0 ? CMSG_FIRSTHDR(&msg) : NULL;
  if (c != NULL && c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) memcpy(&fd, CMSG_DATA(c), sizeof(int));
  close(sv[0]);
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
  if (fd < 0) {
    char m[128];
    snprintf(m, sizeof(m), "fusermount failed (exit %d): see its message above", WIFEXITED(status) ? WEXITSTATUS(status) : -1);
    napi_throw_error(env, NULL, m);
    return NULL;
  }
  fcntl(fd, F_SETFD, FD_CLOEXEC);
  napi_value out;
  CHECK(napi_create_int32(env, fd, &out));
  return out;
}

NAPI_MODULE_INIT() {
  napi_property_descriptor props[] = {
    {"start", NULL, start, NULL, NULL, NULL, napi_default, NULL},
    {"release", NULL, release_slot, NULL, NULL, NULL, napi_default, NULL},
    {"stop", NULL, stop, NULL, NULL, NULL, napi_default, NULL},
    {"pollStart", NULL, poll_start, NULL, NULL, NULL, napi_default, NULL},
    {"pollActive", NULL, poll_active, NULL, NULL, NULL, napi_default, NULL},
    {"pollStop", NULL, poll_stop, NULL, NULL, NULL, napi_default, NULL},
    {"fusermount", NULL, fusermount_mount, NULL, NULL, NULL, napi_default, NULL},
  };
  if (napi_define_properties(env, exports, 7, props) != napi_ok) return NULL;
  return exports;
}
