/* SPDX-License-Identifier: MIT */
/*
 * diskctl serve: the listening socket.
 *
 * A unix socket path is claimed carefully: one that a live server answers on
 * is refused (taking it over would send that server's clients to this disk),
 * one that nothing answers on is stale and replaced. The socket is bound under
 * a temporary name and hard-linked into place, so PATH appears only once
 * connections are accepted and never replaces a socket another server put
 * there in the meantime. At exit only the socket this process bound is
 * removed (same device and inode).
 */
#include "serve-int.h"

#include <errno.h>
#include <netdb.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#define SERVE_CLAIM_TRIES 5

static void serve_sun(struct sockaddr_un *a, const char *path)
{
	memset(a, 0, sizeof(*a));
	a->sun_family = AF_UNIX;
	memcpy(a->sun_path, path, strlen(path) + 1);
}

/* 1 when something accepts connections on path, 0 when nothing does, -1 when
 * that cannot be told (logged). */
static int serve_probe(const char *path)
{
	struct sockaddr_un a;
	int fd, rc, err;

	serve_sun(&a, path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0) {
		serve_log(NULL, "socket: %s", strerror(errno));
		return -1;
	}
	rc = connect(fd, (struct sockaddr *)&a, sizeof(a));
	err = errno;
	close(fd);
	/* EAGAIN: a listener whose backlog is full is still a live server. */
	if (!rc || err == EAGAIN || err == EINPROGRESS)
		return 1;
	if (err == ECONNREFUSED || err == ENOENT)
		return 0;
	serve_log(NULL, "cannot tell whether a server listens on '%s': %s", path,
		  strerror(err));
	return -1;
}

/* Make path free for us: 0 when it is (absent, or a stale socket removed),
 * -1 when it must not be taken (logged). */
static int serve_claim(const char *path)
{
	struct stat st, again;
	int live;

	if (lstat(path, &st)) {
		if (errno == ENOENT)
			return 0;
		serve_log(NULL, "'%s': %s", path, strerror(errno));
		return -1;
	}
	if (!S_ISSOCK(st.st_mode)) {
		serve_log(NULL, "'%s' exists and is not a socket", path);
		return -1;
	}
	live = serve_probe(path);
	if (live < 0)
		return -1;
	if (live) {
		serve_log(NULL,
			  "'%s' is in use: a server accepts connections on it (stop "
			  "that server or choose another path)",
			  path);
		return -1;
	}
	/* Stale. Remove it unless it was replaced since the probe. */
	if (lstat(path, &again) || again.st_dev != st.st_dev || again.st_ino != st.st_ino)
		return 0; /* gone or replaced: the link below tells */
	if (unlink(path) && errno != ENOENT) {
		serve_log(NULL, "remove stale socket '%s': %s", path, strerror(errno));
		return -1;
	}
	serve_log(NULL, "removed stale socket '%s' (nothing answered on it)", path);
	return 0;
}

/* Bind and listen on a fresh temporary path; its file's identity in u. */
static int serve_bind_tmp(struct serve_unix *u, const char *tmp)
{
	struct sockaddr_un a;
	struct stat st;
	int fd;

	if (!lstat(tmp, &st) && !S_ISSOCK(st.st_mode)) {
		serve_log(NULL, "'%s' exists and is not a socket", tmp);
		return -1;
	}
	unlink(tmp); /* a leftover of an earlier process with our pid */
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0) {
		serve_log(NULL, "socket: %s", strerror(errno));
		return -1;
	}
	serve_sun(&a, tmp);
	if (bind(fd, (struct sockaddr *)&a, sizeof(a)) || listen(fd, 128) ||
	    lstat(tmp, &st)) {
		serve_log(NULL, "listen on '%s': %s", tmp, strerror(errno));
		unlink(tmp);
		close(fd);
		return -1;
	}
	u->dev = st.st_dev;
	u->ino = st.st_ino;
	return fd;
}

