/* SPDX-License-Identifier: MIT */
/* The blob plugin (reference §2.4 and §7.2 disk_blob) against real servers on
 * 127.0.0.1, started here and stopped at exit:
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
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
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

static char *tb_fmt(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *tb_fmt(const char *fmt, ...)
{
	va_list ap;
	char *s;

	va_start(ap, fmt);
	if (vasprintf(&s, fmt, ap) < 0)
		abort();
	va_end(ap);
	return s;
}

static void tb_write_file(const char *path, const void *buf, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);

	if (fd < 0 || write(fd, buf, len) != (ssize_t)len || close(fd) < 0) {
		fprintf(stderr, "test-blob: cannot write %s\n", path);
		abort();
	}
	chmod(path, 0644);
}

static void *tb_read_file(const char *path, size_t *len)
{
	struct stat st;
	int fd = open(path, O_RDONLY);
	void *buf;

	ck_assert_msg(fd >= 0 && fstat(fd, &st) == 0, "cannot open %s", path);
	buf = h_alloc((size_t)st.st_size + 1);
	ck_assert_int_eq(read(fd, buf, (size_t)st.st_size), st.st_size);
	close(fd);
	*len = (size_t)st.st_size;
	return buf;
}

static bool tb_have(const char *prog)
{
	char *cmd = tb_fmt("command -v %s >/dev/null 2>&1", prog);
	int r = system(cmd);

	free(cmd);
	return r == 0;
}

/* A big-endian fixed-VHD footer, written here independently of the plugin. */
static void tb_footer(uint8_t f[512], uint64_t size, uint32_t type, const uint8_t uid[16])
{
	uint32_t sum = 0;

	memset(f, 0, 512);
	memcpy(f, "conectix", 8);
	f[11] = 2;		 /* features */
	f[13] = 1;		 /* version 0x00010000 */
	memset(f + 16, 0xff, 8); /* data offset: none */
	for (int i = 0; i < 8; i++) {
		f[40 + i] = (uint8_t)(size >> (56 - 8 * i));
		f[48 + i] = (uint8_t)(size >> (56 - 8 * i));
	}
	f[63] = (uint8_t)type;
	memcpy(f + 68, uid, 16);
	for (int i = 0; i < 512; i++)
		sum += f[i];
	sum = ~sum;
	for (int i = 0; i < 4; i++)
		f[64 + i] = (uint8_t)(sum >> (24 - 8 * i));
}

static dc_disk *tb_open(const char *spec)
{
	dc_disk *d = NULL;
	int r = dc_open(spec, 0, &d);

	ck_assert_msg(r == 0, "dc_open(%s) = %d: %s", spec, r, dc_last_error());
	return d;
}

/* dc_open must fail, with a message containing `want`. */
static void tb_open_fails(const char *spec, const char *want)
{
	dc_disk *d = NULL;
	int r = dc_open(spec, 0, &d);

	ck_assert_msg(r < 0, "dc_open(%s) succeeded, expected an error about '%s'", spec,
		      want);
	ck_assert_msg(strstr(dc_last_error(), want),
		      "dc_open(%s): message '%s' lacks '%s'", spec, dc_last_error(),
		      want);
	ck_assert_msg(!strstr(dc_last_error(), "SECRET"),
		      "the message shows the query string: %s", dc_last_error());
}

struct tb_kv {
	const char *key;
	char value[512];
	bool found;
};

static int tb_describe_visit(void *arg, int depth, const char *plugin, const char *form,
			     const struct dc_info *info, const char *key,
			     const char *value)
{
	struct tb_kv *kv = arg;

	(void)depth;
	(void)form;
	(void)info;
	/* "spec" is the core's echo of the spec as given, not the plugin's. */
	if (key && value && !strcmp(plugin, "blob") && strcmp(key, "spec")) {
		ck_assert_msg(!strstr(value, "SECRET"), "describe %s shows the query: %s",
			      key, value);
		if (!strcmp(key, kv->key)) {
			snprintf(kv->value, sizeof(kv->value), "%s", value);
			kv->found = true;
		}
	}
	return 0;
}

