/*
 * prewarm/internal.h: what job.c (one version's fetch-and-pin job, its
 * LMDB record) and enrol.c (recipes, their versions, the admin API and
 * metrics) share.  Never included from outside prewarm/.
 */
#ifndef PREWARM_INTERNAL_H
#define PREWARM_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include <sys/queue.h>

#include <jansson.h>

#include "prewarm.h"

struct evbuffer;
struct event;

#define JOB_MAX_IMAGES 256
#define JOB_RECORD_V1 1	     /* one job per recipe, keyed by recipe */
#define JOB_RECORD_VERSION 2 /* keyed "recipe@version" */
#define JOB_RECORD_RECIPE 16 /* the recipe's own record, keyed "recipe" */
#define JOB_DEFAULT_WINDOW 2
#define JOB_MAX_VERSIONS 32

enum job_state { JOB_QUEUED, JOB_RUNNING, JOB_DONE, JOB_FAILED };
extern const char *const job_state_names[4];

enum job_image_state { JOB_IMG_PENDING, JOB_IMG_DONE, JOB_IMG_FAILED };
extern const char *const job_image_state_names[3];

/* Why a version is pinned; none left: it is unpinned. */
enum job_reason {
	JOB_PIN_WINDOW = (1 << 0),   /* among the newest releases */
	JOB_PIN_EXPLICIT = (1 << 1), /* enroll --version V */
	JOB_PIN_CHECKOUT = (1 << 2), /* the recipe's working tree, untagged */
};
extern const char *const job_reason_names[3];

struct job_image {
	char ref[REF_STRLEN];
	struct ref parsed;
	struct upstream *up;
	enum job_image_state state;
	int pending; /* ops not yet finished */
	char error[200];
	char want[72];	  /* catalogue digest (hex prefix), "" for none */
	char service[64]; /* the catalogue's service, for messages */
};

struct job_op; /* job.c */

struct job {
	TAILQ_ENTRY(job) entry;
	struct prewarm *pw;
	char recipe[128];
	char version[128];
	enum job_state state;
	struct job_image *images;
	size_t nimages;
	struct digest *closure;
	int64_t *closure_size; /* blobs: their size; manifests: -1 */
	size_t nclosure, closure_cap;
	unsigned reasons; /* enum job_reason */
	int pinned;	  /* the last complete closure is pinned */
	uint64_t bytes_total, bytes_fetched, bytes_present;
	size_t blobs_total, blobs_done;
	size_t active;
	TAILQ_HEAD(, job_op) queue; /* waiting for a slot */
	TAILQ_HEAD(, job_op) running;
	int64_t started_at, finished_at;
	char platforms[8][48]; /* the enrolment's own; none: the daemon's */
	size_t nplatforms;
};

/* An enrolled recipe: where its versions come from, for `warm`. */
struct job_recipe {
	TAILQ_ENTRY(job_recipe) entry;
	char name[128];
	int64_t window;	 /* newest releases pinned; 0: none */
	uint64_t flags;	 /* enum recipe_flags the CLI loads with */
	char source[16]; /* "git", "catalogue", "dir" */
	char path[1024]; /* recipe checkout or catalogue file */
};

struct prewarm {
	struct server *srv;
	char platforms[8][48];
	size_t nplatforms;
	int64_t window; /* default --versions (config recipe_versions) */
	TAILQ_HEAD(, job) jobs;
	TAILQ_HEAD(, job_recipe) recipes;
	struct event *resume_ev;
};

/* An image to enroll: a reference and, from abra's catalogue, the digest
 * its tag must have and the service that uses it. */
struct job_want {
	char ref[REF_STRLEN];
	char want[72];
	char service[64];
};

struct job_rd {
	const unsigned char *p;
	size_t len, off;
	int bad;
};

/* job.c: one version's job --------------------------------------------- */

void job_native_platform(char *buf, size_t len);
/* Record pieces: little-endian u16-length strings and u64s. */
void job_put_str(struct evbuffer *, const char *);
void job_put_u64(struct evbuffer *, uint64_t);
uint64_t job_get_u64(struct job_rd *);
void job_get_str(struct job_rd *, char *out, size_t size);
/* "recipe@version", the key of a version's record. */
void job_id(const struct job *, char *buf, size_t len);
void job_save(struct job *);
/* A version's record (layout 1 or 2) -> a job in pw->jobs. */
void job_load(struct prewarm *, const char *id, const void *val, size_t len);
struct job *job_find(struct prewarm *, const char *recipe, const char *version);
/* A new job in pw->jobs, a recipe's versions kept newest first. */
struct job *job_new(struct prewarm *, const char *recipe, const char *version);
void job_free(struct job *); /* cancels its fetches; NULL-safe */
void job_set_images(struct job *, const struct job_want *, size_t n);
/* The daemon's platforms plus extra (a JSON array), or the daemon's. */
void job_set_platforms(struct job *, json_t *extra);
void job_start(struct job *);
/* A version's status: new reference. */
json_t *job_json(const struct job *);
json_t *job_platforms_json(const struct job *);

#endif
