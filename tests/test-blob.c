/* SPDX-License-Identifier: MIT */
/* The blob plugin (docs/openvmm-compat.md §2.4 and §7.2 disk_blob) against real servers
 * on 127.0.0.1, started here and stopped at exit:
 *  - nginx (an independent HTTP server) serving a flat image and a fixed VHD:
 *    the conformance suite, content, the VHD footer out of reach, memdiff on top,
 *    concurrent reads, a blob that changes after open;
 *  - tests/blob/badserver.py, a server that misbehaves on purpose: every bad
 *    answer must fail the read (never success with wrong data), 503 twice must be
 *    retried to success, a server that never answers must hit the timeout;
 *    redirects, a missing Content-Length, TLS verification and the https -> http
 *    downgrade.
 * Cases that need a tool the machine lacks (nginx, python3, openssl) are not
 * added; with neither server available the program exits 77. */
#include "conformance.h"
#include "harness.h"

#include <diskcore/plugin.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define KIB 1024u
#define MIB (1024u * 1024u)
#define FLAT_SIZE MIB
#define TAIL_SIZE (64u * KIB + 100u)
#define VHD_DATA MIB

static pid_t tb_owner;
static char *tb_root; /* the web root nginx serves */
static char *tb_flat; /* flat.img: FLAT_SIZE bytes of h_fill(1) */
static char *tb_vhd;  /* disk.vhd: VHD_DATA bytes of h_fill(2) + footer */
static uint8_t tb_uid[16];
static pid_t tb_nginx_pid;
static int tb_nginx_port;
static pid_t tb_bad_pid;
static int tb_bad_port, tb_tls_port;
static char *tb_cert;

/* --- Helpers ------------------------------------------------------------------ */

/* blob: disks open read-only only (§2.4: the resolver refuses writable ones). */
#define TB_RO DC_OPEN_READ_ONLY

/* h_open_fails(TB_RO, 0, want, spec): and the message never shows the query. */
#define tb_open_fails(want, ...)                                        \
	do {                                                            \
		h_open_fails(TB_RO, 0, want, __VA_ARGS__);              \
		ck_assert_msg(!strstr(dc_last_error(), "SECRET"),       \
			      "the message shows the query string: %s", \
			      dc_last_error());                         \
	} while (0)

/* The blob plugin's describe() value for key ("" when absent); no value may
 * show the query. */
static const char *tb_describe(dc_disk *d, const char *key)
{
	static struct h_desc t;
	const char *v;

	h_describe(d, "blob", &t);
	for (int i = 0; i < t.n; i++)
		/* "spec" is the core's echo of the spec as given, not the plugin's. */
		ck_assert_msg(!strcmp(t.keys[i], "spec") ||
				      !strstr(t.values[i], "SECRET"),
			      "describe %s shows the query: %s", t.keys[i], t.values[i]);
	v = h_desc_get(&t, key);
	return v ? v : "";
}

/* The plugin's last error message must contain want. */
static void tb_expect_last_error(dc_disk *d, const char *want)
{
	const char *msg = tb_describe(d, "last_error");

	ck_assert_msg(strstr(msg, want), "last error '%s' lacks '%s'", msg, want);
}

/* Compare the disk's [sector, +len) with the file's bytes at file_off. */
static void tb_expect_file(dc_disk *d, uint64_t sector, size_t len, const char *path,
			   off_t file_off)
{
	uint8_t *got = h_alloc(len), *want = h_alloc(len);
	int r;

	h_pread_file(path, file_off, want, len);
	r = dc_read(d, sector, got, len);
	ck_assert_msg(r == 0, "read(sector %llu, %zu bytes) = %d (%s): %s",
		      (unsigned long long)sector, len, r, dc_strerror(r),
		      tb_describe(d, "last_error"));
	if (memcmp(got, want, len)) {
		size_t i = 0;

		while (got[i] == want[i])
			i++;
		ck_abort_msg("read(sector %llu): byte %zu is %#x, the file has %#x",
			     (unsigned long long)sector, i, got[i], want[i]);
	}
	free(got);
	free(want);
}

/* The "N requests" figure of describe()'s stats. */
static unsigned long long tb_requests(dc_disk *d)
{
	return strtoull(tb_describe(d, "stats"), NULL, 10);
}

static char *tb_url(const char *name)
{
	return h_fmt("http://127.0.0.1:%d/%s", tb_nginx_port, name);
}

/* --- Servers ------------------------------------------------------------------ */

static int tb_free_port(void)
{
	struct sockaddr_in a = { .sin_family = AF_INET };
	socklen_t al = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM, 0), port;

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0 ||
	    getsockname(fd, (struct sockaddr *)&a, &al) < 0)
		abort();
	port = ntohs(a.sin_port);
	close(fd);
	return port;
}

static bool tb_connects(int port)
{
	struct sockaddr_in a = { .sin_family = AF_INET,
				 .sin_port = htons((uint16_t)port) };
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	bool ok;

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ok = fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0;
	if (fd >= 0)
		close(fd);
	return ok;
}

/* Start argv with stdin from a pipe we keep (the child sees EOF when we exit)
 * and, if out is not NULL, stdout into a pipe; the child dies with us. */
static pid_t tb_spawn(char *const argv[], int *out)
{
	int in_p[2], out_p[2];
	pid_t pid;

	if (pipe2(in_p, O_CLOEXEC) < 0 || (out && pipe2(out_p, O_CLOEXEC) < 0))
		abort();
	pid = fork();
	if (pid < 0)
		abort();
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGTERM);
		dup2(in_p[0], 0);
		if (out)
			dup2(out_p[1], 1);
		execvp(argv[0], argv);
		_exit(127);
	}
	close(in_p[0]); /* in_p[1] stays open (close-on-exec) until we exit */
	if (out) {
		close(out_p[1]);
		*out = out_p[0];
	}
	return pid;
}

static void tb_stop_servers(void)
{
	if (getpid() != tb_owner)
		return;
	if (tb_nginx_pid > 0) {
		kill(tb_nginx_pid, SIGTERM);
		waitpid(tb_nginx_pid, NULL, 0);
		tb_nginx_pid = 0;
	}
	if (tb_bad_pid > 0) {
		kill(tb_bad_pid, SIGTERM);
		waitpid(tb_bad_pid, NULL, 0);
		tb_bad_pid = 0;
	}
}

/* Write nginx.conf for tb_nginx_port, start nginx and wait (with a deadline)
 * for its port to accept; false when it exits or the deadline passes. */