/* The blob plugin's describe() value for key ("" when absent). */
static const char *tb_describe(dc_disk *d, const char *key)
{
	static struct tb_kv kv;

	memset(&kv, 0, sizeof(kv));
	kv.key = key;
	dc_describe(d, tb_describe_visit, &kv);
	return kv.value;
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
	int fd = open(path, O_RDONLY);
	int r;

	ck_assert(fd >= 0);
	ck_assert_int_eq(pread(fd, want, len, file_off), (ssize_t)len);
	close(fd);
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

static char *tb_url(const char *name)
{
	return tb_fmt("http://127.0.0.1:%d/%s", tb_nginx_port, name);
}

/* "blob:KIND:URL" of a file nginx serves. */
static char *tb_nspec(const char *kind, const char *name)
{
	return tb_fmt("blob:%s:http://127.0.0.1:%d/%s", kind, tb_nginx_port, name);
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

static bool tb_start_nginx(void)
{
	char *conf = tb_fmt("%s/nginx.conf", h_tmpdir());
	char *prefix = tb_fmt("%s/", h_tmpdir());
	char *argv[] = { "nginx", "-c", conf, "-p", prefix, NULL };
	uint64_t deadline;
	char *text;
	int status;

	if (!tb_have("nginx") && access("/usr/sbin/nginx", X_OK) != 0)
		return false;
	if (!tb_have("nginx"))
		argv[0] = "/usr/sbin/nginx";
	tb_nginx_port = tb_free_port();
	text = tb_fmt("daemon off;\n"
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
		      "  }\n"
		      "}\n",
		      geteuid() == 0 ? "user root;\n" : "", h_tmpdir(), h_tmpdir(),
		      h_tmpdir(), h_tmpdir(), h_tmpdir(), h_tmpdir(), h_tmpdir(),
		      tb_nginx_port, tb_root);
	tb_write_file(conf, text, strlen(text));
	free(text);
	tb_nginx_pid = tb_spawn(argv, NULL);
	deadline = h_now_ms() + 10000;
	while (!tb_connects(tb_nginx_port)) {
		struct timespec ts = { 0, 10 * 1000 * 1000 };

		if (waitpid(tb_nginx_pid, &status, WNOHANG) == tb_nginx_pid ||
		    h_now_ms() > deadline) {
			fprintf(stderr,
				"test-blob: nginx did not start (see %s/nginx-error.log)\n",
				h_tmpdir());
			tb_nginx_pid = 0;
			tb_nginx_port = 0;
			break;
		}
		nanosleep(&ts, NULL); /* waiting for a port to open, not for a race */
	}
	free(conf);
	free(prefix);
	return tb_nginx_port != 0;
}

/* A self-signed certificate for 127.0.0.1, or NULL without openssl. */
static char *tb_make_cert(char **key)
{
	char *cert = tb_fmt("%s/cert.pem", h_tmpdir());
	char *cmd;
	int r;

	*key = tb_fmt("%s/key.pem", h_tmpdir());
	if (!tb_have("openssl"))
		return NULL;
	cmd = tb_fmt("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 "
		     "-nodes -keyout %s -out %s "
		     "-days 2 -subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 "
		     ">/dev/null 2>&1",
		     *key, cert);
	r = system(cmd);
	free(cmd);
	if (r != 0) {
		fprintf(stderr, "test-blob: openssl could not make a certificate\n");
		free(cert);
		return NULL;
	}
	return cert;
}

static bool tb_start_badserver(void)
{
	const char *src = getenv("DISKCORE_SOURCE_ROOT");
	char *script, *key, line[64] = "";
	char *argv[8];
	ssize_t n;
	int out, i = 0;

	/* Debian's python3 when there is one: a version manager's shim is slow
	 * to start and may write to stdout. */
	const char *py = access("/usr/bin/python3", X_OK) == 0 ? "/usr/bin/python3" :
								 "python3";

	if (!src || (!strcmp(py, "python3") && !tb_have("python3")))
		return false;
	script = tb_fmt("%s/tests/blob/badserver.py", src);
	tb_cert = tb_make_cert(&key);
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
	if (!strchr(line, '\n') ||
	    sscanf(line, "%d %d", &tb_bad_port, &tb_tls_port) < 1) {
		fprintf(stderr, "test-blob: badserver.py did not start\n");
		kill(tb_bad_pid, SIGTERM);
		waitpid(tb_bad_pid, NULL, 0);
		tb_bad_pid = 0;
		tb_bad_port = 0;
	}
	if (!tb_tls_port) {
		free(tb_cert);
		tb_cert = NULL;
	}
	free(script);
	free(key);
	return tb_bad_port != 0;
}

/* --- nginx cases -------------------------------------------------------------- */

START_TEST(blob_flat_content)
{
	char *url = tb_url("flat.img");
	char *spec = tb_fmt("blob:flat:%s;split=64K", url);
	dc_disk *d = tb_open(spec);
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
	free(spec);
	free(url);
}
END_TEST

/* A partial last sector is not part of the disk (§2.4). */
START_TEST(blob_flat_partial_tail)
{
	char *spec = tb_nspec("flat", "tail.img");
	dc_disk *d = tb_open(spec);
	uint8_t buf[1024];

	ck_assert_uint_eq(dc_sector_count(d), TAIL_SIZE / 512);
	ck_assert_int_eq(dc_read(d, TAIL_SIZE / 512 - 1, buf, 512), 0);
	ck_assert_int_eq(dc_read(d, TAIL_SIZE / 512 - 1, buf, 1024), DC_E_ILLEGAL_BLOCK);
	dc_close(d);
	free(spec);
}
END_TEST

START_TEST(blob_vhd1_content_and_id)
{
	char *spec = tb_nspec("vhd1", "disk.vhd");
	dc_disk *d = tb_open(spec);
	struct dc_info info;

	dc_get_info(d, &info);
	ck_assert_uint_eq(info.sector_count, VHD_DATA / 512);
	ck_assert(info.flags & DC_INFO_HAS_DISK_ID);
	ck_assert(memcmp(info.disk_id, tb_uid, 16) == 0);
	tb_expect_file(d, 0, VHD_DATA, tb_vhd, 0);
	tb_expect_file(d, 100, 4096, tb_vhd, 100 * 512);
	ck_assert_str_eq(tb_describe(d, "kind"), "vhd1");
	dc_close(d);
	free(spec);
}
END_TEST

/* OpenVMM's read_past_end_does_not_return_footer: the range check is against
 * the disk, not the blob, which is 512 bytes longer. */
START_TEST(read_past_end_does_not_return_footer)
{
	char *spec = tb_nspec("vhd1", "disk.vhd");
	dc_disk *d = tb_open(spec);
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
	free(spec);
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
		char *spec = tb_nspec("vhd1", cases[i][0]);

		tb_open_fails(spec, cases[i][1]);
		free(spec);
	}
}
END_TEST

/* The vhd1 file plugin and blob:vhd1 agree on the same image. */
START_TEST(blob_vhd1_matches_file_plugin)
{
	char *bspec = tb_nspec("vhd1", "disk.vhd");
	char *fspec = tb_fmt("vhd1:%s", tb_vhd);
	dc_disk *b = tb_open(bspec), *f = NULL;
	struct dc_info bi, fi;
	uint8_t *x = h_alloc(64 * KIB), *y = h_alloc(64 * KIB);

	if (dc_open(fspec, DC_OPEN_READ_ONLY, &f) < 0) {
		/* Only when the vhd1 plugin is not built. */
		ck_assert_msg(strstr(dc_last_error(), "kind"), "vhd1: %s",
			      dc_last_error());
		dc_close(b);
		return;
	}
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
	free(bspec);
	free(fspec);
}
END_TEST

/* Writes go to the RAM layer; the blob (and the file behind it) never change. */
START_TEST(blob_memdiff_writable)
{
	char *spec =
		tb_fmt("memdiff:blob:flat:http://127.0.0.1:%d/flat.img", tb_nginx_port);
	char *bspec = spec + strlen("memdiff:");
	dc_disk *d = tb_open(spec), *b;
	uint8_t *w = h_alloc(4096), *r = h_alloc(4096);
	struct dc_info info;

	dc_get_info(d, &info);
	ck_assert(!(info.flags & DC_INFO_READ_ONLY));
	h_fill(w, 4096, 77);
	ck_assert_int_eq(dc_write(d, 16, w, 4096, 0), 0);
	ck_assert_int_eq(dc_read(d, 16, r, 4096), 0);
	ck_assert(memcmp(w, r, 4096) == 0);
	tb_expect_file(d, 0, 8192, tb_flat, 0);
	b = tb_open(bspec);
	ck_assert_int_eq(dc_write(b, 16, w, 4096, 0), DC_E_READ_ONLY);
	tb_expect_file(b, 16, 4096, tb_flat, 16 * 512);
	dc_close(b);
	dc_close(d);
	free(w);
	free(r);
	free(spec);
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
	char *spec = tb_fmt("blob:flat:http://127.0.0.1:%d/flat.img;connections=8",
			    tb_nginx_port);
	dc_disk *d = tb_open(spec);
	size_t flen;
	uint8_t *file = tb_read_file(tb_flat, &flen);
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
		int n = dc_queue_reap(q, c, TB_QD);
		uint64_t v;

		if (n == 0) {
			struct pollfd pfd = { .fd = dc_queue_fd(q), .events = POLLIN };

			/* Until a completion is posted, then rearm the eventfd. */
			ck_assert_int_eq(poll(&pfd, 1, 30000), 1);
			ck_assert_int_eq(read(pfd.fd, &v, sizeof(v)), sizeof(v));
			continue;
		}
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
	free(spec);
}
END_TEST

/* The query (a SAS signature, say) never shows in describe() or messages. */
START_TEST(blob_query_is_never_shown)
{
	char *spec = tb_fmt("blob:flat:http://127.0.0.1:%d/flat.img?sv=1&sig=SECRET",
			    tb_nginx_port);
	char *url = tb_url("flat.img");
	dc_disk *d = tb_open(spec);

	ck_assert_str_eq(tb_describe(d, "url"), url);
	ck_assert_str_eq(tb_describe(d, "auth"), "sas");
	tb_expect_file(d, 0, 4096, tb_flat, 0);
	dc_close(d);
	free(spec);
	spec = tb_fmt("blob:flat:http://127.0.0.1:%d/nothere.img?sig=SECRET",
		      tb_nginx_port);
	tb_open_fails(spec, "404");
	tb_open_fails(spec, "/nothere.img");
	free(spec);
	free(url);
}
END_TEST

/* A blob replaced after open: reads fail (If-Match) instead of mixing versions. */
START_TEST(blob_changed_after_open_fails)
{
	char *path = tb_fmt("%s/changing.img", tb_root);
	char *spec = tb_fmt("blob:flat:http://127.0.0.1:%d/changing.img;retries=0",
			    tb_nginx_port);
	uint8_t *buf = h_alloc(64 * KIB);
	struct timespec times[2] = { { 0, UTIME_OMIT }, { 1000000000, 0 } };
	dc_disk *d;
	int r;

	h_fill(buf, 64 * KIB, 5);
	tb_write_file(path, buf, 64 * KIB);
	d = tb_open(spec);
	ck_assert_int_eq(dc_read(d, 0, buf, 4096), 0);
	h_fill(buf, 64 * KIB, 6);
	tb_write_file(path, buf, 64 * KIB);
	/* A different modification time gives nginx's ETag a different value. */
	ck_assert_int_eq(utimensat(AT_FDCWD, path, times, 0), 0);
	r = dc_read(d, 0, buf, 4096);
	ck_assert_int_eq(r, DC_E_IO);
	tb_expect_last_error(d, "412");
	dc_close(d);
	unlink(path);
	free(buf);
	free(spec);
	free(path);
}
END_TEST

START_TEST(blob_bad_specs)
{
	char *spec;

	tb_open_fails("blob:raw:http://127.0.0.1:1/x.img", "expected blob:flat:URL");
	tb_open_fails("blob:flat:", "missing URL");
	tb_open_fails("blob:flat:ftp://127.0.0.1/x.img", "not an http");
	tb_open_fails("blob:flat:/x.img", "not a valid URL");
	tb_open_fails("blob:flat:http://127.0.0.1:1/a b.img", "percent-encoded");
	spec = tb_fmt("blob:flat:%s;connections=0", "http://127.0.0.1:1/x");
	tb_open_fails(spec, "connections=0");
	free(spec);
	tb_open_fails("blob:flat:http://127.0.0.1:1/x;retries=99", "retries=99");
	tb_open_fails("blob:flat:http://127.0.0.1:1/x;split=1000", "split");
	tb_open_fails("blob:flat:http://127.0.0.1:1/x;cafile=/nonexistent/ca.pem",
		      "cafile=/nonexistent/ca.pem");
	tb_open_fails("blob:flat:http://127.0.0.1:1/x;sharedkey=/nonexistent",
		      "sharedkey= is for Azure");
	tb_open_fails("blob:flat:http://127.0.0.1:1/x;azure;sharedkey=/nonexistent",
		      "/nonexistent");
	/* Nothing listens on port 1: a clear connection error, no retry wait. */
	tb_open_fails("blob:flat:http://127.0.0.1:1/x.img;retries=0", "connect");
}
END_TEST

/* The "N requests" figure of describe()'s stats. */
static unsigned long long tb_requests(dc_disk *d)
{
	return strtoull(tb_describe(d, "stats"), NULL, 10);
}

/* Sequential 4 KiB reads are served from read-ahead windows: few requests, the
 * right data, and the windows stop at the disk's end (never the VHD footer). */
START_TEST(blob_readahead_sequential)
{
	char *spec = tb_fmt("blob:vhd1:http://127.0.0.1:%d/disk.vhd;readahead=64K",
			    tb_nginx_port);
	dc_disk *d = tb_open(spec);
	size_t flen;
	uint8_t *file = tb_read_file(tb_vhd, &flen), *buf = h_alloc(4096);

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
	free(spec);
}
END_TEST

/* Random reads do not start windows: one request each. */
START_TEST(blob_readahead_random_reads_direct)
{
	char *spec = tb_fmt("blob:flat:http://127.0.0.1:%d/flat.img;readahead=64K",
			    tb_nginx_port);
	dc_disk *d = tb_open(spec);
	unsigned seed = 7;

	for (int i = 0; i < 20; i++) {
		uint64_t s = 8 + (rand_r(&seed) % (FLAT_SIZE / 4096 - 2)) * 8;

		tb_expect_file(d, s, 4096, tb_flat, (off_t)(s * 512));
	}
	ck_assert_msg(tb_requests(d) == 20, "stats: %s", tb_describe(d, "stats"));
	dc_close(d);
	free(spec);
}
END_TEST

/* Sequential reads 16 deep: waiters on a loading window get their own bytes. */
START_TEST(blob_readahead_queue)
{
	char *spec = tb_fmt("blob:flat:http://127.0.0.1:%d/flat.img;readahead=128K",
			    tb_nginx_port);
	dc_disk *d = tb_open(spec);
	size_t flen;
	uint8_t *file = tb_read_file(tb_flat, &flen);
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
		int n = dc_queue_reap(q, c, 16);

		if (n == 0) {
			struct pollfd pfd = { .fd = dc_queue_fd(q), .events = POLLIN };
			uint64_t v;

			ck_assert_int_eq(poll(&pfd, 1, 30000), 1);
			ck_assert_int_eq(read(pfd.fd, &v, sizeof(v)), sizeof(v));
		}
		for (int i = 0; i < n; i++)
			ck_assert_int_eq(c[i].result, 0);
		done += (unsigned)(n > 0 ? n : 0);
	}
	ck_assert(memcmp(buf, file, FLAT_SIZE) == 0);
	ck_assert_msg(tb_requests(d) <= 10, "stats: %s", tb_describe(d, "stats"));
	dc_queue_close(q);
	dc_close(d);
	free(iov);
	free(buf);
	free(file);
	free(spec);
}
END_TEST

