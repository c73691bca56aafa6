// udpbatch: batched UDP I/O for the DNS server (Linux). One SO_REUSEPORT socket per worker,
// polled on Node's own libuv loop; each readable event drains up to BATCH datagrams with one
// recvmmsg, hands them to JavaScript in ONE call (shared memory: request slab, lengths, peer
// addresses), and sends every answer JavaScript wrote into the response slab with one sendmmsg.
// This is where native code pays for its crossing: per-packet JS callbacks, Buffer
// allocations and send() calls become per-batch ones. The pure Node dgram path
// (lib/dns/server.ts) is the fallback and the reference the tests compare against.
//
// Memory layout shared with JS (all preallocated per listener, never reallocated):
//   in      BATCH * SLOT bytes   datagram i at i*SLOT, length inLens[i]
//   out     BATCH * SLOT bytes   answer i at i*SLOT, length outLens[i] (0: no answer)
//   addrs   BATCH * 20 bytes     family (4|6), 0, port (BE), address (4 or 16 bytes)
#define _GNU_SOURCE
#include <node_api.h>
#include <uv.h>
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define BATCH 64
#define SLOT 4096
#define ADDR 20
// Bound on work per readable event so timers and TCP are not starved.
#define ROUNDS_MAX 16

typedef struct {
  int fd;
  int closing;
  // The shared views (6 external ArrayBuffers) and the poll handle each hold a reference; the
  // memory is freed only when all are gone, so a JS view can never outlive its memory.
  int refs;
  uv_poll_t poll;
  napi_env env;
  napi_ref cb;
  napi_ref resource;
  napi_async_context actx;
  unsigned char *in;
  unsigned char *out;
  uint32_t *in_lens;
  uint32_t *out_lens;
  unsigned char *addrs;
  uint32_t *stats;  // [0] received, [1] sent, [2] send errors, [3] truncated inputs
  struct mmsghdr rmsg[BATCH];
  struct iovec riov[BATCH];
  struct sockaddr_storage rname[BATCH];
  struct mmsghdr smsg[BATCH];
  struct iovec siov[BATCH];
} Listener;

#define CHECK(env, call)                                   \
  do {                                                     \
    if ((call) != napi_ok) {                               \
      napi_throw_error((env), "DNS_NATIVE", #call " failed"); \
      return NULL;                                         \
    }                                                      \
  } while (0)

static void encode_addr(unsigned char *dst, const struct sockaddr_storage *ss) {
  memset(dst, 0, ADDR);
  if (ss->ss_family == AF_INET) {
    const struct sockaddr_in *a = (const struct sockaddr_in *)ss;
    dst[0] = 4;
    memcpy(dst + 2, &a->sin_port, 2);
    memcpy(dst + 4, &a->sin_addr, 4);
  } else if (ss->ss_family == AF_INET6) {
    const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)ss;
    dst[0] = 6;
    memcpy(dst + 2, &a->sin6_port, 2);
    memcpy(dst + 4, &a->sin6_addr, 16);
  }
}

static socklen_t decode_addr(const unsigned char *src, struct sockaddr_storage *ss) {
  memset(ss, 0, sizeof(*ss));
  if (src[0] == 4) {
    struct sockaddr_in *a = (struct sockaddr_in *)ss;
    a->sin_family = AF_INET;
    memcpy(&a->sin_port, src + 2, 2);
    memcpy(&a->sin_addr, src + 4, 4);
    return sizeof(*a);
  }
  struct sockaddr_in6 *a = (struct sockaddr_in6 *)ss;
  a->sin6_family = AF_INET6;
  memcpy(&a->sin6_port, src + 2, 2);
  memcpy(&a->sin6_addr, src + 4, 16);
  return sizeof(*a);
}