static bool tb_try_nginx(const char *prog)
{
	char *conf = h_fmt("%s/nginx.conf", h_tmpdir());
	char *prefix = h_fmt("%s/", h_tmpdir());
	char *argv[] = { (char *)prog, "-c", conf, "-p", prefix, NULL };
	uint64_t deadline;
	char *text;
	int status;

	text = h_fmt("daemon off;\n"
		     "%s"
		     "worker_processes 1;\n"
		     "pid %s/nginx.pid;\n"
		     "error_log %s/nginx-error.log;\n"
		     "events { worker_connections 512; }\n"
		     "http {\n"
		     "  access_log off;\n"
		     "  default_type application/octet-stream;\n"
		     "  client_body_temp_path %s/ngx-body;\n"
		     "  proxy_temp_path %s/ngx-proxy;\n"
		     "  fastcgi_temp_path %s/ngx-fcgi;\n"
		     "  uwsgi_temp_path %s/ngx-uwsgi;\n"
		     "  scgi_temp_path %s/ngx-scgi;\n"
		     "  keepalive_requests 100000;\n"
		     "  server {\n"
		     "    listen 127.0.0.1:%d;\n"
		     "    root %s;\n"
		     "    location / { }\n"
		     /* A server without range support: 200 and the whole file. */
		     "    location /norange/ { max_ranges 0; alias %s/; }\n"
		     "  }\n"
		     "}\n",
		     geteuid() == 0 ? "user root;\n" : "", h_tmpdir(), h_tmpdir(),
		     h_tmpdir(), h_tmpdir(), h_tmpdir(), h_tmpdir(), h_tmpdir(),
		     tb_nginx_port, tb_root, tb_root);
	h_write_file(conf, text, strlen(text), 0644);
	free(text);
	tb_nginx_pid = tb_spawn(argv, NULL);
	free(conf);
	free(prefix);
	deadline = h_now_ms() + 10000;
	/* nginx says nothing when it listens: poll the port until it answers. */
	while (!tb_connects(tb_nginx_port)) {
		struct timespec ts = { 0, 10 * 1000 * 1000 };

		if (waitpid(tb_nginx_pid, &status, WNOHANG) == tb_nginx_pid ||
		    h_now_ms() > deadline) {
			if (h_now_ms() > deadline) {
				kill(tb_nginx_pid, SIGTERM);
				waitpid(tb_nginx_pid, NULL, 0);
			}
			tb_nginx_pid = 0;
			return false;
		}
		nanosleep(&ts, NULL);
	}
	return true;
}

/* 1 when nginx serves tb_root, 0 when it is not installed, -1 when it is but
 * does not start. */
static int tb_start_nginx(void)
{
	const char *prog = "nginx";

	if (!h_have_program(prog)) {
		prog = "/usr/sbin/nginx"; /* not on a non-root user's PATH */
		if (access(prog, X_OK) != 0)
			return 0;
	}
	/* Another process may take the free port before nginx binds it. */
	for (int attempt = 0; attempt < 3; attempt++) {
		tb_nginx_port = tb_free_port();
		if (tb_try_nginx(prog))
			return 1;
	}
	fprintf(stderr, "test-blob: nginx did not start (see %s/nginx-error.log)\n",
		h_tmpdir());
	tb_nginx_port = 0;
	return -1;
}

/* 1 when badserver.py listens (with TLS when openssl is installed), 0 without
 * python3, -1 when a tool that is installed fails. */
static int tb_start_badserver(void)
{
	const char *src = getenv("DISKCORE_SOURCE_ROOT");
	char *script, *key = NULL, line[64] = "";
	char *argv[8];
	ssize_t n;
	int out, i = 0;

	/* Debian's python3 when there is one: a version manager's shim is slow
	 * to start and may write to stdout. */
	const char *py = access("/usr/bin/python3", X_OK) == 0 ? "/usr/bin/python3" :
								 "python3";

	if (!src || (!strcmp(py, "python3") && !h_have_program("python3")))
		return 0;
	script = h_fmt("%s/tests/blob/badserver.py", src);
	if (h_have_program("openssl")) {
		/* A self-signed certificate for 127.0.0.1. */
		tb_cert = h_fmt("%s/cert.pem", h_tmpdir());
		key = h_fmt("%s/key.pem", h_tmpdir());
		if (h_sh("openssl req -x509 -newkey ec -pkeyopt "
			 "ec_paramgen_curve:prime256v1 -nodes -keyout %s -out %s -days 2 "
			 "-subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1",
			 key, tb_cert) != 0)
			return -1;
	}
	argv[i++] = (char *)py;
	argv[i++] = script;
	argv[i++] = tb_flat;
	if (tb_cert) {
		argv[i++] = "--cert";
		argv[i++] = tb_cert;
		argv[i++] = "--key";
		argv[i++] = key;
	}
	argv[i] = NULL;
	tb_bad_pid = tb_spawn(argv, &out);
	/* The server prints its ports once it listens: blocking reads, no polling. */
	for (size_t got = 0; got < sizeof(line) - 1 && !strchr(line, '\n');
	     got += (size_t)n) {
		n = read(out, line + got, sizeof(line) - 1 - got);
		if (n <= 0)
			break;
	}
	close(out);
	free(script);
	free(key);
	if (!strchr(line, '\n') ||
	    sscanf(line, "%d %d", &tb_bad_port, &tb_tls_port) < 1 ||
	    (tb_cert && !tb_tls_port)) {
		fprintf(stderr, "test-blob: badserver.py did not start: '%s'\n", line);
		return -1;
	}
	return 1;
}

/* --- nginx cases -------------------------------------------------------------- */

START_TEST(blob_flat_content)
{
	char *url = tb_url("flat.img");
	dc_disk *d = h_openf(TB_RO, "blob:flat:%s;split=64K", url);
	struct dc_info info;

	dc_get_info(d, &info);
	ck_assert_uint_eq(info.sector_count, FLAT_SIZE / 512);
	ck_assert_uint_eq(info.sector_size, 512);
	ck_assert_uint_eq(info.physical_sector_size, 4096);
	ck_assert(info.flags & DC_INFO_READ_ONLY);
	ck_assert(!(info.flags & DC_INFO_HAS_DISK_ID));
	ck_assert_uint_eq(info.unmap_behavior, DC_UNMAP_IGNORED);
	/* The whole disk in one read: 16 ranges of 64 KiB in parallel. */
	tb_expect_file(d, 0, FLAT_SIZE, tb_flat, 0);
	tb_expect_file(d, 1, 512, tb_flat, 512);
	tb_expect_file(d, 7, 3 * 512 + 64 * KIB, tb_flat, 7 * 512);
	tb_expect_file(d, FLAT_SIZE / 512 - 1, 512, tb_flat, FLAT_SIZE - 512);
	ck_assert_str_eq(tb_describe(d, "url"), url);
	ck_assert_str_eq(tb_describe(d, "kind"), "flat");
	ck_assert_str_eq(tb_describe(d, "if_match"), "yes");
	dc_close(d);
	free(url);
}
END_TEST