/* --- Misbehaving server ------------------------------------------------------ */

struct tb_bad_case {
	const char *mode;
	const char *message; /* what last_error must say */
};

static const struct tb_bad_case tb_bad_cases[] = {
	{ "short", "short body" }, { "long", "more than" }, { "badrange", "asked for" },
	{ "norange", "HTTP 200" }, { "416", "HTTP 416" },   { "close", "partial" },
};

/* §7.2 misbehaving_server_never_reports_success, one mode per loop index. */
START_TEST(misbehaving_server_never_reports_success)
{
	const struct tb_bad_case *bc = &tb_bad_cases[_i];
	char *spec = tb_fmt("blob:flat:http://127.0.0.1:%d/%s/x.img?sig=SECRET;retries=1",
			    tb_bad_port, bc->mode);
	char *where = tb_fmt("http://127.0.0.1:%d/%s/x.img", tb_bad_port, bc->mode);
	dc_disk *d = tb_open(spec);
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
	free(spec);
	free(where);
}
END_TEST

/* A read-ahead window that cannot be loaded fails the reads waiting for it. */
START_TEST(readahead_window_errors_fail_waiters)
{
	char *spec =
		tb_fmt("blob:flat:http://127.0.0.1:%d/416/x.img;readahead=64K;retries=0",
		       tb_bad_port);
	dc_disk *d = tb_open(spec);
	uint8_t buf[4096];

	ck_assert_int_eq(dc_read(d, 0, buf, sizeof(buf)), DC_E_IO);
	ck_assert_int_eq(dc_read(d, 8, buf, sizeof(buf)), DC_E_IO);
	tb_expect_last_error(d, "HTTP 416");
	dc_close(d);
	free(spec);
}
END_TEST

