/* SPDX-License-Identifier: MIT */
/*
 * diskctl serve: the command line and the accept loop.
 *
 * Each connection gets a thread (tools/serve/conn.c runs it). The loop keeps
 * the server bounded whatever clients do: at most --max-connections are
 * served, connections over the limit are accepted and closed at once (so they
 * neither queue in the backlog nor cost a thread), and a connection that has
 * not finished the handshake within --handshake-timeout is shut down, so
 * abandoned connections cannot hold the slots for ever.
 */
#include "../serve.h"
#include "../diskctl/diskctl.h"
#include "serve-int.h"

#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define SERVE_DEF_MAX_CONNS 16
#define SERVE_MAX_MAX_CONNS 4096
#define SERVE_DEF_TIMEOUT 10.0 /* seconds */
#define SERVE_ACCEPT_BATCH 64  /* accepts per loop turn: signals stay prompt */
#define SERVE_EMFILE_PAUSE 100 /* ms without accepting when out of descriptors */

struct serve_loop {
	struct serve_srv *s;
	struct serve_conn *conns; /* not yet joined */
	unsigned live;		  /* length of conns */
	unsigned max_conns;
	unsigned timeout_ms; /* handshake timeout; 0: none */
	int done_fd;	     /* eventfd: a connection thread finished */
	unsigned next_id;
	bool at_limit;
	unsigned long refused; /* closed at the limit since it was reached */
	uint64_t pause_until;  /* no accepting before (out of descriptors) */
};

static uint64_t serve_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static int serve_done_fd = -1;

static void *serve_conn_main(void *arg)
{
	struct serve_conn *c = arg;
	struct serve_srv *s = c->srv;

	serve_conn_run(c);
	if (s->verbose)
		serve_log(c, "closed");
	pthread_mutex_lock(&s->lock);
	c->finished = true;
	pthread_mutex_unlock(&s->lock);
	eventfd_write(serve_done_fd, 1);
	return NULL;
}

/* Join the connection threads that finished. */
static void serve_reap_conns(struct serve_loop *l)
{
	struct serve_conn **pp, *c;
	eventfd_t v;

	eventfd_read(l->done_fd, &v);
	pthread_mutex_lock(&l->s->lock);
	for (pp = &l->conns; (c = *pp);) {
		if (!c->finished) {
			pp = &c->next;
			continue;
		}
		*pp = c->next;
		pthread_join(c->thread, NULL);
		close(c->fd);
		free(c);
		l->live--;
	}
	pthread_mutex_unlock(&l->s->lock);
	if (l->at_limit && l->live < l->max_conns) {
		serve_log(NULL,
			  "below the connection limit again (%lu refused meanwhile)",
			  l->refused);
		l->at_limit = false;
		l->refused = 0;
	}
}

/* Shut down handshakes past their deadline; the ms until the next deadline
 * (-1: none). shutdown() wakes the thread's blocked read or send; the thread
 * then ends and is joined as usual. */
static int serve_expire(struct serve_loop *l, uint64_t now)
{
	uint64_t next = UINT64_MAX;

	if (!l->timeout_ms)
		return -1;
	pthread_mutex_lock(&l->s->lock);
	for (struct serve_conn *c = l->conns; c; c = c->next) {
		if (c->finished || c->transmitting || c->timed_out)
			continue;
		if (now >= c->deadline_ms) {
			c->timed_out = true;
			shutdown(c->fd, SHUT_RDWR);
			serve_log(c, "no handshake within %u ms: closed", l->timeout_ms);
		} else if (c->deadline_ms < next) {
			next = c->deadline_ms;
		}
	}
	pthread_mutex_unlock(&l->s->lock);
	return next == UINT64_MAX ? -1 : (int)(next - now);
}

static void serve_start_conn(struct serve_loop *l, int fd)
{
	struct serve_conn *c = calloc(1, sizeof(*c));
	int one = 1;

	if (!c) {
		serve_log(NULL, "out of memory for a connection");
		close(fd);
		return;
	}
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)); /* unix: fails */
	c->srv = l->s;
	c->fd = fd;
	c->id = ++l->next_id;
	c->deadline_ms = serve_now_ms() + l->timeout_ms;
	if (l->s->verbose)
		serve_log(c, "accepted");
	pthread_mutex_lock(&l->s->lock);
	if (pthread_create(&c->thread, NULL, serve_conn_main, c)) {
		pthread_mutex_unlock(&l->s->lock);
		serve_log(c, "cannot start a thread: closed");
		close(fd);
		free(c);
		return;
	}
	c->next = l->conns;
	l->conns = c;
	l->live++;
	pthread_mutex_unlock(&l->s->lock);
}

