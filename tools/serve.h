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

/* argv[0] is "serve". Returns the exit status (0, 1 failure, 2 usage). */
int serve_main(int argc, char **argv);
/* Its options, as ctl_parse() reads them. */
extern const struct ctl_opt serve_opts[];

#endif