START_TEST(never_answers_times_out)
{
	char *spec =
		tb_fmt("blob:flat:http://127.0.0.1:%d/hang/x.img;timeout=300;retries=1",
		       tb_bad_port);
	dc_disk *d = tb_open(spec);
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
	free(spec);
}
END_TEST

START_TEST(unavailable_twice_then_succeeds)
{
	char *spec = tb_fmt("blob:flat:http://127.0.0.1:%d/flaky-%d/x.img", tb_bad_port,
			    (int)getpid());
	dc_disk *d = tb_open(spec);

	tb_expect_file(d, 8, 8 * KIB, tb_flat, 8 * 512);
	ck_assert_msg(strstr(tb_describe(d, "stats"), " 2 retries"), "stats: %s",
		      tb_describe(d, "stats"));
	dc_close(d);
	free(spec);
	/* With one retry allowed, the second 503 is the answer. */
	spec = tb_fmt("blob:flat:http://127.0.0.1:%d/flaky-%d-b/x.img;retries=1",
		      tb_bad_port, (int)getpid());
	d = tb_open(spec);
	uint8_t buf[512];
	ck_assert_int_eq(dc_read(d, 0, buf, sizeof(buf)), DC_E_IO);
	tb_expect_last_error(d, "HTTP 503");
	dc_close(d);
	free(spec);
}
END_TEST