/* A partial last sector is not part of the disk (§2.4). */
START_TEST(blob_flat_partial_tail)
{
	dc_disk *d =
		h_openf(TB_RO, "blob:flat:http://127.0.0.1:%d/tail.img", tb_nginx_port);
	uint8_t buf[1024];

	ck_assert_uint_eq(dc_sector_count(d), TAIL_SIZE / 512);
	ck_assert_int_eq(dc_read(d, TAIL_SIZE / 512 - 1, buf, 512), 0);
	ck_assert_int_eq(dc_read(d, TAIL_SIZE / 512 - 1, buf, 1024), DC_E_ILLEGAL_BLOCK);
	dc_close(d);
}
END_TEST

START_TEST(blob_vhd1_content_and_id)
{
	dc_disk *d =
		h_openf(TB_RO, "blob:vhd1:http://127.0.0.1:%d/disk.vhd", tb_nginx_port);
	struct dc_info info;

	dc_get_info(d, &info);
	ck_assert_uint_eq(info.sector_count, VHD_DATA / 512);
	ck_assert(info.flags & DC_INFO_HAS_DISK_ID);
	ck_assert(memcmp(info.disk_id, tb_uid, 16) == 0);
	tb_expect_file(d, 0, VHD_DATA, tb_vhd, 0);
	tb_expect_file(d, 100, 4096, tb_vhd, 100 * 512);
	ck_assert_str_eq(tb_describe(d, "kind"), "vhd1");
	dc_close(d);
}
END_TEST

/* OpenVMM's read_past_end_does_not_return_footer: the range check is against
 * the disk, not the blob, which is 512 bytes longer. */
START_TEST(read_past_end_does_not_return_footer)
{
	dc_disk *d =
		h_openf(TB_RO, "blob:vhd1:http://127.0.0.1:%d/disk.vhd", tb_nginx_port);
	uint64_t n = dc_sector_count(d);
	uint8_t *buf = h_alloc(1024);

	ck_assert_int_eq(dc_read(d, n, buf, 512), DC_E_ILLEGAL_BLOCK);
	ck_assert(memcmp(buf, "conectix", 8) != 0);
	ck_assert_int_eq(dc_read(d, n - 1, buf, 1024), DC_E_ILLEGAL_BLOCK);
	ck_assert(memcmp(buf + 512, "conectix", 8) != 0);
	ck_assert_int_eq(dc_read(d, n - 1, buf, 512), 0);
	ck_assert(memcmp(buf, "conectix", 8) != 0);
	free(buf);
	dc_close(d);
}
END_TEST

START_TEST(blob_vhd1_bad_footers)
{
	static const char *const cases[][2] = {
		{ "flat.img", "cookie" }, /* a raw image is not a VHD */
		{ "badsum.vhd", "checksum" },  { "dynamic.vhd", "not a fixed VHD" },
		{ "toobig.vhd", "disk size" }, { "tiny.vhd", "too small" },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		tb_open_fails(cases[i][1], "blob:vhd1:http://127.0.0.1:%d/%s",
			      tb_nginx_port, cases[i][0]);
	}
}
END_TEST

/* The vhd1 file plugin and blob:vhd1 agree on the same image. */
START_TEST(blob_vhd1_matches_file_plugin)
{
	dc_disk *b = h_openf(TB_RO, "blob:vhd1:http://127.0.0.1:%d/disk.vhd",
			     tb_nginx_port),
		*f = h_openf(DC_OPEN_READ_ONLY, "vhd1:%s", tb_vhd);
	struct dc_info bi, fi;
	uint8_t *x = h_alloc(64 * KIB), *y = h_alloc(64 * KIB);

	dc_get_info(b, &bi);
	dc_get_info(f, &fi);
	ck_assert_uint_eq(bi.sector_count, fi.sector_count);
	ck_assert(memcmp(bi.disk_id, fi.disk_id, 16) == 0);
	for (uint64_t s = 0; s < bi.sector_count; s += 128) {
		ck_assert_int_eq(dc_read(b, s, x, 64 * KIB), 0);
		ck_assert_int_eq(dc_read(f, s, y, 64 * KIB), 0);
		ck_assert(memcmp(x, y, 64 * KIB) == 0);
	}
	free(x);
	free(y);
	dc_close(b);
	dc_close(f);
}
END_TEST

/* Writes go to the RAM layer; the blob (and the file behind it) never change. */
START_TEST(blob_memdiff_writable)
{
	char *spec =
		h_fmt("memdiff:blob:flat:http://127.0.0.1:%d/flat.img", tb_nginx_port);
	char *bspec = spec + strlen("memdiff:");
	dc_disk *d = h_open(spec, 0), *b;
	uint8_t *w = h_alloc(4096), *r = h_alloc(4096);
	struct dc_info info;

	dc_get_info(d, &info);
	ck_assert(!(info.flags & DC_INFO_READ_ONLY));
	h_fill(w, 4096, 77);
	ck_assert_int_eq(dc_write(d, 16, w, 4096, 0), 0);
	ck_assert_int_eq(dc_read(d, 16, r, 4096), 0);
	ck_assert(memcmp(w, r, 4096) == 0);
	tb_expect_file(d, 0, 8192, tb_flat, 0);
	b = h_open(bspec, TB_RO);
	ck_assert_int_eq(dc_write(b, 16, w, 4096, 0), DC_E_READ_ONLY);
	tb_expect_file(b, 16, 4096, tb_flat, 16 * 512);
	dc_close(b);
	dc_close(d);
	free(w);
	free(r);
	free(spec);
}
END_TEST

/* A writable open fails, as OpenVMM's resolver does (§2.4), saying what to do;
 * layers and decorators above a blob pass the same rule down. */