/* Take what is pending on the listening socket (with once, up to the first
 * connection started). Returns true when a connection was started. */
static bool serve_accept(struct serve_loop *l, int lfd, bool once)
{
	bool started = false;

	for (int i = 0; i < SERVE_ACCEPT_BATCH && !(once && started); i++) {
		int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);

		if (fd < 0) {
			if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS ||
			    errno == ENOMEM) {
				serve_log(NULL, "accept: %s (pausing)", strerror(errno));
				l->pause_until = serve_now_ms() + SERVE_EMFILE_PAUSE;
			} else if (errno != EAGAIN && errno != EINTR &&
				   errno != ECONNABORTED) {
				serve_log(NULL, "accept: %s", strerror(errno));
			}
			break;
		}
		if (l->live >= l->max_conns) {
			/* Closed at once: no thread, no slot, no queueing. */
			close(fd);
			l->refused++;
			if (!l->at_limit)
				serve_log(NULL,
					  "%u connections: refusing new ones until one "
					  "ends",
					  l->live);
			l->at_limit = true;
			continue;
		}
		serve_start_conn(l, fd);
		started = true;
	}
	return started;
}

static void serve_close_listener(int *lfd, const struct serve_unix *u)
{
	if (*lfd < 0)
		return;
	close(*lfd);
	*lfd = -1;
	if (u->path)
		serve_unlink_unix(u);
}

/* Accept until a signal (or, with once, until the first connection ended). */
static void serve_run(struct serve_loop *l, int lfd, int sfd, bool once,
		      const struct serve_unix *u)
{
	bool stopping = false;

	for (;;) {
		struct pollfd p[3] = {
			{ .fd = sfd, .events = POLLIN },
			{ .fd = l->done_fd, .events = POLLIN },
			{ .fd = lfd, .events = POLLIN },
		};
		uint64_t now = serve_now_ms();
		bool paused = now < l->pause_until;
		int timeout = serve_expire(l, now);

		if (stopping && !l->live)
			break;
		if (paused && (timeout < 0 || (uint64_t)timeout > l->pause_until - now))
			timeout = (int)(l->pause_until - now);
		if (poll(p, lfd >= 0 && !paused ? 3 : 2, timeout) < 0) {
			if (errno == EINTR)
				continue;
			serve_log(NULL, "poll: %s", strerror(errno));
			break;
		}
		if (p[0].revents & POLLIN) {
			struct signalfd_siginfo si;

			if (read(sfd, &si, sizeof(si)) > 0 && !stopping)
				serve_log(NULL, "signal %u: stopping", si.ssi_signo);
			stopping = true;
		}
		serve_reap_conns(l);
		if (lfd >= 0 && !paused && p[2].revents && !stopping &&
		    serve_accept(l, lfd, once) && once)
			stopping = true;
		if (stopping)
			serve_close_listener(&lfd, u);
		if (p[0].revents & POLLIN) {
			/* Wake every connection: reads end, in-flight I/O still completes. */
			pthread_mutex_lock(&l->s->lock);
			for (struct serve_conn *c = l->conns; c; c = c->next)
				if (!c->finished)
					shutdown(c->fd, SHUT_RDWR);
			pthread_mutex_unlock(&l->s->lock);
		}
	}
	serve_close_listener(&lfd, u);
}

/* --- command line --------------------------------------------------------- */

#define SERVE_NO_PORT UINT64_MAX /* --port not given (out of its range) */

/* The command line of diskctl serve. */
struct serve_args {
	const char *unix_path, *bind_addr, *export_name;
	uint64_t port, max_conns;
	double timeout; /* the handshake's, seconds; 0: none */
	bool once, ro, insecure, verbose;
};