START_TEST(redirects_are_followed_and_bounded)
{
	/* redirect-N redirects N + 1 times: 5 are allowed, 6 are too many. */
	char *spec =
		tb_fmt("blob:flat:http://127.0.0.1:%d/redirect-4/x.img", tb_bad_port);
	char *final = tb_fmt("http://127.0.0.1:%d/ok/x.img", tb_bad_port);
	dc_disk *d = tb_open(spec);

	/* The final URL serves the reads (redirect-N would answer 302 to a GET). */
	ck_assert_str_eq(tb_describe(d, "url"), final);
	tb_expect_file(d, 3, 4096, tb_flat, 3 * 512);
	dc_close(d);
	free(spec);
	spec = tb_fmt("blob:flat:http://127.0.0.1:%d/redirect-5/x.img", tb_bad_port);
	tb_open_fails(spec, "too many redirects");
	free(spec);
	free(final);
}
END_TEST

START_TEST(head_without_length_fails)
{
	char *spec = tb_fmt("blob:flat:http://127.0.0.1:%d/nolength/x.img", tb_bad_port);

	tb_open_fails(spec, "Content-Length");
	free(spec);
}
END_TEST

START_TEST(tls_is_verified)
{
	char *ok = tb_fmt("blob:flat:https://127.0.0.1:%d/ok/x.img;cafile=%s",
			  tb_tls_port, tb_cert);
	char *noca =
		tb_fmt("blob:flat:https://127.0.0.1:%d/ok/x.img;retries=0", tb_tls_port);
	char *down = tb_fmt("blob:flat:https://127.0.0.1:%d/tohttp/x.img;cafile=%s",
			    tb_tls_port, tb_cert);
	dc_disk *d = tb_open(ok);

	tb_expect_file(d, 0, 64 * KIB, tb_flat, 0);
	dc_close(d);
	/* The self-signed certificate is not trusted without cafile=. */
	tb_open_fails(noca, "certificate");
	tb_open_fails(down, "downgrade");
	free(ok);
	free(noca);
	free(down);
}
END_TEST

