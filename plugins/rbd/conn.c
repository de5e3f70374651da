/* SPDX-License-Identifier: MIT */
/* The cluster side of rbd: parsing POOL[/NAMESPACE]/IMAGE[@SNAP], connecting
 * with bounded timeouts, opening the pool and the image, and saying which of
 * them is at fault when that fails (docs/spec-strings.md, "rbd"). */
#include "rbd.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A dead or unreachable monitor must fail the open in seconds: librados'
 * default client_mount_timeout is 300 s. */
#define RBD_DEFAULT_TIMEOUT_S 10
#define RBD_MAX_TIMEOUT_S 3600

int rbd_target_parse(const struct dc_open_args *a, struct rbd_target *t)
{
	char *slash, *slash2, *at;
	uint64_t timeout = RBD_DEFAULT_TIMEOUT_S;

	memset(t, 0, sizeof(*t));
	t->buf = strdup(a->fields[0]);
	if (!t->buf)
		return dc_fail(-ENOMEM, "out of memory");
	slash = strchr(t->buf, '/');
	if (!slash)
		return dc_fail(-EINVAL, "'%s': expected POOL/IMAGE[@SNAP]", a->fields[0]);
	*slash = '\0';
	t->pool = t->buf;
	t->image = slash + 1;
	slash2 = strchr(t->image, '/');
	if (slash2) {
		*slash2 = '\0';
		t->ns = t->image;
		t->image = slash2 + 1;
	}
	at = strchr(t->image, '@');
	if (at) {
		*at = '\0';
		t->snap = at + 1;
	}
	if (!*t->pool || !*t->image || (t->ns && !*t->ns) || (t->snap && !*t->snap) ||
	    strchr(t->image, '/'))
		return dc_fail(-EINVAL,
			       "'%s': expected POOL/IMAGE[@SNAP] or "
			       "POOL/NAMESPACE/IMAGE[@SNAP], each part not empty",
			       a->fields[0]);
	snprintf(t->shown, sizeof(t->shown), "%s/%s%s%s%s%s", t->pool, t->ns ? t->ns : "",
		 t->ns ? "/" : "", t->image, t->snap ? "@" : "", t->snap ? t->snap : "");
	t->conf = dc_opt_str(a, "conf");
	t->id = dc_opt_str(a, "id");
	t->keyring = dc_opt_str(a, "keyring");
	t->mon = dc_opt_str(a, "mon");
	if (dc_opt_num(a, "timeout", &timeout) &&
	    (timeout < 1 || timeout > RBD_MAX_TIMEOUT_S))
		return dc_fail(-EINVAL, "timeout=%llu: must be 1 to %d seconds",
			       (unsigned long long)timeout, RBD_MAX_TIMEOUT_S);
	t->timeout_s = (unsigned)timeout;
	if (t->id && !*t->id)
		return dc_fail(-EINVAL, "id=: the client id is empty");
	return 0;
}

void rbd_target_free(struct rbd_target *t)
{
	free(t->buf);
	t->buf = NULL;
}

/* librados' own log goes to the cluster's log file, never to the caller's
 * stderr (its messages become ours), unless DISKCORE_DEBUG asks for it. */
static int rbd_configure(struct rbd_inst *in)
{
	struct rbd_target *t = &in->t;
	char v[32];
	int r;

	/* NULL: $CEPH_CONF, then /etc/ceph/ceph.conf, ~/.ceph/config,
	 * ./ceph.conf. Without any, a ;mon= is enough. */
	r = rados_conf_read_file(in->cluster, t->conf);
	if (r < 0 && (t->conf || !t->mon))
		return dc_fail(r, "%s: cannot read the Ceph configuration %s: %s",
			       t->shown,
			       t->conf ? t->conf : "(CEPH_CONF, /etc/ceph/ceph.conf)",
			       strerror(-r));
	if (t->mon && (r = rados_conf_set(in->cluster, "mon_host", t->mon)) < 0)
		return dc_fail(r, "%s: mon=%s: %s", t->shown, t->mon, strerror(-r));
	if (t->keyring && (r = rados_conf_set(in->cluster, "keyring", t->keyring)) < 0)
		return dc_fail(r, "%s: keyring=%s: %s", t->shown, t->keyring,
			       strerror(-r));
	snprintf(v, sizeof(v), "%u", t->timeout_s);
	if (rados_conf_set(in->cluster, "client_mount_timeout", v) < 0 ||
	    rados_conf_set(in->cluster, "rados_mon_op_timeout", v) < 0)
		return dc_fail(-EINVAL, "%s: cannot set the connect timeout", t->shown);
	if (!getenv("DISKCORE_DEBUG")) {
		rados_conf_set(in->cluster, "log_to_stderr", "false");
		rados_conf_set(in->cluster, "err_to_stderr", "false");
	}
	if (rados_conf_get(in->cluster, "mon_host", in->mon_host, sizeof(in->mon_host)) <
		    0 ||
	    !in->mon_host[0])
		snprintf(in->mon_host, sizeof(in->mon_host), "(none configured)");
	return 0;
}

