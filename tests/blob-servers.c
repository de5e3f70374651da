/* SPDX-License-Identifier: MIT */
/* test-blob's servers on 127.0.0.1, started by main() and stopped at exit:
 * nginx over tb_root, and tests/blob/badserver.py (with TLS when openssl can
 * make it a certificate). Each child dies with this process. */
#include "blob-test.h"
#include "harness.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

pid_t tb_owner;
static pid_t tb_nginx_pid;
int tb_nginx_port;
static pid_t tb_bad_pid;
int tb_bad_port, tb_tls_port;
char *tb_cert;

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

void tb_stop_servers(void)
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
int tb_start_nginx(void)
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
int tb_start_badserver(void)
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
