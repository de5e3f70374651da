/* SPDX-License-Identifier: MIT */
/*
 * diskctl serve: the fixed newstyle handshake. EXPORT_NAME, INFO, GO, LIST,
 * ABORT, STRUCTURED_REPLY and the meta context options (one context:
 * base:allocation) are understood; anything else (STARTTLS, ...) is answered
 * "unsupported".
 */
#include "serve-int.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

static int serve_opt_reply(struct serve_conn *c, uint32_t opt, uint32_t type,
			   const void *data, uint32_t len)
{
	uint8_t h[20];
	struct iovec iov[2] = {
		{ .iov_base = h, .iov_len = sizeof(h) },
		{ .iov_base = (void *)data, .iov_len = len },
	};

	serve_put64(h, NBD_OPT_REPLY_MAGIC);
	serve_put32(h + 8, opt);
	serve_put32(h + 12, type);
	serve_put32(h + 16, len);
	return serve_sendv(c, iov, len ? 2 : 1);
}

static int serve_opt_error(struct serve_conn *c, uint32_t opt, uint32_t type,
			   const char *msg)
{
	if (c->srv->verbose)
		serve_log(c, "option %" PRIu32 ": %s", opt, msg);
	return serve_opt_reply(c, opt, type, msg, (uint32_t)strlen(msg));
}

/* The empty name is the default export; the configured name is accepted too. */
static bool serve_name_ok(const struct serve_srv *s, const uint8_t *name, uint32_t len)
{
	return !len ||
	       (len == strlen(s->export_name) && !memcmp(name, s->export_name, len));
}

static int serve_info_reply(struct serve_conn *c, uint32_t opt, uint16_t type,
			    const void *data, uint32_t len)
{
	uint8_t b[2 + 4096];

	if (len > sizeof(b) - 2)
		len = sizeof(b) - 2;
	serve_put16(b, type);
	memcpy(b + 2, data, len);
	return serve_opt_reply(c, opt, NBD_REP_INFO, b, len + 2);
}

/* NBD_OPT_INFO / NBD_OPT_GO. Returns 1 to enter transmission, 0 to go on, -1 to drop. */
static int serve_opt_info(struct serve_conn *c, uint32_t opt, const uint8_t *d,
			  uint32_t len)
{
	struct serve_srv *s = c->srv;
	uint32_t pref =
		s->info.physical_sector_size > 4096 ? s->info.physical_sector_size : 4096;
	bool want_name = false, want_desc = false;
	uint32_t namelen;
	uint16_t nreq;
	uint8_t b[14];

	if (len < 6 || (namelen = serve_get32(d)) > len - 6)
		return serve_opt_error(c, opt, NBD_REP_ERR_INVALID, "malformed request");
	nreq = serve_get16(d + 4 + namelen);
	if (len != 6 + namelen + 2u * nreq)
		return serve_opt_error(c, opt, NBD_REP_ERR_INVALID,
				       "request length does not match its info count");
	for (uint16_t i = 0; i < nreq; i++) {
		uint16_t t = serve_get16(d + 6 + namelen + 2u * i);

		want_name |= t == NBD_INFO_NAME;
		want_desc |= t == NBD_INFO_DESCRIPTION;
	}
	if (!serve_name_ok(s, d + 4, namelen)) {
		char msg[256];

		snprintf(msg, sizeof(msg), "no such export; this server exports '%s'",
			 s->export_name);
		return serve_opt_error(c, opt, NBD_REP_ERR_UNKNOWN, msg);
	}
	serve_put64(b, s->size);
	serve_put16(b + 8, s->tflags);
	if (serve_info_reply(c, opt, NBD_INFO_EXPORT, b, 10))
		return -1;
	/* Sent unasked too: clients that do not ask may ignore it (we cope). */
	serve_put32(b, s->ss);
	serve_put32(b + 4, pref);
	serve_put32(b + 8, SERVE_MAX_REQ);
	if (serve_info_reply(c, opt, NBD_INFO_BLOCK_SIZE, b, 12))
		return -1;
	if (want_name && serve_info_reply(c, opt, NBD_INFO_NAME, s->export_name,
					  (uint32_t)strlen(s->export_name)))
		return -1;
	if (want_desc && serve_info_reply(c, opt, NBD_INFO_DESCRIPTION, s->desc,
					  (uint32_t)strlen(s->desc)))
		return -1;
	if (serve_opt_reply(c, opt, NBD_REP_ACK, NULL, 0))
		return -1;
	return opt == NBD_OPT_GO;
}

/* Does query q (ql bytes) name base:allocation? LIST also takes "base:",
 * the whole namespace. */
static bool serve_meta_match(const uint8_t *q, uint32_t ql, bool list)
{
	static const char name[] = SERVE_META_ALLOC;

	if (ql == sizeof(name) - 1 && !memcmp(q, name, ql))
		return true;
	return list && ql == 5 && !memcmp(q, "base:", 5);
}

/* NBD_OPT_LIST_META_CONTEXT and NBD_OPT_SET_META_CONTEXT: export name, query
 * count, queries. SET replaces the selection (none selected when no query
 * matches); LIST without queries lists every context. */