START_TEST(blob_writable_open_fails)
{
	static const char *const specs[] = { "blob:flat:%s", "delay:0:blob:flat:%s",
					     "striped:[blob:flat:%s]" };
	char *url = tb_url("flat.img");

	for (size_t i = 0; i < sizeof(specs) / sizeof(specs[0]); i++) {
		char *spec = h_fmt(specs[i], url);

		h_open_fails(0, -EROFS, "writable blob disks not supported", "%s", spec);
		h_open_fails(0, -EROFS, "open it read-only", "%s", spec);
		dc_close(h_open(spec, TB_RO));
		free(spec);
	}
	free(url);
}
END_TEST

/* 256 random 4 KiB reads kept 32 deep on one queue: concurrent requests, each
 * with the right data. */
enum { TB_QD = 32, TB_TOTAL = 256, TB_BS = 4096 };

static void tb_submit_slot(dc_queue *q, struct iovec *iov, uint64_t *where, unsigned slot,
			   unsigned *seed)
{
	struct dc_io io = { .op = DC_OP_READ,
			    .iov = &iov[slot],
			    .iovcnt = 1,
			    .user_data = (void *)(uintptr_t)slot };

	where[slot] = (rand_r(seed) % (FLAT_SIZE / TB_BS)) * (TB_BS / 512);
	io.sector = where[slot];
	ck_assert_int_eq(dc_submit(q, &io), 0);
}

START_TEST(blob_queue_depth_32)
{
	dc_disk *d = h_openf(TB_RO,
			     "blob:flat:http://127.0.0.1:%d/flat.img;connections=8",
			     tb_nginx_port);
	size_t flen;
	uint8_t *file = h_read_file(tb_flat, &flen);
	uint8_t *bufs = h_alloc((size_t)TB_QD * TB_BS);
	struct iovec iov[TB_QD];
	uint64_t where[TB_QD];
	struct dc_completion c[TB_QD];
	unsigned submitted = 0, done = 0, seed = 12345;
	dc_queue *q;

	ck_assert_int_eq(dc_queue_open(d, DC_QUEUE_POLL, &q), 0);
	for (unsigned i = 0; i < TB_QD; i++) {
		iov[i].iov_base = bufs + (size_t)i * TB_BS;
		iov[i].iov_len = TB_BS;
		tb_submit_slot(q, iov, where, i, &seed);
		submitted++;
	}
	while (done < TB_TOTAL) {
		int n = h_reap(q, c, TB_QD, 30000);

		for (int i = 0; i < n; i++) {
			unsigned slot = (unsigned)(uintptr_t)c[i].user_data;

			ck_assert_msg(c[i].result == 0, "read at sector %llu: %d",
				      (unsigned long long)where[slot], c[i].result);
			ck_assert(memcmp(iov[slot].iov_base, file + where[slot] * 512,
					 TB_BS) == 0);
			done++;
			if (submitted < TB_TOTAL) {
				tb_submit_slot(q, iov, where, slot, &seed);
				submitted++;
			}
		}
	}
	ck_assert_msg(strstr(tb_describe(d, "stats"), "256 requests"), "stats: %s",
		      tb_describe(d, "stats"));
	dc_queue_close(q);
	dc_close(d);
	free(bufs);
	free(file);
}
END_TEST

/* The query (a SAS signature, say) never shows in describe() or messages. */
START_TEST(blob_query_is_never_shown)
{
	char *url = tb_url("flat.img");
	dc_disk *d = h_openf(TB_RO,
			     "blob:flat:http://127.0.0.1:%d/flat.img?sv=1&sig=SECRET",
			     tb_nginx_port);

	ck_assert_str_eq(tb_describe(d, "url"), url);
	ck_assert_str_eq(tb_describe(d, "auth"), "sas");
	tb_expect_file(d, 0, 4096, tb_flat, 0);
	dc_close(d);
	tb_open_fails("404", "blob:flat:http://127.0.0.1:%d/nothere.img?sig=SECRET",
		      tb_nginx_port);
	tb_open_fails("/nothere.img",
		      "blob:flat:http://127.0.0.1:%d/nothere.img?sig=SECRET",
		      tb_nginx_port);
	free(url);
}
END_TEST

/* A blob replaced after open: reads fail (If-Match) instead of mixing versions. */
START_TEST(blob_changed_after_open_fails)
{
	char *path = h_fmt("%s/changing.img", tb_root);
	uint8_t *buf = h_alloc(64 * KIB);
	struct timespec times[2] = { { 0, UTIME_OMIT }, { 1000000000, 0 } };
	dc_disk *d;
	int r;

	h_fill(buf, 64 * KIB, 5);
	h_write_file(path, buf, 64 * KIB, 0644);
	d = h_openf(TB_RO, "blob:flat:http://127.0.0.1:%d/changing.img;retries=0",
		    tb_nginx_port);
	ck_assert_int_eq(dc_read(d, 0, buf, 4096), 0);
	h_fill(buf, 64 * KIB, 6);
	h_write_file(path, buf, 64 * KIB, 0644);
	/* A different modification time gives nginx's ETag a different value. */
	ck_assert_int_eq(utimensat(AT_FDCWD, path, times, 0), 0);
	r = dc_read(d, 0, buf, 4096);
	ck_assert_int_eq(r, DC_E_IO);
	tb_expect_last_error(d, "412");
	dc_close(d);
	unlink(path);
	free(buf);
	free(path);
}
END_TEST

/* nginx with max_ranges 0 answers every ranged GET with 200 and the whole
 * file. A flat blob is kept from its first read; a VHD from the footer read at
 * open, so its reads make no request at all. */
START_TEST(nginx_without_ranges)
{
	dc_disk *d = h_openf(TB_RO,
			     "blob:flat:http://127.0.0.1:%d/norange/flat.img;split=64K;"
			     "readahead=64K",
			     tb_nginx_port);

	tb_expect_file(d, 3, 4096, tb_flat, 3 * 512);
	tb_expect_file(d, 0, FLAT_SIZE, tb_flat, 0);
	ck_assert_msg(tb_requests(d) == 1, "stats: %s", tb_describe(d, "stats"));
	ck_assert_msg(strstr(tb_describe(d, "ranges"), "held in memory"), "ranges: %s",
		      tb_describe(d, "ranges"));
	dc_close(d);
	d = h_openf(TB_RO, "blob:vhd1:http://127.0.0.1:%d/norange/disk.vhd",
		    tb_nginx_port);
	ck_assert_msg(strstr(tb_describe(d, "ranges"), "held in memory"), "ranges: %s",
		      tb_describe(d, "ranges"));
	tb_expect_file(d, 0, VHD_DATA, tb_vhd, 0);
	ck_assert_msg(tb_requests(d) == 0, "stats: %s", tb_describe(d, "stats"));
	dc_close(d);
}
END_TEST