/* --- Setup -------------------------------------------------------------------- */

static int tb_plugin_visit(void *arg, const char *path, const struct dc_plugin *p,
			   const char *why)
{
	(void)path;
	(void)why;
	if (p && !strcmp(p->name, "blob"))
		*(bool *)arg = true;
	return 0;
}

static void tb_make_images(void)
{
	uint8_t *buf = h_alloc(VHD_DATA + 512);
	uint8_t f[512], uid2[16];
	char *p;

	tb_root = h_tmpsubdir();
	chmod(h_tmpdir(), 0755);
	chmod(tb_root, 0755);
	tb_flat = tb_fmt("%s/flat.img", tb_root);
	h_fill(buf, FLAT_SIZE, 1);
	tb_write_file(tb_flat, buf, FLAT_SIZE);
	p = tb_fmt("%s/tail.img", tb_root);
	tb_write_file(p, buf, TAIL_SIZE);
	free(p);

	for (int i = 0; i < 16; i++)
		tb_uid[i] = (uint8_t)(0xa0 + i * 7);
	h_fill(buf, VHD_DATA, 2);
	tb_footer(buf + VHD_DATA, VHD_DATA, 2, tb_uid);
	tb_vhd = tb_fmt("%s/disk.vhd", tb_root);
	tb_write_file(tb_vhd, buf, VHD_DATA + 512);
	/* Broken ones. */
	memcpy(uid2, tb_uid, 16);
	tb_footer(f, 64 * KIB, 2, uid2);
	f[70] ^= 1; /* the checksum no longer matches */
	memcpy(buf + 64 * KIB, f, 512);
	p = tb_fmt("%s/badsum.vhd", tb_root);
	tb_write_file(p, buf, 64 * KIB + 512);
	free(p);
	tb_footer(f, 64 * KIB, 3, uid2);
	memcpy(buf + 64 * KIB, f, 512);
	p = tb_fmt("%s/dynamic.vhd", tb_root);
	tb_write_file(p, buf, 64 * KIB + 512);
	free(p);
	tb_footer(f, 64 * KIB + 512, 2, uid2);
	memcpy(buf + 64 * KIB, f, 512);
	p = tb_fmt("%s/toobig.vhd", tb_root);
	tb_write_file(p, buf, 64 * KIB + 512);
	free(p);
	p = tb_fmt("%s/tiny.vhd", tb_root);
	tb_write_file(p, buf, 100);
	free(p);
	free(buf);
}

