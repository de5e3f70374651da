/* SPDX-License-Identifier: MIT */
/* What the files of test-blob share: the images the servers serve, the
 * servers (blob-servers.c), the checks every case makes, and the test cases
 * each file adds to the suite. */
#ifndef DISKCORE_TESTS_BLOB_TEST_H
#define DISKCORE_TESTS_BLOB_TEST_H

#include "harness.h"

#include <string.h>
#include <sys/types.h>

#define KIB 1024u
#define MIB (1024u * 1024u)
#define FLAT_SIZE MIB
#define TAIL_SIZE (64u * KIB + 100u)
#define VHD_DATA MIB

/* --- The images (test-blob.c) --------------------------------------------------- */

extern char *tb_root;	   /* the web root nginx serves */
extern char *tb_flat;	   /* flat.img: FLAT_SIZE bytes of h_fill(1) */
extern char *tb_vhd;	   /* disk.vhd: VHD_DATA bytes of h_fill(2) + footer */
extern uint8_t tb_uid[16]; /* disk.vhd's unique id */

/* --- The servers (blob-servers.c) ----------------------------------------------- */

extern pid_t tb_owner; /* the process that started them, and stops them */
extern int tb_nginx_port;
extern int tb_bad_port, tb_tls_port; /* badserver.py's http and https ports */
extern char *tb_cert;		     /* its certificate; NULL without openssl */

/* 1 when nginx serves tb_root, 0 when it is not installed, -1 when it is but
 * does not start. */
int tb_start_nginx(void);
/* 1 when badserver.py listens (with TLS when openssl is installed), 0 without
 * python3, -1 when a tool that is installed fails. */
int tb_start_badserver(void);
/* Stop both (at exit, in tb_owner only). */
void tb_stop_servers(void);

/* --- Checks (test-blob.c) ------------------------------------------------------- */

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
const char *tb_describe(dc_disk *d, const char *key);
/* The plugin's last error message must contain want. */
void tb_expect_last_error(dc_disk *d, const char *want);
/* Compare the disk's [sector, +len) with the file's bytes at file_off. */
void tb_expect_file(dc_disk *d, uint64_t sector, size_t len, const char *path,
		    off_t file_off);
/* The "N requests" figure of describe()'s stats. */
unsigned long long tb_requests(dc_disk *d);
/* http://127.0.0.1:PORT/name on nginx (malloc'd). */
char *tb_url(const char *name);

/* --- The test cases ------------------------------------------------------------- */

TCase *blob_tc_nginx(void);	/* blob-nginx.c */
TCase *blob_tc_badserver(void); /* blob-badserver.c */

#endif
