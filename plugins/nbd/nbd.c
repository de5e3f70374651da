/* SPDX-License-Identifier: MIT */
/* nbd:URI -- a disk served over NBD, through libnbd's asynchronous API
 * (docs/spec-strings.md, "nbd"). Each diskcore queue gets its own connection
 * when the server offers multi-conn (up to ;connections=N), otherwise every
 * queue shares the connection open() made: without multi-conn a flush covers
 * only the writes of its own connection, so one connection is the only way to
 * keep flush meaning "everything written so far". */
#include "nbd.h"

#include <diskcore/plugin.h>
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NBD_DEFAULT_CONNS 4
#define NBD_MAX_CONNS 64
/* Long enough for TLS over a slow link, short enough that a server that
 * accepts and never answers fails the open instead of hanging it. */
#define NBD_DEFAULT_TIMEOUT_S 30
/* The NBD protocol's safe payload when the server states no maximum. */
#define NBD_DEFAULT_MAX_IO (32u << 20)
/* Trim lengths are 32-bit on the wire. */
#define NBD_MAX_TRIM (1u << 30)

struct nbd_inst {
	char *uri;
	char shown[1024]; /* the URI with any password redacted */
	struct nbd_conn *primary;
	pthread_mutex_t lock; /* nconns: queue_open/close run on any thread */
	unsigned nconns, max_conns;
	unsigned timeout_s; /* to connect and negotiate */
	bool multi_conn, can_fua, can_flush, can_trim, read_only;
	unsigned shift;
	uint64_t max_io; /* bytes per read/write command */
	uint64_t size, tail;
	int64_t bs_min, bs_pref, bs_max;
};

struct nbd_q {
	struct nbd_conn *conn;
	bool own;
};

/* Per request: a request larger than a command is split; the last command
 * to finish completes it with the first error. */
struct nbd_rctx {
	struct nbd_done done; /* first: the reaper's deferred completion */
	struct nbd_conn *conn;
	struct dc_req *req;
	void *bounce; /* a contiguous copy when the buffer has several segments */
	unsigned pending;
	int err;
};

static void rctx_finish(struct nbd_done *d)
{
	struct nbd_rctx *r = (struct nbd_rctx *)d;
	struct dc_req *req = r->req;
	int err;

	err = __atomic_load_n(&r->err, __ATOMIC_ACQUIRE);
	if (r->bounce && req->op == DC_OP_READ && !err)
		dc_buf_copy_to(&req->buf, 0, r->bounce, req->buf.len);
	free(r->bounce);
	if (err)
		dc_complete_detail(req, DC_E_IO, err);
	else
		dc_complete(req, 0);
}

/* Drop one reference; the last finishes the request: inline on the queue's
 * thread (submit), deferred to the reaper from a libnbd callback. */
static void rctx_put(struct nbd_rctx *r, bool in_callback)
{
	if (__atomic_sub_fetch(&r->pending, 1, __ATOMIC_ACQ_REL))
		return;
	if (in_callback)
		nbd_conn_defer(r->conn, &r->done);
	else
		rctx_finish(&r->done);
}

static void rctx_fail(struct nbd_rctx *r, int err)
{
	int zero = 0;

	__atomic_compare_exchange_n(&r->err, &zero, err > 0 ? err : EIO, false,
				    __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE);
}

/* Both run on the thread driving the handle (the reaper, or the queue's in
 * queue_poll), under libnbd's lock: they must not call libnbd. The reference
 * a command holds is dropped in .free, which libnbd calls exactly once even
 * when the command is refused before it is issued. */
static int nbd_cmd_done(void *user_data, int *error)
{
	if (*error)
		rctx_fail(user_data, *error);
	return 1;
}

static void nbd_cmd_free(void *user_data)
{
	rctx_put(user_data, true);
}

static int64_t nbd_issue(struct nbd_inst *in, struct nbd_conn *c, struct nbd_rctx *r,
			 void *data, uint64_t off, uint64_t len)
{
	nbd_completion_callback cb = { .callback = nbd_cmd_done,
				       .user_data = r,
				       .free = nbd_cmd_free };
	struct dc_req *req = r->req;

	switch (req->op) {
	case DC_OP_READ:
		return nbd_aio_pread(c->h, data, len, off, cb, 0);
	case DC_OP_WRITE:
		return nbd_aio_pwrite(c->h, data, len, off, cb,
				      (req->flags & DC_IO_FUA) && in->can_fua ?
					      LIBNBD_CMD_FLAG_FUA :
					      0);
	case DC_OP_UNMAP:
		return nbd_aio_trim(c->h, len, off, cb, 0);
	default:
		return nbd_aio_flush(c->h, cb, 0);
	}
}

