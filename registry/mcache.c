/*
 * registry/mcache.c: small manifests in RAM.  Manifest bytes by digest
 * (content-addressed: never stale) and the tag -> digest mapping with its
 * freshness time (a mirror of the LMDB record, written wherever that is),
 * in one hash table under one byte budget, least recently used out first.
 * One mutex held only for a lookup or an insert; bytes are handed out by
 * reference, so a reply copies them with no lock held.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

#include "../common/common.h"
#include "registry.h"

enum mcache_kind {
	MCACHE_BYTES, /* key 'd' + digest: a manifest's bytes */
	MCACHE_TAG,   /* key 't' + upstream\0repo\0tag: a db_tag */
};

struct mcache_blob {
	struct mcache_blob *hnext;
	TAILQ_ENTRY(mcache_blob) lru; /* most recently used first */
	uint64_t hash;
	size_t cost;
	unsigned refs; /* the table's (while listed) and readers' */
	enum mcache_kind kind;
	struct db_tag tag; /* MCACHE_TAG; .digest also for MCACHE_BYTES */
	const unsigned char *bytes;
	size_t len;
	size_t keylen;
	unsigned char key[]; /* then the bytes */
};

TAILQ_HEAD(mcache_lru, mcache_blob);

struct mcache {
	pthread_mutex_t mu;
	struct mcache_blob **tab;
	size_t nbuckets; /* a power of two */
	size_t n;
	struct mcache_lru lru;
	size_t max_bytes, bytes;
	struct mcache_stats st;
};

#define MCACHE_KEY_MAX \
	(1 + DB_UPSTREAM_MAX + ROUTE_NAME_MAX + ROUTE_TAG_MAX + 3)

static uint64_t
mcache_hash(const unsigned char *k, size_t n)
{
	uint64_t h = 1469598103934665603ull; /* FNV-1a */
	size_t i;

	for (i = 0; i < n; i++)
		h = (h ^ k[i]) * 1099511628211ull;
	return h;
}

/* The key's length, 0 if a part is longer than any valid one (not kept). */
static size_t
mcache_tag_key(
    unsigned char *k, const char *upstream, const char *repo, const char *tag)
{
	static const size_t max[3] = {
	    DB_UPSTREAM_MAX, ROUTE_NAME_MAX, ROUTE_TAG_MAX};
	const char *parts[3] = {upstream, repo, tag};
	size_t i, l, n = 0;

	k[n++] = 't';
	for (i = 0; i < 3; i++) {
		if ((l = strnlen(parts[i], max[i] + 1)) > max[i])
			return 0;
		memcpy(k + n, parts[i], l);
		n += l;
		k[n++] = '\0';
	}
	return n;
}

static size_t
mcache_digest_key(unsigned char *k, const struct digest *d)
{
	k[0] = 'd';
	memcpy(k + 1, d->b, DIGEST_LEN);
	return 1 + DIGEST_LEN;
}

struct mcache *
mcache_new(size_t max_bytes)
{
	struct mcache *mc;

	if (max_bytes == 0)
		return NULL;
	mc = xcalloc(1, sizeof *mc);
	pthread_mutex_init(&mc->mu, NULL);
	mc->nbuckets = 256;
	mc->tab = xcalloc(mc->nbuckets, sizeof *mc->tab);
	TAILQ_INIT(&mc->lru);
	mc->max_bytes = max_bytes;
	return mc;
}

void
mcache_blob_unref(struct mcache_blob *e)
{
	if (e != NULL && __atomic_sub_fetch(&e->refs, 1, __ATOMIC_ACQ_REL) == 0)
		free(e);
}

/* Under mu. */
static struct mcache_blob **
mcache_slot(struct mcache *mc, const unsigned char *k, size_t n, uint64_t h)
{
	struct mcache_blob **pp;

	for (pp = &mc->tab[h & (mc->nbuckets - 1)]; *pp != NULL;
	     pp = &(*pp)->hnext)
		if ((*pp)->hash == h && (*pp)->keylen == n &&
		    memcmp((*pp)->key, k, n) == 0)
			break;
	return pp;
}

/* Under mu: unlists e (the caller has its slot); the table's ref goes. */
static void
mcache_unlist(struct mcache *mc, struct mcache_blob **pp)
{
	struct mcache_blob *e = *pp;

	*pp = e->hnext;
	TAILQ_REMOVE(&mc->lru, e, lru);
	mc->n--;
	mc->bytes -= e->cost;
	mcache_blob_unref(e);
}

static void
mcache_unlist_entry(struct mcache *mc, struct mcache_blob *e)
{
	mcache_unlist(mc, mcache_slot(mc, e->key, e->keylen, e->hash));
}

static void
mcache_grow(struct mcache *mc)
{
	struct mcache_blob **tab, *e, *next;
	size_t i, nb = mc->nbuckets * 2;

	tab = xcalloc(nb, sizeof *tab);
	for (i = 0; i < mc->nbuckets; i++)
		for (e = mc->tab[i]; e != NULL; e = next) {
			next = e->hnext;
			e->hnext = tab[e->hash & (nb - 1)];
			tab[e->hash & (nb - 1)] = e;
		}
	free(mc->tab);
	mc->tab = tab;
	mc->nbuckets = nb;
}

