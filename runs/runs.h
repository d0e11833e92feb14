/*
 * runs/runs.h: pull experiments as data.  `ccprewarm run begin/end` opens
 * and closes a window in which the daemon attributes every manifest and
 * blob request to the images it belongs to; a finished run's record is
 * kept in LMDB.  Sections follow the files: record.c (the record: names,
 * figures, the binary codec for LMDB, JSON for the admin API, comparison),
 * run.c (the daemon side: open runs, the request hook, admin commands).
 */
#ifndef RUNS_H
#define RUNS_H

#include <stddef.h>
#include <stdint.h>

#include "../registry/registry.h"

/* record.c: one run's record -------------------------------------------- */

#define RUN_NAME_MAX 128
#define RUN_LABELS_MAX 16
#define RUN_LABEL_KEY_MAX 64
#define RUN_LABEL_VALUE_MAX 256
#define RUN_CLIENT_MAX 48
#define RUN_KEEP_DEFAULT 50

enum run_state {
	RUN_STATE_NONE,	  /* no manifest or blob was served */
	RUN_STATE_COLD,	  /* nothing came from the store */
	RUN_STATE_WARM,	  /* everything came from the store */
	RUN_STATE_PARTLY, /* some of each */
};

/*
 * What one image (or the whole run) cost.  Times are wall-clock
 * milliseconds since the epoch; the upstream wait is summed over requests
 * (parallel requests overlap, so it can exceed the wall time).
 */
struct run_fig {
	int64_t first_ms; /* first request started; 0: none */
	int64_t last_ms;  /* last reply handed to the connection */
	uint64_t requests;
	uint64_t hits;		 /* HIT, REVALIDATED, STALE */
	uint64_t misses;	 /* MISS: this request fetched from upstream */
	uint64_t coalesced;	 /* joined a fetch in flight */
	uint64_t errors;	 /* 4xx, 5xx, cut connections */
	uint64_t cache_bytes;	 /* body bytes served from the store */
	uint64_t upstream_bytes; /* body bytes that came from upstream */
	int64_t upstream_wait_ms;
};

struct run_label {
	char key[RUN_LABEL_KEY_MAX];
	char value[RUN_LABEL_VALUE_MAX];
};

/* One image as the client asked for it: "host/repo:tag" (or "@digest"). */
struct run_image {
	char ref[REF_STRLEN];
	struct run_fig fig;
};

struct run_rec {
	char name[RUN_NAME_MAX + 1];
	char client[RUN_CLIENT_MAX]; /* "": every client's requests */
	int64_t begun_at, ended_at;  /* wall-clock ms */
	struct run_label labels[RUN_LABELS_MAX];
	size_t nlabels;
	char overlapped[512];  /* runs open at the same time, space-separated */
	struct run_fig total;  /* every request once, attributed or not */
	uint64_t unattributed; /* requests no image in the run claimed */
	uint64_t dropped;      /* requests over the per-run cap: not counted */
	struct run_image *images; /* owned; in order of first request */
	size_t nimages;
};

/* 1 if s is a run name: [A-Za-z0-9_.-], 1 to RUN_NAME_MAX, not "." or "..". */
int record_name_valid(const char *s);
/* Parses "KEY=VALUE" (key as a run name, value printable); 0 or -1, why. */
int record_label_parse(struct run_label *, const char *kv, const char **why);
void record_release(struct run_rec *);
enum run_state record_fig_state(const struct run_fig *);
const char *record_state_name(enum run_state);
int64_t record_fig_wall_ms(const struct run_fig *);
/* hits / (hits + misses + coalesced); -1 when there were none. */
double record_fig_hit_ratio(const struct run_fig *);

/* A new buffer of *len bytes (versioned little-endian layout). */
void *record_encode(const struct run_rec *, size_t *len);
/* 0, or -1 for bytes that do not decode (rec released). */
int record_decode(struct run_rec *, const void *, size_t);

enum run_json_flags {
	RUN_JSON_IMAGES = (1 << 0),   /* the per-image list */
	RUN_JSON_BASELINE = (1 << 1), /* "baseline": true */
};
/* The record as one JSON object; new string. */
char *record_json(const struct run_rec *, enum run_json_flags);

/* A figure of `runs compare`: lower is better except for the hit ratio. */
enum run_mark {
	RUN_MARK_NA,	 /* not comparable (image missing on one side) */
	RUN_MARK_SAME,	 /* within the threshold */
	RUN_MARK_BETTER, /* beyond the threshold, the good way */
	RUN_MARK_WORSE,	 /* beyond the threshold, the bad way */
};

struct run_delta {
	double base, next;
	enum run_mark mark;
};

enum run_fig_kind { RUN_FIG_WALL, RUN_FIG_UPSTREAM, RUN_FIG_RATIO, RUN_NFIGS };

struct run_cmp_row {
	char ref[REF_STRLEN]; /* "" for the total */
	int in_base, in_next;
	struct run_delta d[RUN_NFIGS];
};

/*
 * Compares next against base, image by image (matched by reference) and
 * in total: a new array of *n rows, the images of next in order, then
 * those only in base, then the total.  A figure is worse when it moved
 * the bad way by more than threshold_pct percent of the base (wall times
 * also by more than RUN_WALL_SLACK_MS, so that timer noise on tiny pulls
 * is never a regression; any upstream bytes against none is worse).
 */
#define RUN_WALL_SLACK_MS 20
struct run_cmp_row *record_compare(const struct run_rec *base,
    const struct run_rec *next, double threshold_pct, size_t *n);
/* 1 if any figure of any row is RUN_MARK_WORSE. */
int record_compare_worse(const struct run_cmp_row *, size_t n);
const char *record_mark_name(enum run_mark);

/* run.c: the daemon side --------------------------------------------------- */

struct runs;

/*
 * Registers the admin commands (run/begin, run/end, runs, runs/NAME,
 * runs/baseline), the /metrics writer and the request hook; keeps the
 * newest keep finished runs (and the baseline).  NULL on error (logged).
 */
struct runs *runs_new(struct server *, int64_t keep);
/* Removes the hook; open runs are dropped unrecorded.  NULL-safe. */
void runs_free(struct runs *);

#endif
