/* SPDX-License-Identifier: MIT */
/* Controller bring-up and shutdown, synchronous admin commands, the reaper
 * thread (interrupts, command timeouts, controller fatal status) and the
 * asynchronous events that report a namespace's new size. */
#include "drv.h"

#include <endian.h>
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

/* The reaper looks at the controller's health and the deadlines every tick
 * while commands are in flight; an idle tick catches a command submitted
 * while it slept (waking it on every idle-to-busy edge would cost a system
 * call per command at queue depth 1). */
#define REAPER_TICK_MS 50
#define REAPER_IDLE_TICK_MS 1000
#define AER_RETRIES 3

struct admin_wait {
	bool done;
	uint16_t status;
	uint32_t dw0;
	void *out;
	uint32_t len;
	pthread_cond_t *cv;
};

static void admin_done(struct nvme_slot *s, uint16_t status, uint32_t dw0)
{
	struct admin_wait *w = s->arg;

	w->status = status;
	w->dw0 = dw0;
	if (!status && w->out)
		memcpy(w->out, s->buf, w->len);
	w->done = true;
	pthread_cond_broadcast(w->cv);
}

static void wait_slice(struct nvme_ctrl *c)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_nsec += 1000000;
	if (ts.tv_nsec >= 1000000000) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000;
	}
	pthread_cond_timedwait(&c->admin_cv, &c->admin.lock, &ts);
}

/* Returns 0, the NVMe status (> 0) the command failed with, or -errno. The
 * caller waits here, reaping the admin queue itself until the reaper runs. */
int nvme_admin(struct nvme_ctrl *c, struct nvme_sqe *sqe, const void *in, void *out,
	       uint32_t len, uint32_t *dw0)
{
	struct nvme_qp *qp = &c->admin;
	struct admin_wait w = { .out = out, .len = len, .cv = &c->admin_cv };
	struct nvme_rctx *none = NULL;
	uint64_t deadline = nvme_now_ns() + c->timeout_ns;
	struct nvme_slot *s;

	pthread_mutex_lock(&qp->lock);
	s = atomic_load(&c->dead) ? NULL : nvme_slot_get(qp);
	if (!s) {
		pthread_mutex_unlock(&qp->lock);
		return atomic_load(&c->dead) ? -ENOTCONN : -EBUSY;
	}
	s->cb = admin_done;
	s->arg = &w;
	s->len = len;
	if (in)
		memcpy(s->buf, in, len);
	nvme_qp_push(qp, s, sqe);
	nvme_qp_ring(qp);
	while (!w.done) {
		nvme_qp_reap_locked(qp, &none);
		if (w.done)
			break;
		if (nvme_now_ns() > deadline) {
			pthread_mutex_unlock(&qp->lock);
			nvme_ctrl_fail(c, ETIMEDOUT);
			return -ETIMEDOUT;
		}
		wait_slice(c);
	}
	pthread_mutex_unlock(&qp->lock);
	if (dw0)
		*dw0 = w.dw0;
	return w.status == 0xffff ? -ENOTCONN : w.status;
}

void nvme_ctrl_fail(struct nvme_ctrl *c, int detail)
{
	struct nvme_rctx *done = NULL;

	if (atomic_exchange(&c->dead, true))
		return;
	atomic_store(&c->dead_detail, detail);
	dc_debug("nvme %s: controller failed (%s): failing every request", c->dev->name,
		 strerror(detail));
	for (unsigned i = 0; i <= c->nio; i++) {
		struct nvme_qp *qp = i ? c->io[i - 1] : &c->admin;

		pthread_mutex_lock(&qp->lock);
		nvme_qp_fail_locked(qp, detail, &done);
		if (!i)
			pthread_cond_broadcast(&c->admin_cv);
		pthread_mutex_unlock(&qp->lock);
	}
	nvme_complete_list(done);
}

static void kick(struct nvme_ctrl *c)
{
	uint64_t one = 1;

	if (write(c->kick_fd, &one, sizeof(one)) < 0)
		dc_debug("nvme: eventfd write: %s", strerror(errno));
}