/* A ';' in a URL (docs/spec-strings.md, blob). Percent-encoded, %3B reaches
 * the server as written, in the path and in the query, with options after
 * it; nginx decodes it to the file "semi;colon.img". */
START_TEST(semicolon_in_url)
{
	char *want = h_fmt("http://127.0.0.1:%d/semi%%3Bcolon.img", tb_nginx_port);
	dc_disk *d = h_openf(TB_RO, "blob:flat:%s?a=1%%3Bb;retries=0;split=64K", want);

	ck_assert_str_eq(tb_describe(d, "url"), want);
	ck_assert_str_eq(tb_describe(d, "policy"), "30000 ms, 0 retries, split 65536");
	tb_expect_file(d, 0, 128 * KIB, tb_flat, 0);
	dc_close(d);
	free(want);
}
END_TEST

START_TEST(blob_bad_specs)
{
	tb_open_fails("expected blob:flat:URL", "blob:raw:http://127.0.0.1:1/x.img");
	tb_open_fails("missing URL", "blob:flat:");
	tb_open_fails("not an http", "blob:flat:ftp://127.0.0.1/x.img");
	tb_open_fails("not a valid URL", "blob:flat:/x.img");
	tb_open_fails("percent-encoded", "blob:flat:http://127.0.0.1:1/a b.img");
	tb_open_fails("connections=0", "blob:flat:http://127.0.0.1:1/x;connections=0");
	tb_open_fails("retries=99", "blob:flat:http://127.0.0.1:1/x;retries=99");
	tb_open_fails("split", "blob:flat:http://127.0.0.1:1/x;split=1000");
	tb_open_fails("cafile=/nonexistent/ca.pem",
		      "blob:flat:http://127.0.0.1:1/x;cafile=/nonexistent/ca.pem");
	tb_open_fails("sharedkey= is for Azure",
		      "blob:flat:http://127.0.0.1:1/x;sharedkey=/nonexistent");
	tb_open_fails("/nonexistent",
		      "blob:flat:http://127.0.0.1:1/x;azure;sharedkey=/nonexistent");
	/* Nothing listens on port 1: a clear connection error, no retry wait. */
	tb_open_fails("connect", "blob:flat:http://127.0.0.1:1/x.img;retries=0");
}
END_TEST

/* Sequential 4 KiB reads are served from read-ahead windows: few requests, the
 * right data, and the windows stop at the disk's end (never the VHD footer). */
START_TEST(blob_readahead_sequential)
{
	dc_disk *d = h_openf(TB_RO,
			     "blob:vhd1:http://127.0.0.1:%d/disk.vhd;readahead=64K",
			     tb_nginx_port);
	size_t flen;
	uint8_t *file = h_read_file(tb_vhd, &flen), *buf = h_alloc(4096);

	for (uint64_t s = 0; s < VHD_DATA / 512; s += 8) {
		ck_assert_int_eq(dc_read(d, s, buf, 4096), 0);
		ck_assert_msg(memcmp(buf, file + s * 512, 4096) == 0,
			      "sector %llu differs", (unsigned long long)s);
	}
	/* 256 reads, 16 windows of 64 KiB. */
	ck_assert_msg(tb_requests(d) <= 17, "stats: %s", tb_describe(d, "stats"));
	ck_assert_msg(strstr(tb_describe(d, "readahead"), "65536 bytes"), "readahead: %s",
		      tb_describe(d, "readahead"));
	ck_assert_int_eq(dc_read(d, VHD_DATA / 512, buf, 512), DC_E_ILLEGAL_BLOCK);
	free(buf);
	free(file);
	dc_close(d);
}
END_TEST

/* Random reads do not start windows: one request each. */
START_TEST(blob_readahead_random_reads_direct)
{
	dc_disk *d = h_openf(TB_RO,
			     "blob:flat:http://127.0.0.1:%d/flat.img;readahead=64K",
			     tb_nginx_port);
	unsigned seed = 7;

	for (int i = 0; i < 20; i++) {
		uint64_t s = 8 + (rand_r(&seed) % (FLAT_SIZE / 4096 - 2)) * 8;

		tb_expect_file(d, s, 4096, tb_flat, (off_t)(s * 512));
	}
	ck_assert_msg(tb_requests(d) == 20, "stats: %s", tb_describe(d, "stats"));
	dc_close(d);
}
END_TEST

/* Sequential reads 16 deep: waiters on a loading window get their own bytes. */
START_TEST(blob_readahead_queue)
{
	dc_disk *d = h_openf(TB_RO,
			     "blob:flat:http://127.0.0.1:%d/flat.img;readahead=128K",
			     tb_nginx_port);
	size_t flen;
	uint8_t *file = h_read_file(tb_flat, &flen);
	uint8_t *buf = h_alloc(FLAT_SIZE);
	struct dc_completion c[16];
	unsigned done = 0, next = 0, total = FLAT_SIZE / 4096;
	struct iovec *iov = calloc(total, sizeof(*iov));
	dc_queue *q;

	ck_assert_int_eq(dc_queue_open(d, DC_QUEUE_POLL, &q), 0);
	while (done < total) {
		while (next < total && dc_queue_inflight(q) < 16) {
			struct dc_io io = { .op = DC_OP_READ,
					    .sector = next * 8ull,
					    .iov = &iov[next],
					    .iovcnt = 1 };

			iov[next].iov_base = buf + (size_t)next * 4096;
			iov[next].iov_len = 4096;
			ck_assert_int_eq(dc_submit(q, &io), 0);
			next++;
		}
		int n = h_reap(q, c, 16, 30000);

		for (int i = 0; i < n; i++)
			ck_assert_int_eq(c[i].result, 0);
		done += (unsigned)n;
	}
	ck_assert(memcmp(buf, file, FLAT_SIZE) == 0);
	ck_assert_msg(tb_requests(d) <= 10, "stats: %s", tb_describe(d, "stats"));
	dc_queue_close(q);
	dc_close(d);
	free(iov);
	free(buf);
	free(file);
}
END_TEST

/* --- Misbehaving server ------------------------------------------------------ */

struct tb_bad_case {
	const char *mode;
	const char *message; /* what last_error must say */
};

static const struct tb_bad_case tb_bad_cases[] = {
	{ "short", "short body" },
	{ "long", "more than" },
	{ "badrange", "asked for" },
	{ "416", "HTTP 416" },
	{ "close", "partial" },
	/* A 200 is taken as the whole blob only when it is all of it. */
	{ "norange-short", "HTTP 200 with 1048064 bytes, but the blob is 1048576" },
};

