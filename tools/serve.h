/* SPDX-License-Identifier: MIT */
/* diskctl serve: export a disk over the NBD protocol (tools/serve/). */
#ifndef DISKCTL_SERVE_H
#define DISKCTL_SERVE_H

#define SERVE_SUMMARY "serve a disk over NBD"
#define SERVE_USAGE                                                                       \
	"serve [--ro] (--unix PATH | --port N [--bind ADDR]) [--export NAME]\n"           \
	"             [--max-connections N] [--handshake-timeout SECS] [--once] [-v]\n"   \
	"             [--insecure-listen]\n"                                              \
	"             SPEC\n\n"                                                           \
	"Open SPEC once and export it to NBD clients (nbdinfo, nbdcopy, qemu-img,\n"      \
	"qemu-io, libnbd) until SIGINT or SIGTERM. Each connection is served by its\n"    \
	"own thread and queue; requests are pipelined and answered as they complete.\n\n" \
	"  --unix PATH    listen on a unix socket (nbd+unix:///?socket=PATH); refused\n"  \
	"                 while another server answers on PATH, replaced if stale\n"      \
	"  --port N       listen on TCP port N (0: any free port, printed on stderr)\n"   \
	"  --bind ADDR    TCP address to listen on (default 127.0.0.1); only loopback\n"  \
	"                 addresses: there is no TLS (nbdkit's diskcore plugin has it)\n" \
	"  --insecure-listen  allow a --bind address that is not loopback\n"              \
	"  --export NAME  the export's name (default \"\"; \"\" is always accepted)\n"    \
	"  --ro           open SPEC read-only and export it read-only\n"                  \
	"  --max-connections N  serve at most N connections at once (default 16);\n"      \
	"                 more are closed as soon as they arrive\n"                       \
	"  --handshake-timeout SECS  close a connection that has not finished the\n"      \
	"                 handshake after SECS seconds (default 10; 0: never)\n"          \
	"  --once         serve one connection, then exit\n"                              \
	"  -v, --verbose  also log connections and refused options\n"

/* argv[0] is "serve". Returns the exit status (0, 1 failure, 2 usage). */
int serve_main(int argc, char **argv);

#endif