static void send_batch(Listener *l, int n) {
  int k = 0;
  for (int i = 0; i < n; i++) {
    uint32_t len = l->out_lens[i];
    if (len == 0 || len > SLOT) continue;
    l->siov[k].iov_base = l->out + (size_t)i * SLOT;
    l->siov[k].iov_len = len;
    memset(&l->smsg[k].msg_hdr, 0, sizeof(struct msghdr));
    l->smsg[k].msg_hdr.msg_name = &l->rname[i];
    l->smsg[k].msg_hdr.msg_namelen = l->rmsg[i].msg_hdr.msg_namelen;
    l->smsg[k].msg_hdr.msg_iov = &l->siov[k];
    l->smsg[k].msg_hdr.msg_iovlen = 1;
    k++;
  }
  int done = 0;
  while (done < k) {
    int r = sendmmsg(l->fd, l->smsg + done, k - done, MSG_DONTWAIT);
    if (r < 0) {
      if (errno == EINTR) continue;
      // EAGAIN (socket buffer full) or a per-destination error: drop this answer, as a full
      // queue would; the client retries. Skip it and carry on with the rest.
      l->stats[2]++;
      done++;
      continue;
    }
    l->stats[1] += (uint32_t)r;
    done += r;
  }
}

static void on_readable(uv_poll_t *h, int status, int events) {
  Listener *l = (Listener *)h->data;
  (void)events;
  if (l->closing || status < 0) return;
  napi_env env = l->env;
  for (int round = 0; round < ROUNDS_MAX; round++) {
    for (int i = 0; i < BATCH; i++) {
      l->riov[i].iov_base = l->in + (size_t)i * SLOT;
      l->riov[i].iov_len = SLOT;
      memset(&l->rmsg[i].msg_hdr, 0, sizeof(struct msghdr));
      l->rmsg[i].msg_hdr.msg_name = &l->rname[i];
      l->rmsg[i].msg_hdr.msg_namelen = sizeof(struct sockaddr_storage);
      l->rmsg[i].msg_hdr.msg_iov = &l->riov[i];
      l->rmsg[i].msg_hdr.msg_iovlen = 1;
    }
    int n = recvmmsg(l->fd, l->rmsg, BATCH, MSG_DONTWAIT, NULL);
    if (n <= 0) return;
    for (int i = 0; i < n; i++) {
      uint32_t len = l->rmsg[i].msg_len;
      // A datagram larger than a slot is cut; its length tells JS it is oversized (FORMERR/drop).
      if (l->rmsg[i].msg_hdr.msg_flags & MSG_TRUNC) l->stats[3]++;
      l->in_lens[i] = len > SLOT ? SLOT : len;
      l->out_lens[i] = 0;
      encode_addr(l->addrs + (size_t)i * ADDR, &l->rname[i]);
    }
    l->stats[0] += (uint32_t)n;
    napi_handle_scope scope;
    if (napi_open_handle_scope(env, &scope) != napi_ok) return;
    napi_value cb, resource, argv[1], result;
    napi_get_reference_value(env, l->cb, &cb);
    napi_get_reference_value(env, l->resource, &resource);
    napi_create_uint32(env, (uint32_t)n, &argv[0]);
    // make_callback, not call_function: Node then runs microtasks and nextTicks afterwards,
    // which asynchronous answers (forwarding) depend on.
    napi_status st = napi_make_callback(env, l->actx, resource, cb, 1, argv, &result);
    if (st == napi_pending_exception) {
      napi_value exc;
      napi_get_and_clear_last_exception(env, &exc);
    }
    napi_close_handle_scope(env, scope);
    if (l->closing) return;
    send_batch(l, n);
    if (n < BATCH) return;
  }
}

static void unref_listener(Listener *l) {
  if (--l->refs > 0) return;
  free(l->in);
  free(l);
}

static void on_closed(uv_handle_t *h) {
  Listener *l = (Listener *)h->data;
  // The descriptor is closed only after libuv has let go of it: closing a descriptor that an
  // active poll handle still watches can deliver events for a reused descriptor number.
  close(l->fd);
  unref_listener(l);
}

static void finalize_view(napi_env env, void *data, void *hint) {
  (void)env;
  (void)data;
  unref_listener((Listener *)hint);
}