/* rados_connect()'s errors, as what the user has to fix. */
static int rbd_connect_error(struct rbd_inst *in, int r)
{
	const struct rbd_target *t = &in->t;
	const char *who = t->id ? t->id : "admin";

	switch (r) {
	case -ETIMEDOUT:
		return dc_fail(r,
			       "%s: no monitor answered within %u s (mon_host %s); "
			       "is the cluster up? (;timeout=N changes the wait)",
			       t->shown, t->timeout_s, in->mon_host);
	case -ENOENT:
		return dc_fail(r,
			       "%s: no key for client.%s: no keyring found (%s); "
			       "give ;keyring=PATH",
			       t->shown, who,
			       t->keyring ? t->keyring :
					    "the configuration's keyring paths");
	case -EACCES:
	case -EPERM:
		return dc_fail(r,
			       "%s: the monitors refused client.%s's key (keyring %s): "
			       "authentication failed",
			       t->shown, who,
			       t->keyring ? t->keyring : "from the configuration");
	case -EINVAL:
		if (!strcmp(in->mon_host, "(none configured)"))
			return dc_fail(
				r,
				"%s: no monitor address: give ;conf=PATH or ;mon=HOST[:PORT]",
				t->shown);
		break;
	}
	return dc_fail(r,
		       "%s: cannot connect to the cluster (mon_host %s) as client.%s: %s",
		       t->shown, in->mon_host, who, strerror(-r));
}

int rbd_connect(struct rbd_inst *in)
{
	struct rbd_target *t = &in->t;
	int r;

	r = rados_create(&in->cluster, t->id);
	if (r < 0)
		return dc_fail(r, "%s: rados_create(client.%s): %s", t->shown,
			       t->id ? t->id : "admin", strerror(-r));
	r = rbd_configure(in);
	if (r < 0)
		return r;
	r = rados_connect(in->cluster);
	if (r < 0)
		return rbd_connect_error(in, r);
	r = rados_ioctx_create(in->cluster, t->pool, &in->io);
	if (r == -ENOENT)
		return dc_fail(r, "%s: the pool '%s' does not exist", t->shown, t->pool);
	if (r < 0)
		return dc_fail(r, "%s: cannot open the pool '%s': %s", t->shown, t->pool,
			       strerror(-r));
	if (t->ns)
		rados_ioctx_set_namespace(in->io, t->ns);
	return 0;
}

int rbd_open_image(struct rbd_inst *in)
{
	struct rbd_target *t = &in->t;
	rbd_image_t probe;
	int r;

	/* A snapshot is read-only, and a read-only open takes no lock and
	 * registers no watch on the header that writers would have to honour. */
	if (in->read_only)
		r = rbd_open_read_only(in->io, t->image, &in->image, t->snap);
	else
		r = rbd_open(in->io, t->image, &in->image, NULL);
	if (r == 0)
		return 0;
	in->image = NULL;
	if (r == -ENOENT && t->snap &&
	    rbd_open_read_only(in->io, t->image, &probe, NULL) == 0) {
		rbd_close(probe);
		return dc_fail(r, "%s: the image '%s' has no snapshot '%s'", t->shown,
			       t->image, t->snap);
	}
	if (r == -ENOENT)
		return dc_fail(r,
			       "%s: the image '%s' does not exist in the pool '%s'%s%s",
			       t->shown, t->image, t->pool, t->ns ? ", namespace " : "",
			       t->ns ? t->ns : "");
	if (r == -EPERM || r == -EACCES)
		return dc_fail(r, "%s: client.%s may not open the image (its caps): %s",
			       t->shown, t->id ? t->id : "admin", strerror(-r));
	return dc_fail(r, "%s: cannot open the image: %s", t->shown, strerror(-r));
}

void rbd_disconnect(struct rbd_inst *in)
{
	if (in->image)
		rbd_close(in->image);
	in->image = NULL;
	if (in->io)
		rados_ioctx_destroy(in->io);
	in->io = NULL;
	if (in->cluster)
		rados_shutdown(in->cluster);
	in->cluster = NULL;
}
