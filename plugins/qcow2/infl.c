/* SPDX-License-Identifier: MIT */
/* What the writers of an image share below the write path: the clusters in
 * flight of in-place data writes (aio.c registers them, write.c waits for
 * them; see aio.c's comment for the locking), and qcow2_room(), the growth of
 * the arrays that hold them and the refcount and write state. */
#include "qcow2.h"

#include <errno.h>
#include <stdlib.h>

int qcow2_room(void **arr, uint32_t *cap, uint32_t n, size_t elem)
{
	uint32_t c = *cap ? *cap * 2 : 16;
	void *a;

	if (n < *cap)
		return 0;
	a = realloc(*arr, (size_t)c * elem);
	if (!a)
		return -ENOMEM;
	*arr = a;
	*cap = c;
	return 0;
}

int qcow2_infl_add(struct qcow2 *q, uint64_t c0, uint64_t c1, const void *owner)
{
	int ret = 0;

	pthread_mutex_lock(&q->infl_lock);
	if (qcow2_room((void **)&q->infl, &q->infl_cap, q->ninfl, sizeof(*q->infl)))
		ret = -ENOMEM;
	else
		q->infl[q->ninfl++] = (struct qcow2_infl){ c0, c1, owner };
	pthread_mutex_unlock(&q->infl_lock);
	return ret;
}

void qcow2_infl_del(struct qcow2 *q, const void *owner)
{
	uint32_t waiters;

	/* The data is written: the next flush must sync it. */
	__atomic_store_n(&q->data_dirty, true, __ATOMIC_RELEASE);
	pthread_mutex_lock(&q->infl_lock);
	for (uint32_t i = 0; i < q->ninfl; i++)
		if (q->infl[i].owner == owner) {
			q->infl[i] = q->infl[--q->ninfl];
			break;
		}
	waiters = q->infl_waiters;
	pthread_mutex_unlock(&q->infl_lock);
	/* A waiter counted itself before looking, under lock, and holds lock
	 * until it sleeps: this broadcast cannot come between. */
	if (waiters) {
		pthread_mutex_lock(&q->lock);
		pthread_cond_broadcast(&q->busy_cond);
		pthread_mutex_unlock(&q->lock);
	}
}

static bool qcow2_infl_covers(const struct qcow2 *q, uint64_t ci)
{
	for (uint32_t i = 0; i < q->ninfl; i++)
		if (ci >= q->infl[i].c0 && ci < q->infl[i].c1)
			return true;
	return false;
}

bool qcow2_infl_has(struct qcow2 *q, uint64_t ci)
{
	bool has;

	pthread_mutex_lock(&q->infl_lock);
	has = qcow2_infl_covers(q, ci);
	pthread_mutex_unlock(&q->infl_lock);
	return has;
}

void qcow2_infl_wait(struct qcow2 *q, uint64_t ci)
{
	for (;;) {
		bool has;

		pthread_mutex_lock(&q->infl_lock);
		has = qcow2_infl_covers(q, ci);
		q->infl_waiters += has;
		pthread_mutex_unlock(&q->infl_lock);
		if (!has)
			return;
		pthread_cond_wait(&q->busy_cond, &q->lock);
		pthread_mutex_lock(&q->infl_lock);
		q->infl_waiters--;
		pthread_mutex_unlock(&q->infl_lock);
	}
}
