/* SPDX-License-Identifier: MIT */
/* prwrap: in-memory SCSI persistent reservations over any disk, for testing
 * (docs/openvmm-compat.md §3.3). One registrant at most, state lost at close, and no
 * enforcement: reads, writes, flush, unmap and eject pass straight through.
 * The rules and the generation counter follow OpenVMM's DiskWithReservations
 * exactly, so a frontend's PR compliance sequence sees the same generations. */
#include <diskcore/plugin.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Reservation types prwrap advertises (the registrants-only and exclusive ones). */
#define PRWRAP_CAP_TYPES                                                  \
	((1u << DC_PR_WRITE_EXCLUSIVE) | (1u << DC_PR_EXCLUSIVE_ACCESS) | \
	 (1u << DC_PR_WRITE_EXCLUSIVE_REG_ONLY) |                         \
	 (1u << DC_PR_EXCLUSIVE_ACCESS_REG_ONLY))
#define PRWRAP_HOST_ID_LEN 8

struct prwrap_disk {
	pthread_mutex_t lock;
	uint32_t generation; /* wraps */
	uint64_t key;	     /* the registered key; 0 = nobody registered */
	uint32_t type;	     /* enum dc_pr_type; 0 = not reserved */
	bool ptpl;
};

static bool prwrap_type_valid(uint32_t type)
{
	return type >= DC_PR_WRITE_EXCLUSIVE && type <= DC_PR_EXCLUSIVE_ACCESS_ALL_REGS;
}

/* What RESERVE, RELEASE and PREEMPT check first: a valid type, asked by the
 * registrant, and no reservation of another type (else mismatch). */
static int prwrap_holder(const struct prwrap_disk *d, const struct dc_pr_args *pr,
			 int mismatch)
{
	if (!prwrap_type_valid(pr->type))
		return DC_E_INVALID_INPUT;
	if (!d->key || pr->key != d->key)
		return DC_E_RESERVATION_CONFLICT;
	if (d->type && d->type != pr->type)
		return mismatch;
	return 0;
}

/* Caller holds the lock. Returns the result of the op. */
static int prwrap_do(struct prwrap_disk *d, uint32_t op, struct dc_pr_args *pr)
{
	int rc;

	switch (op) {
	case DC_OP_PR_CAPS:
		if (!pr->caps)
			return DC_E_INVALID_INPUT;
		pr->caps->types = PRWRAP_CAP_TYPES;
		pr->caps->persist_through_power_loss = true;
		return 0;
	case DC_OP_PR_REPORT: {
		struct dc_pr_report *r = pr->report;

		if (!r || (r->max_controllers && !r->controllers))
			return DC_E_INVALID_INPUT;
		r->generation = d->generation;
		r->reservation_type = d->type;
		r->persist_through_power_loss = d->ptpl;
		r->ncontrollers = d->key ? 1 : 0;
		if (d->key && r->max_controllers) {
			struct dc_pr_controller *c = &r->controllers[0];

			memset(c, 0, sizeof(*c));
			c->key = d->key;
			c->host_id_len = PRWRAP_HOST_ID_LEN;
			c->controller_id = 0;
			c->holds_reservation = d->type != 0;
		}
		return 0;
	}
	case DC_OP_PR_REGISTER:
		/* Key 0 stands for "not registered", so a first REGISTER with
		 * key 0 succeeds. */
		if (!pr->ignore_key && pr->key != d->key)
			return DC_E_RESERVATION_CONFLICT;
		if (pr->ptpl < -1 || pr->ptpl > 1)
			return DC_E_INVALID_INPUT;
		d->key = pr->new_key;
		if (!d->key)
			d->type = 0; /* unregistering drops the reservation */
		if (pr->ptpl >= 0)
			d->ptpl = pr->ptpl;
		d->generation++;
		return 0;
	case DC_OP_PR_RESERVE:
		rc = prwrap_holder(d, pr, DC_E_RESERVATION_CONFLICT);
		if (!rc)
			d->type = pr->type;
		return rc;
	case DC_OP_PR_RELEASE:
		rc = prwrap_holder(d, pr, DC_E_INVALID_INPUT);
		if (!rc)
			d->type = 0;
		return rc;
	case DC_OP_PR_CLEAR:
		if (!d->key || pr->key != d->key)
			return DC_E_RESERVATION_CONFLICT;
		d->key = 0;
		d->type = 0;
		d->generation++;
		return 0;
	case DC_OP_PR_PREEMPT:
		/* With one registrant, the only key there is to preempt is our own;
		 * abort has nothing else to abort. */
		rc = prwrap_holder(d, pr, DC_E_INVALID_INPUT);
		if (rc)
			return rc;
		if (pr->new_key != d->key)
			return DC_E_INVALID_INPUT;
		d->type = 0;
		d->generation++;
		return 0;
	default:
		return DC_E_UNSUPPORTED;
	}
}

