/*
 * prewarm/prewarm.h: turning a Co-op Cloud recipe into images and images
 * into warm caches.  Sections follow the files: recipe.c (compose files ->
 * normalised references).  No libyaml type appears here.
 */
#ifndef PREWARM_H
#define PREWARM_H

#include <stddef.h>
#include <stdint.h>

#include "../registry/registry.h"

/* recipe.c: recipe directory (or a git tag of it) -> image list ---------- */

enum recipe_flags {
	/* Every compose*.yml in the recipe, not just COMPOSE_FILE's set. */
	RECIPE_ALL_OVERLAYS = (1 << 0),
	/* Accept untagged and ":latest" references instead of failing. */
	RECIPE_ALLOW_FLOATING = (1 << 1),
};

/* Where an image is used: borrowed from the recipe, like everything here. */
struct recipe_use {
	const char *file;    /* "compose.yml", as named in the recipe */
	size_t line;	     /* 1-based line of the image: value */
	const char *service; /* "app" */
};

/* One distinct image (by canonical string) and every place it is used. */
struct recipe_image {
	struct ref ref;
	char canonical[REF_STRLEN];    /* ref_format() of ref */
	const struct recipe_use *uses; /* in file order, then line order */
	size_t nuses;
};

/*
 * Where the recipe's files come from: a directory, a git tag of one, or
 * anything a caller (a test) supplies.  Paths are relative to the recipe.
 */
struct recipe_src {
	/*
	 * Reads path into *buf, a new NUL-terminated buffer of *len bytes
	 * (the caller frees it).  Returns 0, 1 if the file does not exist,
	 * or -1 with a one-line reason in err.
	 */
	int (*read)(void *arg, const char *path, char **buf, size_t *len,
	    char *err, size_t errlen);
	/*
	 * Lists the file names at the top of the recipe into *names, a new
	 * array of new strings (the caller frees them).  0, or -1 with err.
	 */
	int (*list)(
	    void *arg, char ***names, size_t *n, char *err, size_t errlen);
	void *arg;
};

/* A loaded recipe: its images, files and version label. */
struct recipe;

/*
 * Loads the recipe in dir: .env.sample's COMPOSE_FILE set (or compose.yml
 * alone), or with RECIPE_ALL_OVERLAYS every compose*.yml as well.  With a
 * version, the files are read with "git -C dir show version:path" and the
 * working tree is not touched; that runs git and blocks, so it belongs in
 * the CLI, never on the daemon's loop.  Images are the union over the
 * files read: an overlay that replaces a service's image adds one, nothing
 * is dropped (pre-warming one image too many is cheap, one too few is not).
 * ${VAR} in image: takes values from .env.sample only, never from the
 * environment.  Returns a new recipe, or NULL with one line in err:
 * "compose.yml:12: <reason>" when a place is known.
 */
struct recipe *recipe_load(const char *dir, const char *version,
    enum recipe_flags, char *err, size_t errlen);
/* As recipe_load, with the files from src. */
struct recipe *recipe_load_src(
    const struct recipe_src *, enum recipe_flags, char *err, size_t errlen);
/*
 * The parsing core on its own (fuzzers, tests): one compose file's bytes
 * named file, with env the text of a .env.sample (NULL for none).
 */
struct recipe *recipe_parse_compose_buf(const char *file, const char *yaml,
    size_t len, const char *env, size_t envlen, enum recipe_flags, char *err,
    size_t errlen);
void recipe_free(struct recipe *); /* NULL-safe */

/* Distinct images, sorted by canonical string; borrowed from the recipe. */
size_t recipe_nimages(const struct recipe *);
const struct recipe_image *recipe_image(const struct recipe *, size_t i);
/* The compose files read, in load order (compose.yml first). */
size_t recipe_nfiles(const struct recipe *);
const char *recipe_file(const struct recipe *, size_t i);
/*
 * The recipe version from a "coop-cloud.${STACK_NAME}.version=<v>" deploy
 * label, or NULL if no service has one.
 */
const char *recipe_version(const struct recipe *);

/*
 * The release tags of a recipe checkout: "git -C dir tag --list" (local
 * only, never a fetch; blocks: CLI only).  *tags is a new array of new
 * strings (the caller frees them).  0 (none is fine), or -1 with err.
 * 1 if dir is not the top of a git checkout (no dir/.git).
 */
int recipe_tags(
    const char *dir, char ***tags, size_t *n, char *err, size_t errlen);

/* version.c: Co-op Cloud versions "<recipe-semver>+<upstream-version>" -- */

struct version {
	unsigned long major, minor, patch;
	char pre[64]; /* semver pre-release ("rc1"); "" for a release */
};

/* 0 if tag is "<MAJOR.MINOR.PATCH[-PRE]>+<upstream>", else -1. */
int version_parse(const char *tag, struct version *);
/* 1 for such a tag with no pre-release part. */
int version_is_release(const char *tag);
/*
 * Semver precedence of the recipe part (the upstream part only breaks
 * ties); a pre-release sorts below its release; strings that are not
 * versions sort below every version.  <0, 0, >0 like strcmp.
 */
int version_cmp(const char *a, const char *b);
/* Sorts tags newest first (in place). */
void version_sort_desc(char **tags, size_t n);
/*
 * The window: sorts tags newest first and puts the n newest releases
 * (pre-releases and other tags are never in a window) into out (borrowed
 * from tags).  Returns how many there are (at most n).
 */
size_t version_window(char **tags, size_t ntags, size_t n, char **out);

/* job.c: the daemon's pre-warm engine --------------------------------- */

struct prewarm;

/*
 * Loads enrolments from LMDB, registers the admin commands (enroll,
 * recipes, recipes/NAME, warm) and per-recipe metrics, and resumes jobs
 * that were interrupted.  platforms: "linux/amd64", ...; none means this
 * machine's own.  NULL (logged) on error.
 */
struct prewarm *prewarm_new(
    struct server *, const char *const *platforms, size_t nplatforms);
void prewarm_free(struct prewarm *); /* NULL-safe */
/* The default --versions for the CLI (config recipe_versions; 2). */
void prewarm_set_versions(struct prewarm *, int64_t n);

/*
 * Pull experiments as data (run.c, record.c).  `ccprewarm run begin/end`
 * opens and closes a window in which the daemon attributes every manifest
 * and blob request to the images it belongs to; a finished run's record is
 * kept in LMDB.  record.c: the record (names, figures, the binary codec for
 * LMDB, JSON for the admin API, comparison); run.c: the daemon side (open
 * runs, the request hook, admin commands).  Like the pre-warm jobs, they
 * plug into registry/ through admin_add(), metrics_add() and req_hook_set().
 */

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