int serve_listen_unix(struct serve_unix *u)
{
	struct sockaddr_un a;
	char tmp[sizeof(a.sun_path)];
	int fd, tries;

	/* room for ".PID" and the NUL */
	if (strlen(u->path) > sizeof(a.sun_path) - 12) {
		serve_log(NULL, "socket path '%s' is too long (at most %zu bytes)",
			  u->path, sizeof(a.sun_path) - 12);
		return -1;
	}
	if (serve_claim(u->path))
		return -1;
	snprintf(tmp, sizeof(tmp), "%s.%d", u->path, (int)getpid());
	fd = serve_bind_tmp(u, tmp);
	if (fd < 0)
		return -1;
	for (tries = 0; tries < SERVE_CLAIM_TRIES; tries++) {
		if (!link(tmp, u->path))
			break;
		if (errno != EEXIST) {
			/* A file system without hard links: replace, not atomic. */
			if (!rename(tmp, u->path))
				goto listening;
			serve_log(NULL, "rename '%s' to '%s': %s", tmp, u->path,
				  strerror(errno));
			goto fail;
		}
		/* Someone created PATH after our check: look again. */
		if (serve_claim(u->path))
			goto fail;
	}
	if (tries == SERVE_CLAIM_TRIES) {
		serve_log(NULL, "'%s' keeps reappearing; giving up", u->path);
		goto fail;
	}
	unlink(tmp);
listening:
	serve_log(NULL, "listening on unix:%s", u->path);
	return fd;
fail:
	unlink(tmp);
	close(fd);
	return -1;
}

void serve_unlink_unix(const struct serve_unix *u)
{
	struct stat st;

	if (lstat(u->path, &st))
		return;
	if (st.st_dev != u->dev || st.st_ino != u->ino) {
		serve_log(NULL, "'%s' is no longer our socket: left in place", u->path);
		return;
	}
	unlink(u->path);
}

static bool serve_loopback(const struct sockaddr *sa)
{
	const struct in6_addr *a6;

	if (sa->sa_family == AF_INET)
		return ntohl(((const struct sockaddr_in *)sa)->sin_addr.s_addr) >> 24 ==
		       127;
	if (sa->sa_family != AF_INET6)
		return false;
	a6 = &((const struct sockaddr_in6 *)sa)->sin6_addr;
	return IN6_IS_ADDR_LOOPBACK(a6) ||
	       (IN6_IS_ADDR_V4MAPPED(a6) && a6->s6_addr[12] == 127);
}

/* Without TLS or authentication anyone who reaches the port has the disk:
 * only loopback addresses unless the operator insists (docs/serve.md). */
static bool serve_may_listen(const char *addr, const struct addrinfo *res, bool insecure)
{
	for (const struct addrinfo *ai = res; ai; ai = ai->ai_next) {
		if (insecure || serve_loopback(ai->ai_addr))
			continue;
		serve_log(NULL,
			  "refusing to listen on '%s': not a loopback address, and this "
			  "server has no TLS and no authentication (anyone who reaches "
			  "the port could read and write the disk). For TLS, serve the "
			  "chain with nbdkit's diskcore plugin: nbdkit --tls=require "
			  "diskcore SPEC (docs/serve.md). To listen anyway, add "
			  "--insecure-listen",
			  addr);
		return false;
	}
	return true;
}

int serve_listen_tcp(const char *addr, const char *port, bool insecure)
{
	struct addrinfo hints = {
		.ai_family = AF_UNSPEC,
		.ai_socktype = SOCK_STREAM,
		.ai_flags = AI_PASSIVE | AI_NUMERICSERV,
	};
	struct addrinfo *res, *ai;
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	char host[NI_MAXHOST], serv[NI_MAXSERV];
	int fd = -1, rc, one = 1, err = 0;

	rc = getaddrinfo(addr, port, &hints, &res);
	if (rc) {
		serve_log(NULL, "address '%s' port '%s': %s", addr, port,
			  gai_strerror(rc));
		return -1;
	}
	if (!serve_may_listen(addr, res, insecure)) {
		freeaddrinfo(res);
		return -1;
	}
	for (ai = res; ai; ai = ai->ai_next) {
		fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK,
			    ai->ai_protocol);
		if (fd < 0) {
			err = errno;
			continue;
		}
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		if (!bind(fd, ai->ai_addr, ai->ai_addrlen) && !listen(fd, 128))
			break;
		err = errno;
		close(fd);
		fd = -1;
	}
	freeaddrinfo(res);
	if (fd < 0) {
		serve_log(NULL, "listen on %s:%s: %s", addr, port, strerror(err));
		return -1;
	}
	if (!getsockname(fd, (struct sockaddr *)&ss, &sl) &&
	    !getnameinfo((struct sockaddr *)&ss, sl, host, sizeof(host), serv,
			 sizeof(serv), NI_NUMERICHOST | NI_NUMERICSERV))
		serve_log(NULL, "listening on %s%s%s:%s", strchr(host, ':') ? "[" : "",
			  host, strchr(host, ':') ? "]" : "", serv);
	return fd;
}