static int serve_opt_meta(struct serve_conn *c, uint32_t opt, const uint8_t *d,
			  uint32_t len)
{
	bool list = opt == NBD_OPT_LIST_META_CONTEXT, want = false;
	uint32_t namelen, nq, pos;
	uint8_t r[4 + sizeof(SERVE_META_ALLOC)];

	if (!list) {
		c->meta_alloc = false;
		if (!c->structured)
			return serve_opt_error(c, opt, NBD_REP_ERR_INVALID,
					       "negotiate structured replies first");
	}
	if (len < 8 || (namelen = serve_get32(d)) > len - 8)
		return serve_opt_error(c, opt, NBD_REP_ERR_INVALID, "malformed request");
	if (!serve_name_ok(c->srv, d + 4, namelen))
		return serve_opt_error(c, opt, NBD_REP_ERR_UNKNOWN, "no such export");
	nq = serve_get32(d + 4 + namelen);
	pos = 8 + namelen;
	want = list && !nq;
	for (uint32_t i = 0; i < nq; i++) {
		uint32_t ql;

		if (len - pos < 4 || (ql = serve_get32(d + pos)) > len - pos - 4)
			return serve_opt_error(c, opt, NBD_REP_ERR_INVALID,
					       "query runs past the option");
		want |= serve_meta_match(d + pos + 4, ql, list);
		pos += 4 + ql;
	}
	if (pos != len)
		return serve_opt_error(c, opt, NBD_REP_ERR_INVALID,
				       "bytes after the last query");
	if (want) {
		/* LIST: the id is meaningless, 0 */
		serve_put32(r, list ? 0 : SERVE_META_ALLOC_ID);
		memcpy(r + 4, SERVE_META_ALLOC, sizeof(SERVE_META_ALLOC) - 1);
		if (serve_opt_reply(c, opt, NBD_REP_META_CONTEXT, r,
				    (uint32_t)sizeof(r) - 1))
			return -1;
	}
	c->meta_alloc = !list && want;
	return serve_opt_reply(c, opt, NBD_REP_ACK, NULL, 0);
}

static int serve_opt_list(struct serve_conn *c, uint32_t opt, uint32_t len)
{
	const char *name = c->srv->export_name;
	uint32_t nl = (uint32_t)strlen(name);
	uint8_t r[4 + 4096];

	if (len)
		return serve_opt_error(c, opt, NBD_REP_ERR_INVALID, "LIST takes no data");
	serve_put32(r, nl);
	memcpy(r + 4, name, nl);
	if (serve_opt_reply(c, opt, NBD_REP_SERVER, r, 4 + nl))
		return -1;
	return serve_opt_reply(c, opt, NBD_REP_ACK, NULL, 0);
}

/* One option: 1 to enter transmission, 0 to go on, -1 to drop the connection. */
static int serve_option(struct serve_conn *c, uint32_t opt, uint32_t len)
{
	struct serve_srv *s = c->srv;

	switch (opt) {
	case NBD_OPT_EXPORT_NAME: {
		uint8_t r[10 + 124] = { 0 };

		if (!serve_name_ok(s, c->optbuf, len)) {
			serve_log(c, "unknown export name requested, dropped");
			return -1;
		}
		serve_put64(r, s->size);
		serve_put16(r + 8, s->tflags);
		return serve_send(c, r, c->no_zeroes ? 10 : sizeof(r)) ? -1 : 1;
	}
	case NBD_OPT_ABORT:
		serve_opt_reply(c, opt, NBD_REP_ACK, NULL, 0);
		return -1;
	case NBD_OPT_LIST:
		return serve_opt_list(c, opt, len);
	case NBD_OPT_INFO:
	case NBD_OPT_GO:
		return serve_opt_info(c, opt, c->optbuf, len);
	case NBD_OPT_STRUCTURED_REPLY:
		if (len)
			return serve_opt_error(c, opt, NBD_REP_ERR_INVALID,
					       "STRUCTURED_REPLY takes no data");
		c->structured = true;
		return serve_opt_reply(c, opt, NBD_REP_ACK, NULL, 0);
	case NBD_OPT_LIST_META_CONTEXT:
	case NBD_OPT_SET_META_CONTEXT:
		return serve_opt_meta(c, opt, c->optbuf, len);
	default:
		/* STARTTLS, ...: not offered. */
		return serve_opt_reply(c, opt, NBD_REP_ERR_UNSUP, NULL, 0);
	}
}

int serve_handshake(struct serve_conn *c)
{
	uint8_t b[18];
	uint32_t cflags;

	serve_put64(b, NBD_MAGIC);
	serve_put64(b + 8, NBD_IHAVEOPT);
	serve_put16(b + 16, NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES);
	if (serve_send(c, b, 18) || serve_recv(c, b, 4))
		return -1;
	cflags = serve_get32(b);
	if (cflags & ~(NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES)) {
		serve_log(c, "unknown client flags 0x%" PRIx32 ", dropped", cflags);
		return -1;
	}
	c->no_zeroes = cflags & NBD_FLAG_C_NO_ZEROES;

	for (int n = 0; n < SERVE_MAX_OPTIONS; n++) {
		uint32_t opt, len;
		uint8_t h[16];
		int rc;

		if (serve_recv(c, h, 16))
			return -1;
		if (serve_get64(h) != NBD_IHAVEOPT) {
			serve_log(c, "bad option magic, dropped");
			return -1;
		}
		opt = serve_get32(h + 8);
		len = serve_get32(h + 12);
		if (len > SERVE_MAX_OPT) {
			/* Skipping is bounded in time by the handshake timeout. */
			if (opt == NBD_OPT_EXPORT_NAME || serve_skip(c, len))
				return -1;
			if (serve_opt_error(c, opt, NBD_REP_ERR_INVALID,
					    "option data too long"))
				return -1;
			continue;
		}
		if (serve_recv(c, c->optbuf, len))
			return -1;
		rc = serve_option(c, opt, len);
		if (rc)
			return rc > 0 ? 0 : -1;
	}
	serve_log(c, "more than %d options, dropped", SERVE_MAX_OPTIONS);
	return -1;
}
