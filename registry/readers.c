/*
 * registry/readers.c: which digests are being read right now (a reply
 * sending a stored file, a stream following a fill, a fill writing its
 * partial file), counted per digest, so that eviction leaves them alone.
 * It depends on nothing else in registry/: senders and eviction both use it.
 */
#include <stdlib.h>

#include "../common/common.h"
#include "internal.h"

struct readers_entry {
	struct digest d;
	unsigned n;
};

/*
 * Outlives the server if it must: a reply's file segment may be freed by
 * libevent after the server is (its connection goes with the event base),
 * so each holder keeps a reference.
 */
struct readers {
	/* added and removed from every event loop (a hit on any loop sends
	 * from its file), read by eviction on loop 0 */
	pthread_mutex_t mu;
	unsigned refs;
	struct readers_entry *r;
	size_t n;
};

static struct readers_entry *
readers_find(const struct readers *t, const struct digest *d)
{
	size_t i;

	for (i = 0; t != NULL && i < t->n; i++)
		if (digest_equal(&t->r[i].d, d))
			return &t->r[i];
	return NULL;
}

struct readers *
readers_new(void)
{
	struct readers *t;

	t = xcalloc(1, sizeof *t);
	t->refs = 1;
	pthread_mutex_init(&t->mu, NULL);
	return t;
}

/* With t->mu held; releases it. */
static void
readers_unref_locked(struct readers *t)
{
	if (--t->refs > 0) {
		pthread_mutex_unlock(&t->mu);
		return;
	}
	pthread_mutex_unlock(&t->mu);
	pthread_mutex_destroy(&t->mu);
	free(t->r);
	free(t);
}

void
readers_unref(struct readers *t)
{
	if (t == NULL)
		return;
	pthread_mutex_lock(&t->mu);
	readers_unref_locked(t);
}

struct readers *
readers_add(struct server *srv, const struct digest *d)
{
	struct readers *t = srv->readers;
	struct readers_entry *r;

	if (t == NULL)
		return NULL;
	pthread_mutex_lock(&t->mu);
	if ((r = readers_find(t, d)) == NULL) {
		t->r = xreallocarray(t->r, t->n + 1, sizeof *t->r);
		r = &t->r[t->n++];
		r->d = *d;
		r->n = 0;
	}
	r->n++;
	t->refs++;
	pthread_mutex_unlock(&t->mu);
	return t;
}

void
readers_del(struct readers *t, const struct digest *d)
{
	struct readers_entry *r;

	if (t == NULL)
		return;
	pthread_mutex_lock(&t->mu);
	if ((r = readers_find(t, d)) != NULL && --r->n == 0)
		*r = t->r[--t->n];
	readers_unref_locked(t);
}

int
readers_busy(const struct server *srv, const struct digest *d)
{
	struct readers *t = srv->readers;
	int busy;

	if (t == NULL)
		return 0;
	pthread_mutex_lock(&t->mu);
	busy = readers_find(t, d) != NULL;
	pthread_mutex_unlock(&t->mu);
	return busy;
}