static void prwrap_submit(void *inst, struct dc_req *req)
{
	struct prwrap_disk *d = inst;
	int rc;

	if (!req->pr) {
		dc_complete(req, DC_E_INVALID_INPUT);
		return;
	}
	pthread_mutex_lock(&d->lock);
	rc = prwrap_do(d, req->op, req->pr);
	pthread_mutex_unlock(&d->lock);
	dc_complete(req, rc);
}

static int prwrap_open(const struct dc_open_args *a, void **inst, struct dc_info *info)
{
	struct prwrap_disk *d;

	if (a->nchildren != 1)
		return dc_fail(-EINVAL, "expected prwrap:SPEC");
	d = calloc(1, sizeof(*d));
	if (!d)
		return dc_fail(-ENOMEM, "out of memory");
	pthread_mutex_init(&d->lock, NULL);
	info->flags |= DC_INFO_PR;
	info->flags &= ~DC_INFO_CAN_READ_CACHE;
	snprintf(info->disk_type, sizeof(info->disk_type), "prwrap");
	*inst = d;
	return 0;
}

static void prwrap_close(void *inst)
{
	struct prwrap_disk *d = inst;

	if (!d)
		return;
	pthread_mutex_destroy(&d->lock);
	free(d);
}

static const char *prwrap_type_name(uint32_t type)
{
	static const char *const names[] = {
		[DC_PR_WRITE_EXCLUSIVE] = "write-exclusive",
		[DC_PR_EXCLUSIVE_ACCESS] = "exclusive-access",
		[DC_PR_WRITE_EXCLUSIVE_REG_ONLY] = "write-exclusive-registrants-only",
		[DC_PR_EXCLUSIVE_ACCESS_REG_ONLY] = "exclusive-access-registrants-only",
		[DC_PR_WRITE_EXCLUSIVE_ALL_REGS] = "write-exclusive-all-registrants",
		[DC_PR_EXCLUSIVE_ACCESS_ALL_REGS] = "exclusive-access-all-registrants",
	};

	return prwrap_type_valid(type) ? names[type] : "none";
}

static void prwrap_describe(void *inst, dc_kv_fn kv, void *arg)
{
	struct prwrap_disk *d = inst;
	char key[32], gen[16];
	uint32_t type;
	bool ptpl;

	pthread_mutex_lock(&d->lock);
	if (d->key)
		snprintf(key, sizeof(key), "0x%016llx", (unsigned long long)d->key);
	else
		snprintf(key, sizeof(key), "none");
	snprintf(gen, sizeof(gen), "%u", d->generation);
	type = d->type;
	ptpl = d->ptpl;
	pthread_mutex_unlock(&d->lock);
	kv(arg, "registered_key", key);
	kv(arg, "reservation", prwrap_type_name(type));
	kv(arg, "generation", gen);
	dc_kv_bool(kv, arg, "ptpl", ptpl);
}

DC_PLUGIN(prwrap_plugin) = {
	DC_ABOUT(DC_KIND_DECORATOR, "prwrap", "0.1.0",
		 "in-memory SCSI persistent reservations (one registrant, for tests)"),
	.usage = "prwrap:SPEC\n"
		 "  Emulates persistent reservations in memory, as OpenVMM's prwrap:\n"
		 "  a single registrant; write-exclusive, exclusive-access and their\n"
		 "  registrants-only variants; persist-through-power-loss accepted but\n"
		 "  not kept (state lives as long as the disk is open). Reservations are\n"
		 "  not enforced on I/O. Reads, writes, flush, unmap and eject pass\n"
		 "  through to SPEC.",
	.forms = DC_FORMS(DC_FORM(
		"prwrap", 0, DC_CHILD_ONE, "prwrap:SPEC",
		"in-memory SCSI persistent reservations over SPEC (testing)", NULL)),
	.ops = DC_OPS_PR,
	.passthrough_ops = DC_OP_BIT(DC_OP_READ) | DC_OP_BIT(DC_OP_WRITE) |
			   DC_OP_BIT(DC_OP_FLUSH) | DC_OP_BIT(DC_OP_UNMAP) |
			   DC_OP_BIT(DC_OP_EJECT),
	DC_CALLBACKS(prwrap, open, close, submit, describe),
	.extents = dc_extents_passthrough,
};