const struct ctl_opt serve_opts[] = {
	CTL_OPT("unix", 0, CTL_OPT_STRING, struct serve_args, unix_path, "PATH",
		"listen on a unix socket (nbd+unix:///?socket=PATH);\n"
		"refused while another server answers on PATH, replaced\n"
		"if stale"),
	CTL_OPT("port", 0, CTL_OPT_UINT, struct serve_args, port, "N",
		"listen on TCP port N (0: any free port, printed on stderr)",
		.max = 65535),
	CTL_OPT("bind", 0, CTL_OPT_STRING, struct serve_args, bind_addr, "ADDR",
		"TCP address to listen on (default 127.0.0.1); only\n"
		"loopback addresses: there is no TLS (nbdkit's diskcore\n"
		"plugin has it)"),
	CTL_OPT("insecure-listen", 0, CTL_OPT_TRUE, struct serve_args, insecure, NULL,
		"allow a --bind address that is not loopback"),
	CTL_OPT("export", 0, CTL_OPT_STRING, struct serve_args, export_name, "NAME",
		"the export's name (default \"\"; \"\" is always accepted)", .max = 4096),
	CTL_OPT("ro", 0, CTL_OPT_TRUE, struct serve_args, ro, NULL,
		"open SPEC read-only and export it read-only"),
	CTL_OPT("max-connections", 0, CTL_OPT_UINT, struct serve_args, max_conns, "N",
		"serve at most N connections at once (default 16); more\n"
		"are closed as soon as they arrive",
		.min = 1, .max = SERVE_MAX_MAX_CONNS),
	CTL_OPT("handshake-timeout", 0, CTL_OPT_SECONDS, struct serve_args, timeout,
		"SECS",
		"close a connection that has not finished the handshake\n"
		"after SECS seconds (default 10; 0: never)",
		.max = 86400, .zero = true),
	CTL_OPT("once", 0, CTL_OPT_TRUE, struct serve_args, once, NULL,
		"serve one connection, then exit"),
	CTL_OPT("verbose", 'v', CTL_OPT_TRUE, struct serve_args, verbose, NULL,
		"also log connections and refused options"),
	{ 0 },
};

/* Parse argv into a; wrong usage exits 2, --help 0 (ctl_parse()). */
static void serve_parse_args(int argc, char **argv, struct serve_args *a,
			     const char **spec)
{
	*spec = ctl_parse(argc, argv, a, NULL)[0];
	if (!a->unix_path == (a->port == SERVE_NO_PORT))
		ctl_usage("give exactly one of --unix PATH and --port N");
	if (a->bind_addr && a->port == SERVE_NO_PORT)
		ctl_usage("--bind needs --port");
}

/* Milliseconds; a positive timeout stays one. */
static unsigned serve_timeout_ms(double secs)
{
	if (secs > 0 && secs < 0.001)
		return 1;
	return (unsigned)(secs * 1000 + 0.5);
}

int serve_main(int argc, char **argv)
{
	struct serve_args a = {
		.export_name = "",
		.port = SERVE_NO_PORT,
		.max_conns = SERVE_DEF_MAX_CONNS,
		.timeout = SERVE_DEF_TIMEOUT,
	};
	struct serve_unix u = { 0 };
	struct serve_srv s = { 0 };
	struct serve_loop l = { .s = &s };
	const char *spec;
	char port[8];
	dc_disk *disk;
	sigset_t sigs;
	int rc, lfd, sfd;

	serve_parse_args(argc, argv, &a, &spec);
	snprintf(port, sizeof(port), "%" PRIu64, a.port);
	u.path = a.unix_path;
	s.verbose = a.verbose;
	l.max_conns = (unsigned)a.max_conns;
	l.timeout_ms = serve_timeout_ms(a.timeout);

	/* Before any thread exists (the core's pool too), so they all inherit it. */
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	signal(SIGPIPE, SIG_IGN);

	rc = dc_open(spec, a.ro ? DC_OPEN_READ_ONLY : 0, &disk);
	if (rc < 0) {
		serve_log(NULL, "%s", *dc_last_error() ? dc_last_error() : strerror(-rc));
		return 1;
	}
	if (serve_srv_init(&s, disk, a.ro, a.export_name)) {
		serve_log(NULL, "setup: out of memory");
		dc_close(disk);
		return 1;
	}
	l.done_fd = serve_done_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	sfd = signalfd(-1, &sigs, SFD_CLOEXEC | SFD_NONBLOCK);
	if (l.done_fd < 0 || sfd < 0) {
		serve_log(NULL, "setup: %s", strerror(errno));
		serve_srv_fini(&s);
		dc_close(disk);
		return 1;
	}

	lfd = u.path ? serve_listen_unix(&u) :
		       serve_listen_tcp(a.bind_addr ? a.bind_addr : "127.0.0.1", port,
					a.insecure);
	rc = 1;
	if (lfd >= 0) {
		serve_log(NULL, "export '%s': %" PRIu64 " bytes, %s%s", s.export_name,
			  s.size, s.desc, s.ro ? ", read-only" : "");
		if (s.verbose)
			serve_log(NULL, "at most %u connections, handshake timeout %u ms",
				  l.max_conns, l.timeout_ms);
		serve_run(&l, lfd, sfd, a.once, &u);
		rc = 0;
	}
	if (!s.ro && dc_flush(disk) < 0) {
		serve_log(NULL, "final flush failed");
		rc = 1;
	}
	dc_close(disk);
	close(sfd);
	close(l.done_fd);
	serve_srv_fini(&s);
	return rc;
}