int main(void)
{
	Suite *s = suite_create("blob");
	TCase *tn = tcase_create("nginx"), *tb = tcase_create("badserver");
	bool have_blob = false, nginx, bad;
	char *url;

	/* The servers are on 127.0.0.1: no proxy may stand in between. */
	unsetenv("http_proxy");
	unsetenv("https_proxy");
	unsetenv("HTTP_PROXY");
	unsetenv("HTTPS_PROXY");
	unsetenv("ALL_PROXY");
	unsetenv("all_proxy");
	unsetenv("DISKCORE_AZURE_KEY");
	dc_plugins_foreach(tb_plugin_visit, &have_blob);
	if (!have_blob)
		h_skip("the blob plugin is not built (libcurl missing?)");
	tb_owner = getpid();
	tb_make_images();
	atexit(tb_stop_servers);
	nginx = tb_start_nginx();
	bad = tb_start_badserver();
	if (!nginx && !bad)
		h_skip("neither nginx nor python3 is available to serve blobs");
	if (nginx) {
		url = tb_url("flat.img");
		char *t = tb_fmt("blob:flat:%s", url);
		conformance_add(s, "blob-flat", t);
		free(t);
		t = tb_nspec("vhd1", "disk.vhd");
		conformance_add(s, "blob-vhd1", t);
		free(t);
		t = tb_fmt("blob:flat:%s;readahead=64K;split=64K", url);
		conformance_add(s, "blob-flat-readahead", t);
		free(t);
		t = tb_fmt("memdiff:blob:flat:%s", url);
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
		tcase_add_test(tn, blob_queue_depth_32);
		tcase_add_test(tn, blob_query_is_never_shown);
		tcase_add_test(tn, blob_changed_after_open_fails);
		tcase_add_test(tn, blob_bad_specs);
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
		if (tb_cert)
			tcase_add_test(tb, tls_is_verified);
		else
			fprintf(stderr, "test-blob: no openssl: TLS cases are not run\n");
		suite_add_tcase(s, tb);
	} else {
		fprintf(stderr, "test-blob: no python3: the misbehaving-server cases are "
				"not run\n");
	}
	return h_run(s);
}