/* Takes e (one ref, the table's), replacing an entry of the same key. */
static void
mcache_insert(struct mcache *mc, struct mcache_blob *e)
{
	struct mcache_blob **pp, *old;

	pthread_mutex_lock(&mc->mu);
	pp = mcache_slot(mc, e->key, e->keylen, e->hash);
	if (*pp != NULL)
		mcache_unlist(mc, pp);
	while (mc->bytes + e->cost > mc->max_bytes &&
	    (old = TAILQ_LAST(&mc->lru, mcache_lru)) != NULL) {
		mcache_unlist_entry(mc, old);
		mc->st.evictions++;
	}
	if (mc->n + 1 > mc->nbuckets)
		mcache_grow(mc);
	pp = &mc->tab[e->hash & (mc->nbuckets - 1)];
	e->hnext = *pp;
	*pp = e;
	TAILQ_INSERT_HEAD(&mc->lru, e, lru);
	mc->n++;
	mc->bytes += e->cost;
	pthread_mutex_unlock(&mc->mu);
}

static struct mcache_blob *
mcache_entry_new(const unsigned char *k, size_t n, size_t extra)
{
	struct mcache_blob *e = xcalloc(1, sizeof *e + n + extra);

	memcpy(e->key, k, n);
	e->keylen = n;
	e->hash = mcache_hash(k, n);
	e->cost = sizeof *e + n + extra;
	e->refs = 1;
	return e;
}

int
mcache_fits(const struct mcache *mc, size_t len)
{
	/* one manifest never takes more than an eighth of the budget */
	return mc != NULL && len <= mc->max_bytes / 8;
}

struct mcache_blob *
mcache_put(struct mcache *mc, const struct digest *d, const char *media_type,
    const void *bytes, size_t len)
{
	unsigned char k[1 + DIGEST_LEN];
	struct mcache_blob *e;
	size_t n;

	if (!mcache_fits(mc, len))
		return NULL;
	n = mcache_digest_key(k, d);
	e = mcache_entry_new(k, n, len);
	e->kind = MCACHE_BYTES;
	e->tag.digest = *d;
	xstrlcpy(e->tag.media_type, media_type != NULL ? media_type : "",
	    sizeof e->tag.media_type);
	memcpy(e->key + n, bytes, len);
	e->bytes = e->key + n;
	e->len = len;
	e->refs = 2; /* the table's and the caller's */
	mcache_insert(mc, e);
	return e;
}

struct mcache_blob *
mcache_get(struct mcache *mc, const struct digest *d)
{
	unsigned char k[1 + DIGEST_LEN];
	struct mcache_blob *e;
	size_t n;

	if (mc == NULL)
		return NULL;
	n = mcache_digest_key(k, d);
	pthread_mutex_lock(&mc->mu);
	e = *mcache_slot(mc, k, n, mcache_hash(k, n));
	if (e != NULL) {
		TAILQ_REMOVE(&mc->lru, e, lru);
		TAILQ_INSERT_HEAD(&mc->lru, e, lru);
		__atomic_add_fetch(&e->refs, 1, __ATOMIC_RELAXED);
		mc->st.hits++;
	} else
		mc->st.misses++;
	pthread_mutex_unlock(&mc->mu);
	return e;
}

const void *
mcache_blob_bytes(const struct mcache_blob *e, size_t *len)
{
	*len = e->len;
	return e->bytes;
}

const char *
mcache_blob_type(const struct mcache_blob *e)
{
	return e->tag.media_type;
}

void
mcache_tag_put(struct mcache *mc, const char *upstream, const char *repo,
    const char *tag, const struct db_tag *t)
{
	unsigned char k[MCACHE_KEY_MAX];
	struct mcache_blob *e;
	size_t n;

	if (mc == NULL || (n = mcache_tag_key(k, upstream, repo, tag)) == 0)
		return;
	e = mcache_entry_new(k, n, 0);
	e->kind = MCACHE_TAG;
	e->tag = *t;
	mcache_insert(mc, e);
}

int
mcache_tag_get(struct mcache *mc, const char *upstream, const char *repo,
    const char *tag, struct db_tag *out)
{
	unsigned char k[MCACHE_KEY_MAX];
	struct mcache_blob *e;
	size_t n;

	if (mc == NULL || (n = mcache_tag_key(k, upstream, repo, tag)) == 0)
		return 1;
	pthread_mutex_lock(&mc->mu);
	e = *mcache_slot(mc, k, n, mcache_hash(k, n));
	if (e != NULL) {
		TAILQ_REMOVE(&mc->lru, e, lru);
		TAILQ_INSERT_HEAD(&mc->lru, e, lru);
		*out = e->tag;
	}
	pthread_mutex_unlock(&mc->mu);
	return e != NULL ? 0 : 1;
}

void
mcache_drop(struct mcache *mc, const struct digest *d)
{
	struct mcache_blob *e, *next;

	if (mc == NULL)
		return;
	pthread_mutex_lock(&mc->mu);
	for (e = TAILQ_FIRST(&mc->lru); e != NULL; e = next) {
		next = TAILQ_NEXT(e, lru);
		if (digest_equal(&e->tag.digest, d))
			mcache_unlist_entry(mc, e);
	}
	pthread_mutex_unlock(&mc->mu);
}

void
mcache_clear(struct mcache *mc)
{
	struct mcache_blob *e;

	if (mc == NULL)
		return;
	pthread_mutex_lock(&mc->mu);
	while ((e = TAILQ_FIRST(&mc->lru)) != NULL)
		mcache_unlist_entry(mc, e);
	pthread_mutex_unlock(&mc->mu);
}

void
mcache_stats(struct mcache *mc, struct mcache_stats *out)
{
	memset(out, 0, sizeof *out);
	if (mc == NULL)
		return;
	pthread_mutex_lock(&mc->mu);
	*out = mc->st;
	out->bytes = mc->bytes;
	out->entries = mc->n;
	out->max_bytes = mc->max_bytes;
	pthread_mutex_unlock(&mc->mu);
}

void
mcache_free(struct mcache *mc)
{
	if (mc == NULL)
		return;
	mcache_clear(mc);
	pthread_mutex_destroy(&mc->mu);
	free(mc->tab);
	free(mc);
}
