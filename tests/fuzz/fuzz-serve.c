/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target: diskctl serve's NBD protocol handling, option haggling and
 * transmission requests alike. The input is a mode byte and then what a client
 * sends: the protocol code (tools/serve/, compiled in) runs one connection on
 * a socketpair, exactly as the server runs it on an accepted socket, while a
 * helper thread feeds the input and drains the replies.
 *
 * Mode byte: bits 0-1 the disk (mem:64K, mem:64K with 4 KiB sectors,
 * memdiff:mem:64K), bit 2 a read-only export, bit 3 the export named "fz".
 * Seeds: tests/fuzz/corpus/serve (tests/fuzz/serve-seeds.py makes them).
 * Needs DISKCORE_PLUGIN_PATH to reach the ram plugin (run.sh sets it).
 */
#include "../../tools/serve/conn.c"
#include "../../tools/serve/handshake.c"
#include "../../tools/serve/reqs.c"
#include "../../tools/serve/transmit.c"
#include "../../tools/serve/wire.c"

#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

/* Larger inputs add run time (a read costs up to the disk's size in replies)
 * without reaching new code. */
#define FUZZ_MAX_INPUT 16384

static const char *const fuzz_specs[3] = {
	"mem:64K",
	"mem:64K;sector=4096",
	"memdiff:mem:64K",
};

struct fuzz_feed {
	int fd;
	const uint8_t *data;
	size_t size;
};

/* The client side: write the input, read and drop replies until the server
 * closes its end. */
static void *fuzz_client(void *arg)
{
	struct fuzz_feed *f = arg;
	uint8_t sink[65536];
	size_t off = 0;
	bool writing = f->size > 0;

	if (!writing)
		shutdown(f->fd, SHUT_WR);
	for (;;) {
		struct pollfd p = { .fd = f->fd,
				    .events = POLLIN | (writing ? POLLOUT : 0) };

		if (poll(&p, 1, -1) < 0)
			continue;
		if (p.revents & POLLOUT && writing) {
			ssize_t w = send(f->fd, f->data + off, f->size - off,
					 MSG_NOSIGNAL | MSG_DONTWAIT);

			if (w > 0)
				off += (size_t)w;
			if ((w < 0 && errno != EAGAIN) || off == f->size) {
				writing = false; /* all sent, or the server left */
				shutdown(f->fd, SHUT_WR);
			}
		}
		if (p.revents & (POLLIN | POLLHUP | POLLERR)) {
			ssize_t r = recv(f->fd, sink, sizeof(sink), MSG_DONTWAIT);

			if (r == 0 || (r < 0 && errno != EAGAIN))
				return NULL;
		}
	}
}

static struct serve_srv *fuzz_srv(unsigned mode)
{
	static dc_disk *disks[3];
	static struct serve_srv srvs[3][2][2];
	unsigned d = (mode & 3) % 3, ro = !!(mode & 4), named = !!(mode & 8);
	struct serve_srv *s = &srvs[d][ro][named];

	if (!disks[d] && dc_open(fuzz_specs[d], 0, &disks[d]) < 0) {
		fprintf(stderr, "fuzz-serve: %s: %s (is DISKCORE_PLUGIN_PATH set?)\n",
			fuzz_specs[d], dc_last_error());
		abort();
	}
	if (!s->disk && serve_srv_init(s, disks[d], ro, named ? "fz" : ""))
		abort();
	return s;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct serve_conn c = { 0 };
	struct fuzz_feed f;
	pthread_t th;
	int sv[2];

	if (!size)
		return 0;
	serve_quiet = true;
	c.srv = fuzz_srv(data[0]);
	c.id = 1;
	if (size > FUZZ_MAX_INPUT)
		size = FUZZ_MAX_INPUT;
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv))
		return 0;
	f = (struct fuzz_feed){ .fd = sv[1], .data = data + 1, .size = size - 1 };
	if (pthread_create(&th, NULL, fuzz_client, &f)) {
		close(sv[0]);
		close(sv[1]);
		return 0;
	}
	c.fd = sv[0];
	serve_conn_run(&c);
	close(sv[0]);
	pthread_join(th, NULL);
	close(sv[1]);
	return 0;
}