/* §7.2 misbehaving_server_never_reports_success, one mode per loop index. */
START_TEST(misbehaving_server_never_reports_success)
{
	const struct tb_bad_case *bc = &tb_bad_cases[_i];
	char *where = h_fmt("http://127.0.0.1:%d/%s/x.img", tb_bad_port, bc->mode);
	dc_disk *d = h_openf(
		TB_RO, "blob:flat:http://127.0.0.1:%d/%s/x.img?sig=SECRET;retries=1",
		tb_bad_port, bc->mode);
	uint8_t *buf = h_alloc(8 * KIB);
	const char *msg;
	int r;

	r = dc_read(d, 8, buf, 8 * KIB);
	ck_assert_msg(r == DC_E_IO, "%s: read = %d (%s), expected an I/O error", bc->mode,
		      r, dc_strerror(r));
	msg = tb_describe(d, "last_error");
	ck_assert_msg(strstr(msg, bc->message), "%s: last error '%s' lacks '%s'",
		      bc->mode, msg, bc->message);
	ck_assert_msg(strstr(msg, where), "%s: last error '%s' does not name %s",
		      bc->mode, msg, where);
	/* A whole-disk read fails just the same. */
	free(buf);
	buf = h_alloc(FLAT_SIZE);
	ck_assert_int_eq(dc_read(d, 0, buf, FLAT_SIZE), DC_E_IO);
	dc_close(d);
	free(buf);
	free(where);
}
END_TEST

/* A read-ahead window that cannot be loaded fails the reads waiting for it. */
START_TEST(readahead_window_errors_fail_waiters)
{
	dc_disk *d = h_openf(
		TB_RO, "blob:flat:http://127.0.0.1:%d/416/x.img;readahead=64K;retries=0",
		tb_bad_port);
	uint8_t buf[4096];

	ck_assert_int_eq(dc_read(d, 0, buf, sizeof(buf)), DC_E_IO);
	ck_assert_int_eq(dc_read(d, 8, buf, sizeof(buf)), DC_E_IO);
	tb_expect_last_error(d, "HTTP 416");
	dc_close(d);
}
END_TEST

START_TEST(never_answers_times_out)
{
	dc_disk *d = h_openf(
		TB_RO, "blob:flat:http://127.0.0.1:%d/hang/x.img;timeout=300;retries=1",
		tb_bad_port);
	uint8_t buf[4096];
	uint64_t t0 = h_now_ms(), ms;
	int r;

	r = dc_read(d, 0, buf, sizeof(buf));
	ms = h_now_ms() - t0;
	ck_assert_int_eq(r, DC_E_IO);
	/* Two attempts of 300 ms and one backoff, with slack for a loaded machine. */
	ck_assert_msg(ms >= 550 && ms < 10000, "the read failed after %llu ms",
		      (unsigned long long)ms);
	ck_assert_msg(strstr(tb_describe(d, "last_error"), "imed out") ||
			      strstr(tb_describe(d, "last_error"), "Timeout"),
		      "last error: %s", tb_describe(d, "last_error"));
	dc_close(d);
}
END_TEST

START_TEST(unavailable_twice_then_succeeds)
{
	dc_disk *d = h_openf(TB_RO, "blob:flat:http://127.0.0.1:%d/flaky-%d/x.img",
			     tb_bad_port, (int)getpid());

	tb_expect_file(d, 8, 8 * KIB, tb_flat, 8 * 512);
	ck_assert_msg(strstr(tb_describe(d, "stats"), " 2 retries"), "stats: %s",
		      tb_describe(d, "stats"));
	dc_close(d);
	/* With one retry allowed, the second 503 is the answer. */
	d = h_openf(TB_RO, "blob:flat:http://127.0.0.1:%d/flaky-%d-b/x.img;retries=1",
		    tb_bad_port, (int)getpid());
	uint8_t buf[512];
	ck_assert_int_eq(dc_read(d, 0, buf, sizeof(buf)), DC_E_IO);
	tb_expect_last_error(d, "HTTP 503");
	dc_close(d);
}
END_TEST

START_TEST(redirects_are_followed_and_bounded)
{
	/* redirect-N redirects N + 1 times: 5 are allowed, 6 are too many. */
	char *final = h_fmt("http://127.0.0.1:%d/ok/x.img", tb_bad_port);
	dc_disk *d = h_openf(TB_RO, "blob:flat:http://127.0.0.1:%d/redirect-4/x.img",
			     tb_bad_port);

	/* The final URL serves the reads (redirect-N would answer 302 to a GET). */
	ck_assert_str_eq(tb_describe(d, "url"), final);
	tb_expect_file(d, 3, 4096, tb_flat, 3 * 512);
	dc_close(d);
	tb_open_fails("too many redirects",
		      "blob:flat:http://127.0.0.1:%d/redirect-5/x.img", tb_bad_port);
	free(final);
}
END_TEST

START_TEST(head_without_length_fails)
{
	tb_open_fails("Content-Length", "blob:flat:http://127.0.0.1:%d/nolength/x.img",
		      tb_bad_port);
}
END_TEST

START_TEST(tls_is_verified)
{
	char *ok = h_fmt("blob:flat:https://127.0.0.1:%d/ok/x.img;cafile=%s", tb_tls_port,
			 tb_cert);
	dc_disk *d = h_open(ok, TB_RO);

	tb_expect_file(d, 0, 64 * KIB, tb_flat, 0);
	dc_close(d);
	/* The self-signed certificate is not trusted without cafile=. */
	tb_open_fails("certificate", "blob:flat:https://127.0.0.1:%d/ok/x.img;retries=0",
		      tb_tls_port);
	tb_open_fails("downgrade",
		      "blob:flat:https://127.0.0.1:%d/tohttp/x.img;cafile=%s",
		      tb_tls_port, tb_cert);
	free(ok);
}
END_TEST

/* A server that ignores Range (200 and the whole blob; noaccept also says
 * Accept-Ranges: none): reads take their bytes out of the whole body, and the
 * first whole body is kept, so later reads make no request. */