static void aer_done(struct nvme_slot *s, uint16_t status, uint32_t dw0)
{
	struct nvme_ctrl *c = s->arg;

	c->aen_status = status;
	c->aen_dw0 = dw0;
	atomic_store(&c->aen_pending, true);
	kick(c);
}

static void aer_arm(struct nvme_ctrl *c)
{
	struct nvme_sqe e = { .opc = NVME_ADM_AER };
	struct nvme_slot *s;

	pthread_mutex_lock(&c->admin.lock);
	s = atomic_load(&c->dead) ? NULL : nvme_slot_get(&c->admin);
	if (s) {
		s->cb = aer_done;
		s->arg = c;
		nvme_qp_push(&c->admin, s, &e);
		nvme_qp_ring(&c->admin);
	}
	pthread_mutex_unlock(&c->admin.lock);
}

int nvme_identify_ns(struct nvme_ctrl *c, uint64_t *nsze, uint8_t *id)
{
	struct nvme_sqe e = { .opc = NVME_ADM_IDENTIFY, .nsid = c->nsid, .cdw10 = 0 };
	int rc = nvme_admin(c, &e, NULL, id, NVME_PAGE, NULL);

	if (rc)
		return rc;
	*nsze = le64toh(*(uint64_t *)(id + NVME_IDN_NSZE));
	return 0;
}

/* A notice that namespaces changed: read the log (which also re-enables the
 * event) and, when ours is listed, its size again. */
static void ns_changed(struct nvme_ctrl *c, uint8_t lid)
{
	static _Thread_local uint32_t list[NVME_PAGE / 4];
	uint8_t id[NVME_PAGE];
	struct nvme_sqe e = { .opc = NVME_ADM_GET_LOG, .nsid = 0xffffffff };
	bool ours = false;
	uint64_t nsze;

	e.cdw10 = lid | (NVME_PAGE / 4 - 1) << 16;
	if (nvme_admin(c, &e, NULL, list, NVME_PAGE, NULL) || lid != NVME_LOG_CHANGED_NS)
		return;
	for (unsigned i = 0; i < NVME_PAGE / 4 && list[i]; i++)
		ours |= le32toh(list[i]) == c->nsid || le32toh(list[i]) == 0xffffffff;
	if (!ours || nvme_identify_ns(c, &nsze, id))
		return;
	if (nsze == 0) {
		/* Removed: it stays failed even if it comes back (as OpenVMM). */
		atomic_store(&c->ns_gone, true);
	} else if (nsze != atomic_load(&c->nsze)) {
		atomic_store(&c->nsze, nsze);
		atomic_fetch_add(&c->resizes, 1);
		dc_node_notify_resize(c->node);
	}
}

static void handle_aen(struct nvme_ctrl *c)
{
	uint16_t status;
	uint32_t dw0;

	pthread_mutex_lock(&c->admin.lock);
	atomic_store(&c->aen_pending, false);
	status = c->aen_status;
	dw0 = c->aen_dw0;
	pthread_mutex_unlock(&c->admin.lock);
	if (atomic_load(&c->dead))
		return;
	if (status) {
		/* A failed AER is logged and re-armed a few times: losing the
		 * events must not take the disk down. */
		dc_debug("nvme %s: asynchronous event request failed (status %#x)",
			 c->dev->name, status);
		if (++c->aen_failures <= AER_RETRIES && status != NVME_SC_AER_LIMIT)
			aer_arm(c);
		return;
	}
	c->aen_failures = 0;
	if ((dw0 & 7) == NVME_AER_TYPE_NOTICE || ((dw0 >> 16) & 0xff))
		ns_changed(c, (uint8_t)(dw0 >> 16));
	aer_arm(c);
}