// open(host: string, port: number, cb: (n) => void) -> { handle, in, out, inLens, outLens, addrs, stats, port }
static napi_value Open(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 3) {
    napi_throw_type_error(env, "DNS_NATIVE", "open(host, port, cb)");
    return NULL;
  }
  char host[64];
  size_t hl = 0;
  CHECK(env, napi_get_value_string_utf8(env, argv[0], host, sizeof(host), &hl));
  uint32_t port = 0;
  CHECK(env, napi_get_value_uint32(env, argv[1], &port));

  struct sockaddr_storage ss;
  memset(&ss, 0, sizeof(ss));
  socklen_t sl;
  int family;
  struct sockaddr_in *a4 = (struct sockaddr_in *)&ss;
  struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&ss;
  if (inet_pton(AF_INET, host, &a4->sin_addr) == 1) {
    family = AF_INET;
    a4->sin_family = AF_INET;
    a4->sin_port = htons((uint16_t)port);
    sl = sizeof(*a4);
  } else if (inet_pton(AF_INET6, host, &a6->sin6_addr) == 1) {
    family = AF_INET6;
    a6->sin6_family = AF_INET6;
    a6->sin6_port = htons((uint16_t)port);
    sl = sizeof(*a6);
  } else {
    napi_throw_error(env, "DNS_NATIVE", "host must be an IP literal");
    return NULL;
  }
  int fd = socket(family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    napi_throw_error(env, "DNS_NATIVE", strerror(errno));
    return NULL;
  }
  int one = 1;
  // Every worker binds its own socket; the kernel spreads clients across them by hash.
  setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
  if (family == AF_INET6) setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
  int bufsz = 4 << 20;
  setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &bufsz, sizeof(bufsz));
  setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &bufsz, sizeof(bufsz));
  if (bind(fd, (struct sockaddr *)&ss, sl) < 0) {
    int e = errno;
    close(fd);
    napi_throw_error(env, "DNS_NATIVE", strerror(e));
    return NULL;
  }
  struct sockaddr_storage bound;
  socklen_t bl = sizeof(bound);
  getsockname(fd, (struct sockaddr *)&bound, &bl);
  uint32_t bound_port = ntohs(family == AF_INET ? ((struct sockaddr_in *)&bound)->sin_port : ((struct sockaddr_in6 *)&bound)->sin6_port);

  Listener *l = calloc(1, sizeof(Listener));
  l->in = malloc((size_t)BATCH * SLOT * 2 + BATCH * 8 + BATCH * ADDR + 64);
  if (!l || !l->in) {
    close(fd);
    napi_throw_error(env, "DNS_NATIVE", "out of memory");
    return NULL;
  }
  // One allocation, carved up; `out` is not freed separately.
  unsigned char *p = l->in + (size_t)BATCH * SLOT;
  unsigned char *outp = p;
  l->out = outp;
  p += (size_t)BATCH * SLOT;
  l->in_lens = (uint32_t *)p;
  p += BATCH * 4;
  l->out_lens = (uint32_t *)p;
  p += BATCH * 4;
  l->stats = (uint32_t *)p;
  p += 16;
  l->addrs = p;
  l->fd = fd;
  l->env = env;
  l->refs = 7;

  napi_value res, buf;
  CHECK(env, napi_create_object(env, &res));
  CHECK(env, napi_create_external_arraybuffer(env, l->in, (size_t)BATCH * SLOT, finalize_view, l, &buf));
  CHECK(env, napi_set_named_property(env, res, "in", buf));
  CHECK(env, napi_create_external_arraybuffer(env, outp, (size_t)BATCH * SLOT, finalize_view, l, &buf));
  CHECK(env, napi_set_named_property(env, res, "out", buf));
  CHECK(env, napi_create_external_arraybuffer(env, l->in_lens, BATCH * 4, finalize_view, l, &buf));
  CHECK(env, napi_set_named_property(env, res, "inLens", buf));
  CHECK(env, napi_create_external_arraybuffer(env, l->out_lens, BATCH * 4, finalize_view, l, &buf));
  CHECK(env, napi_set_named_property(env, res, "outLens", buf));
  CHECK(env, napi_create_external_arraybuffer(env, l->addrs, BATCH * ADDR, finalize_view, l, &buf));
  CHECK(env, napi_set_named_property(env, res, "addrs", buf));
  CHECK(env, napi_create_external_arraybuffer(env, l->stats, 16, finalize_view, l, &buf));
  CHECK(env, napi_set_named_property(env, res, "stats", buf));
  napi_value v;
  CHECK(env, napi_create_uint32(env, bound_port, &v));
  CHECK(env, napi_set_named_property(env, res, "port", v));
  CHECK(env, napi_create_uint32(env, BATCH, &v));
  CHECK(env, napi_set_named_property(env, res, "batch", v));
  CHECK(env, napi_create_uint32(env, SLOT, &v));
  CHECK(env, napi_set_named_property(env, res, "slot", v));
  napi_value handle;
  CHECK(env, napi_create_external(env, l, NULL, NULL, &handle));
  CHECK(env, napi_set_named_property(env, res, "handle", handle));

  CHECK(env, napi_create_reference(env, argv[2], 1, &l->cb));
  napi_value resource, name;
  CHECK(env, napi_create_object(env, &resource));
  CHECK(env, napi_create_reference(env, resource, 1, &l->resource));
  CHECK(env, napi_create_string_utf8(env, "containerdns:udpbatch", NAPI_AUTO_LENGTH, &name));
  CHECK(env, napi_async_init(env, resource, name, &l->actx));

  uv_loop_t *loop;
  CHECK(env, napi_get_uv_event_loop(env, &loop));
  uv_poll_init(loop, &l->poll, fd);
  l->poll.data = l;
  uv_poll_start(&l->poll, UV_READABLE, on_readable);
  return res;
}