static void nbd_submit(void *inst, struct dc_req *req)
{
	struct nbd_inst *in = inst;
	struct nbd_q *q = req->qctx;
	struct nbd_conn *c = q ? q->conn : in->primary;
	struct nbd_rctx *r = req->ctx;
	uint64_t off = req->sector << in->shift, len = req->count << in->shift;
	uint64_t step = req->op == DC_OP_UNMAP ? NBD_MAX_TRIM : in->max_io;
	struct iovec iov;
	char *data = NULL;

	/* A server without flush has no volatile cache to write back (NBD
	 * protocol: the client must not send one), so there is nothing to do. */
	if (req->op == DC_OP_FLUSH && !in->can_flush) {
		dc_complete(req, 0);
		return;
	}
	r->done.finish = rctx_finish;
	r->conn = c;
	r->req = req;
	r->bounce = NULL;
	r->pending = 1; /* held until every command is issued */
	r->err = 0;
	if (req->op == DC_OP_READ || req->op == DC_OP_WRITE) {
		if (dc_buf_iov(&req->buf, &iov, 1) == 1) {
			data = iov.iov_base;
		} else {
			r->bounce = malloc(len);
			if (!r->bounce) {
				dc_complete_detail(req, DC_E_IO, ENOMEM);
				return;
			}
			if (req->op == DC_OP_WRITE)
				dc_buf_copy_from(&req->buf, 0, r->bounce, len);
			data = r->bounce;
		}
	}
	if (req->op == DC_OP_FLUSH)
		len = step = 1;
	for (uint64_t done = 0; done < len; done += step) {
		uint64_t n = len - done < step ? len - done : step;

		__atomic_add_fetch(&r->pending, 1, __ATOMIC_ACQ_REL);
		if (nbd_issue(in, c, r, data ? data + done : NULL, off + done, n) < 0) {
			/* Not issued (.free has dropped its reference; the
			 * guard keeps r alive). A dead handle fails here with
			 * ENOTCONN, never reconnecting. */
			int e = nbd_get_errno();

			dc_debug("nbd: %s: %s", in->shown, nbd_get_error());
			/* libnbd says EINVAL ("invalid state") on a dead handle. */
			if (e <= 0 || nbd_aio_is_dead(c->h) || nbd_aio_is_closed(c->h))
				e = ENOTCONN;
			rctx_fail(r, e);
			break;
		}
	}
	rctx_put(r, false);
	nbd_conn_kick(c);
}

static int nbd_queue_open(void *inst, void **qctx)
{
	struct nbd_inst *in = inst;
	struct nbd_q *q = calloc(1, sizeof(*q));
	bool own = false;
	int err = 0;

	if (!q)
		return dc_fail(-ENOMEM, "out of memory");
	q->conn = in->primary;
	if (in->multi_conn) {
		pthread_mutex_lock(&in->lock);
		own = in->nconns < in->max_conns;
		if (own)
			in->nconns++;
		pthread_mutex_unlock(&in->lock);
	}
	if (own) {
		q->conn = nbd_conn_open(in->uri, in->shown, in->timeout_s, &err);
		if (!q->conn) {
			pthread_mutex_lock(&in->lock);
			in->nconns--;
			pthread_mutex_unlock(&in->lock);
			free(q);
			return err;
		}
		q->own = true;
	}
	*qctx = q;
	return 0;
}

static void nbd_queue_close(void *inst, void *qctx)
{
	struct nbd_inst *in = inst;
	struct nbd_q *q = qctx;

	if (q->own) {
		nbd_conn_close(q->conn);
		pthread_mutex_lock(&in->lock);
		in->nconns--;
		pthread_mutex_unlock(&in->lock);
	}
	free(q);
}

/* A shared connection stays on its reaper, whose completions the core hands
 * to this queue and signals on wake_fd; an owned one is driven here. */
