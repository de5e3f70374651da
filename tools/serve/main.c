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
#include "serve-int.h"

#include <errno.h>
#include <getopt.h>
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
#define SERVE_DEF_TIMEOUT_MS 10000
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

__attribute__((noreturn, format(printf, 1, 2))) static void serve_usage(const char *fmt,
									...)
{
	va_list ap;

	fprintf(stderr, "diskctl serve: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\nTry 'diskctl serve --help'.\n");
	exit(2);
}

static unsigned serve_parse_conns(const char *arg)
{
	unsigned long v;
	char *end;

	errno = 0;
	v = strtoul(arg, &end, 10);
	if (*arg < '0' || *arg > '9' || *end || errno || !v || v > SERVE_MAX_MAX_CONNS)
		serve_usage("--max-connections '%s': expected a number 1..%d", arg,
			    SERVE_MAX_MAX_CONNS);
	return (unsigned)v;
}

/* Seconds, fractions allowed; 0 turns the timeout off. */
static unsigned serve_parse_timeout(const char *arg)
{
	double v;
	char *end;

	errno = 0;
	v = strtod(arg, &end);
	if (*arg < '0' || *arg > '9' || *end || errno || !(v >= 0 && v <= 86400))
		serve_usage("--handshake-timeout '%s': expected seconds, 0..86400", arg);
	if (v > 0 && v < 0.001)
		v = 0.001;
	return (unsigned)(v * 1000 + 0.5);
}

/* The command line of diskctl serve. */
struct serve_args {
	const char *spec, *port, *bind_addr, *export_name;
	const char *unix_path;
	unsigned max_conns, timeout_ms;
	bool once, ro, insecure, verbose;
};

/* Parse argv into a; wrong usage exits 2 (serve_usage). Returns false after
 * --help. */
static bool serve_parse_args(int argc, char **argv, struct serve_args *a)
{
	enum { OPT_MAX_CONNS = 256, OPT_TIMEOUT, OPT_INSECURE };
	static const struct option lo[] = {
		{ "help", no_argument, NULL, 'h' },
		{ "ro", no_argument, NULL, 'r' },
		{ "unix", required_argument, NULL, 'u' },
		{ "port", required_argument, NULL, 'p' },
		{ "bind", required_argument, NULL, 'b' },
		{ "export", required_argument, NULL, 'e' },
		{ "once", no_argument, NULL, 'o' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "max-connections", required_argument, NULL, OPT_MAX_CONNS },
		{ "handshake-timeout", required_argument, NULL, OPT_TIMEOUT },
		{ "insecure-listen", no_argument, NULL, OPT_INSECURE },
		{ 0 },
	};
	char *end;
	int c;

	opterr = 0;
	while ((c = getopt_long(argc, argv, ":hv", lo, NULL)) != -1) {
		switch (c) {
		case 'h':
			printf("usage: diskctl %s", SERVE_USAGE);
			return false;
		case 'r':
			a->ro = true;
			break;
		case 'u':
			a->unix_path = optarg;
			break;
		case 'p':
			errno = 0;
			if (strtoul(optarg, &end, 10) > 65535 || *end || !*optarg ||
			    errno)
				serve_usage("--port '%s': expected a number 0..65535",
					    optarg);
			a->port = optarg;
			break;
		case 'b':
			a->bind_addr = optarg;
			break;
		case 'e':
			if (strlen(optarg) > 4096)
				serve_usage("--export: a name is at most 4096 bytes");
			a->export_name = optarg;
			break;
		case 'o':
			a->once = true;
			break;
		case 'v':
			a->verbose = true;
			break;
		case OPT_MAX_CONNS:
			a->max_conns = serve_parse_conns(optarg);
			break;
		case OPT_TIMEOUT:
			a->timeout_ms = serve_parse_timeout(optarg);
			break;
		case OPT_INSECURE:
			a->insecure = true;
			break;
		case ':':
			serve_usage("option '%s' needs an argument", argv[optind - 1]);
		default:
			if (optopt)
				serve_usage("unknown option '-%c'", optopt);
			serve_usage("unknown option '%s'", argv[optind - 1]);
		}
	}
	if (argc - optind < 1)
		serve_usage("missing SPEC");
	if (argc - optind > 1)
		serve_usage("unexpected argument '%s'", argv[optind + 1]);
	if (!a->unix_path == !a->port)
		serve_usage("give exactly one of --unix PATH and --port N");
	if (a->bind_addr && !a->port)
		serve_usage("--bind needs --port");
	a->spec = argv[optind];
	return true;
}

int serve_main(int argc, char **argv)
{
	struct serve_args a = {
		.export_name = "",
		.max_conns = SERVE_DEF_MAX_CONNS,
		.timeout_ms = SERVE_DEF_TIMEOUT_MS,
	};
	struct serve_unix u = { 0 };
	struct serve_srv s = { 0 };
	struct serve_loop l = { .s = &s };
	dc_disk *disk;
	sigset_t sigs;
	int rc, lfd, sfd;

	if (!serve_parse_args(argc, argv, &a))
		return 0;
	u.path = a.unix_path;
	s.verbose = a.verbose;
	l.max_conns = a.max_conns;
	l.timeout_ms = a.timeout_ms;

	/* Before any thread exists (the core's pool too), so they all inherit it. */
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	signal(SIGPIPE, SIG_IGN);

	rc = dc_open(a.spec, a.ro ? DC_OPEN_READ_ONLY : 0, &disk);
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
		       serve_listen_tcp(a.bind_addr ? a.bind_addr : "127.0.0.1", a.port,
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
