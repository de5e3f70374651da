/* SPDX-License-Identifier: MIT */
/* diskctl serve: export a disk over the NBD protocol (tools/serve/). */
#ifndef DISKCTL_SERVE_H
#define DISKCTL_SERVE_H

#include "diskctl/diskctl.h"

#define SERVE_SUMMARY "serve a disk over NBD"
/* What serve's --help says between the usage line and the options. */
#define SERVE_ABOUT                                                                     \
	"Open SPEC once and export it to NBD clients (nbdinfo, nbdcopy, qemu-img,\n"    \
	"qemu-io, libnbd) until SIGINT or SIGTERM. Each connection is served by its\n"  \
	"own thread and queue; requests are pipelined and answered as they complete.\n" \
	"Give exactly one of --unix PATH and --port N (--bind needs --port).\n"

/* serve's whole --help after "usage: diskctl ", for the row of diskctl's
 * table of commands (tools/diskctl/main.c) until that row holds serve_opts:
 * tests/test-serve.sh checks that `diskctl help serve` and `diskctl serve
 * --help` print the same. */
#define SERVE_USAGE                                                                         \
	"serve [--unix PATH] [--port N] [--bind ADDR] [--insecure-listen]\n"                \
	"                     [--export NAME] [--ro] [--max-connections N]\n"               \
	"                     [--handshake-timeout SECS] [--once] [-v|--verbose] SPEC\n"    \
	"\n" SERVE_ABOUT "\n"                                                               \
	"  --unix PATH        listen on a unix socket (nbd+unix:///?socket=PATH);\n"        \
	"                     refused while another server answers on PATH, replaced\n"     \
	"                     if stale\n"                                                   \
	"  --port N           listen on TCP port N (0: any free port, printed on stderr)\n" \
	"  --bind ADDR        TCP address to listen on (default 127.0.0.1); only\n"         \
	"                     loopback addresses: there is no TLS (nbdkit's diskcore\n"     \
	"                     plugin has it)\n"                                             \
	"  --insecure-listen  allow a --bind address that is not loopback\n"                \
	"  --export NAME      the export's name (default \"\"; \"\" is always accepted)\n"  \
	"  --ro               open SPEC read-only and export it read-only\n"                \
	"  --max-connections N\n"                                                           \
	"                     serve at most N connections at once (default 16); more\n"     \
	"                     are closed as soon as they arrive\n"                          \
	"  --handshake-timeout SECS\n"                                                      \
	"                     close a connection that has not finished the handshake\n"     \
	"                     after SECS seconds (default 10; 0: never)\n"                  \
	"  --once             serve one connection, then exit\n"                            \
	"  -v, --verbose      also log connections and refused options\n"

/* argv[0] is "serve". Returns the exit status (0, 1 failure, 2 usage). */
int serve_main(int argc, char **argv);
/* Its options, as ctl_parse() reads them. */
extern const struct ctl_opt serve_opts[];

#endif