static int nbd_queue_poll(void *inst, void *qctx, int wake_fd, int timeout_ms)
{
	struct nbd_q *q = qctx;
	struct pollfd p = { .fd = wake_fd, .events = POLLIN };

	(void)inst;
	if (q->own)
		return nbd_conn_poll(q->conn, wake_fd, timeout_ms);
	if (timeout_ms != 0 && poll(&p, 1, timeout_ms) < 0 && errno != EINTR)
		return -errno;
	return 0;
}

static void nbd_close_inst(void *inst)
{
	struct nbd_inst *in = inst;

	nbd_conn_close(in->primary);
	pthread_mutex_destroy(&in->lock);
	free(in->uri);
	free(in);
}

static bool pow2(int64_t v)
{
	return v > 0 && !(v & (v - 1));
}

/* Sizes from the negotiated export: a minimum block size above 512 becomes
 * the logical sector size, the preferred one the physical sector size. */
static int nbd_probe(struct nbd_inst *in, const struct dc_open_args *a,
		     struct dc_info *info)
{
	struct nbd_handle *h = in->primary->h;
	int64_t size = nbd_get_size(h);
	uint32_t ss = 512;

	if (size < 0)
		return dc_fail(-EIO, "%s: cannot read the export size: %s", in->shown,
			       nbd_get_error());
	in->bs_min = nbd_get_block_size(h, LIBNBD_SIZE_MINIMUM);
	in->bs_pref = nbd_get_block_size(h, LIBNBD_SIZE_PREFERRED);
	in->bs_max = nbd_get_block_size(h, LIBNBD_SIZE_MAXIMUM);
	if (in->bs_min > 4096)
		return dc_fail(-EINVAL,
			       "%s: the server's minimum block size %lld is larger than "
			       "4096, the largest sector size supported",
			       in->shown, (long long)in->bs_min);
	if (in->bs_min > 512 && !pow2(in->bs_min))
		return dc_fail(
			-EINVAL,
			"%s: the server's minimum block size %lld is not a power of two",
			in->shown, (long long)in->bs_min);
	if (in->bs_min > 512)
		ss = (uint32_t)in->bs_min;
	in->shift = (unsigned)__builtin_ctz(ss);
	in->max_io = NBD_DEFAULT_MAX_IO;
	if (in->bs_max >= ss && (uint64_t)in->bs_max < in->max_io)
		in->max_io = (uint64_t)in->bs_max & ~(uint64_t)(ss - 1);
	in->size = (uint64_t)size;
	/* A tail short of a whole sector cannot be addressed: it is left out
	 * (and shown by `diskctl info`), as a block device would round down. */
	in->tail = in->size & (ss - 1);
	in->read_only = a->read_only || nbd_is_read_only(h) == 1;
	in->can_fua = nbd_can_fua(h) == 1;
	in->can_flush = nbd_can_flush(h) == 1;
	in->can_trim = nbd_can_trim(h) == 1;
	in->multi_conn = nbd_can_multi_conn(h) == 1;

	memset(info, 0, sizeof(*info));
	info->sector_count = in->size >> in->shift;
	info->sector_size = ss;
	info->physical_sector_size = ss;
	if (pow2(in->bs_pref) && in->bs_pref >= ss && in->bs_pref <= 65536)
		info->physical_sector_size = (uint32_t)in->bs_pref;
	info->unmap_behavior = in->can_trim ? DC_UNMAP_UNSPECIFIED : DC_UNMAP_IGNORED;
	if (in->read_only)
		info->flags |= DC_INFO_READ_ONLY;
	if (in->can_fua)
		info->flags |= DC_INFO_FUA_RESPECTED;
	snprintf(info->disk_type, sizeof(info->disk_type), "nbd");
	return 0;
}

static const struct dc_option nbd_options[] = {
	DC_OPTION_UINT(
		"connections",
		"connections at most, one per queue, when the server offers multi-conn (default 4)"),
	DC_OPTION_UINT("timeout",
		       "seconds to connect and negotiate, per connection (default 30)"),
	DC_OPTIONS_END,
};