START_TEST(server_without_ranges_is_read_whole)
{
	const char *mode = _i ? "noaccept" : "norange";
	dc_disk *d = h_openf(TB_RO, "blob:flat:http://127.0.0.1:%d/%s/x.img;split=64K",
			     tb_bad_port, mode);

	/* Accept-Ranges: none is known from HEAD; a 200 only once it comes. */
	ck_assert_str_eq(tb_describe(d, "ranges"),
			 _i ? "not supported by the server: reads take their bytes out "
			      "of the whole blob (1048576 bytes), not held yet" :
			      "");
	tb_expect_file(d, 8, 8 * KIB, tb_flat, 8 * 512);
	ck_assert_msg(strstr(tb_describe(d, "ranges"), "held in memory"),
		      "%s: ranges: %s", mode, tb_describe(d, "ranges"));
	tb_expect_file(d, 0, FLAT_SIZE, tb_flat, 0);
	tb_expect_file(d, FLAT_SIZE / 512 - 1, 512, tb_flat, FLAT_SIZE - 512);
	ck_assert_msg(tb_requests(d) == 1, "%s: stats: %s", mode,
		      tb_describe(d, "stats"));
	dc_close(d);
}
END_TEST

/* Over BLOB_WHOLE_MAX a server without ranges cannot be used: said at open when
 * HEAD tells (Accept-Ranges: none), else at the first read. */
START_TEST(no_ranges_over_limit_fails_clearly)
{
	uint8_t buf[4096];
	dc_disk *d;

	h_open_fails(TB_RO, -EOPNOTSUPP,
		     "does not support range requests (Accept-Ranges: none)",
		     "blob:flat:http://127.0.0.1:%d/bignoaccept/x.img", tb_bad_port);
	h_open_fails(TB_RO, -EOPNOTSUPP, "more than the 64 MiB that are read whole",
		     "blob:flat:http://127.0.0.1:%d/bignoaccept/x.img", tb_bad_port);
	d = h_openf(TB_RO, "blob:flat:http://127.0.0.1:%d/bignorange/x.img;retries=0",
		    tb_bad_port);
	ck_assert_int_eq(dc_read(d, 0, buf, sizeof(buf)), DC_E_IO);
	tb_expect_last_error(d,
			     "the server does not support range requests (it answered "
			     "200 with the whole blob), and the blob is 67109376 bytes: "
			     "more than the 64 MiB that are read whole");
	dc_close(d);
}
END_TEST

/* The badserver sees the raw request target: "pct" answers only when it holds
 * %3B and no ';', "semi" only when it holds a literal ';'. */
START_TEST(semicolon_reaches_the_server)
{
	char *url = h_fmt("http://127.0.0.1:%d/pct/a%%3Bb.img?x=1%%3B2&sig=SECRET",
			  tb_bad_port);
	dc_disk *d = h_openf(TB_RO, "blob:flat:%s;retries=0", url);

	tb_expect_file(d, 8, 4096, tb_flat, 8 * 512);
	dc_close(d);
	free(url);
#ifdef DC_FORM_TAIL_OPTIONS
	/* The core keeps a ';' in the URL unless blob options follow it. */
	url = h_fmt("http://127.0.0.1:%d/semi/a;b.img", tb_bad_port);
	d = h_openf(TB_RO, "blob:flat:%s?x=1;y=2&sig=SECRET;retries=0;split=64K", url);
	ck_assert_str_eq(tb_describe(d, "url"), url);
	ck_assert_str_eq(tb_describe(d, "policy"), "30000 ms, 0 retries, split 65536");
	tb_expect_file(d, 8, 4096, tb_flat, 8 * 512);
	dc_close(d);
	/* A mistyped option stays in the URL: the server's 400 says so. */
	tb_open_fails(
		"the URL contains a ';'",
		"blob:flat:http://127.0.0.1:%d/pct/a%%3Bb.img;retries=0;readahed=1M",
		tb_bad_port);
	free(url);
#else
	/* This core starts the options at the first ';': the text after a
	 * literal one is an option, and an unknown one fails naming it. */
	tb_open_fails("unknown option 'y'",
		      "blob:flat:http://127.0.0.1:%d/semi/a.img?x=1;y=2;retries=0",
		      tb_bad_port);
	tb_open_fails("unknown option 'b.img'",
		      "blob:flat:http://127.0.0.1:%d/semi/a;b.img", tb_bad_port);
#endif
}
END_TEST

/* Azure page lists, parsed as XML: two parts joined by a NextMarker that must
 * be escaped in the next request; only the listed pages are fetched, the rest
 * reads as zeroes. */
START_TEST(azure_page_list_is_parsed)
{
	dc_disk *d = h_openf(DC_OPEN_READ_ONLY,
			     "blob:flat:http://127.0.0.1:%d/pages/x.img;azure",
			     tb_bad_port);
	size_t flen;
	uint8_t *file = h_read_file(tb_flat, &flen), *buf = h_alloc(FLAT_SIZE);

	ck_assert_str_eq(tb_describe(d, "blob_type"), "PageBlob");
	ck_assert_str_eq(tb_describe(d, "page_ranges"), "2 (69632 bytes)");
	ck_assert_int_eq(dc_read(d, 0, buf, FLAT_SIZE), 0);
	ck_assert(memcmp(buf, file, 4096) == 0);
	ck_assert_int_eq(h_check_zero(buf + 4096, 128 * KIB - 4096), -1);
	ck_assert(memcmp(buf + 128 * KIB, file + 128 * KIB, 64 * KIB) == 0);
	ck_assert_int_eq(h_check_zero(buf + 192 * KIB, FLAT_SIZE - 192 * KIB), -1);
	ck_assert_msg(tb_requests(d) == 2, "stats: %s", tb_describe(d, "stats"));
	dc_close(d);
	free(buf);
	free(file);
}
END_TEST