static Listener *get_listener(napi_env env, napi_value v) {
  void *p = NULL;
  if (napi_get_value_external(env, v, &p) != napi_ok) return NULL;
  return (Listener *)p;
}

// send(handle, buffer, addr20) -> bytes sent or -errno (asynchronous answers)
static napi_value Send(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  Listener *l = get_listener(env, argv[0]);
  napi_value out;
  if (!l || l->closing) {
    napi_create_int32(env, -EBADF, &out);
    return out;
  }
  void *data, *addr;
  size_t len, alen;
  CHECK(env, napi_get_buffer_info(env, argv[1], &data, &len));
  CHECK(env, napi_get_buffer_info(env, argv[2], &addr, &alen));
  if (alen < ADDR) {
    napi_throw_error(env, "DNS_NATIVE", "bad address");
    return NULL;
  }
  struct sockaddr_storage ss;
  socklen_t sl = decode_addr((const unsigned char *)addr, &ss);
  ssize_t r = sendto(l->fd, data, len, MSG_DONTWAIT, (struct sockaddr *)&ss, sl);
  napi_create_int32(env, r < 0 ? -errno : (int32_t)r, &out);
  return out;
}

// close(handle)
static napi_value Close(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  Listener *l = get_listener(env, argv[0]);
  if (!l || l->closing) return NULL;
  l->closing = 1;
  uv_poll_stop(&l->poll);
  napi_async_destroy(env, l->actx);
  napi_delete_reference(env, l->cb);
  napi_delete_reference(env, l->resource);
  uv_close((uv_handle_t *)&l->poll, on_closed);
  return NULL;
}

NAPI_MODULE_INIT() {
  napi_value fn;
  napi_create_function(env, "open", NAPI_AUTO_LENGTH, Open, NULL, &fn);
  napi_set_named_property(env, exports, "open", fn);
  napi_create_function(env, "send", NAPI_AUTO_LENGTH, Send, NULL, &fn);
  napi_set_named_property(env, exports, "send", fn);
  napi_create_function(env, "close", NAPI_AUTO_LENGTH, Close, NULL, &fn);
  napi_set_named_property(env, exports, "close", fn);
  return exports;
}