static int nbd_open(const struct dc_open_args *a, void **inst, struct dc_info *info)
{
	struct nbd_inst *in = calloc(1, sizeof(*in));
	uint64_t conns = NBD_DEFAULT_CONNS, timeout;
	int err;

	if (!in)
		return dc_fail(-ENOMEM, "out of memory");
	pthread_mutex_init(&in->lock, NULL);
	in->uri = strdup(a->fields[0]);
	if (!in->uri) {
		err = dc_fail(-ENOMEM, "out of memory");
		goto fail;
	}
	nbd_redact_uri(in->uri, in->shown, sizeof(in->shown));
	if (dc_opt_num(a, "connections", &conns) &&
	    (conns < 1 || conns > NBD_MAX_CONNS)) {
		err = dc_fail(-EINVAL, "connections=%llu: must be 1 to %d",
			      (unsigned long long)conns, NBD_MAX_CONNS);
		goto fail;
	}
	in->max_conns = (unsigned)conns;
	in->timeout_s = NBD_DEFAULT_TIMEOUT_S;
	if (dc_opt_num(a, "timeout", &timeout)) {
		if (timeout < 1 || timeout > 3600) {
			err = dc_fail(-EINVAL, "timeout=%llu: must be 1 to 3600 seconds",
				      (unsigned long long)timeout);
			goto fail;
		}
		in->timeout_s = (unsigned)timeout;
	}
	in->nconns = 1; /* the primary */
	in->primary = nbd_conn_open(in->uri, in->shown, in->timeout_s, &err);
	if (!in->primary)
		goto fail;
	err = nbd_probe(in, a, info);
	if (err)
		goto fail;
	*inst = in;
	return 0;
fail:
	nbd_close_inst(in);
	return err;
}

static void nbd_describe(void *inst, dc_kv_fn kv, void *arg)
{
	struct nbd_inst *in = inst;
	struct nbd_handle *h = in->primary->h;

	kv(arg, "uri", in->shown);
	kv(arg, "protocol", nbd_get_protocol(h) ? nbd_get_protocol(h) : "?");
	dc_kv_bool(kv, arg, "tls", nbd_get_tls_negotiated(h) == 1);
	dc_kv_u64(kv, arg, "export-bytes", in->size);
	if (in->tail) {
		dc_kv_u64(kv, arg, "ignored-tail-bytes", in->tail);
	}
	dc_kv_printf(kv, arg, "block-size-min/pref/max", "%lld/%lld/%lld",
		     (long long)in->bs_min, (long long)in->bs_pref,
		     (long long)in->bs_max);
	dc_kv_printf(kv, arg, "server-flags", "%s%s%s%s", in->can_flush ? "flush " : "",
		     in->can_fua ? "fua " : "", in->can_trim ? "trim " : "",
		     in->multi_conn ? "multi-conn" : "");
	dc_kv_printf(kv, arg, "max-connections", "%u",
		     in->multi_conn ? in->max_conns : 1);
}

static int nbd_extents(void *inst, struct dc_node *node, uint64_t sector, uint64_t count,
		       uint64_t *run)
{
	struct nbd_inst *in = inst;
	uint64_t bytes = 0;
	uint32_t flags = 0;
	int rc;

	(void)node;
	rc = nbd_map_query(in->primary, sector << in->shift, count << in->shift, &flags,
			   &bytes);
	if (rc < 0)
		return rc;
	*run = bytes >> in->shift;
	if (rc == 1 || *run == 0) {
		/* Cannot tell, or a run shorter than a sector: data. */
		*run = rc == 1 ? count : 1;
		return 0;
	}
	return (int)flags;
}

DC_PLUGIN(nbd_plugin) = {
	DC_ABOUT(DC_KIND_BACKEND, "nbd", "0.1.0",
		 "disk on an NBD server (libnbd, asynchronous)"),
	.usage = "nbd:URI[;connections=N][;timeout=SECONDS]\n"
		 "  URI: nbd://HOST[:PORT]/EXPORT, nbd+unix:///EXPORT?socket=PATH,\n"
		 "  nbds:// with TLS. One connection per queue up to N when the\n"
		 "  server offers multi-conn, else one shared. FUA, flush and trim\n"
		 "  as the server offers them; no reconnect: when the server goes\n"
		 "  away, requests fail with an I/O error.",
	.forms = DC_FORMS(DC_FORM_FLAGS(
		"nbd", 1, DC_CHILD_NONE, DC_FORM_TAIL_OPTIONS, "nbd:URI",
		"a disk on an NBD server (nbd://, nbd+unix://, nbds://)", nbd_options)),
	.ctx_size = sizeof(struct nbd_rctx),
	.ops = DC_OPS_RW,
	DC_CALLBACKS(nbd, open, queue_open, queue_close, submit, describe, queue_poll,
		     extents),
	.close = nbd_close_inst,
};
