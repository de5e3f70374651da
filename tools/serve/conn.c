/* SPDX-License-Identifier: MIT */
/* diskctl serve: the export's description and one connection's life. */
#include "serve-int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

/* What every connection advertises, from the disk's metadata. */
int serve_srv_init(struct serve_srv *s, dc_disk *disk, bool ro, const char *export_name)
{
	s->disk = disk;
	dc_get_info(disk, &s->info);
	s->ss = s->info.sector_size;
	s->size = s->info.sector_count * s->ss;
	s->ro = ro || (s->info.flags & DC_INFO_READ_ONLY);
	s->export_name = export_name;
	s->tflags = NBD_FLAG_HAS_FLAGS | NBD_FLAG_SEND_FLUSH;
	/* Multi-conn (docs/serve.md): every connection shares this one disk, so
	 * what one connection wrote another reads, and a chain's flush is
	 * disk-wide. Safe when read-only, or when the chain takes a flush; one
	 * that refuses it cannot make a flush on one connection persist the
	 * writes of another. */
	if (s->ro || dc_flush(disk) == 0)
		s->tflags |= NBD_FLAG_CAN_MULTI_CONN;
	if (s->ro) {
		s->tflags |= NBD_FLAG_READ_ONLY;
	} else {
		/* A fast zero is one done by unmap; otherwise ENOTSUP at once. */
		s->tflags |= NBD_FLAG_SEND_WRITE_ZEROES | NBD_FLAG_SEND_FAST_ZERO;
		if (s->info.flags & DC_INFO_FUA_RESPECTED)
			s->tflags |= NBD_FLAG_SEND_FUA;
		if (s->info.unmap_behavior != DC_UNMAP_IGNORED)
			s->tflags |= NBD_FLAG_SEND_TRIM;
	}
	snprintf(s->desc, sizeof(s->desc), "diskcore %.24s disk", s->info.disk_type);
	if (posix_memalign(&s->zeroes, SERVE_ALIGN, SERVE_ZERO_CHUNK))
		return -ENOMEM;
	memset(s->zeroes, 0, SERVE_ZERO_CHUNK);
	pthread_mutex_init(&s->lock, NULL);
	return 0;
}

void serve_srv_fini(struct serve_srv *s)
{
	free(s->zeroes);
	s->zeroes = NULL;
	pthread_mutex_destroy(&s->lock);
}

/* A unix socket's reply data waits in the sender's buffer (212992 bytes by
 * default): a 256 KiB read reply would put the connection's one thread to
 * sleep in sendmsg() until the client has read part of it. A larger buffer
 * lets the thread go on with the next request (docs/performance.md, "NBD
 * servers"); the kernel caps it at net.core.wmem_max. TCP sizes its own. */
static void serve_sndbuf(struct serve_conn *c)
{
	struct sockaddr_storage a;
	socklen_t len = sizeof(a);
	int n = SERVE_SNDBUF;

	if (getsockname(c->fd, (struct sockaddr *)&a, &len) == 0 &&
	    a.ss_family == AF_UNIX)
		setsockopt(c->fd, SOL_SOCKET, SO_SNDBUF, &n, sizeof(n));
}

void serve_conn_run(struct serve_conn *c)
{
	struct serve_srv *s = c->srv;
	int rc;

	c->qfd = -1;
	/* Only while haggling: an idle transmission connection keeps no 64 KiB. */
	c->optbuf = malloc(SERVE_MAX_OPT);
	if (!c->optbuf) {
		serve_log(c, "out of memory for the handshake");
		return;
	}
	rc = serve_handshake(c);
	free(c->optbuf);
	c->optbuf = NULL;
	if (rc)
		return;
	pthread_mutex_lock(&s->lock);
	c->transmitting = true;
	pthread_mutex_unlock(&s->lock);
	serve_sndbuf(c);

	/* The queue only now: abandoned handshakes cost no queue. It lives
	 * and dies on this thread. */
	rc = dc_queue_open(s->disk, DC_QUEUE_POLL | DC_QUEUE_THREAD, &c->q);
	if (rc < 0) {
		serve_log(c, "queue: %s", dc_last_error());
		return;
	}
	/* A backend that can reap on this thread (io_uring) saves a thread hop
	 * per request when driven; otherwise completions come through the fd. */
	if (dc_queue_pollers(c->q) && dc_queue_wait(c->q, 0) >= 0)
		rc = -1;
	else
		rc = dc_queue_fd(c->q);
	if (rc < -1) {
		serve_log(c, "queue fd: %s", strerror(-rc));
	} else {
		c->qfd = rc;
		if (s->verbose)
			serve_log(c, "transmission%s", rc < 0 ? " (driven queue)" : "");
		serve_transmit(c);
	}
	dc_queue_close(c->q);
	c->q = NULL;
	serve_bufs_free(c);
}