static void check_health(struct nvme_ctrl *c)
{
	uint32_t csts = nvme_rd32(c->dev, NVME_REG_CSTS);
	uint64_t now = nvme_now_ns();
	bool expired = false;

	if (csts == UINT32_MAX || (csts & NVME_CSTS_CFS)) {
		nvme_ctrl_fail(c, csts == UINT32_MAX ? ENOTCONN : EIO);
		return;
	}
	for (unsigned i = 0; i < c->nio && !expired; i++) {
		pthread_mutex_lock(&c->io[i]->lock);
		expired = nvme_qp_expired_locked(c->io[i], now);
		pthread_mutex_unlock(&c->io[i]->lock);
	}
	if (expired)
		nvme_ctrl_fail(c, ETIMEDOUT);
}

/* The eventfds to sleep on: the kick, the admin queue's vector, and those of
 * the queue pairs that some queue does not reap itself. */
static unsigned reaper_fds(struct nvme_ctrl *c, struct pollfd *p)
{
	unsigned n = 0;

	p[n++] = (struct pollfd){ .fd = c->kick_fd, .events = POLLIN };
	for (unsigned i = 0; i <= c->nio; i++) {
		struct nvme_qp *qp = i ? c->io[i - 1] : &c->admin;
		bool seen = qp->irq_fd < 0 || (i && nvme_qp_polled(qp));

		for (unsigned j = 0; j < n && !seen; j++)
			seen = p[j].fd == qp->irq_fd;
		if (!seen)
			p[n++] = (struct pollfd){ .fd = qp->irq_fd, .events = POLLIN };
	}
	return n;
}

static void *reaper(void *arg)
{
	struct nvme_ctrl *c = arg;
	struct pollfd p[NVME_MAX_QUEUES + 2];
	/* Without interrupts (no MSI-X) the rings are looked at every ms. */
	bool no_irq = c->admin.irq_fd < 0;

	while (!atomic_load(&c->stopping)) {
		bool busy = atomic_load(&c->busy) != 0;
		int tick = no_irq ? 1 : busy ? REAPER_TICK_MS : REAPER_IDLE_TICK_MS;
		unsigned n = reaper_fds(c, p);
		uint64_t v;

		if (poll(p, n, tick) < 0 && errno != EINTR)
			break;
		for (unsigned j = 0; j < n; j++)
			if (p[j].revents & POLLIN && read(p[j].fd, &v, sizeof(v)) > 0 &&
			    j > 0)
				atomic_fetch_add_explicit(&c->irqs, 1,
							  memory_order_relaxed);
		nvme_qp_reap(&c->admin);
		for (unsigned i = 0; i < c->nio; i++)
			if (!nvme_qp_polled(c->io[i]))
				nvme_qp_reap(c->io[i]);
		if (atomic_load(&c->aen_pending))
			handle_aen(c);
		if (atomic_load(&c->busy) && !atomic_load(&c->dead))
			check_health(c);
	}
	return NULL;
}

int nvme_reaper_start(struct nvme_ctrl *c)
{
	int rc;

	c->kick_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (c->kick_fd < 0)
		return dc_fail(-errno, "eventfd: %s", strerror(errno));
	rc = pthread_create(&c->reaper, NULL, reaper, c);
	if (rc)
		return dc_fail(-rc, "cannot start the completion thread: %s",
			       strerror(rc));
	c->reaper_started = true;
	/* Namespace attribute notices (bit 8), then the one outstanding AER. */
	struct nvme_sqe e = { .opc = NVME_ADM_SET_FEATURES,
			      .cdw10 = NVME_FEAT_ASYNC_EVENT,
			      .cdw11 = 1u << 8 };
	if (nvme_admin(c, &e, NULL, NULL, 0, NULL))
		dc_debug("nvme %s: namespace notices not enabled", c->dev->name);
	aer_arm(c);
	return 0;
}

void nvme_reaper_stop(struct nvme_ctrl *c)
{
	if (c->reaper_started) {
		atomic_store(&c->stopping, true);
		kick(c);
		pthread_join(c->reaper, NULL);
		c->reaper_started = false;
	}
	if (c->kick_fd >= 0)
		close(c->kick_fd);
	c->kick_fd = -1;
}