START_TEST(azure_bad_page_lists_fail)
{
	static const char *const cases[][2] = {
		{ "pages-dtd", "has a DTD" },
		{ "pages-noend", "without a valid Start and End" },
		{ "pages-cut", "not well-formed XML" },
		{ "pages-other", "not a PageList" },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		h_open_fails(DC_OPEN_READ_ONLY, -EPROTO, cases[i][1],
			     "blob:flat:http://127.0.0.1:%d/%s/x.img;azure", tb_bad_port,
			     cases[i][0]);
}
END_TEST

/* --- Setup -------------------------------------------------------------------- */

static void tb_make_images(void)
{
	uint8_t *buf = h_alloc(VHD_DATA + 512);
	uint8_t f[512], uid2[16];
	char *p;

	tb_root = h_tmpsubdir();
	chmod(h_tmpdir(), 0755);
	chmod(tb_root, 0755);
	tb_flat = h_fmt("%s/flat.img", tb_root);
	h_fill(buf, FLAT_SIZE, 1);
	h_write_file(tb_flat, buf, FLAT_SIZE, 0644);
	p = h_fmt("%s/tail.img", tb_root);
	h_write_file(p, buf, TAIL_SIZE, 0644);
	free(p);
	p = h_fmt("%s/semi;colon.img", tb_root);
	h_write_file(p, buf, FLAT_SIZE, 0644);
	free(p);

	for (int i = 0; i < 16; i++)
		tb_uid[i] = (uint8_t)(0xa0 + i * 7);
	h_fill(buf, VHD_DATA, 2);
	h_vhd_footer(buf + VHD_DATA, VHD_DATA, 2, tb_uid);
	tb_vhd = h_fmt("%s/disk.vhd", tb_root);
	h_write_file(tb_vhd, buf, VHD_DATA + 512, 0644);
	/* Broken ones. */
	memcpy(uid2, tb_uid, 16);
	h_vhd_footer(f, 64 * KIB, 2, uid2);
	f[70] ^= 1; /* the checksum no longer matches */
	memcpy(buf + 64 * KIB, f, 512);
	p = h_fmt("%s/badsum.vhd", tb_root);
	h_write_file(p, buf, 64 * KIB + 512, 0644);
	free(p);
	h_vhd_footer(f, 64 * KIB, 3, uid2);
	memcpy(buf + 64 * KIB, f, 512);
	p = h_fmt("%s/dynamic.vhd", tb_root);
	h_write_file(p, buf, 64 * KIB + 512, 0644);
	free(p);
	h_vhd_footer(f, 64 * KIB + 512, 2, uid2);
	memcpy(buf + 64 * KIB, f, 512);
	p = h_fmt("%s/toobig.vhd", tb_root);
	h_write_file(p, buf, 64 * KIB + 512, 0644);
	free(p);
	p = h_fmt("%s/tiny.vhd", tb_root);
	h_write_file(p, buf, 100, 0644);
	free(p);
	free(buf);
}

int main(void)
{
	Suite *s = suite_create("blob");
	TCase *tn = tcase_create("nginx"), *tb = tcase_create("badserver");
	const struct conformance_opts ro = { .open_flags = TB_RO };
	int nginx, bad;
	char *url;

	/* The servers are on 127.0.0.1: no proxy may stand in between. */
	unsetenv("http_proxy");
	unsetenv("https_proxy");
	unsetenv("HTTP_PROXY");
	unsetenv("HTTPS_PROXY");
	unsetenv("ALL_PROXY");
	unsetenv("all_proxy");
	unsetenv("DISKCORE_AZURE_KEY");
	if (!h_have_plugin("blob"))
		h_skip("the blob plugin is not built (libcurl missing?)");
	tb_owner = getpid();
	tb_make_images();
	atexit(tb_stop_servers);
	nginx = tb_start_nginx();
	bad = tb_start_badserver();
	if (nginx < 0 || bad < 0)
		return EXIT_FAILURE; /* installed but broken: not a skip */
	if (!nginx && !bad)
		h_skip("neither nginx nor python3 is available to serve blobs");
	if (nginx) {
		url = tb_url("flat.img");
		char *t = h_fmt("blob:flat:%s", url);
		conformance_add_opts(s, "blob-flat", t, &ro);
		free(t);
		t = h_fmt("blob:vhd1:http://127.0.0.1:%d/disk.vhd", tb_nginx_port);
		conformance_add_opts(s, "blob-vhd1", t, &ro);
		free(t);
		t = h_fmt("blob:flat:%s;readahead=64K;split=64K", url);
		conformance_add_opts(s, "blob-flat-readahead", t, &ro);
		free(t);
		t = h_fmt("blob:vhd1:http://127.0.0.1:%d/norange/disk.vhd",
			  tb_nginx_port);
		conformance_add_opts(s, "blob-vhd1-norange", t, &ro);
		free(t);
		t = h_fmt("memdiff:blob:flat:%s", url);
		conformance_add(s, "memdiff-blob", t);
		free(t);
		free(url);
		tcase_add_test(tn, blob_flat_content);
		tcase_add_test(tn, blob_flat_partial_tail);
		tcase_add_test(tn, blob_vhd1_content_and_id);
		tcase_add_test(tn, read_past_end_does_not_return_footer);
		tcase_add_test(tn, blob_vhd1_bad_footers);
		tcase_add_test(tn, blob_vhd1_matches_file_plugin);
		tcase_add_test(tn, blob_memdiff_writable);
		tcase_add_test(tn, blob_writable_open_fails);
		tcase_add_test(tn, blob_queue_depth_32);
		tcase_add_test(tn, blob_query_is_never_shown);
		tcase_add_test(tn, blob_changed_after_open_fails);
		tcase_add_test(tn, blob_bad_specs);
		tcase_add_test(tn, nginx_without_ranges);
		tcase_add_test(tn, semicolon_in_url);
		tcase_add_test(tn, blob_readahead_sequential);
		tcase_add_test(tn, blob_readahead_random_reads_direct);
		tcase_add_test(tn, blob_readahead_queue);
		suite_add_tcase(s, tn);
	} else {
		fprintf(stderr, "test-blob: no nginx: the nginx cases are not run\n");
	}
	if (bad) {
		tcase_add_loop_test(
			tb, misbehaving_server_never_reports_success, 0,
			(int)(sizeof(tb_bad_cases) / sizeof(tb_bad_cases[0])));
		tcase_add_test(tb, never_answers_times_out);
		tcase_add_test(tb, readahead_window_errors_fail_waiters);
		tcase_add_test(tb, unavailable_twice_then_succeeds);
		tcase_add_test(tb, redirects_are_followed_and_bounded);
		tcase_add_test(tb, head_without_length_fails);
		tcase_add_loop_test(tb, server_without_ranges_is_read_whole, 0, 2);
		tcase_add_test(tb, no_ranges_over_limit_fails_clearly);
		tcase_add_test(tb, semicolon_reaches_the_server);
		tcase_add_test(tb, azure_page_list_is_parsed);
		tcase_add_test(tb, azure_bad_page_lists_fail);
		if (tb_cert)
			tcase_add_test(tb, tls_is_verified);
		else
			fprintf(stderr,
				"test-blob: no openssl: the TLS case is not run\n");
		suite_add_tcase(s, tb);
	} else {
		fprintf(stderr, "test-blob: no python3: the misbehaving-server cases are "
				"not run\n");
	}
	return h_run(s);
}
